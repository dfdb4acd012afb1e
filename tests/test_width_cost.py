"""The cost of a genotype with widths (nas/cost/table.py, nas/cost/budget.py): every exact cost
counts an ``l0_*`` edge at its recorded width, equal to counting the pruned network; the expected
cost counts such a candidate at the expected share of its open channels; a latency table refuses
widths in one line; derive within a hard target may keep a width-searching op narrower."""
import pytest
import torch

from nas.blocks.l0 import BETA, GAMMA, ZETA
from nas.cost import attach_budget, build_cost_table
from nas.cost.measure import counted
from nas.errors import ConfigError
from nas.estimators import build_estimator
from nas.spaces import get_space
from nas.spaces.nb201 import EDGE_NAMES, NB201Genotype
from nas.spaces.nb201.supernet import SearchCell

OPS = ["none", "skip_connect", "nor_conv_3x3", "l0_nor_conv_1x1", "l0_nor_conv_3x3"]
NET = dict(C=8, N=1)
RES = 8
ARCH = "|l0_nor_conv_3x3~0|+|l0_nor_conv_1x1~0|skip_connect~1|+|l0_nor_conv_3x3~0|none~1|l0_nor_conv_1x1~2|"


def supernet(estimator="softmax", ops=OPS, metric="macs", target=None, C=4):
    space = get_space("nb201")
    model = space.build_supernet(build_estimator(estimator), num_classes=10, C=C, N=1, ops=ops,
                                 generator=torch.Generator().manual_seed(0))
    budget = attach_budget(model, space.cost_model(), metric=metric, target=target, weight=1.0, form="hinge",
                           hard=None, num_classes=10, in_channels=3, resolution=RES, network=NET, ops=ops)
    return model, budget


def count(metric, genotype):
    net = get_space("nb201").build_network(genotype, num_classes=10, **NET)
    return counted(metric, net, (3, RES, RES))


@pytest.mark.parametrize("metric", ["macs", "params"])
@pytest.mark.parametrize("widths", [{"1<-0": 0.25, "2<-0": 0.5, "3<-0": 0.5, "3<-2": 0.25},
                                    {"1<-0": 0.5, "3<-2": 0.75}, {"3<-0": 1.0}, {}])
def test_the_exact_cost_of_a_genotype_with_widths_is_the_count_of_its_pruned_network(metric, widths):
    _, budget = supernet(metric=metric)
    g = NB201Genotype.from_dict({"arch": ARCH, "widths": widths})
    assert budget.exact(g) == pytest.approx(count(metric, g), rel=1e-12, abs=1e-12)
    full = NB201Genotype.from_string(ARCH)   # the same cell without widths: the gated full-width ops
    assert budget.exact(full) == pytest.approx(count(metric, full), rel=1e-12, abs=1e-12)
    if any(w < 1 for w in widths.values()):
        assert budget.exact(g) < budget.exact(full)


def test_the_expected_cost_counts_a_width_op_at_its_expected_open_share():
    """With a one-hot forward (STE) on the l0 candidates and every channel gate at P(z≠0) = 1/2,
    the expected cost is the exact cost of the cell with those edges at width 1/2 (a conv's
    cost is linear in its output channels); the penalty's gradient reaches the gates."""
    model, budget = supernet("ste")
    with torch.no_grad():
        a = model.arch["cell"].alpha
        a.zero_()
        for e, op in enumerate(NB201Genotype.from_string(ARCH).ops):
            a[e, OPS.index(op)] = 1.0
    half = BETA * torch.log(torch.tensor(-GAMMA / ZETA))   # sigmoid(log α − β log(−γ/ζ)) = 1/2
    gates = [m.gate for c in model.cells if isinstance(c, SearchCell) for e in c.edges for m in e.ops
             if hasattr(m, "gate")]
    with torch.no_grad():
        for g in gates:
            g.log_alpha.fill_(float(half))
    widths = {EDGE_NAMES[e]: 0.5 for e, op in enumerate(NB201Genotype.from_string(ARCH).ops) if op.startswith("l0_")}
    want = budget.exact(NB201Genotype.from_dict({"arch": ARCH, "widths": widths}))
    got = budget.expected()
    assert float(got.detach()) == pytest.approx(want, rel=1e-6)
    assert want < budget.exact(NB201Genotype.from_string(ARCH))
    got.backward()
    assert all(g.log_alpha.grad is not None for g in gates)
    assert sum(float(g.log_alpha.grad.abs().sum()) for g in gates) > 0


def test_a_latency_table_refuses_widths_in_one_line():
    space = get_space("nb201")
    with pytest.raises(ConfigError, match="op 'l0_nor_conv_1x1' searches its width, and a latency table times ops "
                                          "at full width only") as e:
        build_cost_table(space.cost_model(), "latency", num_classes=10, in_channels=3, resolution=RES,
                         network=NET, latency=None, ops=OPS)
    assert "\n" not in str(e.value)
    from nas.cost.device import device_cost_table
    table = device_cost_table(space, "pixel3")
    g = NB201Genotype.from_dict({"arch": "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|nor_conv_1x1~0|none~1|"
                                         "skip_connect~2|", "widths": {"3<-0": 0.5}})
    with pytest.raises(ConfigError, match="measures full-width NB201 cells; this cell keeps edge 3 at width 0.5"):
        table.exact(space.selected_edges(g), space.selected_widths(g))
    assert table.exact(space.selected_edges(g), {}) > 0


