"""Every shipped config (configs/*.yaml, installed as nas/configs) runs: one step of one epoch
through its own command, as it is, except for the run length and, where the config reads images
from disk, a tiny local image folder in place of CIFAR-10 (so that nothing depends on data that
may not be on the machine)."""
import json

import numpy as np
import pytest
from PIL import Image

from nas.cli import main as search_main
from nas.commands import retrain as retrain_command
from nas.config import CONFIG_DIR, load_yaml
from recompute import retrain_test_acc, search_val_acc

CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")) + sorted(
    f"recipes/{p.stem}" for p in (CONFIG_DIR / "recipes").glob("*.yaml"))  # one method each, on the proxy
SLOW = {"darts_cifar10"}  # one second-order step of the full DARTS supernet: over 20 s on 2 cores
SHORT = ["trainer.epochs=1", "trainer.max_steps_per_epoch=1", "data.batch_size=8"]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """train/ and test/ with two classes of 12 and 4 random 12x12 RGB images each."""
    root = tmp_path_factory.mktemp("tiny-images")
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 4)):
        for c in ("cat", "dog"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    return root


def test_the_list_is_the_shipped_one():
    assert {"quickstart", "nb201_cifar10_cpu", "darts_tiny", "retrain_nb201_digits"} <= set(CONFIGS)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in CONFIGS])
def test_each_shipped_config_runs_one_step(name, tiny_folder, tmp_path, capsys):
    data = load_yaml(CONFIG_DIR / f"{name}.yaml")
    dataset = data.get("data", {}).get("dataset", "digits")
    local = [f"data.root={tiny_folder}", "data.workers=0"] if dataset in ("imagefolder", "cifar10", "cifar100") else []
    if dataset in ("imagefolder", "cifar10", "cifar100"):
        local.append("data.dataset=imagefolder")
    out = tmp_path / "run"
    if "model" in data:  # a retrain config
        argv = [name, *SHORT, *local, "data.test_subset=8", "--out", str(out), "--quiet", "--device", "cpu"]
        if dataset == "digits":
            argv.append("data.subset=64")
        code = retrain_command.main(retrain_command.get_args_parser().parse_intermixed_args(argv))
        metric, recompute = "test_acc", retrain_test_acc
    else:
        extra = ["trainer.bn_batches=1", "device=cpu"]
        if dataset == "digits":
            extra.append("data.subset=64")
        code = search_main([name, *SHORT, *local, *extra, "--out", str(out), "--quiet"])
        metric, recompute = "val_acc", search_val_acc
    err = capsys.readouterr().err
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert m["epochs"] == 1 and m[metric] == pytest.approx(recompute(out))  # the checkpoint's score
