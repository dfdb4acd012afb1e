"""The fused mixed op (one-pass weighted sum, single path, shared ReLU) has exactly the value and
gradients of the plain autograd expression it replaces (DARTS ``Σ_k w_k o_k(x)``; GDAS
``w_k* o_k*(x) + Σ_{j≠k*} w_j``)."""
import pytest
import torch

from nas.supernet import MixedOp
from nas.ops import build_op
from nas.spaces.nb201 import OPS

NAMES = list(OPS)


def make(C=3):
    torch.manual_seed(0)
    m = MixedOp([build_op(n, C, C, 1, True) for n in NAMES], NAMES).double()
    x = torch.randn(2, C, 5, 5, dtype=torch.double, requires_grad=True)
    w = torch.softmax(torch.randn(len(NAMES), dtype=torch.double), 0).requires_grad_()
    return m, x, w


def grads(out, *ts):
    g = torch.randn_like(out, generator=torch.Generator().manual_seed(1))
    return torch.autograd.grad((out * g).sum(), ts, retain_graph=True)


@pytest.mark.parametrize("shared", [None, {}])
def test_dense_matches_plain_weighted_sum(shared):
    m, x, w = make()
    out = m(x, w, None, shared)
    ref = sum(op(x) * w[k] for k, op in enumerate(m.ops))
    assert torch.allclose(out, ref, atol=1e-12)
    for a, b in zip(grads(out, x, w, *m.parameters()), grads(ref, x, w, *m.parameters())):
        assert torch.allclose(a, b, atol=1e-10)
    assert grads(out, w)[0][NAMES.index("none")] == 0  # `none` is skipped: zero gradient, exactly


@pytest.mark.parametrize("k", range(len(NAMES)))
def test_single_path_matches_gdas_expression(k):
    m, x, w = make()
    out = m(x, w, k, {})
    ref = m.ops[k](x) * w[k] + (w.sum() - w[k])
    assert torch.allclose(out, ref, atol=1e-12)
    for a, b in zip(grads(out, x, w), grads(ref, x, w)):
        assert torch.allclose(a, b, atol=1e-10)


def test_relu_is_computed_once_per_node_and_hooks_still_fire():
    m, x, w = make()
    calls = []
    for op in m.ops:
        op.register_forward_hook(lambda mod, i, o: calls.append(type(mod).__name__))
    relus = []
    for op in m.ops:
        if hasattr(op, "takes_relu_input"):
            op[0].register_forward_hook(lambda *a: relus.append(1))
    shared = {}
    m(x, w, None, shared)
    m(x, w, None, shared)  # a second edge leaving the same node
    assert relus == [] and "relu" in shared  # the ops' own ReLUs never ran
    assert calls.count("ReLUConvBN") == 4
