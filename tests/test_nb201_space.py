"""NAS-Bench-201 space: op/edge order, string round trip, supernet forward/backward, derive,
the softmax relaxation and GDAS single-path execution."""
import itertools

import pytest
import torch
import torch.nn.functional as F
import yaml

from nas.errors import CheckpointError, ConfigError
from nas.estimators import build_estimator
from nas.supernet import arch_parameters, weight_parameters
from nas.spaces import SPACES, get_space
from nas.spaces.nb201 import EDGE_NAMES, EDGES, OPS, NB201Genotype, all_genotypes


def test_op_and_edge_order_match_the_benchmark():
    assert OPS == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    assert EDGES == ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
    assert EDGE_NAMES == ("1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2")


def test_string_round_trip_over_all_15625_cells():
    seen = set()
    for g in all_genotypes():
        s = str(g)
        assert NB201Genotype.from_string(s) == g
        seen.add(s)
    assert len(seen) == 5 ** 6 == 15625


def test_string_layout_is_the_standard_one():
    g = NB201Genotype(("nor_conv_3x3", "skip_connect", "none", "avg_pool_3x3", "nor_conv_1x1", "skip_connect"))
    assert str(g) == "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|skip_connect~2|"
    space = get_space("nb201")
    assert space.genotype_from_dict(yaml.safe_load(yaml.safe_dump(space.genotype_to_dict(g)))) == g


@pytest.mark.parametrize("bad", [
    "|nor_conv_3x3~0|+|none~0|none~1|",                                   # two nodes
    "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|",                    # unknown op
    "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|",                    # wrong input index
    "nor_conv_3x3~0+|none~0|none~1|+|none~0|none~1|none~2|",              # missing bars
])
def test_bad_strings_are_one_line_errors(bad):
    with pytest.raises(CheckpointError) as e:
        NB201Genotype.from_string(bad)
    assert "\n" not in str(e.value)


def test_unknown_space_and_op_errors():
    with pytest.raises(ConfigError, match="unknown search space 'nb301'; known: .*nb201"):
        get_space("nb301")
    with pytest.raises(ConfigError, match="space.ops: unknown op 'sep_conv_9x9'"):
        get_space("nb201").build_supernet(build_estimator("softmax"), num_classes=3, C=4, N=1,
                                          ops=["none", "sep_conv_9x9"])
    with pytest.raises(ConfigError, match="unknown estimator 'darts'; known: .*softmax"):
        build_estimator("darts")


def tiny(name="softmax", seed=0, fused=True, **kw):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    return get_space("nb201").build_supernet(build_estimator(name, **kw), num_classes=3, C=4, N=1,
                                             generator=gen, fused=fused)


@pytest.mark.parametrize("name", ["softmax", "gumbel", "gumbel_hard"])
def test_supernet_forward_backward(name):
    model = tiny(name)
    x = torch.randn(2, 3, 8, 8)
    out = model(x)
    assert out.shape == (2, 3) and torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    alpha = arch_parameters(model)
    assert len(alpha) == 1 and alpha[0].shape == (6, 5)
    assert torch.isfinite(alpha[0].grad).all() and alpha[0].grad.abs().sum() > 0
    assert model.stem[0].weight.grad.abs().sum() > 0 and model.classifier.weight.grad.abs().sum() > 0
    # weights and architecture parameters are disjoint and cover the model
    ids = {id(p) for p in weight_parameters(model)} | {id(p) for p in alpha}
    assert ids == {id(p) for p in model.parameters()}
    assert not {id(p) for p in weight_parameters(model)} & {id(p) for p in alpha}


