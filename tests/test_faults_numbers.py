"""Fault injection, silent wrong numbers (issue 32, items 5, 7, 8, 9, 13): latency tables with
negative or NaN entries, a genotype that is not the one trained, a genotype of another space, an
architecture that never moves, and NaN diagnoses that name the cause they can see."""
import json

import pytest
import torch

from faults import TINY, one_line, search
from nas.cost.latency import op_key


@pytest.mark.parametrize("value, shown", [(-13.87, "-13.87"), (float("nan"), "nan"), (float("inf"), "inf")])
def test_a_latency_table_entry_that_is_not_a_time_is_refused_on_load(tmp_path, capsys, value, shown):
    table = tmp_path / "lat.json"
    entries = {op_key("nor_conv_3x3", 4, 4, 1, 32, 32, 1): value, op_key("none", 4, 4, 1, 32, 32, 1): 0.0}
    table.write_text(json.dumps({"device": "cpu", "entries": entries}))
    out = tmp_path / "o"
    line = one_line(capsys, search(*TINY, "cost.metric=latency", f"cost.latency_table={table}", "cost.target=3",
                                   "--out", str(out)))
    assert line == (f"nas-search: error: cost.latency_table: {table}: nor_conv_3x3 on 4x32x32 -> 4 channels, stride 1, "
                    f"at batch 1 takes {shown} ms; every entry must be a finite time >= 0 ms; measure it again with "
                    f"nas-profile-latency")
    assert not (out / "checkpoint.pt").exists()


RETRAIN = ["retrain_nb201_digits", "trainer.epochs=1", "trainer.max_steps_per_epoch=2", "data.subset=64",
           "data.test_subset=64", "model.C=4"]
OTHER = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"


