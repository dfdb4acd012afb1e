"""The fused cell execution (nas/supernet/fused.py) has the value, the gradients (weights and α)
and the BN running statistics of the per-edge path it replaces, in float64; channels_last changes
the layout only."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nas.estimators import build_estimator
from nas.supernet import MixedOp
from nas.supernet.fused import _NodeSum, avg_pool_3x3, classify, conv_group, run_cell, CONV, OTHER, POOL, SKIP, ZERO
from nas.ops import Identity, Pool, ReLUConvBN, Zero
from nas.spaces import get_space


def supernet(name, fused, channels_last=False, seed=0, **kw):
    torch.manual_seed(seed)
    est = build_estimator(*name) if isinstance(name, tuple) else build_estimator(name)
    return get_space("nb201").build_supernet(est, num_classes=3, C=4, N=1, fused=fused, channels_last=channels_last,
                                             generator=torch.Generator().manual_seed(seed), **kw).double()


def run(model, x, seed=1, train=True, beta=0.0):
    model.train(train)
    if beta:
        model.aux_skip = beta
    torch.manual_seed(seed)  # the same architecture sample in both models
    out = model(x)
    if not train:
        return out, {}, {k: v.clone() for k, v in model.state_dict().items()}
    loss = (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum()
    model.zero_grad()
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    return out, grads, {k: v.clone() for k, v in model.state_dict().items()}


def assert_same(a, b, atol=1e-10):
    out_a, grads_a, state_a = a
    out_b, grads_b, state_b = b
    assert torch.allclose(out_a, out_b, atol=1e-12, rtol=0), (out_a - out_b).abs().max()
    assert set(grads_a) == set(grads_b)
    for n in grads_a:
        assert torch.allclose(grads_a[n], grads_b[n], atol=atol, rtol=0), (n, (grads_a[n] - grads_b[n]).abs().max())
    for k in state_a:
        if state_a[k].is_floating_point():
            assert torch.allclose(state_a[k], state_b[k], atol=1e-12, rtol=0), k
        else:
            assert torch.equal(state_a[k], state_b[k]), k


CASES = [
    ("softmax", {}),
    ("gumbel_hard", {}),  # single path
    ("gumbel", {}),
    (("ste", ), {}),
    ("softmax", {"affine": True}),
    ("softmax", {"gates": "op"}),
    ("gumbel_hard", {"gates": "edge"}),
    ("softmax", {"ops": ["none", "skip_connect", "nor_conv_3x3"]}),
    ("softmax", {"partial_channels": 2}),  # PC-DARTS: channels split, edge normalisation β
    ("gumbel_hard", {"partial_channels": 4}),
    ("softmax", {"partial_channels": 2, "gates": "edge"}),
]


@pytest.mark.parametrize("group_convs", [True, False])
@pytest.mark.parametrize("name,kw", CASES)
def test_fused_equals_per_edge(name, kw, group_convs):
    """Both ways of running a node's convolutions (grouped: the default off the CPU)."""
    x = torch.randn(3, 3, 8, 8, dtype=torch.double)
    for seed in (1, 2):
        a = run(supernet(name, False, **kw), x, seed)
        b = run(supernet(name, True, group_convs=group_convs, **kw), x, seed)
        assert_same(a, b)


def test_convs_are_grouped_off_the_cpu_only(monkeypatch):
    """``group_convs=None`` groups by device: one conv per shape and node off the CPU, one per op on it."""
    import nas.supernet.fused as fused
    calls = []
    real = fused.conv_group
    monkeypatch.setattr(fused, "conv_group", lambda r, ops, scale: calls.append(len(ops)) or real(r, ops, scale))
    x = torch.randn(3, 3, 8, 8, dtype=torch.double)
    for group_convs, expect in ((None, 1), (False, 1), (True, 3)):
        calls.clear()
        run(supernet("softmax", True, group_convs=group_convs), x)
        # node 0 of the one cell per stage has 3 out-edges with a 1x1 and a 3x3 each
        assert max(calls) == expect, (group_convs, calls)


def test_single_path_estimators_with_index():
    x = torch.randn(3, 3, 8, 8, dtype=torch.double)
    for spec in (("ste", {"single_path": True}), ("bop", {"single_path": True})):
        a = run(supernet_spec(spec, False), x)
        b = run(supernet_spec(spec, True), x)
        assert_same(a, b)


def supernet_spec(spec, fused):
    torch.manual_seed(0)
    est = build_estimator(spec[0], **spec[1])
    return get_space("nb201").build_supernet(est, num_classes=3, C=4, N=1, generator=torch.Generator().manual_seed(0),
                                             fused=fused, channels_last=False).double()


@pytest.mark.parametrize("name", ["softmax", "gumbel_hard"])
def test_aux_skip_and_eval_mode(name):
    x = torch.randn(3, 3, 8, 8, dtype=torch.double)
    a, b = supernet(name, False, with_aux_skip=True), supernet(name, True, with_aux_skip=True)
    assert_same(run(a, x, beta=0.7), run(b, x, beta=0.7))
    # eval mode: running statistics (now from one training batch) normalise, no gradient
    assert_same(run(a, x, train=False), run(b, x, train=False))


