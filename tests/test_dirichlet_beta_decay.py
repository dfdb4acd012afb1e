"""The Dirichlet estimator (DrNAS) and the β-DARTS Beta-Decay regulariser: values by hand,
pathwise gradients against the analytic gradient of the mean, and the λ schedule in the loop."""
import math

import pytest
import torch

from nas.config import Config, apply_overrides, from_dict, to_dict
from nas.errors import NasError
from nas.estimators import build_estimator
from nas.estimators.base import BINARY, CATEGORICAL
from nas.estimators.dirichlet import concentration
from nas.searcher.loop import Searcher, beta_decay_penalty
from nas.searcher.optim import build_optimizers
from nas.supernet.choice import Choice
from nas.spaces.base import Supernet


def test_dirichlet_eval_weights_are_the_mean_by_hand():
    est = build_estimator("dirichlet")
    a = torch.tensor([[0.0, 1.0, -1.0]])
    beta = [1.0, 2.0, math.exp(-1.0)]  # ELU(α) + 1
    want = torch.tensor([[b / sum(beta) for b in beta]])
    assert torch.allclose(est.sample({"alpha": a}, CATEGORICAL, False).weights, want)
    assert torch.allclose(est.probs({"alpha": a}, CATEGORICAL), want)
    assert est.derive({"alpha": a}, CATEGORICAL).tolist() == [1]
    # binary: Beta(ELU(α)+1, ELU(-α)+1), mean 2 / (2 + e^-1) at α = 1, 1/2 at α = 0
    g = est.sample({"alpha": torch.tensor([1.0, 0.0, -1.0])}, BINARY, False).weights
    assert torch.allclose(g, torch.tensor([2 / (2 + math.exp(-1)), 0.5, math.exp(-1) / (2 + math.exp(-1))]))


def test_dirichlet_samples_match_the_distribution_and_its_pathwise_gradient():
    torch.manual_seed(0)
    est = build_estimator("dirichlet")
    alpha = torch.tensor([[0.5, -0.3, 1.2, 0.0]], requires_grad=True)
    n = 40000
    w = est.sample({"alpha": alpha.expand(n, 4)}, CATEGORICAL, True).weights
    assert torch.allclose(w.sum(-1), torch.ones(n)) and (w > 0).all()
    mc_mean = w.mean(0)
    beta = concentration(alpha.detach())[0]
    assert torch.allclose(mc_mean.detach(), beta / beta.sum(), atol=0.006)
    # d/dα of the Monte-Carlo mean of the reparameterised samples ≈ d/dα of the exact mean
    v = torch.tensor([1.0, -2.0, 0.5, 3.0])
    (g_mc,) = torch.autograd.grad((mc_mean * v).sum(), alpha)
    a2 = alpha.detach().clone().requires_grad_(True)
    b2 = concentration(a2)
    (g_exact,) = torch.autograd.grad(((b2 / b2.sum(-1, keepdim=True)) * v).sum(), a2)
    assert torch.allclose(g_mc, g_exact, atol=0.02), (g_mc, g_exact)
    assert g_exact.abs().max() > 0.2  # the comparison is not between two near-zero vectors


def test_dirichlet_one_sample_per_forward_is_random_in_training():
    torch.manual_seed(1)
    ch = Choice(build_estimator("dirichlet"), 2, ["a", "b", "c"], generator=torch.Generator().manual_seed(0))
    assert not torch.equal(ch().weights, ch().weights)
    ch.eval()
    assert torch.equal(ch().weights, ch().weights)


def test_beta_decay_penalty_by_hand_and_its_gradient():
    a = torch.tensor([[0.0, math.log(3.0)], [1.0, 1.0]], requires_grad=True)
    gate = torch.tensor([5.0], requires_grad=True)  # binary gates are left out
    pen = beta_decay_penalty([a, gate])
    assert pen.item() == pytest.approx((math.log(4.0) + 1.0 + math.log(2.0)) / 2)
    pen.backward()
    # ∂/∂α of mean_rows logsumexp = softmax(α_row) / rows
    assert torch.allclose(a.grad, torch.tensor([[0.25, 0.75], [0.5, 0.5]]) / 2)
    assert gate.grad is None
    assert beta_decay_penalty([gate]) is None


class _Tiny(Supernet):
    """One categorical choice mixing three fixed linear maps."""

    def __init__(self, estimator):
        super().__init__()
        self.choice = Choice(estimator, 1, ["a", "b", "c"], generator=torch.Generator().manual_seed(0))
        self.lin = torch.nn.Linear(4, 3 * 2)

    def forward(self, x):
        w = self.choice().weights[0]
        return sum(w[k] * self.lin(x)[:, 2 * k:2 * k + 2] for k in range(3))


def _searcher(estimator_name="softmax", beta_decay=50.0, epochs=4):
    torch.manual_seed(0)
    est = build_estimator(estimator_name)
    model = _Tiny(est)
    opts = build_optimizers(model, est, epochs=epochs)
    batches = [(torch.randn(8, 4), torch.randint(0, 2, (8,))) for _ in range(3)]
    return Searcher(model, est, opts, batches, batches, epochs=epochs, beta_decay=beta_decay), batches


def test_beta_decay_weight_follows_the_beta_darts_schedule_and_enters_the_arch_loss():
    s, batches = _searcher(beta_decay=50.0, epochs=4)
    weights = []
    for epoch in range(4):
        s.train_epoch(epoch)
        weights.append(s.beta_weight)
    assert weights == [0.0, 12.5, 25.0, 37.5]  # λ·epoch/epochs, β-DARTS's 50·epoch/100
    x, y = batches[0]
    with_pen, _ = s.loss(x, y, with_penalty=True)
    plain, _ = s.loss(x, y, with_penalty=False)
    alpha = s.opt.arch_params["logits"][0]
    assert (with_pen - plain).item() == pytest.approx(37.5 * torch.logsumexp(alpha, -1).mean().item(), rel=1e-5)


def test_beta_decay_bad_settings_are_one_line_errors():
    with pytest.raises(NasError, match="beta_decay must be >= 0"):
        _searcher(beta_decay=-1.0)
    with pytest.raises(NasError, match="estimator 'bop' has none"):
        _searcher("bop", beta_decay=1.0)
    cfg = from_dict(Config, apply_overrides(to_dict(Config()), ["optim.arch.beta_decay=50"]))
    assert cfg.optim.arch.beta_decay == 50.0
