"""Bop (Helwegen et al. 2019, larq) on {0,1} states and its categorical form (ALGORITHMS.md §1)."""
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nas.estimators import Bop, build_estimator
from nas.estimators.base import BINARY, CATEGORICAL
from nas.searcher.optim import build_optimizers
from nas.supernet import Choice


def binary_param(values):
    return nn.Parameter(torch.tensor(values))


def step_with(opt, p, grad):
    p.grad = torch.tensor(grad)
    opt.step()


def test_momentum_is_an_exponential_moving_average_of_the_gradient():
    w = binary_param([1.0, 0.0, 1.0])
    opt = Bop([w], gamma=0.25, threshold=10.0)  # threshold high: no flips, only momentum
    g1, g2 = [0.4, -2.0, 1.0], [-0.8, 4.0, 3.0]
    step_with(opt, w, g1)
    step_with(opt, w, g2)
    expected = [(1 - 0.25) * (0.25 * a) + 0.25 * b for a, b in zip(g1, g2)]
    assert torch.allclose(opt.state[w]["momentum"], torch.tensor(expected))
    assert torch.equal(w.detach(), torch.tensor([1.0, 0.0, 1.0]))


def test_binary_flip_rule_is_strict_and_signed():
    """Flip iff (2w-1)·m > τ: a 1 flips on positive momentum, a 0 on negative; equality does not flip."""
    tau = 0.25
    # γ = 0.5 and g = ±0.5 give m = ±0.25 = ±τ exactly (all dyadic, exact in float32)
    w = binary_param([1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    opt = Bop([w], gamma=0.5, threshold=tau)
    step_with(opt, w, [0.5, -0.5, 0.5 + 2 ** -10, -0.5 - 2 ** -10, -4.0, 4.0])
    #  (2w-1)m:         τ     τ      > τ              > τ            -2     -2
    assert w.detach().tolist() == [1.0, 0.0, 0.0, 1.0, 1.0, 0.0]
    # the momentum is kept on a flip (larq); the flipped entries now see (2w-1)m < 0: no flip back
    m = opt.state[w]["momentum"].clone()
    assert m[2] > 0 and m[3] < 0
    step_with(opt, w, [0.0] * 6)
    assert w.detach().tolist() == [1.0, 0.0, 0.0, 1.0, 1.0, 0.0]
    assert torch.allclose(opt.state[w]["momentum"], 0.5 * m)


def test_no_flip_while_momentum_stays_below_threshold():
    w = binary_param([1.0, 0.0])
    opt = Bop([w], gamma=1e-4, threshold=1e-3)
    for _ in range(50):  # m → γ·g·(1-(1-γ)^t) ≤ 50γg = 5e-4 < τ
        step_with(opt, w, [0.1, -0.1])
    assert w.detach().tolist() == [1.0, 0.0]
    for _ in range(10000):  # m → g = 0.1 > τ eventually: both flip
        step_with(opt, w, [0.1, -0.1])
        if w[0] == 0:
            break
    assert w.detach().tolist() == [0.0, 1.0]


def test_categorical_switch_rule():
    """Switch from the selected i to j = argmin m iff m_i - m_j > τ; reset m_i and m_j."""
    w = nn.Parameter(F.one_hot(torch.tensor([1, 2, 0]), 4).float())
    opt = Bop([w], gamma=0.5, threshold=0.25, kind=CATEGORICAL)
    g = torch.tensor([[0.2, 0.3, -0.4, 0.6],    # m = [.1, .15, -.2, .3]: i=1, j=2, gap .35 > τ → 2
                      [0.0, 0.1, 0.2, -0.2],    # m = [0, .05, .1, -.1]: i=2, j=3, gap .2 ≤ τ → stay
                      [0.5, 0.0, 0.0, 0.0]])    # m = [.25, 0, 0, 0]: i=0, j=1, gap = τ exactly → stay
    step_with(opt, w, g.tolist())
    assert w.detach().argmax(1).tolist() == [2, 2, 0]
    assert torch.equal(w.detach().sum(1), torch.ones(3))  # still one-hot
    m = opt.state[w]["momentum"]
    assert torch.allclose(m[0], torch.tensor([0.1, 0.0, 0.0, 0.3]))  # m_i, m_j reset, others kept
    assert torch.allclose(m[1:], 0.5 * g[1:])


def test_categorical_bop_finds_the_best_candidate_and_stays():
    """A linear loss L = w·c prefers candidate argmin c = 1: Bop walks there from any start and stays."""
    c = torch.tensor([1.0, -2.0, 3.0, 0.5])
    for start in range(4):
        w = nn.Parameter(F.one_hot(torch.tensor([start]), 4).float())
        opt = Bop([w], kind=CATEGORICAL)  # larq defaults γ=1e-4, τ=1e-8
        visited = []
        for _ in range(200):
            opt.zero_grad()
            (w * c).sum().backward()
            opt.step()
            visited.append(w.detach().argmax().item())
        assert visited[-190:] == [1] * 190, (start, visited[:10])


def test_binary_bop_opens_useful_gates_and_closes_harmful_ones():
    c = torch.tensor([-1.0, 2.0, -0.5, 0.3])  # L = w·c: open where c < 0
    w = binary_param([0.0, 1.0, 1.0, 0.0])
    opt = Bop([w])
    for _ in range(5):
        opt.zero_grad()
        (w * c).sum().backward()
        opt.step()
    assert w.detach().tolist() == [1.0, 0.0, 1.0, 0.0]


def test_state_survives_state_dict_round_trip():
    torch.manual_seed(0)
    est = build_estimator("bop", gamma=0.3, threshold=0.05)
    model = nn.ModuleDict({"cat": Choice(est, 3, list("abcd"), generator=torch.Generator().manual_seed(0)),
                           "gate": Choice(est, 5, kind=BINARY, generator=torch.Generator().manual_seed(1))})
    opts = build_optimizers(model, est, epochs=1)
    assert opts.arch is None and isinstance(opts.discrete, Bop)  # no Adam over the discrete state
    grads = [torch.randn(3, 4), torch.randn(5)]

    def one_step(m, o):
        m["cat"].state.grad, m["gate"].state.grad = grads[0].clone(), grads[1].clone()
        o.discrete.step()

    one_step(model, opts)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "optim": opts.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf)
    est2 = build_estimator("bop", gamma=0.3, threshold=0.05)
    model2 = nn.ModuleDict({"cat": Choice(est2, 3, list("abcd")), "gate": Choice(est2, 5, kind=BINARY)})
    opts2 = build_optimizers(model2, est2, epochs=1)
    model2.load_state_dict(saved["model"])
    opts2.load_state_dict(saved["optim"])
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)
    for p, q in zip(model.parameters(), model2.parameters()):
        assert torch.equal(opts.discrete.state[p]["momentum"], opts2.discrete.state[q]["momentum"])
    one_step(model, opts)
    one_step(model2, opts2)
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)


