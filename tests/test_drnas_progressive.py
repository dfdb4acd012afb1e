"""DrNAS's progressive search (nas/searcher/progressive.py): a choice's mask (zeros, renormalised
rows, no gradient to the pruned logits, derive never picks a pruned candidate), the pruned ops
skipped, Net2Wider widening (old channels kept, new ones copies, momentum with the same indices),
the stages at the right steps, one-line refusals, resume bit for bit and equal seeds equal runs."""
import pytest
import torch
from torch import nn

from nas.errors import ConfigError
from nas.estimators import build_estimator
from nas.ops.common import FactorizedReduce, ReLUConvBN
from nas.searcher.derive import load_supernet
from nas.searcher.loop import Searcher
from nas.searcher.optim import build_optimizers
from nas.searcher.registries import search_hooks
from nas.searcher.run import run_search
from nas.engine.checkpoint import load_checkpoint
from nas.spaces import get_space
from nas.supernet.choice import Choice
from nas.supernet.partial import PartialMixedOp
from nas.supernet.widen import check_widening, widen_op, widen_optimizer_state, widen_partial

from test_resume import assert_same, tiny


# both runs of a comparison on one thread: float reductions happen in the same order
pytestmark = pytest.mark.usefixtures("one_thread")


MASK = torch.tensor([[True, False, True, True], [False, True, False, True]])


# ------------------------------------------------------------------ the mask
def test_masked_softmax_by_hand_and_no_gradient_to_the_pruned_logits():
    c = Choice(build_estimator("softmax"), 2, list("abcd")).double()
    with torch.no_grad():
        c.alpha.copy_(torch.tensor([[0.3, 2.0, -0.5, 0.1], [1.5, -0.2, 0.7, 0.4]], dtype=torch.float64))
    c.set_mask(MASK)
    w = c().weights
    a = c.alpha.detach()
    for e in range(2):
        kept = MASK[e]
        assert torch.all(w[e][~kept] == 0)  # exactly
        want = torch.softmax(a[e][kept], 0)  # a softmax over the kept logits only
        assert torch.allclose(w[e][kept], want, atol=1e-15)
    coef = torch.tensor([[1.0, -2.0, 3.0, 0.5], [-1.0, 2.0, 0.25, 4.0]], dtype=torch.float64)
    (g,) = torch.autograd.grad((c().weights * coef).sum(), c.alpha)
    assert g[~MASK].abs().max() < 1e-15
    # the kept logits' gradient against central differences
    h = 1e-6
    for e, k in MASK.nonzero().tolist():
        with torch.no_grad():
            c.alpha[e, k] += h
            up = (c().weights * coef).sum()
            c.alpha[e, k] -= 2 * h
            down = (c().weights * coef).sum()
            c.alpha[e, k] += h
        assert float(g[e, k]) == pytest.approx(float((up - down) / (2 * h)), abs=1e-8)


def test_masked_dirichlet_is_the_sample_renormalised_over_the_kept():
    c = Choice(build_estimator("dirichlet"), 2, list("abcd"), generator=torch.Generator().manual_seed(1))
    c.set_mask(MASK)
    torch.manual_seed(3)
    w = c().weights
    torch.manual_seed(3)
    raw = build_estimator("dirichlet").sample(c.params(), "categorical", True).weights
    want = raw * MASK / (raw * MASK).sum(-1, keepdim=True)
    assert torch.equal(w, want)
    assert torch.all(w[~MASK] == 0) and torch.allclose(w.sum(-1), torch.ones(2))
    p = c.probs()
    assert torch.all(p[~MASK] == 0) and torch.allclose(p.sum(-1), torch.ones(2))


def test_derive_and_one_hot_samples_never_pick_a_pruned_candidate():
    for name in ("dirichlet", "softmax", "gumbel_hard"):
        c = Choice(build_estimator(name), 2, list("abcd"))
        with torch.no_grad():  # the largest logit of every row is a pruned one
            c.alpha.copy_(torch.tensor([[0.0, 5.0, 1.0, 2.0], [4.0, 0.5, 3.0, 1.0]]))
        c.set_mask(MASK)
        assert c.derive().tolist() == [3, 3]  # the most probable kept candidate
        if name == "gumbel_hard":
            torch.manual_seed(0)
            for _ in range(30):
                s = c()
                assert all(MASK[e, k] for e, k in enumerate(s.index))
                assert torch.all(s.weights[~MASK] == 0)
    # the mask travels in the state dict
    d = Choice(build_estimator("dirichlet"), 2, list("abcd"))
    d.load_state_dict(c.state_dict())
    assert torch.equal(d.mask, MASK)
    d.load_state_dict(Choice(build_estimator("dirichlet"), 2, list("abcd")).state_dict())
    assert d.mask is None


