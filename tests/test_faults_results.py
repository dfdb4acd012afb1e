"""Fault injection, silent wrong results (issue 20, items 4 and 7): data with one class, 16-bit
grayscale images, a loss that diverges while staying finite, and the messages of a failed
optimisation (the likely causes with their values, what is kept)."""
import numpy as np
import pytest
import torch
from PIL import Image

from faults import NEEDS_3X3, TINY, no_leftovers, one_line, search
from nas.data import datasets
from nas.engine.checkpoint import load_checkpoint


def image_folder(root, classes, size=8, n=6, mode="RGB"):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).convert(mode).save(root / c / f"{i}.png")
    return root


def test_a_dataset_with_one_class_is_refused(tmp_path, capsys):
    root = image_folder(tmp_path / "one", ["cat"])
    out = tmp_path / "o"
    line = one_line(capsys, search(*TINY, "data.dataset=imagefolder", f"data.root={root}", "--out", str(out)))
    assert line == ("nas-search: error: data.dataset=imagefolder: its training data holds 1 class (cat) but a "
                    "classifier needs at least 2; check data.root (one subfolder per class), data.subset or the dataset's options")
    assert not (out / "checkpoint.pt").exists() and "error: data.dataset=imagefolder" in (out / "log.txt").read_text()


def test_a_synthetic_rule_with_one_class_is_refused(tmp_path, capsys):
    """A DNF rule that is always true labels every sample 1: one class again."""
    from nas.data.registry import datasets_of
    assert "synthetic_dnf" in datasets_of("tabular")
    y = torch.ones(10, dtype=torch.int64)
    with pytest.raises(Exception, match="holds 1 class"):
        datasets.require_classes(y, ["false", "true"], "synthetic_dnf")
    datasets.require_classes(torch.tensor([0, 1, 1]), ["false", "true"], "synthetic_dnf")


def test_16_bit_grayscale_pngs_are_scaled_not_clipped(tmp_path):
    values = np.array([[0, 128, 129, 257], [1000, 30000, 65407, 65535]], dtype=np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I")  # Pillow reads it as 16 (or 32) bit integers
    got = datasets._decode([str(path)], None)[0]  # [H, W, 3] uint8
    expect = (values.astype(np.int64) + 128) // 257  # the nearest of 256 levels: v * 255 / 65535
    assert got.dtype == np.uint8 and (got == expect[..., None]).all()
    assert expect.tolist() == [[0, 0, 1, 1], [4, 117, 255, 255]]  # 128/257 rounds down, 129/257 up
    # 8-bit grayscale and RGB are as Pillow converts them
    Image.fromarray(np.array([[0, 77], [200, 255]], dtype=np.uint8)).save(tmp_path / "g8.png")
    assert datasets._decode([str(tmp_path / "g8.png")], None)[0][..., 0].tolist() == [[0, 77], [200, 255]]


def test_a_folder_of_16_bit_images_trains_on_the_scaled_values(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "g16"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 65536, (8, 8), dtype=np.uint16)).save(root / c / f"{i}.png")
    data = datasets.load_imagefolder(root=str(root), download=False, resize=None, subset=None, split="train",
                                     seed=0, workers=0)
    assert data.images.float().mean().item() == pytest.approx(127.5, abs=8)  # not ~255: not clipped


def test_a_loss_that_diverges_while_finite_ends_the_run(tmp_path, capsys):
    out = tmp_path / "o"
    line = one_line(capsys, search(*TINY, "optim.weights.lr=300", "--out", str(out)))
    assert line.startswith("nas-search: error: the loss diverged: ")
    assert "over 100x the first step's" in line
    assert "likely causes: a weight learning rate too high (optim.weights.lr=300), an architecture learning " \
           "rate too high (optim.arch.lr=0.003)" in line
    assert line.endswith(f"no checkpoint was written yet, so there is nothing to resume; start again with --out {out}")
    assert "error: the loss diverged" in (out / "log.txt").read_text()
    assert not (out / "genotype.yaml").exists() and not (out / "metrics.json").exists()
    no_leftovers(out)


