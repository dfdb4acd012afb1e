"""The relaxations of ALGORITHMS.md §1: forward values by hand, gradients by finite differences,
straight-through identities, Gumbel sample frequencies, derive, single-path execution."""
import math

import pytest
import torch
import torch.nn.functional as F

from nas.errors import ConfigError
from nas.estimators import ESTIMATORS, build_estimator
from nas.estimators.base import BINARY, CATEGORICAL
from nas.supernet import Choice
from nas.spaces import get_space

ALPHA = [[0.3, -1.2, 2.0, 0.0], [1.5, 1.4, -0.7, 0.2]]
GATES = {
    "sigmoid": lambda x: 1 / (1 + math.exp(-x)),
    "tanh": lambda x: math.tanh(x) / 2 + 0.5,
    "softsign": lambda x: x / (1 + abs(x)) / 2 + 0.5,
}


def params(alpha, dtype=torch.float32, grad=False):
    return {"alpha": torch.tensor(alpha, dtype=dtype, requires_grad=grad)}


# ------------------------------------------------------------------ surrogates: values by hand

@pytest.mark.parametrize("tau", [1.0, 0.5, 4.0])
def test_softmax_categorical_and_binary_by_hand(tau):
    est = build_estimator("softmax", tau=tau)
    w = est.sample(params(ALPHA), CATEGORICAL, True).weights
    for r, row in enumerate(ALPHA):
        z = sum(math.exp(a / tau) for a in row)
        for k, a in enumerate(row):
            assert w[r, k].item() == pytest.approx(math.exp(a / tau) / z, rel=1e-6)
    b = est.sample(params(ALPHA[0]), BINARY, True).weights
    for k, a in enumerate(ALPHA[0]):
        assert b[k].item() == pytest.approx(1 / (1 + math.exp(-a / tau)), rel=1e-6)


@pytest.mark.parametrize("name", list(GATES))
@pytest.mark.parametrize("tau", [1.0, 0.25])
def test_gate_surrogates_by_hand_binary_and_per_candidate(name, tau):
    """``g(λα)`` with λ = 1/τ on every entry; categorical choices get independent gates (FairDARTS)."""
    est = build_estimator(name, tau=tau)
    g = GATES[name]
    b = est.sample(params(ALPHA[0]), BINARY, True)
    assert b.index is None
    for k, a in enumerate(ALPHA[0]):
        assert b.weights[k].item() == pytest.approx(g(a / tau), rel=1e-6)
    c = est.sample(params(ALPHA), CATEGORICAL, True)
    assert c.index is None
    for r, row in enumerate(ALPHA):
        for k, a in enumerate(row):
            assert c.weights[r, k].item() == pytest.approx(g(a / tau), rel=1e-6)
    # probs of a categorical choice: the gates normalised per row; derive: argmax of α
    p = est.probs(params(ALPHA), CATEGORICAL)
    row = [g(a / tau) for a in ALPHA[1]]
    assert p[1, 0].item() == pytest.approx(row[0] / sum(row), rel=1e-6)
    assert est.derive(params(ALPHA), CATEGORICAL).tolist() == [2, 0]


