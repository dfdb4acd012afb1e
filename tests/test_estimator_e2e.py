"""Every registered estimator (and STE/Bop with adaptive noise) runs the NB201 quickstart search for
one short epoch from the CLI entry point and derives a valid genotype."""
import json

import pytest
import torch
import yaml

from nas.cli import main
from nas.estimators import ESTIMATORS, noise_capable
from nas.spaces.nb201.genotype import NB201Genotype

CASES = [[f"estimator.name={n}"] for n in ESTIMATORS.names()] + \
        [[f"estimator.name={n}", "estimator.noise=adaptive"] for n in noise_capable()] + \
        [["estimator.name=ste", "estimator.single_path=true"], ["estimator.name=bop", "estimator.single_path=true"]]



@pytest.fixture(autouse=True)
def one_thread():
    # These runs are tiny (C=4, 8x8 images): a second intra-op thread only adds contention.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.slow
@pytest.mark.parametrize("extra", CASES, ids=["+".join(c.split("=")[1] for c in x) for x in CASES])
def test_estimator_runs_the_quickstart_and_derives_a_genotype(tmp_path, extra):
    out = tmp_path / "run"
    argv = [*extra, "trainer.epochs=2", "trainer.max_steps_per_epoch=2", "space.C=4", "data.subset=128",
            "data.resize=8", "data.batch_size=32", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    g = NB201Genotype.from_string(yaml.safe_load((out / "genotype.yaml").read_text())["arch"])
    assert len(g.ops) == 6
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["genotype"] == str(g) and metrics["epochs"] == 2
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["estimator"]["name"] == extra[0].split("=")[1]
