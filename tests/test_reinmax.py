"""ReinMax (Liu et al., NeurIPS 2023): one-hot forward values, sample frequencies, and the
gradient against the published closed form ``(2·J(π1) - J(π0)/2)·∂L/∂D`` on small categoricals,
binary gates and Bop-style {0, 1} parameters."""
import pytest
import torch
import torch.nn.functional as F

from nas.estimators import build_estimator
from nas.estimators.base import BINARY, CATEGORICAL
from nas.estimators.reinmax import reinmax_binary, reinmax_categorical
from nas.supernet import Choice


def jac(p):
    """The softmax Jacobian at p: diag(p) - p pᵀ."""
    return torch.diag(p) - torch.outer(p, p)


@pytest.mark.parametrize("tau", [1.0, 0.5, 2.0])
def test_categorical_gradient_is_the_published_closed_form(tau):
    torch.manual_seed(0)
    alpha = torch.tensor([[0.3, -1.2, 2.0, 0.0], [1.5, 1.4, -0.7, 0.2]], dtype=torch.float64, requires_grad=True)
    v = torch.tensor([[1.0, -2.0, 0.5, 3.0], [-1.0, 0.3, 2.0, 0.1]], dtype=torch.float64)  # ∂L/∂D
    est = build_estimator("reinmax", tau=tau)
    w = est.sample({"alpha": alpha}, CATEGORICAL, True).weights
    D = w.detach()
    assert torch.equal(D.sum(-1), torch.ones(2, dtype=torch.float64)) and set(D.unique().tolist()) <= {0.0, 1.0}
    (g,) = torch.autograd.grad((w * v).sum(), alpha)
    for r in range(2):
        a = alpha.detach()[r]
        pi0 = F.softmax(a, -1)
        pi1 = (D[r] + F.softmax(a / tau, -1)) / 2
        want = (2 * jac(pi1) - 0.5 * jac(pi0)) @ v[r]
        assert torch.allclose(g[r], want, atol=1e-12), (g[r], want)
    # not the straight-through estimator's J(π0)·v
    assert not torch.allclose(g[0], jac(F.softmax(alpha.detach()[0], -1)) @ v[0], atol=1e-3)


def test_categorical_samples_follow_softmax_and_eval_is_the_argmax():
    torch.manual_seed(1)
    est = build_estimator("reinmax")
    alpha = torch.tensor([[0.5, -0.3, 1.2, 0.0]])
    n = 20000
    w = est.sample({"alpha": alpha.expand(n, 4)}, CATEGORICAL, True).weights
    assert torch.allclose(w.mean(0), F.softmax(alpha[0], -1), atol=0.012)
    ev = est.sample({"alpha": alpha}, CATEGORICAL, False)
    assert ev.weights.tolist() == [[0.0, 0.0, 1.0, 0.0]] and ev.index == [2]
    assert est.derive({"alpha": alpha}, CATEGORICAL).tolist() == [2]
    # every candidate runs in training (∂L/∂D_k needs o_k(x)) unless single_path
    assert est.sample({"alpha": alpha}, CATEGORICAL, True).index is None
    assert build_estimator("reinmax", single_path=True).sample({"alpha": alpha}, CATEGORICAL, True).index is not None


@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_binary_gradient_by_hand_and_equal_to_the_two_category_case(tau):
    torch.manual_seed(2)
    alpha = torch.tensor([0.7, -1.1, 0.0, 2.5], dtype=torch.float64, requires_grad=True)
    g_out = torch.tensor([0.4, -1.3, 2.0, 0.8], dtype=torch.float64)
    est = build_estimator("reinmax", tau=tau)
    w = est.sample({"alpha": alpha}, BINARY, True).weights
    D = w.detach()
    assert set(D.tolist()) <= {0.0, 1.0}
    (g,) = torch.autograd.grad((w * g_out).sum(), alpha)
    a = alpha.detach()
    p0 = torch.sigmoid(a)
    p1 = (D + torch.sigmoid(a / tau)) / 2
    assert torch.allclose(g, (2 * p1 * (1 - p1) - 0.5 * p0 * (1 - p0)) * g_out, atol=1e-12)
    # the categorical formula on logits (0, α), the loss reading the "open" entry only
    for i in range(4):
        two = torch.stack([torch.zeros((), dtype=torch.float64), a[i]]).requires_grad_(True)
        Dc = torch.stack([1 - D[i], D[i]])
        wc = reinmax_categorical(two, Dc, tau)
        (gc,) = torch.autograd.grad(wc[1] * g_out[i], two)
        assert gc[1].item() == pytest.approx(g[i].item(), abs=1e-12)


def test_binary_samples_are_bernoulli_sigmoid_and_bop_style_states_train():
    """Bop-style {0, 1} parameters (the DNF rule pool's W, S) are binary choices: ReinMax learns
    them through latent logits, the forward value staying in {0, 1}."""
    torch.manual_seed(3)
    est = build_estimator("reinmax")
    alpha = torch.tensor([1.0, -0.5])
    w = est.sample({"alpha": alpha.expand(20000, 2)}, BINARY, True).weights
    assert torch.allclose(w.mean(0), torch.sigmoid(alpha), atol=0.012)
    assert est.sample({"alpha": alpha}, BINARY, False).weights.tolist() == [1.0, 0.0]
    # a gate pushed open by its loss opens: minimise (1 - w)² for every entry
    ch = Choice(est, 6, kind=BINARY, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(ch.parameters(), lr=0.1)
    for _ in range(200):
        opt.zero_grad()
        ((1 - ch().weights) ** 2).sum().backward()
        opt.step()
    assert ch.derive().all()


def test_reinmax_binary_value_is_exactly_the_sample():
    alpha = torch.tensor([3.0, -3.0, 0.1], requires_grad=True)
    D = torch.tensor([1.0, 0.0, 1.0])
    assert torch.equal(reinmax_binary(alpha, D, 1.0).detach(), D)


def test_reinmax_options_are_checked():
    from nas.errors import ConfigError
    with pytest.raises(ConfigError, match="estimator.gamma is not used by estimator 'reinmax'"):
        build_estimator("reinmax", gamma=0.1)