@pytest.mark.parametrize("name,kind", [(n, k) for n in ("softmax", *GATES) for k in (CATEGORICAL, BINARY)])
def test_surrogate_gradients_match_finite_differences(name, kind):
    est = build_estimator(name, tau=0.7)
    a = torch.tensor(ALPHA if kind == CATEGORICAL else ALPHA[0], dtype=torch.float64, requires_grad=True)
    c = torch.randn(a.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert torch.autograd.gradcheck(lambda x: (est.sample({"alpha": x}, kind, True).weights * c).sum(), (a,))


@pytest.mark.parametrize("kind", [CATEGORICAL, BINARY])
def test_gumbel_soft_gradient_matches_finite_differences_at_fixed_noise(kind):
    est = build_estimator("gumbel", tau=0.8)
    a = torch.tensor(ALPHA if kind == CATEGORICAL else ALPHA[0], dtype=torch.float64, requires_grad=True)

    def f(x):
        with torch.random.fork_rng():
            torch.manual_seed(3)  # the same noise at every evaluation: reparameterised gradient
            return est.sample({"alpha": x}, kind, True).weights
    assert torch.autograd.gradcheck(f, (a,))


# ------------------------------------------------------------------ gumbel

def test_gumbel_soft_sample_by_hand():
    tau = 0.5
    est = build_estimator("gumbel", tau=tau, tau_end=tau)
    a = torch.tensor(ALPHA)
    torch.manual_seed(7)
    w = est.sample({"alpha": a}, CATEGORICAL, True).weights
    torch.manual_seed(7)
    u = torch.rand(a.shape).clamp(1e-6, 1 - 1e-6)
    for r, row in enumerate(ALPHA):
        lse = math.log(sum(math.exp(x) for x in row))
        z = [(x - lse - math.log(-math.log(u[r, k].item()))) / tau for k, x in enumerate(row)]
        zs = sum(math.exp(v) for v in z)
        for k in range(4):
            assert w[r, k].item() == pytest.approx(math.exp(z[k]) / zs, rel=1e-5)
    torch.manual_seed(7)
    b = est.sample({"alpha": a[0]}, BINARY, True).weights
    for k, x in enumerate(ALPHA[0]):  # binary concrete sigmoid((α + log U - log(1-U))/τ)
        uk = u[0, k].item()
        assert b[k].item() == pytest.approx(1 / (1 + math.exp(-(x + math.log(uk) - math.log(1 - uk)) / tau)), rel=1e-5)


@pytest.mark.parametrize("name", ["gumbel", "gumbel_hard"])
@pytest.mark.parametrize("tau", [0.3, 3.0])
def test_gumbel_sample_frequencies_match_softmax_alpha(name, tau):
    """Gumbel-max: the argmax of a sample is distributed as softmax(α), whatever τ."""
    est = build_estimator(name, tau=tau, tau_end=tau)
    alpha = torch.tensor([1.0, 0.0, -1.0, 2.0, 0.5])
    n = 40000
    torch.manual_seed(0)
    s = est.sample({"alpha": alpha.expand(n, 5).clone()}, CATEGORICAL, True)
    picks = torch.tensor(s.index) if s.index is not None else s.weights.argmax(1)
    freq = torch.bincount(picks, minlength=5).float() / n
    assert torch.allclose(freq, F.softmax(alpha, 0), atol=0.01), (freq, F.softmax(alpha, 0))
    gate = torch.tensor([0.8, -1.5, 0.0])
    b = est.sample({"alpha": gate.expand(n, 3).clone()}, BINARY, True).weights
    assert torch.allclose((b > 0.5).float().mean(0), gate.sigmoid(), atol=0.01)


def test_gumbel_hard_is_exactly_one_hot_and_grads_through_soft_sample():
    est = build_estimator("gumbel_hard", tau=2.0, tau_end=2.0)
    a = torch.tensor(ALPHA, requires_grad=True)
    c = torch.randn(2, 4)
    torch.manual_seed(5)
    s = est.sample({"alpha": a}, CATEGORICAL, True)
    assert s.index == s.weights.argmax(1).tolist()
    assert torch.equal(s.weights.detach(), F.one_hot(torch.tensor(s.index), 4).float())
    (s.weights * c).sum().backward()
    a2 = torch.tensor(ALPHA, requires_grad=True)
    torch.manual_seed(5)
    (build_estimator("gumbel", tau=2.0, tau_end=2.0).sample({"alpha": a2}, CATEGORICAL, True).weights * c).sum().backward()
    assert torch.allclose(a.grad, a2.grad)  # ĥ = onehot - h.detach() + h: the gradient of h


def test_gumbel_with_non_finite_logits_is_an_error_not_an_endless_loop():
    from nas.errors import NasError
    for name in ("gumbel", "gumbel_hard"):
        est = build_estimator(name, tau=1.0)
        with pytest.raises(NasError, match="stayed non-finite after 10 draws .*finite: False.*lower optim.arch.lr"):
            est.sample({"alpha": torch.tensor([[0.0, float("nan"), 1.0]])}, CATEGORICAL, True)


def test_gumbel_resamples_when_the_sample_overflows(monkeypatch):
    import nas.estimators.gumbel as g
    est = build_estimator("gumbel", tau=1.0)
    noises = [torch.full((2, 4), float("nan")), torch.zeros(2, 4)]
    monkeypatch.setattr(g, "gumbel_noise", lambda like: noises.pop(0))
    w = est.sample(params(ALPHA), CATEGORICAL, True).weights
    assert torch.isfinite(w).all() and not noises
    assert torch.allclose(w, F.softmax(torch.tensor(ALPHA), -1))


# ------------------------------------------------------------------ straight-through estimator

def test_ste_forward_is_hard_and_backward_is_the_identity():
    est = build_estimator("ste")
    a = torch.tensor(ALPHA, requires_grad=True)
    s = est.sample({"alpha": a}, CATEGORICAL, True)
    assert torch.equal(s.weights.detach(), torch.tensor([[0., 0., 1., 0.], [1., 0., 0., 0.]]))
    assert s.index is None  # the exact STE gradient needs every candidate's output
    c = torch.randn(2, 4)
    (s.weights * c).sum().backward()
    assert torch.equal(a.grad, c)  # ∂L/∂α = ∂L/∂w
    g = torch.tensor([0.4, -0.1, 0.0, 2.0], requires_grad=True)
    b = est.sample({"alpha": g}, BINARY, True).weights
    assert torch.equal(b.detach(), torch.tensor([1., 0., 0., 1.]))  # 1[α > 0], strict
    (b * c[0]).sum().backward()
    assert torch.equal(g.grad, c[0])
    ev = est.sample({"alpha": a}, CATEGORICAL, False)
    assert ev.index == [2, 0] and not ev.weights.requires_grad
    assert build_estimator("ste", single_path=True).sample({"alpha": a}, CATEGORICAL, True).index == [2, 0]


# ------------------------------------------------------------------ derive, interface, errors

@pytest.mark.parametrize("name", [n for n in ESTIMATORS.names() if n != "bop"])
def test_derive_is_argmax_of_the_logits(name):
    est = build_estimator(name)
    a = torch.tensor([[0.0, 1e-7, -1.0], [3.0, 2.0, 2.5]])
    assert est.derive({"alpha": a}, CATEGORICAL).tolist() == [1, 0]
    # a temperature or float32 rounding of sigmoid(1e-9) = 0.5 does not decide a gate
    assert est.derive({"alpha": torch.tensor([1e-9, -1e-9, 0.0])}, BINARY).tolist() == [True, False, False]


@pytest.mark.parametrize("name", ESTIMATORS.names())
@pytest.mark.parametrize("kind", [CATEGORICAL, BINARY])
def test_every_estimator_on_a_choice(name, kind):
    """Tiny forward/backward through a Choice: finite weights, gradient reaches the parameters,
    eval mode deterministic, derive of the right type."""
    torch.manual_seed(0)
    est = build_estimator(name)
    ch = Choice(est, 3, ["a", "b", "c", "d"] if kind == CATEGORICAL else (), kind=kind,
                generator=torch.Generator().manual_seed(0))
    s = ch()
    shape = (3, 4) if kind == CATEGORICAL else (3,)
    assert s.weights.shape == shape and torch.isfinite(s.weights).all()
    (s.weights * torch.arange(1.0, 1 + s.weights.numel()).view(shape)).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in ch.parameters())
    ch.eval()
    assert torch.equal(ch().weights, ch().weights)
    d = ch.derive()
    assert d.dtype == (torch.long if kind == CATEGORICAL else torch.bool) and d.shape == (3,)
    p = ch.probs()
    if kind == CATEGORICAL:
        assert torch.allclose(p.sum(-1), torch.ones(3))
    assert ((p >= 0) & (p <= 1)).all()


