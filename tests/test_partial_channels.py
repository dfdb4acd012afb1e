"""PC-DARTS partial channel connections and edge normalisation (nas/supernet/partial.py) in the
nb201 and darts spaces: the formulas by hand, gradients to β, derive, config errors."""
import pytest
import torch
import torch.nn.functional as F

from nas.errors import ConfigError
from nas.estimators import build_estimator
from nas.supernet import arch_parameters, choices
from nas.supernet.partial import EdgeNormalization, PartialMixedOp, channel_shuffle, shuffle_cat
from nas.spaces import get_space
from nas.spaces.nb201 import OPS
from nas.ops import build_op


def test_channel_shuffle_by_hand():
    x = torch.arange(8.0).view(1, 8, 1, 1)
    # groups 4 of 2 channels: channel g*2 + m moves to m*4 + g
    assert channel_shuffle(x, 4).flatten().tolist() == [0, 2, 4, 6, 1, 3, 5, 7]
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    for fmt in (torch.contiguous_format, torch.channels_last):
        y, rest = torch.randn(2, 3, 4, 5).to(memory_format=fmt), torch.randn(2, 9, 4, 5).to(memory_format=fmt)
        out = shuffle_cat(y, rest, 4)
        assert torch.equal(out, channel_shuffle(torch.cat([y, rest], 1), 4))
        assert out.is_contiguous(memory_format=fmt)


@pytest.mark.parametrize("index", [None, 3])
def test_partial_mixed_op_is_the_pc_darts_formula(index):
    torch.manual_seed(0)
    names = list(OPS)
    op = PartialMixedOp([build_op(n, 2, 2, 1, False) for n in names], names, 4).double()
    x = torch.randn(3, 8, 5, 5, dtype=torch.double, requires_grad=True)
    w = torch.softmax(torch.randn(5, dtype=torch.double), 0).requires_grad_()
    out = op(x, w, index)
    xa, xb = x[:, :2], x[:, 2:]
    if index is None:
        mixed = sum(w[k] * o(xa) for k, o in enumerate(op.ops))
    else:
        mixed = w[index] * op.ops[index](xa) + (w.sum() - w[index])
    ref = channel_shuffle(torch.cat([mixed, xb], 1), 4)
    assert torch.allclose(out, ref, atol=1e-12)
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, (x, w), g), torch.autograd.grad(ref, (x, w), g)):
        assert torch.allclose(a, b, atol=1e-10)


def test_stride_two_edges_max_pool_the_bypass():
    torch.manual_seed(0)
    names = ["max_pool_3x3", "skip_connect", "sep_conv_3x3"]
    op = PartialMixedOp([build_op(n, 2, 2, 2, False, pool_bn=True) for n in names], names, 4).eval()
    x = torch.randn(2, 8, 6, 6)
    w = torch.tensor([0.2, 0.3, 0.5])
    out = op(x, w)
    assert out.shape == (2, 8, 3, 3)
    mixed = sum(w[k] * o(x[:, :2]) for k, o in enumerate(op.ops))
    ref = channel_shuffle(torch.cat([mixed, F.max_pool2d(x[:, 2:], 2, 2)], 1), 4)
    assert torch.allclose(out, ref, atol=1e-6)


