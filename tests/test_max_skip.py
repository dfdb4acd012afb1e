"""P-DARTS's limit on the skip connections a derived cell keeps (Chen et al., ICCV 2019, §3.3),
``derive.max_skip``: NB201 and DARTS cells by hand, the config key and one-line errors."""
import itertools

import pytest
import torch

from nas.config import Config, apply_overrides, from_dict, to_dict
from nas.errors import ConfigError
from nas.estimators import build_estimator
from nas.searcher.run import make_estimator, make_supernet
from nas.spaces import get_space
from nas.spaces.darts.genotype import derive_cell, derive_cell_max_skip
from nas.spaces.nb201 import OPS, NB201Genotype

# NB201 op order: none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3
ALPHA = torch.tensor([[0.0, 2.0, 1.0, 1.5, 0.0],   # skip p-rank 3 of 4, next: conv3x3
                      [0.0, 3.0, 1.0, 0.5, 0.0],   # skip, the strongest (largest skip probability)
                      [0.0, 0.0, 2.0, 1.0, 0.0],   # conv1x1
                      [0.0, 2.5, 0.0, 0.0, 1.0],   # skip, second; next: avg_pool
                      [0.0, 1.2, 1.1, 0.0, 0.0],   # skip, the weakest; next: conv1x1
                      [4.0, 0.0, 0.0, 1.0, 0.0]])  # none


def nb201(max_skip, estimator="softmax", **kw):
    net = get_space("nb201").build_supernet(build_estimator(estimator), num_classes=3, C=4, N=1,
                                            generator=torch.Generator().manual_seed(0),
                                            derive_max_skip=max_skip, **kw)
    if estimator != "bop":
        with torch.no_grad():
            net.arch["cell"].alpha.copy_(ALPHA)
    return net


def cell(*ops):
    return NB201Genotype(tuple(ops))


def test_nb201_keeps_the_most_probable_skips_and_gives_the_rest_their_next_op():
    # skip probabilities by hand: row 1 e^3/(e^3+e+e^.5+2) = .76, row 3 .68, row 0 .45, row 4 .36
    p = torch.softmax(ALPHA, -1)[:, 1]
    assert torch.allclose(p[[1, 3, 0, 4]], torch.tensor([0.759, 0.681, 0.445, 0.356]), atol=1e-3)
    plain = cell("skip_connect", "skip_connect", "nor_conv_1x1", "skip_connect", "skip_connect", "none")
    assert nb201(None).genotype() == plain
    assert nb201(4).genotype() == plain                 # at the limit: unchanged
    assert nb201(2).genotype() == cell("nor_conv_3x3", "skip_connect", "nor_conv_1x1",
                                       "skip_connect", "nor_conv_1x1", "none")
    assert nb201(1).genotype() == cell("nor_conv_3x3", "skip_connect", "nor_conv_1x1",
                                       "avg_pool_3x3", "nor_conv_1x1", "none")
    assert nb201(0).genotype() == cell("nor_conv_3x3", "nor_conv_1x1", "nor_conv_1x1",
                                       "avg_pool_3x3", "nor_conv_1x1", "none")


def test_nb201_limit_respects_derive_exclude():
    # allowed: skip, conv1x1, conv3x3. Row 3 without skip ties conv1x1 and conv3x3 at 0 (the first
    # listed wins); row 5, led by the excluded none, takes conv3x3
    net = nb201(0, derive_exclude=["none", "avg_pool_3x3"])
    assert net.genotype() == cell("nor_conv_3x3", "nor_conv_1x1", "nor_conv_1x1",
                                  "nor_conv_1x1", "nor_conv_1x1", "nor_conv_3x3")


def test_nb201_limit_errors_are_one_line():
    with pytest.raises(ConfigError, match="must be 0 or more"):
        nb201(-1)
    with pytest.raises(ConfigError, match="needs an estimator with logits.*set derive.max_skip=null$"):
        nb201(1, estimator="bop")
    # both derive keys at once: one message naming both fixes
    with pytest.raises(ConfigError, match="derive.exclude and derive.max_skip need an estimator "
                                          ".*set derive.exclude=\\[\\] derive.max_skip=null$"):
        nb201(1, estimator="bop", derive_exclude=["none"])


def darts_weights(ops, rows):
    """``[14, K]`` weights: every edge ``none``-led except the given ``{edge: {op: w}}``."""
    w = torch.zeros(14, len(ops))
    w[:, 0] = 1.0
    for e, entries in rows.items():
        for op, v in entries.items():
            w[e, ops.index(op)] = v
    return w