def test_choice_shapes_are_enforced():
    for name in ("softmax", "bop"):
        with pytest.raises(ValueError, match="shape"):
            build_estimator(name).create((2, 3), BINARY)


@pytest.mark.parametrize("kw, pattern", [
    (dict(name="softmax", noise="adaptive"), "noise=adaptive works only with estimator.name bop or ste"),
    (dict(name="gumbel_hard", noise="adaptive"), "not 'gumbel_hard'"),
    (dict(name="ste", noise="adaptive", single_path=True), "single_path=true cannot be combined"),
    (dict(name="bop", noise="adaptive", sigma0=0.7), "sigma0 must lie in"),
    (dict(name="bop", noise="gaussian"), "unknown noise 'gaussian'"),
    (dict(name="bop", tau=1.0), "estimator.tau is not used by estimator 'bop'"),
    (dict(name="softmax", single_path=True), "estimator.single_path is not used by estimator 'softmax'"),
    (dict(name="gumbel_hard", single_path=False), "estimator.single_path is not used"),
    (dict(name="bop", gamma=2.0), "gamma must be in (0, 1]"),
    (dict(name="bop", threshold=-1.0), "threshold must be >= 0"),
    (dict(name="softmax", schedule="step"), "unknown kind 'step'"),
])
def test_bad_estimator_settings_are_config_errors(kw, pattern):
    with pytest.raises(ConfigError) as e:
        build_estimator(**kw)
    assert pattern in str(e.value)


