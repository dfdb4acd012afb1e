"""``derive.budget_none`` K: under a binding cost target, ``none`` may be derived on every NB201 edge,
ranked just after the edge's K most probable allowed ops, in cells without a wasted op. Checked
against a brute force over all 5^6 cells and an independent path enumeration."""
import itertools
import math

import pytest
import torch

from nas.config import Config, apply_overrides, from_dict, to_dict
from nas.cost import attach_budget
from nas.errors import ConfigError
from nas.estimators import build_estimator
from nas.searcher.run import make_estimator, make_supernet
from nas.spaces import get_space
from nas.spaces.nb201 import OPS, NB201Genotype
from nas.spaces.nb201.genotype import all_live

# the four input-output paths of the cell, as edge indices (1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2)
PATHS = ([3], [0, 4], [1, 5], [0, 2, 5])


def live_by_paths(on):
    """Every on edge lies on a path of on edges, and some such path exists."""
    full = [p for p in PATHS if all(on[e] for e in p)]
    used = {e for p in full for e in p}
    return bool(full) and all(e in used for e in range(6) if on[e])


def test_all_live_equals_the_path_enumeration_on_every_cell():
    cells = torch.cartesian_prod(*[torch.arange(5)] * 6)
    got = all_live(cells != 0)
    want = torch.tensor([live_by_paths([k != 0 for k in c.tolist()]) for c in cells])
    assert torch.equal(got, want)
    assert 0 < int(got.sum()) < int((cells != 0).any(-1).sum())  # some connected cells waste an op
    # by hand: node 1 cut off from the input, its edge into node 2 computes zeros
    assert not all_live(torch.tensor([False, True, True, True, False, True]))
    assert all_live(torch.tensor([False, True, False, True, False, True]))


def budgeted(alpha, extra, aux_skip, device="titan_rtx_1", max_skip=1, k=2):
    """An nb201 supernet with ``alpha`` and a hard latency target on ``device`` (the shipped
    table: ``none`` is cheaper there than every other op)."""
    from nas.cost.device import device_cost_table
    space = get_space("nb201")
    kw = dict(with_aux_skip=True) if aux_skip else dict(derive_exclude=["none"])
    net = space.build_supernet(build_estimator("softmax"), num_classes=3, C=4, N=1,
                               generator=torch.Generator().manual_seed(0), derive_max_skip=max_skip,
                               derive_budget_extra_skip=extra, derive_budget_none=k, **kw)
    with torch.no_grad():
        net.arch["cell"].alpha.copy_(alpha)
    budget = attach_budget(net, space.cost_model(), metric="latency", target=1e9, weight=0.0, form="hinge",
                           hard=True, num_classes=3, in_channels=3, resolution=32, network={},
                           table=device_cost_table(space, device))
    return net, budget


CELLS = [NB201Genotype(tuple(OPS[k] for k in ks)) for ks in itertools.product(range(5), repeat=6)]
LIVE = [live_by_paths([op != "none" for op in g.ops]) for g in CELLS]


def brute_force(net, budget, max_skip, k):
    """The most probable cell within the target (ties: the costlier), at most ``max_skip`` skips,
    every op on an input-output path; ``none`` scored by hand: on each edge the probability of the
    (k+1)-th most probable of the four other ops, a hair above it (k = 4: a hair below the least)."""
    logp = torch.log_softmax(net.arch["cell"].alpha.detach().double(), -1)
    score = logp.clone()
    for e in range(6):
        others = sorted(logp[e, 1:].tolist(), reverse=True)
        score[e, 0] = others[k] + math.log(1 + 1e-6) if k < 4 else others[-1] + math.log(1 - 1e-6)
    best = None
    for g, live in zip(CELLS, LIVE):
        if g.ops.count("skip_connect") > max_skip or not live or budget.over(g):
            continue
        key = (round(float(sum(score[e, OPS.index(op)] for e, op in enumerate(g.ops))), 9), budget.exact(g))
        if best is None or key > best[0]:
            best = (key, g)
    return best[1]


@pytest.mark.parametrize("aux_skip,k", [(False, 2), (True, 2), (False, 1), (False, 4)])
def test_budget_none_equals_the_brute_force(aux_skip, k):
    with_none = 0
    for seed, device in enumerate(("titan_rtx_1", "pixel3", "eyeriss", "fpga")):
        alpha = torch.randn(6, 5, generator=torch.Generator().manual_seed(seed)) * 1.5
        net, budget = budgeted(alpha, 1, aux_skip, device, k=k)
        full = budget.exact(NB201Genotype(("nor_conv_3x3",) * 6))
        least = budget.exact(NB201Genotype(("skip_connect",) + ("none",) * 5))  # the cheapest live cell
        budget.target = least + (full - least) * (0.02, 0.1, 0.25, 0.5)[seed]
        one, two = brute_force(net, budget, 1, k), brute_force(net, budget, 2, k)
        want = two if budget.exact(two) > budget.exact(one) * (1 + 1e-12) else one
        got = net.genotype()
        assert got == want, (seed, got, want)
        net.derive_budget_extra_skip = 0
        assert net.genotype() == one
        with_none += "none" in got.ops
    assert with_none >= 2, with_none  # the rule derived none where the budget asked for it