def all_l0(model, op="l0_nor_conv_3x3"):
    with torch.no_grad():
        a = model.arch["cell"].alpha
        a.zero_()
        a[:, model.op_names.index(op)] = 2.0
    return [c.edges[e].ops[model.op_names.index(op)] for c in model.cells if isinstance(c, SearchCell)
            for e in range(6)]


def test_hard_derive_keeps_a_width_op_narrower_to_fit_the_target():
    ops = ["skip_connect", "nor_conv_3x3", "l0_nor_conv_3x3"]
    model, budget = supernet(ops=ops)
    all_l0(model)                                  # every gate open: the gates' width is 1
    full = NB201Genotype(("l0_nor_conv_3x3",) * 6, (1.0,) * 6)
    half = NB201Genotype(full.ops, (0.5,) * 6)
    target = budget.exact(half) * 1.001           # below the full cell, above every edge at half width
    model, budget = supernet(ops=ops, target=target)
    all_l0(model)
    assert budget.exact(full) > target
    g = model.genotype()
    assert g.ops == full.ops                       # the most probable ops stay, narrower
    assert all(w in (1.0, 0.75, 0.5, 0.25) for w in g.widths) and min(g.widths) < 1
    assert budget.exact(g) <= target and budget.exact(g) == pytest.approx(count("macs", g), rel=1e-12)
    # the budget is spent: no edge can take its next wider width and still fit
    for e, w in enumerate(g.widths):
        if w < 1:
            wider = list(g.widths)
            wider[e] = min(x for x in (1.0, 0.75, 0.5) if x > w)
            assert budget.exact(NB201Genotype(g.ops, tuple(wider))) > target
    # a target no narrowing reaches: the ops change, as for full-width candidates
    tight = budget.exact(NB201Genotype(full.ops, (0.25,) * 6)) * 0.99
    model, budget = supernet(ops=ops, target=tight)
    all_l0(model)
    g = model.genotype()
    assert "skip_connect" in g.ops and budget.exact(g) <= tight


def test_hard_derive_keeps_the_gates_widths_when_they_fit():
    ops = ["skip_connect", "nor_conv_3x3", "l0_nor_conv_3x3"]
    _, budget = supernet(ops=ops)
    half = NB201Genotype(("l0_nor_conv_3x3",) * 6, (0.5,) * 6)
    target = budget.exact(half) * 1.001
    model, budget = supernet(ops=ops, target=target)
    for op in all_l0(model):                       # each op keeps the first half of its channels
        with torch.no_grad():
            op.gate.log_alpha.fill_(3.0)
            op.gate.log_alpha[op.gate.n // 2:] = -4.0
    assert budget.exact(NB201Genotype(half.ops)) > target   # at full width it would not fit
    assert model.genotype() == half


def test_a_target_only_narrowed_width_ops_reach_is_accepted_and_met():
    ops = ["l0_nor_conv_1x1", "l0_nor_conv_3x3"]
    _, budget = supernet(ops=ops)
    narrowest = NB201Genotype(("l0_nor_conv_1x1",) * 6, (0.25,) * 6)
    target = budget.exact(narrowest) * 1.01      # below every full-width cell
    assert budget.exact(NB201Genotype(narrowest.ops, (1.0,) * 6)) > target
    model, budget = supernet(ops=ops, target=target)
    all_l0(model, "l0_nor_conv_3x3")
    g = model.genotype()
    assert budget.exact(g) <= target and budget.exact(g) == pytest.approx(count("macs", g), rel=1e-12)
    with pytest.raises(ConfigError, match="below the cheapest cell derive may pick"):
        supernet(ops=ops, target=budget.exact(narrowest) * 0.99)


def test_a_search_within_a_budget_reports_the_cost_of_the_pruned_network_it_derives(tmp_path):
    """End to end: the derived cell keeps convs narrowed to fit cost.target, and metrics.json's
    cost is the count of the benchmark network built from genotype.yaml."""
    import json

    import yaml

    from nas.cli import main
    out = tmp_path / "run"
    assert main(["quickstart", "space.C=4", "space.N=1", "data.subset=128", "data.resize=8", "trainer.epochs=1",
                 "trainer.max_steps_per_epoch=2", "trainer.bn_batches=0", "device=cpu",
                 "space.ops=[skip_connect, l0_nor_conv_1x1, l0_nor_conv_3x3]", "cost.target=40",
                 "--out", str(out), "--quiet"]) == 0
    space = get_space("nb201")
    g = space.genotype_from_dict(yaml.safe_load((out / "genotype.yaml").read_text()))
    cost = json.loads((out / "metrics.json").read_text())["cost_macs"]
    net = space.build_network(g, num_classes=10, C=16, N=5)    # the benchmark network, cost's default
    assert cost == pytest.approx(counted("macs", net, (3, 32, 32)), abs=1e-6)
    assert cost <= 40 and any(w is not None and w < 1 for w in g.widths)