def test_a_non_finite_loss_names_the_temperature_and_the_kept_checkpoint(tmp_path, capsys, monkeypatch):
    """Later in a run: the message says which checkpoint is kept and names the temperature too."""
    from nas.searcher.loop import Searcher
    out = tmp_path / "o"
    real = Searcher.weight_step

    def weight_step(self, x, y, update_arch=False):
        loss, logits = real(self, x, y, update_arch)
        return (loss * float("nan"), logits) if self.opt.weights_sched.last_epoch >= 1 else (loss, logits)

    monkeypatch.setattr(Searcher, "weight_step", weight_step)
    line = one_line(capsys, search(*TINY, "trainer.epochs=3", "estimator.name=gumbel", "estimator.tau=0.01",
                                   "trainer.grad_clip=0", "--out", str(out)))
    assert line.startswith("nas-search: error: the loss became nan in epoch 2 step 1; likely causes: ")
    assert "a temperature too low (estimator.tau=0.01, estimator.tau_end=0.03)" in line   # gumbel's end τ
    assert "no gradient clipping (trainer.grad_clip=0)" in line
    assert line.endswith(f"the checkpoint after epoch 1 of 3 is kept in {out}; continue with: nas-search --resume {out}")
    assert load_checkpoint(out)["epoch"] == 1


def test_the_divergence_reference_survives_a_resume(tmp_path):
    out = tmp_path / "o"
    assert search(*TINY, "--out", str(out)) == 0
    start = load_checkpoint(out)["loss_guard"]["start"]
    assert 1.5 < start < 3.5  # about ln 10 for a fresh network on ten classes
    assert search("--resume", str(out), "trainer.epochs=2") == 0
    assert load_checkpoint(out)["loss_guard"]["start"] == start


@pytest.mark.parametrize("override, key", [
    ("estimator.tau=-1", "estimator.tau"), ("space.N=0", "space.N"), ("space.N=-1", "space.N"),
    ("trainer.max_steps_per_epoch=-1", "trainer.max_steps_per_epoch"), ("optim.warmup_epochs=-2", "optim.warmup_epochs"),
    ("trainer.ckpt_every=0", "trainer.ckpt_every"), ("trainer.grad_clip=-1", "trainer.grad_clip"),
    ("optim.weights.momentum=5", "optim.weights.momentum"), ("space.C=0", "space.C"), ("space.C=-4", "space.C"),
    ("seed=18446744073709551617", "seed"), ("optim.arch.betas=[2,3]", "optim.arch.betas"),
    ("optim.weights.weight_decay=-1", "optim.weights.weight_decay"), ("optim.arch.lr=.nan", "optim.arch.lr"),
    ("optim.weights.lr_min=1", "optim.weights.lr_min"), ("optim.weights.lr=-1", "optim.weights.lr"),
    ("trainer.epochs=0", "trainer.epochs"), ("trainer.epochs=-1", "trainer.epochs"), ("name=" + "n" * 300, "name"),
])
def test_the_values_that_were_accepted_are_refused_before_the_run(tmp_path, capsys, override, key):
    """Issue 20's list of values that ran to exit 0 (or a traceback): one line naming the key,
    and no run folder."""
    line = one_line(capsys, search(*TINY, override, "--out", str(tmp_path / "o")))
    assert f"error: {key}" in line and ("out of range" in line or "not a finite number" in line or "not allowed" in line)
    assert not (tmp_path / "o").exists()


def test_an_image_size_the_network_cannot_take_is_one_line(tmp_path, capsys):
    line = one_line(capsys, search(*TINY, NEEDS_3X3, "data.resize=1", "--out", str(tmp_path / "o")))
    # 9x9 images are 3x3 in the last stage (9 -> 5 -> 3)
    assert "data.resize: 1x1 images do not fit the nb201 supernet (space.C=4) (sizes near it that fit: 9, 10," in line
    assert not (tmp_path / "o" / "checkpoint.pt").exists()
