"""What only a whole search through the CLI entry point shows about an estimator (the supernet
contract, tests/test_contract.py, already takes every registered estimator, with and without
adaptive noise, through forward, gradients, derive and the state dict on every space): an
option given on the command line (``estimator.single_path``) reaches the estimator and changes
the search; adaptive noise learns its σ in the loop; and in each case the run's ``val_acc`` is
the checkpointed supernet's (rebuilt with the estimator's state) and ``nas-derive`` on the
checkpoint gives the run's own genotype."""
import json

import pytest
import torch
import yaml

import nas
from nas.cli import main
from nas.spaces.nb201.genotype import NB201Genotype
from recompute import search_val_acc

SHORT = ["trainer.epochs=2", "trainer.max_steps_per_epoch=2", "space.C=4", "data.subset=128", "data.resize=8",
         "data.batch_size=32"]


def search(out, *extra):
    assert main([*extra, *SHORT, "--out", str(out), "--quiet"]) == 0
    g = NB201Genotype.from_string(yaml.safe_load((out / "genotype.yaml").read_text())["arch"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["genotype"] == str(g) and metrics["epochs"] == 2
    assert str(nas.derive(out)) == str(g)  # the checkpoint derives what the run wrote
    assert metrics["val_acc"] == pytest.approx(search_val_acc(out))
    return yaml.safe_load((out / "config.yaml").read_text()), torch.load(out / "checkpoint.pt", weights_only=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ste", "bop"])
def test_single_path_from_the_command_line_changes_the_search(tmp_path, name):
    cfg, one = search(tmp_path / "one", f"estimator.name={name}", "estimator.single_path=true")
    assert cfg["estimator"]["single_path"] is True
    _, every = search(tmp_path / "every", f"estimator.name={name}")
    # same seed, same data: only the candidates that ran (one per edge, or all) differ
    changed = [k for k, v in one["model"].items() if v.is_floating_point() and not torch.equal(v, every["model"][k])]
    assert changed


@pytest.mark.slow
def test_adaptive_noise_learns_its_sigma_in_the_search(tmp_path):
    cfg, ck = search(tmp_path / "run", "estimator.name=ste", "estimator.noise=adaptive", "estimator.sigma0=0.2")
    assert cfg["estimator"]["noise"] == "adaptive"
    sigma = ck["model"]["arch.cell.sigma"]
    assert sigma.shape == ck["model"]["arch.cell.alpha"].shape  # one σ per candidate of every edge
    assert not torch.allclose(sigma, torch.full_like(sigma, 0.2))  # moved from sigma0 by its own gradient step