def test_resume_with_another_genotype_is_refused(tmp_path, capsys):
    from nas.commands.retrain import cli as retrain
    out = tmp_path / "r"
    assert retrain([*RETRAIN, "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    before = (out / "config.yaml").read_text()
    line = one_line(capsys, retrain(["--resume", str(out), "trainer.epochs=2", "--genotype", OTHER, "--quiet"]),
                    prog="nas-retrain")
    assert line == (f"nas-retrain: error: --genotype {OTHER} is not the cell {out} trains "
                    f"(|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|); "
                    f"resume without --genotype, or retrain {OTHER} in a new run with --out")
    assert (out / "config.yaml").read_text() == before
    # the same cell, however it is named, resumes
    assert retrain(["--resume", str(out), "trainer.epochs=2", "--genotype", str(out / "genotype.yaml"), "--quiet"]) == 0


@pytest.mark.parametrize("config, genotype, given, own", [
    ("retrain_nb201_digits", "DARTS_V2", "darts", "nb201"),
    ("retrain_darts_digits", OTHER, "nb201", "darts")])
def test_a_genotype_of_another_space_than_the_configs_is_refused(tmp_path, capsys, config, genotype, given, own):
    from nas.commands.retrain import cli as retrain
    out = tmp_path / "r"
    line = one_line(capsys, retrain([config, "--genotype", genotype, "--out", str(out), "--quiet"]), prog="nas-retrain")
    assert line == (f"nas-retrain: error: --genotype {genotype} is a cell of the {given} space; {config} is a config "
                    f"for the {own} space (its model.genotype and model.* keys are for that network): give a {given} "
                    f"retrain config")
    assert not out.exists()


def test_a_temperature_that_underflows_in_float32_is_refused(tmp_path, capsys):
    line = one_line(capsys, search(*TINY, "estimator.tau=1e-30", "--out", str(tmp_path / "o")))
    assert line == "nas-search: error: estimator.tau=1e-30 is out of range; allowed: [0.01, 10000.0]"


def test_an_architecture_without_gradient_is_reported(tmp_path, capsys):
    """A user estimator that detaches α: the search runs, α's gradient is zero in every epoch."""
    import nas
    from nas.estimators.surrogate import Softmax

    @nas.register_estimator("test_detached")
    class Detached(Softmax):
        def relaxed(self, alpha, kind):
            return super().relaxed(alpha.detach(), kind)

    out = tmp_path / "o"
    assert search(*TINY, "trainer.epochs=2", "estimator.name=test_detached", "--out", str(out)) == 0
    expect = ("warning: the architecture learned nothing: its gradient was identically zero in epoch(s) 1, 2 of 2, "
              "so the derived cell is not a search result; check the temperature (estimator.tau=1.0, "
              "estimator.tau_end=None: a saturated relaxation has no gradient) and the architecture learning rate "
              "(optim.arch.lr=0.003)")
    assert capsys.readouterr().err.strip() == expect
    assert json.loads((out / "metrics.json").read_text())["warning"] == expect
    log = (out / "log.txt").read_text()
    assert expect in log and "the architecture's gradient was identically zero in epoch 1" in log
    # a search that learns says nothing
    assert search(*TINY, "--out", str(tmp_path / "fine")) == 0
    assert capsys.readouterr().err == "" and "warning" not in json.loads((tmp_path / "fine" / "metrics.json").read_text())


def test_a_nan_at_the_first_step_does_not_blame_the_learning_rates(tmp_path, capsys):
    import nas
    from torch import nn

    class NaNOp(nn.Module):
        def forward(self, x):
            return x * float("nan")

    nas.register_op("test_nan_op")(lambda C_in, C_out, stride, affine, **_: NaNOp())
    out = tmp_path / "o"
    line = one_line(capsys, search(*TINY, "space.ops=[test_nan_op,skip_connect]", "--out", str(out)))
    assert line.startswith("nas-search: error: the loss was nan at the first step (epoch 1 step 1), before any "
                           "update, so no learning rate caused it; likely causes: an op or user module that outputs "
                           "non-finite values (space.ops, imports), or non-finite inputs in the data"), line
    assert "learning rate too high" not in line


def _darts_with_budget(seed, metric="params", **supernet):
    from nas.cost import attach_budget
    from nas.estimators import build_estimator
    from nas.spaces import get_space
    space = get_space("darts")
    model = space.build_supernet(build_estimator("softmax"), num_classes=3, C=4, layers=3, steps=2, multiplier=2,
                                 generator=torch.Generator().manual_seed(0), **supernet)
    budget = attach_budget(model, space.cost_model(), metric=metric, target=None, weight=1.0, form="hinge",
                           hard=None, num_classes=3, in_channels=3, resolution=8, ops=model.op_names,
                           network=space.cost_model().trained_network(C=4, layers=3), cell={"steps": 2, "multiplier": 2})
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed)
        for name in ("normal", "reduce"):
            model.arch[name].alpha.copy_(3 * torch.randn(5, len(model.op_names), generator=g))
    return model, budget


def _every_cell(model, budget, cell):
    """(Σ log p, cost) of every derivable cell of one type (2 nodes: 49 * 147 cells)."""
    import itertools
    t = budget.table
    cost = t.edges[f"arch.{cell}"][:, [t.column(op) for op in model.op_names]].double()
    logp = model.open_weights(cell).double().log()
    real = [k for k, op in enumerate(model.op_names) if op != "none"]
    nodes = []
    for start, inputs in ((0, 2), (2, 3)):
        nodes.append([(sum(float(logp[start + i, k]) for i, k in zip(s, ks)),
                       sum(float(cost[start + i, k]) for i, k in zip(s, ks)))
                      for s in itertools.combinations(range(inputs), 2) for ks in itertools.product(real, repeat=2)])
    return torch.tensor([(a[0] + b[0], a[1] + b[1]) for a in nodes[0] for b in nodes[1]], dtype=torch.float64)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("where", [0.0, 0.05, 0.3])
def test_darts_derive_within_a_hard_target_finds_the_most_probable_feasible_cell(seed, where):
    """Brute force over every pair of cells: a target at (or just above) the cheapest pair still
    gets a cell, and it is the most probable pair within the target."""
    model, budget = _darts_with_budget(seed)
    normal, reduce = _every_cell(model, budget, "normal"), _every_cell(model, budget, "reduce")
    fixed = budget.table.fixed
    least = fixed + float(normal[:, 1].min() + reduce[:, 1].min())
    free = budget.exact(model.genotype())
    target = least + where * (free - least)
    budget.target, budget.hard = target, True
    g = model.genotype()
    assert budget.exact(g) <= target * (1 + 1e-9)
    # the best pair: for each normal cell, the most probable reduce cell within what is left
    order = reduce[:, 1].argsort()
    rc, rbest = reduce[order, 1], reduce[order, 0].cummax(0).values
    idx = torch.searchsorted(rc, (target - fixed) * (1 + 1e-9) - normal[:, 1], right=True) - 1
    ok = idx >= 0
    optimum = float((normal[ok, 0] + rbest[idx[ok]]).max())
    sel = budget.selected(g)
    score = sum(float(model.open_weights(c.split(".")[1])[row, model.op_names.index(op)].double().log())
                for c, pairs in sel.items() for row, op in pairs)
    assert score == pytest.approx(optimum, abs=1e-9)


def test_an_absurd_architecture_learning_rate_is_reported(tmp_path, capsys):
    """optim.arch.lr=1e6: the loss stays finite while α jumps by ~1e6 per step; the run says so
    (log, stderr, metrics.json) as it does for an architecture that never moved."""
    out = tmp_path / "o"
    assert search(*TINY, "optim.arch.lr=1e6", "--out", str(out)) == 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("warning: the architecture jumped instead of learning: one step moved α by up to ")
    assert err.endswith("in epoch(s) 1 of 1, so the derived cell is not a search result; lower the "
                        "architecture learning rate (optim.arch.lr=1e+06)"), err
    worst = float(err.split("by up to ")[1].split(" ")[0])
    assert worst > 1e5  # Adam moves α by about the learning rate
    assert json.loads((out / "metrics.json").read_text())["warning"] == err
    log = (out / "log.txt").read_text()
    assert err in log and "one architecture step moved α by" in log
    # a large but sane rate says nothing
    assert search(*TINY, "optim.arch.lr=0.1", "--out", str(tmp_path / "fine")) == 0
    assert capsys.readouterr().err == "" and "warning" not in json.loads((tmp_path / "fine" / "metrics.json").read_text())


def test_a_darts_hard_target_below_the_cheapest_cell_is_refused_up_front():
    from nas.errors import ConfigError
    # parameter-free candidates left out: otherwise the cheapest cells cost nothing beyond the skeleton
    model, budget = _darts_with_budget(0, ops=["none", "sep_conv_3x3", "dil_conv_3x3"])
    normal, reduce = _every_cell(model, budget, "normal"), _every_cell(model, budget, "reduce")
    least = budget.table.fixed + float(normal[:, 1].min() + reduce[:, 1].min())
    assert least > budget.table.fixed * (1 + 1e-6)
    assert model.cheapest_cost() == pytest.approx(least, rel=1e-9)
    from nas.cost import attach_budget
    from nas.spaces import get_space
    space = get_space("darts")
    kw = dict(metric="params", ops=model.op_names, weight=1.0, form="hinge", hard=None, num_classes=3, in_channels=3, resolution=8,
              network=space.cost_model().trained_network(C=4, layers=3), cell={"steps": 2, "multiplier": 2})
    with pytest.raises(ConfigError) as e:
        attach_budget(model, space.cost_model(), target=least * 0.999, **kw)
    assert str(e.value) == (f"cost.target={least * 0.999:.6g} M params is below the cheapest cell derive may pick "
                            f"({least:.6g}); raise it or set cost.hard=false")
    attach_budget(model, space.cost_model(), target=least, **kw)  # the cheapest cell itself fits
