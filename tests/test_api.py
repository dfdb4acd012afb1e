"""The public Python API (nas/__init__.py): the example script runs, and each function
does what its command does."""
import subprocess
import sys

import pytest
import torch

import nas
from nas.config import Config
from nas.retrainer import RetrainConfig

from conftest import REPO
from recompute import search_val_acc

CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def test_api_example_runs(tmp_path):
    r = subprocess.run([sys.executable, str(REPO / "examples" / "api_quickstart.py"), str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "searched: |" in r.stdout and "network: NB201Network (2, 10)" in r.stdout
    assert "retrained: test_acc" in r.stdout
    assert (tmp_path / "search" / "genotype.yaml").is_file()
    assert (tmp_path / "retrain" / "metrics.json").is_file()


def test_listing_functions_match_the_registries():
    from nas.estimators import ESTIMATORS
    from nas.spaces import SPACES
    assert nas.list_spaces() == SPACES.names() and {"nb201", "darts", "dnf"} <= set(nas.list_spaces())
    assert nas.list_estimators() == ESTIMATORS.names() and "gumbel_hard" in nas.list_estimators()
    assert nas.list_ops("nb201") == ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
    with pytest.raises(nas.ConfigError, match="unknown search space 'nope'"):
        nas.list_ops("nope")


def test_load_config_picks_the_kind_and_applies_overrides():
    cfg = nas.load_config("quickstart", "trainer.epochs=3", "estimator.name=gumbel")
    assert isinstance(cfg, Config) and cfg.trainer.epochs == 3 and cfg.estimator.name == "gumbel"
    rcfg = nas.load_config("retrain_nb201_digits", "model.C=4")
    assert isinstance(rcfg, RetrainConfig) and rcfg.model.C == 4
    with pytest.raises(nas.ConfigError, match="unknown config key 'trainer.epochz'"):
        nas.load_config("quickstart", "trainer.epochz=3")
    with pytest.raises(nas.ConfigError, match="expected a Config"):
        nas.search(rcfg)


def test_build_network_from_a_string_equals_the_space_builder():
    from nas.spaces import get_space
    from nas.spaces.darts import GENOTYPES
    torch.manual_seed(0)
    a = nas.build_network("nb201", CELL, num_classes=10, C=4, N=1)
    torch.manual_seed(0)
    space = get_space("nb201")
    b = space.build_network(space.genotype_from_dict({"arch": CELL}), num_classes=10, C=4, N=1)
    x = torch.randn(2, 3, 8, 8)
    a.eval(), b.eval()
    assert torch.equal(a(x), b(x))
    torch.manual_seed(0)
    c = nas.build_network("darts", "DARTS_V2", num_classes=10, C=8, layers=3)
    torch.manual_seed(0)
    d = get_space("darts").build_network(GENOTYPES["DARTS_V2"], num_classes=10, C=8, layers=3)
    c.eval(), d.eval()
    assert torch.equal(c(x), d(x)) and c(x).shape == (2, 10)
    with pytest.raises(nas.ConfigError, match="genotype of space 'darts'"):
        nas.build_network("nb201", "DARTS_V2")


def test_search_and_derive_agree(tmp_path):
    cfg = nas.load_config("quickstart", "trainer.epochs=1", "space.C=4", "data.subset=300")
    result = nas.search(cfg, tmp_path / "run")
    assert str(nas.derive(tmp_path / "run")) == str(result.genotype)
    assert result.out_dir == tmp_path / "run"
    assert result.metrics["val_acc"] == pytest.approx(search_val_acc(tmp_path / "run"))
