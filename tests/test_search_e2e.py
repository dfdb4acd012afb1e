"""nas-search end to end: the run folder, determinism, image folders, one-line CLI errors."""
import json
import subprocess
import sys

import pytest
import torch
import yaml
from PIL import Image

from nas.cli import main
from nas.spaces.nb201 import NB201Genotype
from recompute import search_val_acc

TINY = ["space.C=4", "space.N=1", "data.subset=256", "data.resize=8", "data.batch_size=32",
        "trainer.epochs=2", "trainer.max_steps_per_epoch=3"]


def run(tmp_path, *extra, name="run"):
    out = tmp_path / name
    assert main([*TINY, *extra, "--out", str(out), "--quiet"]) == 0
    return out


def test_run_folder_has_every_file(tmp_path, capsys):
    out = tmp_path / "run"
    # options may come before, between or after the overrides
    assert main(["--out", str(out), *TINY[:3], "--quiet", *TINY[3:]]) == 0
    printed = capsys.readouterr().out
    for f in ("config.yaml", "genotype.yaml", "checkpoint.pt", "log.txt", "metrics.json"):
        assert (out / f).is_file(), f
    assert list((out / "tb").glob("events.out.tfevents.*"))
    g = NB201Genotype.from_string(yaml.safe_load((out / "genotype.yaml").read_text())["arch"])
    assert f"genotype: {g}" in printed and f"run folder: {out}" in printed
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["trainer"]["epochs"] == 2 and cfg["space"]["C"] == 4 and cfg["optim"]["mode"] == "alternating"
    m = json.loads((out / "metrics.json").read_text())
    assert m["epochs"] == 2 and m["search_seconds"] > 0
    assert m["val_acc"] == pytest.approx(search_val_acc(out))  # the checkpointed supernet's, recalibrated
    assert len(m["history"]) == 2
    ck = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ck["epoch"] == 2 and ck["config"] == cfg
    assert {"model", "optim", "estimator", "rng", "loaders"} <= set(ck)
    assert "arch.cell.alpha" in ck["model"]
    assert len((out / "log.txt").read_text().strip().splitlines()) >= 3


@pytest.mark.parametrize("extra", [["estimator.name=softmax"], ["estimator.name=gumbel_hard"],
                                   ["optim.mode=joint"]])
def test_same_seed_same_genotype_and_alpha(tmp_path, extra):
    a = run(tmp_path, *extra, name="a")
    b = run(tmp_path, *extra, name="b")
    ga, gb = (yaml.safe_load((d / "genotype.yaml").read_text()) for d in (a, b))
    assert ga == gb
    ka, kb = (torch.load(d / "checkpoint.pt", weights_only=False)["model"] for d in (a, b))
    assert torch.equal(ka["arch.cell.alpha"], kb["arch.cell.alpha"])
    c = run(tmp_path, *extra, "seed=1", name="c")
    kc = torch.load(c / "checkpoint.pt", weights_only=False)["model"]
    assert not torch.equal(ka["arch.cell.alpha"], kc["arch.cell.alpha"])


def test_alternating_updates_alpha_and_warmup_freezes_it(tmp_path):
    out = run(tmp_path, "optim.warmup_epochs=5", name="warm")
    ck = torch.load(out / "checkpoint.pt", weights_only=False)
    from nas.spaces import get_space
    from nas.estimators import build_estimator
    init = get_space("nb201").build_supernet(build_estimator("softmax"), num_classes=10, C=4, N=1,
                                             generator=torch.Generator().manual_seed(0))
    assert torch.equal(ck["model"]["arch.cell.alpha"], init.arch["cell"].alpha.detach())
    moved = torch.load(run(tmp_path, name="moved") / "checkpoint.pt", weights_only=False)
    assert not torch.equal(moved["model"]["arch.cell.alpha"], init.arch["cell"].alpha.detach())