def test_aux_skip_with_partial_channels():
    x = torch.randn(2, 3, 8, 8, dtype=torch.double)
    for name in ("softmax", "gumbel_hard"):
        a = supernet(name, False, with_aux_skip=True, partial_channels=2)
        b = supernet(name, True, with_aux_skip=True, partial_channels=2)
        assert_same(run(a, x, beta=0.6), run(b, x, beta=0.6))


def test_aux_skip_without_a_skip_candidate():
    x = torch.randn(2, 3, 8, 8, dtype=torch.double)
    kw = {"ops": ["none", "nor_conv_1x1", "avg_pool_3x3"], "with_aux_skip": True}
    assert_same(run(supernet("softmax", False, **kw), x, beta=0.5), run(supernet("softmax", True, **kw), x, beta=0.5))


def test_every_incoming_candidate_none_in_single_path():
    # ops none/skip: the sampled path is `none` on some edges, and on every edge into a node
    x = torch.randn(2, 3, 8, 8, dtype=torch.double)
    kw = {"ops": ["none", "skip_connect"]}
    for seed in range(6):
        a = supernet("gumbel_hard", False, **kw)
        b = supernet("gumbel_hard", True, **kw)
        for m in (a, b):
            with torch.no_grad():
                m.arch["cell"].alpha[:, 0] = 3.0  # mostly `none`
        assert_same(run(a, x, seed), run(b, x, seed))


def test_channels_last_is_layout_only():
    x = torch.randn(3, 3, 8, 8, dtype=torch.double)
    for name in ("softmax", "gumbel_hard"):
        a = run(supernet(name, True, channels_last=False), x)
        b = run(supernet(name, True, channels_last=True), x)
        assert_same(a, b)
    m = supernet("softmax", True, channels_last=True)
    seen = []
    m.cells[0].register_forward_hook(lambda mod, i, o: seen.append(o.is_contiguous(memory_format=torch.channels_last)))
    m(x)
    assert seen == [True]


def test_zero_weights_skipped_only_without_gradient():
    """Without a gradient to w a candidate weighted exactly 0 need not run; with one it must."""
    m_plain, m_fused = supernet("softmax", False), supernet("softmax", True)
    x = torch.randn(2, 3, 8, 8, dtype=torch.double)
    w = torch.softmax(torch.randn(6, 5, dtype=torch.double), 1)
    w[:, 3] = 0.0  # nor_conv_3x3 off everywhere
    for m in (m_plain, m_fused):
        m.arch["cell"].register_forward_hook(lambda mod, i, o: type(o)(w.clone(), None))
    with torch.no_grad():
        a, b = m_plain.train()(x), m_fused.train()(x)
    assert torch.allclose(a, b, atol=1e-12)
    conv3 = m_fused.cells[0].edges[0].ops[3][2]
    assert int(conv3.num_batches_tracked) == 0  # it did not run
    w.requires_grad_()
    m_fused(x).sum().backward()
    assert int(conv3.num_batches_tracked) == 1  # it ran: ∂L/∂w = <g, o(x)> is not zero
    assert (w.grad[:, 3] != 0).all()


def test_node_sum_gradcheck():
    torch.manual_seed(0)
    ts = [torch.randn(2, 3, 4, 4, dtype=torch.double, requires_grad=True) for _ in range(4)]
    coef = torch.tensor([0.3, 1.0], dtype=torch.double, requires_grad=True)  # 1.0: the GDAS shortcut
    bias = torch.tensor(0.0, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda c, b, *t: _NodeSum.apply(c, b, 2, *t), (coef, bias, *ts))
    assert torch.autograd.gradcheck(lambda c, *t: _NodeSum.apply(c, None, 0, *t), (coef, ts[0], ts[1]))
    other = torch.tensor([0.3, 0.7], dtype=torch.double, requires_grad=True)  # no weight of exactly 1
    for n_plain in (0, 1):
        assert torch.autograd.gradcheck(lambda c, *t: _NodeSum.apply(c, None, n_plain, *t), (other, *ts[:2 + n_plain]))
        assert torch.autograd.gradcheck(lambda c, b, *t: _NodeSum.apply(c, b, n_plain, *t),
                                        (other, bias, *ts[:2 + n_plain]))
    out = _NodeSum.apply(coef, bias, 2, *ts)
    assert torch.allclose(out, ts[0] + ts[1] + 0.3 * ts[2] + ts[3] + bias)