def test_a_mask_must_keep_a_candidate_per_row():
    c = Choice(build_estimator("softmax"), 2, list("abcd"))
    with pytest.raises(Exception, match="at least one candidate"):
        c.set_mask(torch.tensor([[True] * 4, [False] * 4]))


def nb201(fused=True, K=2, C=8, estimator="softmax"):
    return get_space("nb201").build_supernet(build_estimator(estimator), num_classes=3, C=C, N=1,
                                             partial_channels=K, fused=fused,
                                             generator=torch.Generator().manual_seed(0)).double()


@pytest.mark.parametrize("fused", [True, False])
def test_pruned_ops_do_not_run_and_the_value_is_unchanged(fused):
    torch.manual_seed(0)
    model = nb201(fused)
    ref = nb201(fused)
    ref.load_state_dict(model.state_dict())
    mask = torch.ones(6, 5, dtype=torch.bool)
    mask[:, 3] = False  # nor_conv_3x3 pruned on every edge
    mask[0, 2] = False
    model.arch["cell"].set_mask(mask)
    calls = []
    for cell in model.cells:
        for e, m in enumerate(getattr(cell, "edges", [])):
            for k, op in enumerate(m.ops):
                op.register_forward_hook(lambda *_, e=e, k=k: calls.append((e, k)))
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    out = model(x)
    assert calls and all(mask[e, k] for e, k in calls)
    # the reference: every op runs, with the masked weights handed in by hand
    w = model.arch["cell"]().weights.detach()
    ref.arch["cell"].forward = lambda: __import__("nas").estimators.base.Sample(w)
    assert torch.allclose(out, ref(x), atol=1e-12)


# ------------------------------------------------------------------ widening
def test_widening_keeps_the_old_channels_and_copies_new_ones_with_the_momentum():
    torch.manual_seed(0)
    op = ReLUConvBN(2, 2, 3, 1, 1, affine=True).double()
    conv, bn = op[1], op[2]
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.1, 0.2], dtype=torch.float64))
        bn.running_var.copy_(torch.tensor([1.5, 2.5], dtype=torch.float64))
        bn.weight.copy_(torch.tensor([0.7, 0.9], dtype=torch.float64))
    W, rm = conv.weight.detach().clone(), bn.running_mean.clone()
    opt = torch.optim.SGD(op.parameters(), lr=0.1, momentum=0.9)
    for p in op.parameters():
        opt.state[p]["momentum_buffer"] = 2 * p.detach().clone() + 1
    widened = {}
    widen_op(op, 2, 5, torch.Generator().manual_seed(4), widened)
    widen_optimizer_state(opt, widened)
    W2 = conv.weight.detach()
    assert W2.shape == (5, 5, 3, 3) and conv.in_channels == conv.out_channels == bn.num_features == 5
    assert torch.equal(W2[:2, :2], W)  # the old channels exactly
    # every new input channel copies one old input channel (the same one in every row) ...
    for i in range(2, 5):
        assert any(torch.equal(W2[:, i], W2[:, j]) for j in range(2))
    # ... and every new output channel one old output channel, whose BN channel it copies too
    for o in range(2, 5):
        src = [j for j in range(2) if torch.equal(W2[o], W2[j])]
        assert len(src) == 1
        assert bn.running_mean[o] == rm[src[0]] and bn.weight[o] == bn.weight[src[0]]
    # the momentum widened with the very same indices
    for p in op.parameters():
        assert torch.equal(opt.state[p]["momentum_buffer"], 2 * p.detach() + 1)
    assert op(torch.randn(2, 5, 4, 4, dtype=torch.float64)).shape == (2, 5, 4, 4)