def test_initial_state_is_seeded_one_hot_or_binary():
    est = build_estimator("bop")
    a = est.create((50, 5), CATEGORICAL, generator=torch.Generator().manual_seed(3))["state"][0]
    b = est.create((50, 5), CATEGORICAL, generator=torch.Generator().manual_seed(3))["state"][0]
    assert torch.equal(a, b) and torch.equal(a.sum(1), torch.ones(50))
    assert len(set(a.argmax(1).tolist())) == 5  # every candidate can be a start
    g, role = est.create((200,), BINARY, generator=torch.Generator().manual_seed(0))["state"]
    assert role == "discrete" and set(g.unique().tolist()) == {0.0, 1.0}


def test_forward_value_is_the_state_and_gradient_reaches_it():
    est = build_estimator("bop")
    ch = Choice(est, 2, list("abc"), generator=torch.Generator().manual_seed(0))
    s = ch()
    assert s.weights is ch.state and s.index is None
    c = torch.randn(2, 3)
    (s.weights * c).sum().backward()
    assert torch.equal(ch.state.grad, c)
    assert build_estimator("bop", single_path=True).sample({"state": ch.state}, CATEGORICAL, True).index == \
        ch.state.argmax(1).tolist()
    assert torch.equal(ch.derive(), ch.state.argmax(1))


def test_gamma_and_threshold_schedules_reach_the_optimizer():
    est = build_estimator("bop", gamma=1e-3, gamma_end=1e-5, threshold=1e-6, threshold_end=1e-4,
                          schedule="exponential", per="step")
    ch = Choice(est, 2, list("abc"))
    opt = build_optimizers(ch, est, epochs=2).discrete
    est.set_progress(0, 2, 0, 3)
    assert opt.param_groups[0]["gamma"] == pytest.approx(1e-3)
    est.set_progress(1, 2, 2, 3)  # last step of the run
    assert opt.param_groups[0]["gamma"] == pytest.approx(1e-5)
    assert opt.param_groups[0]["threshold"] == pytest.approx(1e-4)
    assert est.scalars() == pytest.approx({"gamma": 1e-5, "threshold": 1e-4})
    est.set_progress(0, 2, 2, 3)  # step 2 of steps 0..5: t = 0.4
    assert opt.param_groups[0]["gamma"] == pytest.approx(1e-3 * (1e-2) ** 0.4)
    # a resumed run gets the scheduled values back from the estimator's state
    est2 = build_estimator("bop", gamma=1e-3, gamma_end=1e-5, schedule="exponential", per="step")
    opt2 = build_optimizers(Choice(est2, 2, list("abc")), est2, epochs=2).discrete
    est2.load_state_dict(est.state_dict())
    assert opt2.param_groups[0]["gamma"] == pytest.approx(1e-3 * (1e-2) ** 0.4)
