"""Adaptive noise (Neural DNF thesis; ALGORITHMS.md §1) on STE and Bop: w̃ = w + (1-2w)·σ·ε."""
import pytest
import torch
from torch import nn

from nas.estimators import AdaptiveNoise, Bop, build_estimator
from nas.estimators.base import BINARY, CATEGORICAL
from nas.searcher.optim import build_optimizers
from nas.supernet import Choice, arch_parameters


def choice(name, kind=CATEGORICAL, **kw):
    est = build_estimator(name, noise="adaptive", **kw)
    cands = list("abcd") if kind == CATEGORICAL else ()
    return Choice(est, 3, cands, kind=kind, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", ["ste", "bop"])
@pytest.mark.parametrize("kind", [CATEGORICAL, BINARY])
def test_noisy_forward_value_and_sigma_gradient_by_hand(name, kind):
    ch = choice(name, kind, sigma0=0.3)
    assert isinstance(ch.estimator, AdaptiveNoise) and ch.roles["sigma"] == "noise"
    assert torch.equal(ch.sigma.detach(), torch.full(ch.sigma.shape, 0.3))  # one σ per discrete entry
    ch.eval()
    w = ch().weights.detach()  # the discrete value, no noise at eval
    assert set(w.unique().tolist()) <= {0.0, 1.0}
    ch.train()
    torch.manual_seed(11)
    s = ch()
    torch.manual_seed(11)
    eps = torch.rand(w.shape)
    expected = w + (1 - 2 * w) * 0.3 * eps  # 1 → 1 - σε, 0 → σε
    assert torch.allclose(s.weights, expected)
    assert s.index is None  # not one-hot: every candidate runs
    c = torch.randn(w.shape)
    (s.weights * c).sum().backward()
    assert torch.allclose(ch.sigma.grad, (1 - 2 * w) * eps * c)  # ∂L/∂σ = (1-2w)·ε·∂L/∂w̃
    latent = ch.alpha if name == "ste" else ch.state
    assert torch.allclose(latent.grad, (1 - 2 * 0.3 * eps) * c)  # ∂w̃/∂w = 1 - 2σε


@pytest.mark.parametrize("name", ["ste", "bop"])
def test_noise_is_off_at_eval(name):
    ch = choice(name).eval()
    base = build_estimator(name)
    s1, s2 = ch(), ch()
    assert torch.equal(s1.weights, s2.weights)
    plain = base.sample({k: v for k, v in ch.params().items() if k != "sigma"}, CATEGORICAL, False)
    assert torch.equal(s1.weights, plain.weights) and s1.index == plain.index is not None
    assert torch.equal(ch.derive(), ch.estimator.base.derive(
        {k: v for k, v in ch.params().items() if k != "sigma"}, CATEGORICAL))


@pytest.mark.parametrize("name", ["ste", "bop"])
def test_sigma_is_trained_by_adam_and_clipped_after_every_step(name):
    torch.manual_seed(0)
    model = nn.ModuleDict({"cat": choice(name, sigma_max=0.5), "gate": choice(name, BINARY, sigma_max=0.5)})
    est = model["cat"].estimator
    model["gate"].estimator = est
    opts = build_optimizers(model, est, epochs=1, arch_lr=0.3, noise_lr=0.2)
    sigmas = arch_parameters(model, "noise")
    assert len(sigmas) == 2 and opts.arch_params["noise"] == sigmas
    noise_group = [g for g in opts.arch.param_groups if g["params"][0] is sigmas[0]][0]
    assert noise_group["lr"] == 0.2 and noise_group["weight_decay"] == 0.0
    if name == "bop":
        assert isinstance(opts.discrete, Bop)
        assert all(all(p is not q for q in sum((g["params"] for g in opts.arch.param_groups), []))
                   for p in arch_parameters(model, "discrete"))  # Adam never sees the state
    before = [s.detach().clone() for s in sigmas]
    for _ in range(4):
        model.zero_grad()
        loss = sum(((ch().weights - 0.25) ** 2).sum() for ch in model.values())
        loss.backward()
        assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in sigmas)
        opts.arch.step()
        if opts.discrete is not None:
            opts.discrete.step()
        est.after_step(opts.arch_params)
        assert all(((s >= 0) & (s <= 0.5)).all() for s in sigmas)
    assert any(not torch.equal(a, b) for a, b in zip(before, sigmas))
    # with lr 0.2 some σ hit a bound; the clip is exact
    with torch.no_grad():
        sigmas[0].copy_(torch.tensor([[-0.1, 0.3, 0.7, 0.5]] * 3))
    est.after_step(opts.arch_params)
    assert torch.equal(sigmas[0][0], torch.tensor([0.0, 0.3, 0.5, 0.5]))
    assert est.scalars()["sigma_mean"] == pytest.approx(torch.cat([s.reshape(-1) for s in sigmas]).mean().item())


def test_noise_wrapper_delegates_schedules_and_state():
    est = build_estimator("bop", noise="adaptive", gamma=1e-3, gamma_end=1e-4, schedule="linear")
    ch = Choice(est, 2, list("abc"))
    opt = est.discrete_optimizer(list(ch.parameters_by_role("discrete")))
    est.set_progress(4, 5)
    assert est.values["gamma"] == pytest.approx(1e-4) and opt.param_groups[0]["gamma"] == pytest.approx(1e-4)
    assert est.state_dict() == est.base.state_dict()
    assert "bop" in repr(est).lower() and est.name == "bop"