def test_imagefolder_run_on_a_tiny_folder(tmp_path):
    root = tmp_path / "imgs"
    g = torch.Generator().manual_seed(0)
    for c, colour in enumerate([(220, 30, 30), (30, 30, 220), (30, 200, 30)]):
        d = root / f"class{c}"
        d.mkdir(parents=True)
        for i in range(12):
            noise = torch.randint(0, 40, (10, 10, 3), generator=g)
            arr = (torch.tensor(colour) + noise).clamp(0, 255).to(torch.uint8).numpy()
            Image.fromarray(arr).save(d / f"{i}.png")
    out = tmp_path / "out"
    assert main(["data.dataset=imagefolder", f"data.root={root}", "data.resize=8", "data.batch_size=8",
                 "space.C=4", "space.N=1", "trainer.epochs=2", "--out", str(out), "--quiet"]) == 0
    NB201Genotype.from_string(yaml.safe_load((out / "genotype.yaml").read_text())["arch"])
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["data"]["dataset"] == "imagefolder"
    m = json.loads((out / "metrics.json").read_text())
    assert m["epochs"] == 2 and m["val_acc"] == pytest.approx(search_val_acc(out))


CLI_ERRORS = [
    (["trainer.epoch=3"], "unknown config key 'trainer.epoch'"),
    (["estimator.name=darts"], "unknown estimator 'darts'; known:"),
    (["space.name=foo"], "unknown search space 'foo'; known:"),
    (["data.dataset=mnist"], "unknown dataset 'mnist'; known:"),
    (["space.ops=[none, conv9]"], "space.ops: unknown op 'conv9'"),
    (["estimator.gamma=0.1"], "unknown config key 'estimator.gamma'; allowed under 'estimator': name, "),
    (["data.dataset=imagefolder", "data.root=/nonexistent/folder"], "/nonexistent/folder"),
    (["data.dataset=cifar10", "data.root=/nonexistent/c10"], "data.root"),
    (["does/not/exist.yaml"], "not found"),
    (["estimator.name=bop", "derive.exclude=[none]"], "needs an estimator with logits"),
    (["darts_tiny", "derive.exclude=[none]"], "unknown config key 'derive.exclude'; allowed under 'derive': max_skip"),
    (["space.layers=3", "space.rules=7"], "unknown config key 'space.layers'; allowed under 'space': name, "),
    (["space.name=darts", "space.N=1"], "unknown config key 'space.N'"),
    (["data.dataset=breast_cancer"], "data.dataset=breast_cancer is tabular data; the nb201 space takes image"),
    (["space.name=dnf"], "data.dataset=digits is image data; the dnf space takes tabular data"),
    (["derive.exclude=[conv]"], "'conv' is not a candidate op"),
    (["trainer.bn_batches=-2"], "trainer.bn_batches=-2 is out of range; allowed: >= 0"),
]


@pytest.mark.parametrize("args, pattern", CLI_ERRORS)
def test_cli_errors_are_one_line_exit_2(tmp_path, capsys, args, pattern):
    """In process (the command's own entry point): exit code 2, one stderr line, no checkpoint
    (an error found after the folder is claimed leaves its config.yaml and log.txt as the record)."""
    try:
        code = main([*args, "--out", str(tmp_path / "o"), "--quiet"])
    except SystemExit as e:  # an argparse error would exit here; it must be one line with code 2 as well
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nas-search: error: "), err
    assert pattern in lines[0]
    assert "Traceback" not in err and not (tmp_path / "o" / "checkpoint.pt").exists()


def test_cli_error_through_the_installed_command(tmp_path):
    """The same as a user types it: a separate process prints one line and exits with code 2."""
    proc = subprocess.run([sys.executable, "-m", "nas", "trainer.epoch=3", "--out", str(tmp_path / "o"), "--quiet"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nas-search: error: unknown config key 'trainer.epoch'"), proc.stderr
    assert not (tmp_path / "o").exists()


def test_existing_run_folder_is_not_overwritten(tmp_path, capsys):
    out = run(tmp_path)
    before = (out / "checkpoint.pt").read_bytes()
    assert main([*TINY, "--out", str(out), "--quiet"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (out / "checkpoint.pt").read_bytes() == before


@pytest.mark.slow
def test_quickstart_as_a_new_user_runs_it(tmp_path):
    """The first command of the README and of docs/getting-started.md: `nas-search` with no arguments (the quickstart config)."""
    proc = subprocess.run([sys.executable, "-m", "nas", "--out", str(tmp_path / "q")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "genotype: |" in proc.stdout and "run folder:" in proc.stdout
    m = json.loads((tmp_path / "q" / "metrics.json").read_text())
    assert m["epochs"] == 10 and m["val_acc"] > 60  # the digits search really learns
