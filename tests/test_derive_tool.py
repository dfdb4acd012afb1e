"""nas-derive on checkpoints written by nas-search (both spaces), with the DARTS top-k."""
import os
from pathlib import Path

import pytest
import torch
import yaml

from nas.cli import main as nas_search
from nas.retrainer import resolve_genotype
from nas.spaces.darts import Genotype

REPO = Path(__file__).resolve().parents[1]
TINY = ["data.subset=64", "data.resize=8", "data.batch_size=16", "trainer.epochs=1",
        "trainer.max_steps_per_epoch=2", "space.C=4", "device=cpu"]
SPACES = {"darts": ["darts_tiny", "space.layers=3", "optim.arch.lr=0.05"],
          "nb201": ["space.name=nb201", "space.N=1", "optim.arch.lr=0.05"]}


def derive_cli(*argv):
    from nas.commands import derive as mod
    return mod.main(mod.get_args_parser().parse_args([str(a) for a in argv]))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("searches")
    out = {}
    for space, extra in SPACES.items():
        out[space] = base / space
        assert nas_search([*TINY, *extra, "--out", str(out[space]), "--quiet"]) == 0
    return out


@pytest.mark.parametrize("space", list(SPACES))
def test_derive_reproduces_the_search_genotype(runs, tmp_path, capsys, space):
    run = runs[space]
    written = yaml.safe_load((run / "genotype.yaml").read_text())
    target = tmp_path / "g.yaml"
    assert derive_cli(run / "checkpoint.pt", "--out", target) == 0
    record = yaml.safe_load(target.read_text())
    derived = record.pop("derived")
    derived.pop("cost_exact", None)  # present when the run has a cost model
    assert derived == {"from": os.path.relpath(run, tmp_path), "method": "argmax"}
    assert record == written
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == str(resolve_genotype(str(target))[1])
    # a run folder as source writes into the folder itself
    (run / "genotype.yaml").unlink()
    assert derive_cli(run) == 0
    assert yaml.safe_load((run / "genotype.yaml").read_text()) == written


def test_darts_top_k(runs, tmp_path):
    run = runs["darts"]
    two = Genotype.from_dict(yaml.safe_load((run / "genotype.yaml").read_text()))
    assert derive_cli(run, "--top-k", "1", "--out", tmp_path / "k1.yaml") == 0
    one = Genotype.from_dict(yaml.safe_load((tmp_path / "k1.yaml").read_text()))
    assert one.edges_per_node == 1 and len(one.normal) == len(one.reduce) == 4
    # top-1 keeps the strongest pair of each node of the top-2 cell (listed first)
    for cell in ("normal", "reduce"):
        assert [node[0] for node in two.nodes(cell)] == [node[0] for node in one.nodes(cell)]
    # the α the checkpoint holds were moved by the search: the derived cell is not the init's
    alpha = torch.load(run / "checkpoint.pt", weights_only=False)["model"]["arch.normal.alpha"]
    assert float(alpha.abs().max()) > 1e-2
    # the derived top-1 cell builds into an evaluation network that runs
    space, g = resolve_genotype(str(tmp_path / "k1.yaml"))
    net = space.build_network(g, num_classes=10, C=4, layers=3, auxiliary=False)
    assert net.eval()(torch.randn(1, 3, 8, 8)).shape == (1, 10)


def test_derive_exclude_overrides_the_run(runs, tmp_path, capsys):
    run = runs["nb201"]
    alpha = torch.load(run / "checkpoint.pt", weights_only=False)["model"]["arch.cell.alpha"]
    assert derive_cli(run, "--exclude", "none,skip_connect", "--out", tmp_path / "x.yaml") == 0
    ops = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    expect = [ops[2 + int(k)] for k in alpha[:, 2:].argmax(1)]
    got = yaml.safe_load((tmp_path / "x.yaml").read_text())["arch"]
    assert got == "|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|".format(*expect)
    assert derive_cli(run, "--exclude", "conv", "--out", tmp_path / "y.yaml") == 2
    err = capsys.readouterr().err.strip()
    assert "'conv' is not a candidate op" in err and "\n" not in err
    assert derive_cli(runs["darts"], "--exclude", "none", "--out", tmp_path / "z.yaml") == 2
    assert "unknown config key 'derive.exclude'; allowed under 'derive': max_skip" in capsys.readouterr().err


def test_derive_max_skip_overrides_the_run(runs, tmp_path, capsys):
    run = runs["nb201"]
    alpha = torch.load(run / "checkpoint.pt", weights_only=False)["model"]["arch.cell.alpha"]
    # α moved by the tiny search, then set so that skip leads every edge: the run's own derive
    # gives six skips, --max-skip 0 the runner-up of every edge
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    a = alpha.clone()
    a[:, 1] = a.max(1).values + 1.0
    ckpt["model"]["arch.cell.alpha"] = a
    torch.save(ckpt, tmp_path / "checkpoint.pt")
    assert derive_cli(tmp_path / "checkpoint.pt", "--out", tmp_path / "x.yaml") == 0
    assert yaml.safe_load((tmp_path / "x.yaml").read_text())["arch"].count("skip_connect") == 6
    assert derive_cli(tmp_path / "checkpoint.pt", "--max-skip", "0", "--out", tmp_path / "y.yaml") == 0
    ops = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    rest = a.clone()
    rest[:, 1] = float("-inf")
    expect = [ops[int(k)] for k in rest.argmax(1)]
    got = yaml.safe_load((tmp_path / "y.yaml").read_text())["arch"]
    assert got == "|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|".format(*expect)
    assert derive_cli(tmp_path / "checkpoint.pt", "--max-skip", "none", "--out", tmp_path / "z.yaml") == 0
    assert yaml.safe_load((tmp_path / "z.yaml").read_text())["arch"].count("skip_connect") == 6
    capsys.readouterr()
    assert derive_cli(run, "--max-skip", "two", "--out", tmp_path / "w.yaml") == 2
    err = capsys.readouterr().err.strip()
    assert "--max-skip takes a whole number or 'none'" in err and "\n" not in err


def test_derive_errors_are_one_line(runs, tmp_path, capsys):
    assert derive_cli(runs["nb201"], "--top-k", "1", "--out", tmp_path / "x.yaml") == 2
    assert "--top-k applies to the darts space" in capsys.readouterr().err
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"not a checkpoint")
    assert derive_cli(bad) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nas-derive: error: checkpoint") and "\n" not in err
    assert derive_cli(tmp_path / "missing") == 2
    assert "not found" in capsys.readouterr().err
    assert derive_cli(runs["darts"], "--top-k", "0", "--out", tmp_path / "y.yaml") == 2
