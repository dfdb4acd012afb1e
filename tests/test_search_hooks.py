"""The search loop's regularisers and step hooks (nas/searcher/hooks.py): FairDARTS's zero-one
loss and DrNAS's KL by hand with their gradients, SDARTS's perturbations (random and PGD: in the
ε-ball, the PGD one raising the loss), Λ-DARTS's finite-difference gradient against the exact
second-order gradient, OLES's gradient-matching score and freezing, and the one-line refusals."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nas.config import Config, apply_overrides, from_dict, to_dict
from nas.errors import ConfigError
from nas.estimators import build_estimator
from nas.estimators.base import Sample
from nas.searcher.registries import search_hooks
from nas.searcher.lambda_darts import LambdaDARTS, harmony, harmony_grad
from nas.searcher.loop import Searcher
from nas.searcher.oles import OLES, cosine
from nas.searcher.optim import build_optimizers
from nas.searcher.regularisers import zero_one_loss
from nas.searcher.sdarts import SDARTS
from nas.spaces import get_space
from nas.supernet.model import Supernet
from nas.supernet.choice import Choice
from nas.supernet.taps import LayerTaps, grads_by_group


def nb201_searcher(estimator="softmax", regularisers=None, hooks=None, steps=2, mode="alternating", order=1):
    torch.manual_seed(0)
    est = build_estimator(estimator)
    model = get_space("nb201").build_supernet(est, num_classes=3, C=4, N=2,
                                              generator=torch.Generator().manual_seed(0))
    opts = build_optimizers(model, est, epochs=2)
    batches = [(torch.randn(6, 3, 8, 8), torch.randint(0, 3, (6,))) for _ in range(steps)]
    s = Searcher(model, est, opts, batches, batches, epochs=2, mode=mode, order=order,
                 step_hooks=search_hooks(regularisers or {}, hooks or {}))
    return s, batches


# ------------------------------------------------------------------ options and refusals

def test_options_are_declared_with_ranges_and_one_line_errors():
    with pytest.raises(ConfigError, match=r"^optim.regularisers.drnas_kl.weight=-1.0 is out of range; allowed: >= 0$"):
        search_hooks({"drnas_kl": {"weight": -1}}, {})
    with pytest.raises(ConfigError, match="unknown regulariser 'nope'; known: drnas_kl, fair_zero_one"):
        search_hooks({"nope": {}}, {})
    with pytest.raises(ConfigError, match="optim.hooks.sdarts.mode: 'x' is not allowed; allowed: 'rs', 'adv'"):
        search_hooks({}, {"sdarts": {"mode": "x"}})
    with pytest.raises(ConfigError, match="did you mean 'optim.hooks.sdarts.epsilon'"):
        search_hooks({}, {"sdarts": {"epsilonn": 0.1}})
    with pytest.raises(ConfigError, match="optim.hooks.oles.threshold=2.0 is out of range"):
        search_hooks({}, {"oles": {"threshold": 2}})
    # the config carries them as name -> options, set from the command line as usual
    cfg = from_dict(Config, apply_overrides(to_dict(Config()), ["optim.hooks.sdarts.mode=adv",
                                                                "optim.regularisers.drnas_kl={}"]))
    hooks = search_hooks(cfg.optim.regularisers, cfg.optim.hooks)
    assert [h.name for h in hooks] == ["drnas_kl", "sdarts"] and hooks[1].options.mode == "adv"


@pytest.mark.parametrize("spec, estimator, why", [
    ({"hooks": {"sdarts": {"mode": "adv"}}}, "bop", "PGD on the relaxed architecture weights needs continuous logits; "
                                                   "estimator 'bop' has a discrete state only"),
    ({"hooks": {"sdarts": {}}}, "bop", "smoothing the relaxed architecture weights needs continuous logits"),
    ({"regularisers": {"fair_zero_one": {}}}, "softmax", "estimator 'softmax' mixes its candidates by a distribution"),
    ({"regularisers": {"drnas_kl": {}}}, "softmax", "estimator 'softmax' defines none: use estimator.name=dirichlet"),
])
def test_combinations_that_cannot_work_are_refused_in_one_line(spec, estimator, why):
    with pytest.raises(ConfigError, match=why) as e:
        nb201_searcher(estimator, **spec)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("hooks", [{"sdarts": {}}, {"lambda_darts": {}}, {"oles": {}}])
def test_weight_step_hooks_refuse_the_joint_loop(hooks):
    with pytest.raises(ConfigError, match="optim.mode"):
        nb201_searcher(hooks=hooks, mode="joint")


def test_oles_refuses_the_unrolled_step():
    with pytest.raises(ConfigError, match="optim.order=1"):
        nb201_searcher(hooks={"oles": {}}, order=2)


# ------------------------------------------------------------------ FairDARTS, DrNAS

def test_zero_one_loss_by_hand_and_gradient():
    a = torch.tensor([[0.3, -1.2], [2.0, 0.0]], dtype=torch.float64, requires_grad=True)
    s = torch.sigmoid(a)
    loss = zero_one_loss([s])
    assert loss.item() == pytest.approx(-sum((1 / (1 + math.exp(-x)) - 0.5) ** 2 for x in [0.3, -1.2, 2.0, 0.0]) / 4)
    (g,) = torch.autograd.grad(loss, a)
    sd = s.detach()
    assert torch.allclose(g, -(2 / 4) * (sd - 0.5) * sd * (1 - sd))


def test_fair_zero_one_enters_the_arch_loss_with_its_weight():
    s, batches = nb201_searcher("sigmoid", regularisers={"fair_zero_one": {"weight": 10.0}})
    x, y = batches[0]
    with torch.no_grad():
        s.model.arch["cell"].alpha.normal_(generator=torch.Generator().manual_seed(2))
    with_pen, _ = s.loss(x, y, with_penalty=True)
    plain, _ = s.loss(x, y, with_penalty=False)
    alpha = s.model.arch["cell"].alpha.detach()
    want = -10.0 * ((torch.sigmoid(alpha) - 0.5) ** 2).mean()
    assert (with_pen - plain).item() == pytest.approx(want.item(), rel=1e-5)


def kl_dirichlet_by_hand(beta, prior):
    K = len(beta)
    b0 = sum(beta)
    dg = lambda v: torch.digamma(torch.tensor(v, dtype=torch.float64)).item()  # noqa: E731
    return (math.lgamma(b0) - sum(math.lgamma(b) for b in beta) - math.lgamma(K * prior) + K * math.lgamma(prior)
            + sum((b - prior) * (dg(b) - dg(b0)) for b in beta))


def test_drnas_kl_by_hand_and_gradcheck():
    s, _ = nb201_searcher("dirichlet", regularisers={"drnas_kl": {"weight": 1.0, "prior": 2.0}})
    reg = s.step_hooks[0]
    choice = s.model.arch["cell"]
    with torch.no_grad():
        choice.alpha.copy_(torch.randn_like(choice.alpha, generator=torch.Generator().manual_seed(3)))
    beta = (F.elu(choice.alpha.detach().double()) + 1).tolist()
    want = sum(kl_dirichlet_by_hand(row, 2.0) for row in beta)
    assert reg.arch_term().item() == pytest.approx(want, rel=1e-5)
    # gradient in α by central finite differences
    a = choice.alpha.detach().double()

    def kl_of(alpha):
        d = torch.distributions.Dirichlet(F.elu(alpha) + 1)
        return torch.distributions.kl_divergence(d, torch.distributions.Dirichlet(torch.full_like(alpha, 2.0))).sum()
    assert torch.autograd.gradcheck(kl_of, (a.clone().requires_grad_(),))


# ------------------------------------------------------------------ SDARTS

def test_sdarts_epsilon_grows_linearly_per_epoch():
    h = SDARTS(SDARTS.Options(epsilon=0.03, epsilon_end=0.3))
    eps = []
    for e in range(4):
        h.start_epoch(e, 4)
        eps.append(h.epsilon)
    assert eps == pytest.approx([0.03, 0.03 + 0.27 / 4, 0.03 + 0.27 / 2, 0.03 + 0.27 * 3 / 4])


def test_sdarts_rs_perturbs_the_weight_step_only_within_the_ball():
    s, batches = nb201_searcher(hooks={"sdarts": {"mode": "rs", "epsilon": 0.05, "epsilon_end": 0.05}})
    h = s.step_hooks[0]
    h.start_epoch(0, 2)
    choice = s.model.arch["cell"]
    clean = choice().weights.detach().clone()
    seen = []
    handle = choice.register_forward_hook(lambda m, a, out: seen.append(out.weights.detach().clone()))
    # a hook registered after the perturbation's sees its output: register ours last
    h.before_weight_step(*batches[0])
    handle.remove()
    handle = choice.register_forward_hook(lambda m, a, out: seen.append(out.weights.detach().clone()))
    s.model(batches[0][0])
    h.after_weight_step()
    delta = seen[-1] - clean
    assert 0 < delta.abs().max() <= 0.05 + 1e-7
    assert delta.abs().mean() > 0.01  # uniform on [-ε, ε]: mean |δ| = ε/2
    handle.remove()
    assert torch.equal(choice().weights, clean)  # restored after the step


def test_sdarts_adv_stays_in_the_ball_and_raises_the_loss():
    s, batches = nb201_searcher(hooks={"sdarts": {"mode": "adv", "epsilon": 0.3, "epsilon_end": 0.3, "steps": 5}})
    h = s.step_hooks[0]
    h.start_epoch(0, 2)
    x, y = batches[0]
    from nas.searcher.sdarts import Perturbation

    def loss_with(deltas):
        p = Perturbation(h.choices, deltas)
        try:
            with torch.no_grad():
                return s.weight_loss(x, y).item()
        finally:
            p.remove()
    zero = [torch.zeros_like(next(c.parameters_by_role("logits"))) for c in h.choices]
    torch.manual_seed(5)
    rand = h.random_deltas()
    torch.manual_seed(5)  # the same random start
    adv = h.adversarial_deltas(x, y)
    assert max(d.abs().max().item() for d in adv) <= 0.3 + 1e-7
    assert not all(torch.equal(a, r) for a, r in zip(adv, rand))  # PGD moved from its random start
    l0, lr, la = loss_with(zero), loss_with(rand), loss_with(adv)
    assert la > lr and la > l0, (l0, lr, la)


# ------------------------------------------------------------------ Λ-DARTS

def test_harmony_gradient_against_autograd():
    torch.manual_seed(0)
    gs = [torch.randn(6, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    r = harmony(gs)
    want = torch.autograd.grad(r, gs)
    got = harmony_grad([g.detach() for g in gs])
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-12)
    u = [g.detach() / g.detach().norm() for g in gs]
    assert r.item() == pytest.approx(((u[0] @ u[1]) + (u[0] @ u[2]) + (u[1] @ u[2])).item() / 3)


class Layer(nn.Module):
    """A layer that mixes K linear maps by the sample it receives (a cell, in miniature)."""

    def __init__(self, d, K):
        super().__init__()
        self.maps = nn.ModuleList(nn.Linear(d, d) for _ in range(K))

    def forward(self, h, sample: Sample):
        return torch.tanh(sum(sample.weights[0, k] * m(h) for k, m in enumerate(self.maps)))


class TwoLayers(Supernet):
    def __init__(self, est, d=4, K=3, L=3):
        super().__init__()
        self.choice = Choice(est, 1, [str(k) for k in range(K)], init_std=0.5, generator=torch.Generator().manual_seed(1))
        self.layers = nn.ModuleList(Layer(d, K) for _ in range(L))
        self.head = nn.Linear(d, 3)

    def forward(self, x):
        s = self.choice()
        for layer in self.layers:
            x = layer(x, s)
        return self.head(x)


def tiny_searcher(hooks):
    torch.manual_seed(0)
    est = build_estimator("softmax")
    model = TwoLayers(est).double()
    opts = build_optimizers(model, est, epochs=2)
    batches = [(torch.randn(16, 4, dtype=torch.float64), torch.randint(0, 3, (16,)))]
    return Searcher(model, est, opts, batches, batches, epochs=2, step_hooks=hooks), batches


def test_layer_taps_split_the_shared_gradient_by_layer():
    s, [(x, y)] = tiny_searcher([])
    alpha = s.model.choice.alpha
    w = torch.softmax(alpha, -1)
    with LayerTaps(s.model) as taps:
        loss = F.cross_entropy(s.model(x), y)
    loss.backward()
    per_layer = grads_by_group(taps)[0]
    assert len(per_layer) == 3 and len(taps.receivers) == 3
    # Σ_l ∂L/∂A_l = ∂L/∂A (the cells share A)
    A = w.detach().clone().requires_grad_()
    hook = s.model.choice.register_forward_hook(lambda m, a, out: Sample(A))
    (gA,) = torch.autograd.grad(F.cross_entropy(s.model(x), y), A)
    hook.remove()
    assert torch.allclose(sum(per_layer), gA.reshape(-1), atol=1e-12)


def test_lambda_darts_adds_minus_lambda_times_the_exact_harmony_gradient():
    h = LambdaDARTS(LambdaDARTS.Options(weight=0.5, epsilon=1e-4))
    s, [(x, y)] = tiny_searcher([h])
    h.start_epoch(1, 2)  # λ_t = λ·epoch/(epochs - 1) = λ
    assert h.lam == 0.5
    s.zero_grad()
    h.before_weight_step(x, y)
    s.weight_loss(x, y).backward()
    plain = [w.grad.clone() for w in s.weights]
    h.after_weight_backward(x, y)
    added = [w.grad - p for w, p in zip(s.weights, plain)]
    # exact: R(w) = mean pairwise cosine of ∂L/∂A_l, differentiated twice
    A = torch.softmax(s.model.choice.alpha.detach(), -1)
    leaves = []

    def tap(module, args):
        a = A.clone().requires_grad_()
        leaves.append(a)
        return (args[0], Sample(a))
    handles = [layer.register_forward_pre_hook(tap) for layer in s.model.layers]
    loss = F.cross_entropy(s.model(x), y)
    for hd in handles:
        hd.remove()
    lam_grads = torch.autograd.grad(loss, leaves, create_graph=True)
    R = harmony([g.reshape(-1) for g in lam_grads])
    exact = torch.autograd.grad(R, s.weights, allow_unused=True)
    for a, e in zip(added, exact):
        e = torch.zeros_like(a) if e is None else e
        assert torch.allclose(a, -0.5 * e, atol=1e-7, rtol=1e-4), (a, e)
    assert max(e.abs().max().item() for e in exact if e is not None) > 1e-3  # not a comparison of zeros


# ------------------------------------------------------------------ OLES

def test_oles_gradient_matching_score_by_hand_freezes_below_the_threshold():
    h = OLES(OLES.Options(threshold=0.3, window=2))
    p, q = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))
    h.units, h.frozen, h.sums, h.counts, h.train_grads = [[p], [q]], [False, False], [0.0, 0.0], [0, 0], [None, None]
    steps = [  # (train grad, val grad) of p and of q
        ((torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])), (torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0]))),
        ((torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 0.1])), (torch.tensor([0.0, 2.0]), torch.tensor([0.0, 1.0]))),
    ]
    for (pt, pv), (qt, qv) in steps:
        p.grad, q.grad = pt.clone(), qt.clone()
        h.after_weight_backward(None, None)
        p.grad, q.grad = pv.clone(), qv.clone()
        h.after_arch_backward()
    gm_p = (cosine(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0]))
            + cosine(torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 0.1]))) / 2
    assert gm_p == pytest.approx((1 / math.sqrt(2) - 1 / math.sqrt(1.01)) / 2)
    assert gm_p < 0.3
    assert h.frozen == [True, False] and not p.requires_grad and q.requires_grad
    assert h.counts == [0, 0]  # the window restarts
    assert h.arch_grad_params() == [q]


def test_oles_frozen_ops_stop_moving_and_resume_keeps_them_frozen():
    s, _ = nb201_searcher(hooks={"oles": {"threshold": 1.0, "window": 1}})  # cos < 1: every op freezes
    h = s.step_hooks[0]
    s.train_epoch(0)
    assert all(h.frozen) and len(h.units) > 0
    before = [p.detach().clone() for u in h.units for p in u]
    s.train_epoch(1)
    after = [p.detach() for u in h.units for p in u]
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    s2, _ = nb201_searcher(hooks={"oles": {"threshold": 1.0, "window": 1}})
    s2.load_state_dict(s.state_dict())
    assert all(s2.step_hooks[0].frozen) and not any(p.requires_grad for u in s2.step_hooks[0].units for p in u)


def test_oles_never_freezes_at_the_lowest_threshold():
    s, _ = nb201_searcher(hooks={"oles": {"threshold": -1.0, "window": 1}})
    s.train_epoch(0)
    assert not any(s.step_hooks[0].frozen)