def test_a_factorized_reduce_widens_each_half_and_its_bn_with_both():
    torch.manual_seed(0)
    op = FactorizedReduce(4, 4, affine=False)
    with torch.no_grad():
        op.bn.running_mean.copy_(torch.arange(4.0))
    w1, w2 = op.conv_1.weight.detach().clone(), op.conv_2.weight.detach().clone()
    widen_op(op, 4, 8, torch.Generator().manual_seed(0), {})
    assert op.conv_1.weight.shape == op.conv_2.weight.shape == (4, 8, 1, 1)
    assert torch.equal(op.conv_1.weight[:2, :4], w1) and torch.equal(op.conv_2.weight[:2, :4], w2)
    rm = op.bn.running_mean
    # BN channels 0-3 follow conv_1 (old 0, 1 and two copies), 4-7 conv_2 (old 2, 3 and copies)
    assert rm[:2].tolist() == [0, 1] and rm[4:6].tolist() == [2, 3]
    assert set(rm[2:4].tolist()) <= {0, 1} and set(rm[6:].tolist()) <= {2, 3}
    for o in (2, 3):  # a copied output channel carries its source's weights and BN statistics
        assert torch.equal(op.conv_1.weight[o], op.conv_1.weight[int(rm[o])])
    assert op(torch.randn(2, 8, 6, 6)).shape == (2, 8, 3, 3)


def test_widened_partial_supernet_runs_fused_as_per_edge():
    torch.manual_seed(0)
    a, b = nb201(True, K=4), nb201(False, K=4)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    a(x), b(x)  # the fused cell caches its plan before widening
    for m in (a, b):
        widen_partial(m, 2, torch.Generator().manual_seed(5))
    ks = {m.K for m in a.modules() if isinstance(m, PartialMixedOp)}
    assert ks == {2}
    assert torch.allclose(a(x), b(x), atol=1e-12)