def test_conv_group_is_each_op_scaled():
    torch.manual_seed(0)
    ops = [ReLUConvBN(3, 5, 3, 1, 1, affine=True).double() for _ in range(3)]
    for op in ops:
        nn.init.normal_(op[2].weight)
        nn.init.normal_(op[2].bias)
    twins = [ReLUConvBN(3, 5, 3, 1, 1, affine=True).double() for _ in range(3)]
    for a, b in zip(ops, twins):
        b.load_state_dict(a.state_dict())
    x = torch.randn(4, 3, 6, 6, dtype=torch.double)
    scale = torch.tensor([0.2, 0.5, 1.5], dtype=torch.double)
    ys = conv_group(F.relu(x), ops, scale)
    for y, s, twin in zip(ys, scale, twins):
        assert torch.allclose(y, s * twin(x), atol=1e-12)
    for a, b in zip(ops, twins):
        for k, v in a[2].state_dict().items():
            assert torch.allclose(v.double(), b[2].state_dict()[k].double(), atol=1e-12), k


def test_avg_pool_3x3_is_the_pooling():
    x = torch.randn(2, 3, 5, 7, dtype=torch.double, requires_grad=True)
    pool = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
    g = torch.randn(2, 3, 5, 7, dtype=torch.double)
    a, b = avg_pool_3x3(x), pool(x)
    assert torch.allclose(a, b, atol=1e-14)
    assert torch.allclose(*(torch.autograd.grad(y, x, g)[0] for y in (a, b)), atol=1e-14)


def test_classify_and_unknown_ops_run_per_edge():
    assert classify(Zero(4, 4, 1))[0] == ZERO and classify(Identity())[0] == SKIP
    assert classify(ReLUConvBN(4, 4, 3, 1, 1))[0] == CONV and classify(Pool("avg", 4, 4, 1))[0] == POOL
    assert classify(nn.Sequential(nn.Conv2d(4, 4, 1)))[0] == OTHER
    assert classify(Pool("avg", 4, 4, 1, bn_after=True))[0] == OTHER  # the pooling has a BN: per edge
    # a user op mixed with the known ones, on a two-input DAG with an edge from each input
    torch.manual_seed(0)
    names = ["none", "skip_connect", "conv", "user"]

    def ops():
        return [Zero(4, 4, 1), Identity(), ReLUConvBN(4, 4, 3, 1, 1), nn.Sequential(nn.Tanh(), nn.Conv2d(4, 4, 1))]

    mixed = nn.ModuleList(MixedOp(ops(), names) for _ in range(4)).double()
    edges = [(0, 2), (1, 2), (0, 3), (2, 3)]
    w = torch.softmax(torch.randn(4, 4, dtype=torch.double), 1).requires_grad_()
    xs = [torch.randn(2, 4, 5, 5, dtype=torch.double, requires_grad=True) for _ in range(2)]
    fused = run_cell(list(xs), edges, mixed, w)
    nodes = list(xs)
    for j in (2, 3):
        nodes.append(sum(mixed[e](nodes[i], w[e]) for e, (i, jj) in enumerate(edges) if jj == j))
    assert torch.allclose(fused[3], nodes[3], atol=1e-12)
    ga = torch.autograd.grad(fused[3].sum(), [w, *xs, *mixed.parameters()])
    gb = torch.autograd.grad(nodes[3].sum(), [w, *xs, *mixed.parameters()])
    for a, b in zip(ga, gb):
        assert torch.allclose(a, b, atol=1e-10)


def test_autocast_mixed_precision_is_no_worse_than_the_per_edge_path():
    """Under autocast (bf16 convolutions, float32 BN parameters) the node sums mix dtypes; the
    fused α gradient is as close to the float32 one as the per-edge path's."""
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    grads = {}
    for amp in (False, True):
        for fused in (False, True):
            torch.manual_seed(0)
            model = get_space("nb201").build_supernet(build_estimator("softmax"), num_classes=3, C=4, N=1,
                                                      generator=torch.Generator().manual_seed(0), fused=fused)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                out = model(x)
            out.float().sum().backward()
            grads[amp, fused] = model.arch["cell"].alpha.grad
    ref = grads[False, False]
    assert torch.allclose(grads[False, True], ref, atol=1e-5)
    err = {fused: float((grads[True, fused] - ref).norm() / ref.norm()) for fused in (False, True)}
    assert torch.isfinite(grads[True, True]).all() and err[True] < 1.5 * err[False] + 0.02, err


def test_kept_constants_serve_training_after_an_inference_mode_forward():
    """The fused path keeps the pooling constants and the weight-index tensors it builds; one built
    under torch.inference_mode (the latency profiler's forward) cannot be saved for backward, so
    none is kept there: a training step after such a forward still runs, with the same values and
    gradients as on a model that never saw inference mode."""
    from nas.supernet import fused
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    fresh = run(supernet("softmax", True, channels_last=True), x)
    fused._POOL_CONSTANTS.clear()
    model = supernet("softmax", True, channels_last=True)
    with torch.inference_mode():
        model.eval()(x)
    assert all(not t.is_inference() for pair in fused._POOL_CONSTANTS.values() for t in pair)
    assert_same(run(model, x), fresh, atol=0)