def test_cell_ops_use_bn_without_affine_and_skeleton_shapes():
    model = tiny()
    cell_bns = [m for m in model.cells[0].modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert cell_bns and all(not bn.affine for bn in cell_bns)
    assert [type(c).__name__ for c in model.cells] == ["SearchCell", "ResBlock", "SearchCell", "ResBlock", "SearchCell"]
    assert model.classifier.in_features == 16  # 4C


def test_softmax_weights_equal_softmax_alpha_over_tau():
    for tau in (1.0, 0.5, 3.0):
        model = tiny("softmax", tau=tau)
        with torch.no_grad():
            model.arch["cell"].alpha.copy_(torch.randn(6, 5))
        w = model.arch["cell"]().weights
        a = model.arch["cell"].alpha.detach()
        expected = torch.exp(a / tau) / torch.exp(a / tau).sum(-1, keepdim=True)  # by hand
        assert torch.allclose(w, expected, atol=1e-6)


def test_mixed_op_is_the_weighted_sum_of_its_candidates():
    model = tiny("softmax").eval()
    edge = model.cells[0].edges[0]
    x = torch.randn(2, 4, 8, 8)
    w = F.softmax(torch.randn(5), 0)
    expected = sum(wk * op(x) for wk, op in zip(w, edge.ops))
    assert torch.allclose(edge(x, w), expected, atol=1e-6)


@pytest.mark.parametrize("fused", [False, True])
def test_gdas_runs_only_the_sampled_op_and_still_grads_every_alpha_entry(fused):
    model = tiny("gumbel_hard", fused=fused)
    calls = {}
    for cell_i, cell in enumerate(model.cells):
        if type(cell).__name__ != "SearchCell":
            continue
        for e, mixed in enumerate(cell.edges):
            for k, op in enumerate(mixed.ops):
                op.register_forward_hook(lambda m, i, o, key=(cell_i, e, k): calls.__setitem__(key, calls.get(key, 0) + 1))
    choice = model.arch["cell"]
    sampled = []
    orig = choice.forward
    choice.forward = lambda: sampled.append(orig()) or sampled[-1]
    model(torch.randn(2, 3, 8, 8)).logsumexp(1).sum().backward()
    index = sampled[0].index
    assert len(sampled) == 1  # one sample per forward, shared by every cell
    ran = {(c, e, index[e]) for c in (0, 2, 4) for e in range(6)}
    if fused:
        # the fused path calls no op module: a conv ran iff its BN counted the batch and its
        # weight got a gradient
        assert not calls
        convs = 0
        for c in (0, 2, 4):
            for e, mixed in enumerate(model.cells[c].edges):
                for k, op in enumerate(mixed.ops):
                    if hasattr(op, "takes_relu_input"):
                        assert int(op[2].num_batches_tracked) == ((c, e, k) in ran)
                        assert (op[1].weight.grad is not None) == ((c, e, k) in ran)
                        convs += (c, e, k) in ran
        assert convs > 0
    else:
        assert set(calls) == ran
        assert all(v == 1 for v in calls.values())
    grad = choice.alpha.grad
    assert (grad != 0).all(), grad


def test_derive_is_argmax_per_edge():
    model = tiny("softmax")
    a = torch.full((6, 5), -1.0)
    picks = [3, 1, 0, 4, 2, 3]
    for e, k in enumerate(picks):
        a[e, k] = 2.0
    with torch.no_grad():
        model.arch["cell"].alpha.copy_(a)
    assert model.genotype() == NB201Genotype(tuple(OPS[k] for k in picks))


def test_derive_exclude_takes_the_best_allowed_op():
    gen = torch.Generator().manual_seed(0)
    model = get_space("nb201").build_supernet(build_estimator("softmax"), num_classes=3, C=4, N=1,
                                              generator=gen, derive_exclude=["none"])
    # rows led by none fall to their best other op (row 4: ties go to the first, skip_connect)
    a = torch.tensor([[3.0, 0.0, 1.0, 2.0, 0.5],
                      [3.0, 2.9, 1.0, 2.0, 0.5],
                      [0.0, 0.0, 2.0, 1.0, 0.5],
                      [0.1, 0.0, 0.0, 0.0, 0.0],
                      [5.0, 0.0, 0.0, 0.0, 4.0],
                      [0.0, 0.0, 0.0, 1.0, 0.0]])
    with torch.no_grad():
        model.arch["cell"].alpha.copy_(a)
    assert model.genotype() == NB201Genotype(("nor_conv_3x3", "skip_connect", "nor_conv_1x1",
                                              "skip_connect", "avg_pool_3x3", "nor_conv_3x3"))
    # without the exclusion the same α derive to the plain argmax
    plain = tiny("softmax")
    with torch.no_grad():
        plain.arch["cell"].alpha.copy_(a)
    assert plain.genotype() == NB201Genotype(("none", "none", "nor_conv_1x1", "none", "none", "nor_conv_3x3"))


def test_derive_exclude_bad_values_are_one_line_errors():
    build = get_space("nb201").build_supernet
    with pytest.raises(ConfigError, match="'conv' is not a candidate op"):
        build(build_estimator("softmax"), num_classes=3, C=4, N=1, derive_exclude=["conv"])
    with pytest.raises(ConfigError, match="leaves no candidate"):
        build(build_estimator("softmax"), num_classes=3, C=4, N=1, derive_exclude=list(OPS))
    # bop has no logits to rank the other candidates by
    with pytest.raises(ConfigError, match="needs an estimator with logits"):
        build(build_estimator("bop"), num_classes=3, C=4, N=1, derive_exclude=["none"])


@pytest.mark.parametrize("arch", [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
])
def test_discrete_network_builds_and_runs(arch):
    g = NB201Genotype.from_string(arch)
    net = get_space("nb201").build_network(g, num_classes=10, C=4, N=1)
    out = net(torch.randn(2, 3, 8, 8))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    bns = [m for m in net.cells[0].modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(bn.affine for bn in bns)


def test_discrete_cell_matches_supernet_with_one_hot_weights():
    """With one-hot weights the supernet cell computes exactly the discrete cell."""
    g = NB201Genotype.from_string("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|skip_connect~2|")
    torch.manual_seed(0)
    net = get_space("nb201").build_network(g, num_classes=3, C=4, N=1).eval()
    sup = tiny("softmax").eval()
    cell, scell = net.cells[0], sup.cells[0]
    # copy conv weights of the chosen ops into the supernet edges
    for k, (j, i, op) in enumerate(g.edges()):
        if op == "none":
            continue
        src = cell.ops[str(k)]
        dst = scell.edges[k].ops[OPS.index(op)]
        for ps, pd in zip(src.parameters(), [p for p in dst.parameters()]):
            pd.data.copy_(ps.data) if ps.shape == pd.shape else None
    for m in list(cell.modules()) + list(scell.modules()):
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
            if m.affine:  # identity affine so both normalise the same way
                m.weight.data.fill_(1.0)
                m.bias.data.zero_()
    x = torch.randn(2, 4, 8, 8)
    onehot = F.one_hot(torch.tensor([OPS.index(o) for o in g.ops]), 5).float()
    from nas.estimators import Sample
    assert torch.allclose(cell(x), scell(x, Sample(onehot)), atol=1e-5)
    assert torch.allclose(cell(x), scell(x, Sample(onehot, onehot.argmax(1).tolist())), atol=1e-5)


def test_registry_lists_spaces():
    assert "nb201" in SPACES.names()


def test_collapse_warning_names_a_disconnected_cell_only():
    from nas.searcher.run import collapse_warning
    from nas.spaces import get_space
    nb201 = get_space("nb201")
    dead = NB201Genotype.from_string("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    msg = collapse_warning(nb201, dead)
    assert msg.startswith("warning:") and str(dead) in msg and "\n" not in msg
    assert collapse_warning(nb201, NB201Genotype(("skip_connect",) * 6)) is None
    assert collapse_warning(get_space("darts"), object()) is None  # spaces without the notion never warn