class Odd(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.lin = nn.Linear(c, c)


@pytest.mark.parametrize("ks,model_K,why", [
    ([4, 2], 1, "needs partial channels"),
    ([2, 1], 4, "first stage's K"),
    ([4, 3], 4, "does not divide"),
    ([2, 4], 2, "may only fall"),
])
def test_widening_refusals_are_one_line(ks, model_K, why):
    model = nb201(True, K=model_K) if model_K > 1 else nb201(True, K=1)
    with pytest.raises(ConfigError, match=why) as e:
        check_widening(model, ks, "optim.hooks.drnas_progressive.partial_channels")
    assert "\n" not in str(e.value)


def test_an_op_that_cannot_be_widened_is_refused():
    model = nn.ModuleList([PartialMixedOp([ReLUConvBN(2, 2, 1, 1, 0, False), Odd(2)], ["conv", "odd"], 4)])
    with pytest.raises(ConfigError, match="op 'odd' holds a Odd, which cannot be widened"):
        check_widening(model, [4, 2], "k")


# ------------------------------------------------------------------ the hook in the loop
def searcher(hooks, steps=4, epochs=2, K=4, estimator="dirichlet"):
    torch.manual_seed(0)
    est = build_estimator(estimator)
    model = get_space("nb201").build_supernet(est, num_classes=3, C=8, N=1, partial_channels=K,
                                              generator=torch.Generator().manual_seed(0))
    opts = build_optimizers(model, est, epochs=epochs)
    batches = [(torch.randn(6, 3, 8, 8), torch.randint(0, 3, (6,))) for _ in range(steps)]
    return Searcher(model, est, opts, batches, batches, epochs=epochs,
                    step_hooks=search_hooks({}, {"drnas_progressive": hooks}))


def test_stages_change_at_their_step_and_warm_up_within_each():
    s = searcher({"stages": [0.75, 0.25], "keep": [5, 2], "partial_channels": [4, 2], "warmup": 0.25})
    h, model = s.step_hooks[0], s.model
    seen, arch = [], []
    for epoch in range(2):
        s.train_epoch(epoch, on_step=lambda step, m: seen.append(
            (h.stage, h.held, model.cells[0].edges[0].K, model.arch["cell"].mask is None)))
        arch.append(s.arch_steps)
    # 8 steps: stage 1 steps 0-5 (the first round(0.25·6) = 2 held), stage 2 steps 6-7 (none held)
    assert [st for st, *_ in seen] == [0] * 6 + [1] * 2
    assert [held for _, held, *_ in seen] == [True, True] + [False] * 6
    assert [k for *_, k, _ in seen] == [4] * 6 + [2] * 2
    assert [unmasked for *_, unmasked in seen] == [True] * 6 + [False] * 2
    assert arch == [2, 4]
    mask = model.arch["cell"].mask
    assert mask.sum(1).tolist() == [2] * 6
    ops = model.op_names
    for e, op in enumerate(model.genotype().ops):
        assert mask[e, ops.index(op)], (e, op)
    # the momentum of a widened conv has its new shape
    conv = model.cells[0].edges[0].ops[ops.index("nor_conv_1x1")][1]
    assert conv.weight.shape[:2] == (4, 4)
    assert s.opt.weights.state[conv.weight]["momentum_buffer"].shape == conv.weight.shape


@pytest.mark.parametrize("opts,why", [
    ({"stages": [0.5, 0.5], "keep": [5]}, "one entry per stage"),
    ({"stages": [0.5, 0.4]}, "must sum to 1"),
    ({"keep": [3, 4]}, "may only fall"),
    ({"keep": [6, 3]}, "exceeds the 5 candidates"),
    ({"partial_channels": [2, 1]}, "first stage's K"),
    ({"stages": [1.5, -0.5]}, "stages"),
    ({"warmup": 1.0}, "warmup"),
])
def test_hook_options_are_refused_in_one_line(opts, why):
    with pytest.raises(ConfigError, match=why) as e:
        searcher(opts)
    assert "\n" not in str(e.value)


PROGRESSIVE = ["estimator.name=dirichlet", "space.partial_channels=4", "trainer.epochs=4",
               "optim.hooks={drnas_progressive: {stages: [0.5, 0.5], keep: [5, 3], "
               "partial_channels: [4, 2], warmup: 0.25}}"]


def test_resumed_in_stage_two_equals_uninterrupted_and_equal_seeds_equal_runs(tmp_path):
    cfg = tiny(*PROGRESSIVE)
    full = run_search(cfg, tmp_path / "full", quiet=True)
    again = run_search(cfg, tmp_path / "again", quiet=True)
    part = run_search(cfg, tmp_path / "split", quiet=True, stop_after=3)  # stage 2 began in epoch 3
    assert load_checkpoint(tmp_path / "split")["step_hooks"]["drnas_progressive"]["stage"] == 1
    resumed = run_search(cfg, tmp_path / "split", quiet=True, resume=True)
    a = load_checkpoint(tmp_path / "full")
    assert a["model"]["arch.cell.mask"].sum(1).tolist() == [3] * 6
    for other in ("again", "split"):
        b = load_checkpoint(tmp_path / other)
        for key in ("model", "optim", "estimator", "step_hooks"):
            assert_same(a[key], b[key], key)
    assert resumed.genotype_str == again.genotype_str == full.genotype_str
    assert resumed.metrics["history"] == full.metrics["history"]
    # derive rebuilds the widened supernet from the checkpoint
    _, _, model = load_supernet(tmp_path / "full")
    assert str(model.genotype()) == full.genotype_str


def test_the_darts_space_prunes_and_widens_its_reduction_ops_too():
    torch.manual_seed(0)
    est = build_estimator("dirichlet")
    model = get_space("darts").build_supernet(est, num_classes=3, C=8, layers=3, partial_channels=4)
    opts = build_optimizers(model, est, epochs=1)
    batches = [(torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2,))) for _ in range(2)]
    s = Searcher(model, est, opts, batches, batches, epochs=1,  # stage 2 from the second step
                 step_hooks=search_hooks({}, {"drnas_progressive": {"keep": [8, 4], "warmup": 0}}))
    s.train_epoch(0)
    choices = {name: c for name, c in model.choices().items() if c in s.step_hooks[0].choices}
    assert sorted(choices) == ["arch.normal", "arch.reduce"]
    assert all(c.mask.sum(1).tolist() == [4] * 14 for c in choices.values())
    assert {m.K for m in model.modules() if isinstance(m, PartialMixedOp)} == {2}
    g = model.genotype()
    for cell in ("normal", "reduce"):
        c = choices[f"arch.{cell}"]
        for t, (op, j) in enumerate(getattr(g, cell)):  # two inputs per node, node i's edges from sum(2..i+1)
            e = sum(2 + k for k in range(t // 2)) + j
            assert c.mask[e, c.candidates.index(op)], (cell, e, op)