def test_darts_drops_the_weakest_skip_and_derives_again():
    ops = ["none", "skip_connect", "sep_conv_3x3"]
    # edge rows: node 2: 0,1; node 3: 2,3,4; node 4: 5..8; node 5: 9..13
    w = darts_weights(ops, {
        0: {"skip_connect": 0.9}, 1: {"sep_conv_3x3": 0.8},                           # node 2
        2: {"skip_connect": 0.5}, 3: {"sep_conv_3x3": 0.6}, 4: {"sep_conv_3x3": 0.3},  # node 3
        5: {"skip_connect": 0.7, "sep_conv_3x3": 0.2}, 6: {"sep_conv_3x3": 0.65},      # node 4
        7: {"sep_conv_3x3": 0.1},
        9: {"sep_conv_3x3": 0.4}, 10: {"sep_conv_3x3": 0.35}})                        # node 5
    plain = [("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 1), ("skip_connect", 0),
             ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1)]
    assert derive_cell(w, ops, 4) == plain
    assert derive_cell_max_skip(w, ops, 4, max_skip=None) == plain
    assert derive_cell_max_skip(w, ops, 4, max_skip=3) == plain
    # M=2: the weakest skip (edge 2, 3<-0, 0.5) goes; node 3 then keeps 3<-1 and 3<-2 (0.3)
    assert derive_cell_max_skip(w, ops, 4, max_skip=2) == [
        ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 1), ("sep_conv_3x3", 2),
        ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1)]
    # M=1: then 4<-0 (0.7) goes too; its sep_conv (0.2) stays ahead of 4<-2 (0.1)
    assert derive_cell_max_skip(w, ops, 4, max_skip=1) == [
        ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 1), ("sep_conv_3x3", 2),
        ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1)]
    assert sum(op == "skip_connect" for op, _ in derive_cell_max_skip(w, ops, 4, max_skip=0)) == 0


def test_darts_supernet_limits_the_normal_cell_only():
    ops = ["none", "skip_connect", "sep_conv_3x3"]
    net = get_space("darts").build_supernet(build_estimator("softmax"), num_classes=3, C=4, layers=3,
                                            ops=ops, derive_max_skip=0)
    with torch.no_grad():
        for name in ("normal", "reduce"):
            net.arch[name].alpha.zero_()
            net.arch[name].alpha[:, 1] = 1.0  # skip leads every edge of both cells
    g = net.genotype()
    assert all(op == "sep_conv_3x3" for op, _ in g.normal)
    assert all(op == "skip_connect" for op, _ in g.reduce)
    with pytest.raises(ConfigError, match="needs an estimator with logits"):
        get_space("darts").build_supernet(build_estimator("bop"), num_classes=3, C=4, layers=3,
                                          derive_max_skip=1)


def configure(*overrides):
    return from_dict(Config, apply_overrides(to_dict(Config()), overrides))


@pytest.mark.parametrize("space,extra", [("nb201", ["space.N=1"]), ("darts", ["space.layers=3"])])
def test_config_key_reaches_the_supernet(space, extra):
    cfg = configure(f"space.name={space}", "space.C=4", *extra, "derive.max_skip=1")
    assert cfg.derive.max_skip == 1
    _, model = make_supernet(cfg, make_estimator(cfg), 3, 3)
    assert model.derive_max_skip == 1
    cfg = configure(f"space.name={space}", "space.C=4", *extra, "derive.max_skip=null")
    assert make_supernet(cfg, make_estimator(cfg), 3, 3)[1].derive_max_skip is None


def test_config_key_is_refused_where_there_is_nothing_to_limit():
    with pytest.raises(ConfigError, match=r"^unknown config key 'derive.max_skip'; allowed under 'derive': $"):
        configure("space.name=dnf", "data.dataset=synthetic_dnf", "derive.max_skip=1")


# ---------------------------------------------------------------- derive.min_skip (P-DARTS's constant M)

def test_nb201_floor_gives_skip_to_the_edges_with_the_largest_skip_probability():
    # with skip excluded from the argmax by max_skip=0 the cell has none; the floor puts it back on
    # the edges ranked by skip probability (row 1 .76, row 3 .68, row 0 .45, row 4 .36, row 2, row 5)
    def floored(min_skip, max_skip=None, **kw):
        return nb201(max_skip, derive_min_skip=min_skip, **kw).genotype()
    no_skip = nb201(0).genotype()
    assert no_skip.ops.count("skip_connect") == 0
    assert floored(None, 0) == no_skip
    assert floored(0, 0) == no_skip
    assert floored(1, 1) == cell("nor_conv_3x3", "skip_connect", "nor_conv_1x1",
                                 "avg_pool_3x3", "nor_conv_1x1", "none")       # = max_skip 1 alone
    # a cell with fewer skips than the floor: alpha where skip leads nowhere
    net = nb201(None, derive_min_skip=2)
    with torch.no_grad():
        net.arch["cell"].alpha.copy_(ALPHA)
        net.arch["cell"].alpha[:, 1] -= 3.0  # skip second or lower everywhere
    p = torch.softmax(net.arch["cell"].alpha.detach(), -1)[:, 1]
    top2 = sorted(range(6), key=lambda e: -float(p[e]))[:2]
    assert top2 == [1, 3]                                   # by hand: the order of ALPHA's skip column
    g = net.genotype()
    assert [e for e, op in enumerate(g.ops) if op == "skip_connect"] == top2
    net.derive_min_skip = None
    assert net.genotype().ops.count("skip_connect") == 0