def test_none_ranks_after_the_k_most_probable_ops_by_hand():
    # one edge, probabilities by hand (op order: none, skip, conv1x1, conv3x3, pool; none excluded)
    probs = torch.tensor([[0.3, 0.1, 0.2, 0.4, 0.05]])
    mask = torch.tensor([[False, True, True, True, True]])
    from nas.spaces.nb201.supernet import NB201Supernet
    for k, want in ((1, 0.2), (2, 0.1), (3, 0.05), (4, 0.05), (9, 0.05)):
        p, m = NB201Supernet._none_after(probs, mask, 0, k)
        assert bool(m.all())
        assert float(p[0, 0]) == pytest.approx(want, rel=1e-5)
        order = p[0].argsort(descending=True).tolist()
        assert order.index(0) == min(k, 4), (k, order)  # none right after the k strongest
    assert torch.equal(p[:, 1:], probs[:, 1:])


def test_budget_none_changes_nothing_without_a_binding_budget():
    alpha = torch.randn(6, 5, generator=torch.Generator().manual_seed(3))
    alpha[:, 0] += 5.0  # none the most probable everywhere: its own probability is not used
    net, budget = budgeted(alpha, 1, False)
    free = net.genotype()
    assert "none" not in free.ops and not budget.over(free)
    net.derive_budget_none = None
    assert net.genotype() == free


def test_budget_none_admits_targets_only_cells_with_none_meet():
    net, budget = budgeted(torch.zeros(6, 5), 0, False, "fpga", k=4)
    costs = [(g, budget.exact(g), live) for g, live in zip(CELLS, LIVE) if g.ops.count("skip_connect") <= 1]
    cheapest = min(c for g, c, live in costs if live)
    without_none = min(c for g, c, _ in costs if "none" not in g.ops)
    assert cheapest < without_none * 0.9
    assert net.cost_cheapest(budget.table) == pytest.approx(cheapest)
    budget.target = cheapest * 1.000001
    got = net.genotype()
    assert budget.exact(got) == pytest.approx(cheapest) and "none" in got.ops
    net.derive_budget_none = None  # without the rule no cell fits: derive's require_within names it
    assert budget.over(net.genotype())
    net.derive_budget_none = 4
    space = get_space("nb201")
    from nas.cost.device import device_cost_table
    for target, least in ((cheapest * 1.000001, None), (cheapest * 0.999, cheapest)):
        def attach():
            attach_budget(net, space.cost_model(), metric="latency", target=target, weight=0.0, form="hinge",
                          hard=True, num_classes=3, in_channels=3, resolution=32, network={},
                          table=device_cost_table(space, "fpga"))
        if least is None:
            attach()
            continue
        with pytest.raises(ConfigError, match="below the cheapest cell derive may pick") as e:
            attach()
        assert f"({least:.6g})" in str(e.value)


def configure(*overrides):
    return from_dict(Config, apply_overrides(to_dict(Config()), list(overrides)))


def test_budget_none_key_and_errors():
    cfg = configure("space.name=nb201", "space.C=4", "space.N=1", "derive.budget_none=2")
    assert make_supernet(cfg, make_estimator(cfg), 3, 3)[1].derive_budget_none == 2
    cfg = configure("space.name=nb201", "space.C=4", "space.N=1")
    assert make_supernet(cfg, make_estimator(cfg), 3, 3)[1].derive_budget_none is None
    with pytest.raises(ConfigError, match=r"^derive.budget_none=0 is out of range; allowed: >= 1$"):
        configure("space.name=nb201", "derive.budget_none=0")
    with pytest.raises(ConfigError, match=r"^unknown config key 'derive.budget_none'; allowed under 'derive': "
                                          r"max_skip, min_skip$"):
        configure("space.name=darts", "derive.budget_none=2")


@pytest.mark.parametrize("k,extra", [(None, 0), (None, 1), (2, 0), (2, 1)])
def test_a_target_no_cell_of_the_skip_limit_meets_is_refused_up_front(k, extra):
    # the sum of each edge's cheapest op is a skip on every edge: far below what derive may pick
    space = get_space("nb201")
    from nas.cost.device import device_cost_table
    for device in ("fpga", "titan_rtx_1", "pixel3"):
        net, budget = budgeted(torch.zeros(6, 5), extra, False, device, k=k)
        least = min(budget.exact(g) for g, live in zip(CELLS, LIVE)
                    if g.ops.count("skip_connect") <= 1 + extra and ("none" not in g.ops or (k is not None and live)))
        assert net.cost_cheapest(budget.table) == pytest.approx(least, rel=1e-12)
        if k is None:  # all-skip cells are the fastest without none: the bound without the limit admitted them
            assert min(budget.exact(g) for g in CELLS if "none" not in g.ops) < least * 0.95
        for target, refused in ((least * 0.999, True), (least, False)):
            def attach():
                return attach_budget(net, space.cost_model(), metric="latency", target=target, weight=0.0,
                                     form="hinge", hard=True, num_classes=3, in_channels=3, resolution=32,
                                     network={}, table=device_cost_table(space, device))
            if refused:
                with pytest.raises(ConfigError, match=rf"below the cheapest cell derive may pick \({least:.6g}\)"):
                    attach()
            else:
                attach()
                assert not net.budget().over(net.genotype())  # what the check admits, derive meets