def test_edge_normalisation_is_a_softmax_per_node():
    edges = [(0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3)]
    norm = EdgeNormalization(edges, [f"{j}<-{i}" for i, j in edges], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        norm.choices["2"].alpha.copy_(torch.tensor([[0.0, 1.0]]))
        norm.choices["3"].alpha.copy_(torch.tensor([[1.0, 2.0, 3.0]]))
    w = norm.weights()
    e = torch.exp(torch.tensor([1.0, 2.0, 3.0]))
    expected = [1.0, 1 / (1 + torch.e), torch.e / (1 + torch.e), *(e / e.sum()).tolist()]
    assert torch.allclose(w, torch.tensor(expected), atol=1e-6)
    assert set(norm.choices) == {"2", "3"}  # node 1 has one edge: no β


def nb201(K, name="softmax", **kw):
    torch.manual_seed(0)
    return get_space("nb201").build_supernet(build_estimator(name), num_classes=3, C=8, N=1, partial_channels=K,
                                             generator=torch.Generator().manual_seed(0), **kw)


@pytest.mark.parametrize("name", ["softmax", "gumbel_hard", "bop"])
def test_nb201_partial_supernet_trains_alpha_and_beta(name):
    model = nb201(4, name)
    conv = model.cells[0].edges[0].ops[OPS.index("nor_conv_3x3")][1]
    assert conv.in_channels == conv.out_channels == 2  # C/K
    betas = [p for n, p in model.named_parameters() if n.startswith("arch.edges")]
    assert len(betas) == 2 and {id(p) for p in betas} <= {id(p) for p in arch_parameters(model, "logits")}
    model(torch.randn(4, 3, 8, 8)).logsumexp(1).sum().backward()
    assert all(p.grad is not None and (p.grad != 0).all() for p in betas)
    assert str(model.genotype()).count("~") == 6
    # β rescales edges only: the derived ops are those of α alone
    assert model.genotype() == nb201(1, name).genotype()


def test_nb201_partial_equals_per_edge_formula_through_the_cell():
    """The cell with K=2 is Σ over edges of β-weighted PC edges, node by node."""
    model = nb201(2).double().train()
    cell = model.cells[0]
    x = torch.randn(2, 8, 6, 6, dtype=torch.double)
    sample = model.arch["cell"]()
    beta = model.arch["edges"].weights()
    out = cell(x, sample, beta)
    nodes = [x]
    for j in (1, 2, 3):
        nodes.append(sum(beta[e] * cell.edges[e](nodes[i], sample.weights[e])
                         for e, (jj, i) in enumerate([(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]) if jj == j))
    assert torch.allclose(out, nodes[3], atol=1e-12)


def test_partial_channels_config_errors():
    with pytest.raises(ConfigError, match="space.partial_channels=3 must divide the channels"):
        nb201(3)
    with pytest.raises(ConfigError, match="space.partial_channels must be 1"):
        nb201(0)
    with pytest.raises(ConfigError, match="needs an even number"):
        get_space("darts").build_supernet(build_estimator("softmax"), num_classes=3, C=4, layers=3, partial_channels=4)


def darts(K):
    torch.manual_seed(0)
    return get_space("darts").build_supernet(build_estimator("softmax"), num_classes=3, C=8, layers=3, steps=2,
                                             multiplier=2, partial_channels=K,
                                             generator=torch.Generator().manual_seed(0))


def test_darts_partial_supernet_and_derive_by_beta():
    model = darts(2)
    assert {"arch.edges_normal.choices.3", "arch.edges_reduce.choices.2"} <= set(choices(model))
    out = model(torch.randn(2, 3, 8, 8))
    assert out.shape == (2, 3)
    out.logsumexp(1).sum().backward()
    assert (model.arch["edges_reduce"].choices["3"].alpha.grad != 0).all()
    # node 3 reads nodes 0, 1, 2 and keeps two: α alone prefers inputs 0 and 1 ...
    with torch.no_grad():
        for name in ("normal", "reduce"):
            a = model.arch[name].alpha
            a.zero_()
            a[2:5, 4] = torch.tensor([3.0, 2.0, 1.0])  # sep_conv_3x3 strongest on 3<-0, then 3<-1, 3<-2
    assert [src for _, src in model.genotype().normal[2:]] == [0, 1]
    # ... β of node 3 favouring input 2 makes it rank first (PC-DARTS: β times the op weight)
    with torch.no_grad():
        model.arch["edges_normal"].choices["3"].alpha.copy_(torch.tensor([[0.0, 0.0, 5.0]]))
    assert [src for _, src in model.genotype().normal[2:]] == [2, 0]
    assert [src for _, src in model.genotype().reduce[2:]] == [0, 1]