def test_nb201_floor_never_opens_an_excluded_skip_nor_a_gated_edge():
    net = nb201(None, derive_min_skip=6, derive_exclude=["skip_connect"])
    assert net.genotype().ops.count("skip_connect") == 0
    gated = get_space("nb201").build_supernet(build_estimator("softmax"), num_classes=3, C=4, N=1, gates="edge",
                                              generator=torch.Generator().manual_seed(0), derive_min_skip=6)
    with torch.no_grad():
        gated.arch["cell"].alpha.copy_(ALPHA)
    closed = [not o for o in gated.arch["gates"].open().tolist()]
    ops = gated.genotype().ops
    assert all(op == "none" for op, c in zip(ops, closed) if c)
    assert all(op == "skip_connect" for op, c in zip(ops, closed) if not c)


def test_darts_floor_turns_the_kept_edges_with_the_largest_skip_weight():
    ops = ["none", "skip_connect", "sep_conv_3x3"]
    w = darts_weights(ops, {
        0: {"sep_conv_3x3": 0.9, "skip_connect": 0.2}, 1: {"sep_conv_3x3": 0.8, "skip_connect": 0.5},
        2: {"sep_conv_3x3": 0.6}, 3: {"sep_conv_3x3": 0.5, "skip_connect": 0.45}, 4: {"sep_conv_3x3": 0.1},
        5: {"sep_conv_3x3": 0.7}, 6: {"sep_conv_3x3": 0.6},
        9: {"sep_conv_3x3": 0.4}, 10: {"sep_conv_3x3": 0.35}})
    plain = derive_cell(w, ops, 4)
    assert all(op == "sep_conv_3x3" for op, _ in plain)
    # the kept edges by skip weight: 2<-1 (0.5), 3<-1 (0.45), 2<-0 (0.2); the edges kept stay the same
    one = derive_cell_max_skip(w, ops, 4, max_skip=1, min_skip=1)
    assert one == [("sep_conv_3x3", 0), ("skip_connect", 1)] + plain[2:]
    two = derive_cell_max_skip(w, ops, 4, min_skip=2)
    assert two == [("sep_conv_3x3", 0), ("skip_connect", 1), ("sep_conv_3x3", 0), ("skip_connect", 1)] + plain[4:]
    assert [src for _, src in two] == [src for _, src in plain]


@pytest.mark.parametrize("space,extra", [("nb201", ["space.N=1"]), ("darts", ["space.layers=3"])])
def test_min_skip_key_reaches_the_supernet_and_errors_are_one_line(space, extra):
    cfg = configure(f"space.name={space}", "space.C=4", *extra, "derive.max_skip=1", "derive.min_skip=1")
    assert make_supernet(cfg, make_estimator(cfg), 3, 3)[1].derive_min_skip == 1
    with pytest.raises(ConfigError, match=r"^derive.min_skip=2 is above derive.max_skip=1; set min_skip <= max_skip"):
        cfg = configure(f"space.name={space}", "space.C=4", *extra, "derive.max_skip=1", "derive.min_skip=2")
        make_supernet(cfg, make_estimator(cfg), 3, 3)
    with pytest.raises(ConfigError, match=r"^derive.min_skip=-1 is out of range; allowed: >= 0$"):
        configure(f"space.name={space}", "derive.min_skip=-1")
    with pytest.raises(ConfigError, match=r"needs an estimator with logits.*set derive.min_skip=null$"):
        cfg = configure(f"space.name={space}", "space.C=4", *extra, "estimator.name=bop", "derive.min_skip=1")
        make_supernet(cfg, make_estimator(cfg), 3, 3)


# ---------------------------------------------------------------- derive.budget_extra_skip (under a budget)