# ------------------------------------------------------------------ which candidates run



# `none` is skipped by the dense mixed op: its output, and its gradient, are zero anyway
DENSE = {(e, k) for e in range(6) for k, op in enumerate(get_space("nb201").ops) if op != "none"}


def run_counts(name, training, **kw):
    torch.manual_seed(0)
    # unfused: the hooks count op modules, which the fused path (tests/test_fused.py) does not call
    model = get_space("nb201").build_supernet(build_estimator(name, **kw), num_classes=3, C=4, N=1,
                                              generator=torch.Generator().manual_seed(0), fused=False)
    calls = {}
    cell = model.cells[0]
    for e, mixed in enumerate(cell.edges):
        for k, op in enumerate(mixed.ops):
            op.register_forward_hook(lambda m, i, o, key=(e, k): calls.__setitem__(key, 1))
    model.train(training)
    out = model(torch.randn(2, 3, 8, 8))
    if training:
        out.sum().backward()
    return model, calls


@pytest.mark.parametrize("name", ["ste", "bop"])
def test_ste_and_bop_run_all_candidates_in_training_unless_single_path(name, one_thread):
    model, calls = run_counts(name, True)
    assert set(calls) == DENSE  # every candidate of every edge
    model, calls = run_counts(name, True, single_path=True)
    picks = model.arch["cell"].derive().tolist()
    assert set(calls) == {(e, picks[e]) for e in range(6)}
    grad = next(model.arch["cell"].parameters()).grad
    assert grad is not None and (grad != 0).sum() > 6  # zero-valued terms still carry gradient
    model, calls = run_counts(name, False)
    assert set(calls) == {(e, k) for e, k in enumerate(model.arch["cell"].derive().tolist())}


@pytest.mark.parametrize("name", ["ste", "bop"])
def test_noise_runs_all_candidates_in_training_and_one_at_eval(name, one_thread):
    _, calls = run_counts(name, True, noise="adaptive")
    assert set(calls) == DENSE
    model, calls = run_counts(name, False, noise="adaptive")
    assert set(calls) == {(e, k) for e, k in enumerate(model.arch["cell"].derive().tolist())}