def budgeted(alpha, target, extra, max_skip=1):
    """An nb201 supernet (no ``none`` at derive) with ``alpha`` and a hard MACs target."""
    from nas.cost import attach_budget
    space = get_space("nb201")
    net = space.build_supernet(build_estimator("softmax"), num_classes=3, C=4, N=1, derive_exclude=["none"],
                               generator=torch.Generator().manual_seed(0), derive_max_skip=max_skip,
                               derive_budget_extra_skip=extra)
    with torch.no_grad():
        net.arch["cell"].alpha.copy_(alpha)
    budget = attach_budget(net, space.cost_model(), metric="macs", target=target, weight=0.0, form="hinge",
                           hard=True, num_classes=3, in_channels=3, resolution=8, network=dict(C=4, N=1))
    return net, budget


def brute_force(net, budget, max_skip):
    """The most probable cell (ties: the costlier) with at most ``max_skip`` skips within the
    target, over all 4^6 cells without ``none``: the reference the enumeration in derive must equal."""
    logp = torch.log_softmax(net.arch["cell"].alpha.detach().double(), -1)
    best = None
    for ks in itertools.product(range(1, 5), repeat=6):
        g = NB201Genotype(tuple(OPS[k] for k in ks))
        if g.ops.count("skip_connect") > max_skip or budget.over(g):
            continue
        key = (round(float(sum(logp[e, k] for e, k in enumerate(ks))), 9), budget.exact(g))
        if best is None or key > best[0]:
            best = (key, g)
    return best[1]


def test_nb201_extra_skip_is_kept_where_it_buys_a_costlier_cell_within_the_target():
    # op order: none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3. Edges 0 and 1 lead
    # with skip, then conv1x1; edges 2-5 with conv3x3, then conv1x1. Target: four conv3x3 exactly.
    alpha = torch.tensor([[0.0, 3.0, 2.0, 0.0, -3.0]] * 2 + [[0.0, -2.0, 1.5, 2.0, -3.0]] * 4)
    net, budget = budgeted(alpha, 1.0, 1)
    two_skips = NB201Genotype(("skip_connect",) * 2 + ("nor_conv_3x3",) * 4)
    budget.target = budget.exact(two_skips)
    one = brute_force(net, budget, 1)
    # one skip: edge 1 takes conv1x1, and so one conv3x3 must give way to a conv1x1 (cheaper by
    # hand: 3·c3 + 2·c1 < 4·c3 as c1 < c3 / 2); the second skip buys the fourth conv3x3
    assert one.ops[:2] == ("skip_connect", "nor_conv_1x1") and one.ops[2:].count("nor_conv_3x3") == 3
    assert budget.exact(one) < budget.exact(two_skips)
    assert net.genotype() == two_skips
    net.derive_budget_extra_skip = 0
    assert net.genotype() == one


def test_nb201_extra_skip_is_dropped_where_it_makes_the_cell_cheaper():
    # random architectures and targets, each derived with and without the rule, against the brute force
    dropped = 0
    for seed in range(8):
        alpha = torch.randn(6, 5, generator=torch.Generator().manual_seed(seed)) * 2
        alpha[:, 1] += 1.0  # skip strong, so that a second skip is often the most probable
        net, budget = budgeted(alpha, 1.0, 1)
        full = budget.exact(NB201Genotype(("nor_conv_3x3",) * 6))
        least = budget.exact(NB201Genotype(("skip_connect",) + ("avg_pool_3x3",) * 5))
        budget.target = least + (full - least) * (0.15 + 0.08 * seed)
        one, two = brute_force(net, budget, 1), brute_force(net, budget, 2)
        want = two if budget.exact(two) > budget.exact(one) * (1 + 1e-12) else one  # ties: the fewer skips
        got = net.genotype()
        assert got == want, (seed, got, one, two)
        net.derive_budget_extra_skip = 0
        assert net.genotype() == one  # the plain rule: the most probable cell with at most one skip
        dropped += got == one != two
    assert dropped >= 3, dropped  # the second skip was there to take, and refused


def test_nb201_extra_skip_changes_nothing_without_a_binding_budget():
    net, budget = budgeted(ALPHA, 1e9, 1)
    assert net.genotype() == nb201(1, derive_exclude=["none"]).genotype()
    assert net.genotype().ops.count("skip_connect") == 1


def test_budget_extra_skip_key_and_errors():
    cfg = configure("space.name=nb201", "space.C=4", "space.N=1", "derive.max_skip=1", "derive.budget_extra_skip=1")
    assert make_supernet(cfg, make_estimator(cfg), 3, 3)[1].derive_budget_extra_skip == 1
    with pytest.raises(ConfigError, match=r"^derive.budget_extra_skip=-1 is out of range; allowed: >= 0$"):
        configure("space.name=nb201", "derive.budget_extra_skip=-1")
    with pytest.raises(ConfigError, match=r"^unknown config key 'derive.budget_extra_skip'; allowed under 'derive': "
                                          r"max_skip, min_skip$"):
        configure("space.name=darts", "derive.budget_extra_skip=1")
