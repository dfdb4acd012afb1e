"""The budget in the search (nas/cost/budget.py): the expected cost under every estimator, its
gradient, the penalty forms, and derive within the target."""
import itertools
import math

import pytest
import torch

from nas.cost import Budget, attach_budget, most_probable_within
from nas.errors import ConfigError
from nas.estimators import ESTIMATORS, build_estimator
from nas.spaces import get_space
from nas.spaces.nb201 import OPS, NB201Genotype

# op order: none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3
NET = dict(C=4, N=1)


def supernet(estimator="softmax", target=None, weight=1.0, form="hinge", hard=None, noise="none",
             sample_within=False, **kw):
    space = get_space("nb201")
    model = space.build_supernet(build_estimator(estimator, noise=noise), num_classes=3, C=4, N=1,
                                 generator=torch.Generator().manual_seed(0), **kw)
    budget = attach_budget(model, space.cost_model(), metric="macs", target=target, weight=weight, form=form, hard=hard,
                           num_classes=3, in_channels=3, resolution=8, network=NET, sample_within=sample_within)
    return model, budget


def costs(budget):
    return budget.table.for_candidates("arch.cell", OPS).float()


def test_expected_cost_under_softmax_by_hand_and_its_gradient():
    model, budget = supernet()
    alpha = model.arch["cell"].alpha
    with torch.no_grad():
        alpha.copy_(torch.randn(6, 5, generator=torch.Generator().manual_seed(1)))
    want = budget.table.fixed + float((torch.softmax(alpha.detach(), -1) * costs(budget)).sum())
    assert float(budget.expected().detach()) == pytest.approx(want, rel=1e-6)
    # gradient vs central finite differences (float64 copy of the formula)
    e = budget.expected()
    (g,) = torch.autograd.grad(e, alpha)
    c = costs(budget).double()
    a = alpha.detach().double()
    for i, j in [(0, 3), (2, 2), (5, 0)]:
        h = 1e-5
        ap, am = a.clone(), a.clone()
        ap[i, j] += h
        am[i, j] -= h
        fd = ((torch.softmax(ap, -1) * c).sum() - (torch.softmax(am, -1) * c).sum()) / (2 * h)
        assert float(g[i, j]) == pytest.approx(float(fd), rel=1e-3, abs=1e-6)


def test_derive_exclude_renormalises_over_the_ops_derive_can_pick():
    model, budget = supernet(derive_exclude=["none"])
    p = torch.softmax(model.arch["cell"].alpha.detach(), -1)[:, 1:]
    p = p / p.sum(-1, keepdim=True)
    want = budget.table.fixed + float((p * costs(budget)[:, 1:]).sum())
    assert float(budget.expected().detach()) == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("name", ESTIMATORS.names())
def test_every_estimator_gives_a_differentiable_expected_cost(name):
    model, budget = supernet(name, target=1e-3, hard=False)
    e = budget.expected()
    assert torch.isfinite(e) and float(e.detach()) >= budget.table.fixed
    # the penalty's gradient reaches the architecture parameters that the arch step updates
    pen = model.penalty()
    params = [p for n, p in model.arch["cell"].named_parameters()]
    grads = torch.autograd.grad(pen, params, allow_unused=True)
    assert any(g is not None and float(g.abs().sum()) > 0 for g in grads), name


def test_hard_estimators_are_straight_through_and_gumbel_hard_uses_its_distribution():
    # STE: the value is the derived cell's exact cost; the gradient to α is the cost row (identity)
    model, budget = supernet("ste")
    alpha = model.arch["cell"].alpha
    g = NB201Genotype(tuple(OPS[int(k)] for k in alpha.detach().argmax(-1)))
    e = budget.expected()
    assert float(e.detach()) == pytest.approx(budget.exact(g), rel=1e-6)
    (grad,) = torch.autograd.grad(e, alpha)
    w = torch.nn.functional.one_hot(alpha.detach().argmax(-1), 5).float()
    c = costs(budget)
    # ∂(Σ w c / Σ w)/∂w_j = c_j - cost of the selected op (rows of w sum to 1)
    assert torch.allclose(grad, c - (w * c).sum(-1, keepdim=True), atol=1e-6)
    # Bop: the state's gradient, which Bop's momentum accumulates
    model, budget = supernet("bop")
    (grad,) = torch.autograd.grad(budget.expected(), model.arch["cell"].state)
    w = model.arch["cell"].state.detach()
    assert torch.allclose(grad, c - (w * c).sum(-1, keepdim=True), atol=1e-6)
    # GDAS: the one-hot sample's mean is softmax(α) (Gumbel-max): exact, no sample needed
    model, budget = supernet("gumbel_hard")
    p = torch.softmax(model.arch["cell"].alpha.detach(), -1)
    assert float(budget.expected().detach()) == pytest.approx(budget.table.fixed + float((p * c).sum()), rel=1e-6)


def test_noise_uses_the_base_decision_and_sigmoid_gates_are_normalised():
    model, budget = supernet("ste", noise="adaptive")
    g = model.genotype()
    assert float(budget.expected().detach()) == pytest.approx(budget.exact(g), rel=1e-6)
    model, budget = supernet("sigmoid")
    s = torch.sigmoid(model.arch["cell"].alpha.detach())
    want = budget.table.fixed + float((s / s.sum(-1, keepdim=True) * costs(budget)).sum())
    assert float(budget.expected().detach()) == pytest.approx(want, rel=1e-6)


def test_penalty_forms_by_hand():
    model, budget = supernet(target=0.05, weight=2.0, hard=False)
    e = float(budget.expected().detach())
    assert budget.penalty().item() == pytest.approx(2.0 * max(0.0, e / 0.05 - 1), rel=1e-6)
    budget.target = 1e3
    assert budget.penalty().item() == 0.0  # hinge: nothing below the target
    budget.form = "log"
    assert budget.penalty().item() == pytest.approx(2.0 * math.log(e / 1e3), rel=1e-6)
    budget.form = "abs"  # TuNAS: below the target the penalty pulls the cost up
    assert budget.penalty().item() == pytest.approx(2.0 * (1 - e / 1e3), rel=1e-6)
    budget.expected().backward()
    up = {n: p.grad.clone() for n, p in model.named_parameters() if "arch" in n and p.grad is not None}
    model.zero_grad()
    budget.penalty().backward()
    for n, p in model.named_parameters():
        if n in up:  # ∂pen/∂α = -(λ/T)·∂E/∂α below the target
            assert torch.allclose(p.grad, -2.0 / 1e3 * up[n], atol=1e-12, rtol=1e-6), n
    budget.target = 0.05
    assert budget.penalty().item() == pytest.approx(2.0 * (e / 0.05 - 1), rel=1e-6)
    model, budget = supernet()  # no target: reported, never penalised
    assert budget.penalty().item() == 0.0 and budget.hard is False
    assert set(budget.scalars()) == {"expected", "derived"}


def test_l0_gates_scale_the_expected_cost_by_their_open_probability():
    from nas.blocks.l0 import expected_l0
    model, budget = supernet(gates="edge")
    keep = expected_l0(model.arch["gates"].log_alpha.detach())
    p = torch.softmax(model.arch["cell"].alpha.detach(), -1)
    want = budget.table.fixed + float((p * keep[:, None] * costs(budget)).sum())
    assert float(budget.expected().detach()) == pytest.approx(want, rel=1e-6)
    model, budget = supernet(gates="op")
    keep = expected_l0(model.arch["gates"].log_alpha.detach()).view(6, 5)
    p = torch.softmax(model.arch["cell"].alpha.detach(), -1)
    assert float(budget.expected().detach()) == pytest.approx(budget.table.fixed + float((p * keep * costs(budget)).sum()), rel=1e-6)


def test_most_probable_within_matches_brute_force():
    gen = torch.Generator().manual_seed(3)
    logp = torch.log_softmax(torch.randn(4, 3, generator=gen), -1)
    cost = torch.rand(4, 3, generator=gen)
    allowed = torch.ones(4, 3, dtype=torch.bool)
    allowed[1, 0] = False
    for limit in (0.5, 1.2, 2.0, 5.0):
        best = None
        for combo in itertools.product(range(3), repeat=4):
            if not all(allowed[e, k] for e, k in enumerate(combo)) or sum(combo[e] == 2 for e in range(4)) > 1:
                continue
            c = sum(float(cost[e, k]) for e, k in enumerate(combo))
            s = sum(float(logp[e, k]) for e, k in enumerate(combo))
            if c <= limit and (best is None or s > best[0]):
                best = (s, list(combo))
        got = most_probable_within(logp, cost, limit, allowed, count_limit=(2, 1))
        assert got == (None if best is None else best[1])


def test_a_point_mass_derives_the_costliest_fitting_cell_that_changes_fewest_edges():
    # Bop's probabilities are its one-hot state: every cell that changes d edges scores the same
    model, budget = supernet("bop", target=10.0)
    c = costs(budget)
    target = budget.exact(NB201Genotype(("nor_conv_3x3",) + ("nor_conv_1x1",) * 3 + ("none",) * 2))
    budget.target = target
    with torch.no_grad():
        model.arch["cell"].state.copy_(torch.nn.functional.one_hot(torch.full((6,), 3), 5).float())
    g = model.genotype()
    # any cell keeping one conv3x3 changes five edges, the fewest: all equally probable. The costliest
    # of them spend the budget on three conv1x1 beside it (none, skip and pool cost no MACs); the
    # first in lexicographic order then puts the two free edges first, as none, and the conv3x3 last
    assert float(c[0, 4]) == float(c[0, 1]) == float(c[0, 0]) == 0 < float(c[0, 2]) < float(c[0, 3])
    assert g == NB201Genotype(("none", "none", "nor_conv_1x1", "nor_conv_1x1", "nor_conv_1x1", "nor_conv_3x3"))
    assert budget.exact(g) == pytest.approx(target)


def test_hard_derive_never_exceeds_the_target_and_takes_the_most_probable_fitting_cell():
    model, budget = supernet(target=10.0)
    c3, c1 = float(costs(budget)[0, 3]), float(costs(budget)[0, 2])
    target = budget.table.fixed + 2 * c3 + 2.5 * c1  # room for two conv3x3 and two conv1x1
    budget.target = target
    with torch.no_grad():
        model.arch["cell"].alpha.copy_(torch.tensor([[0, 0, 1.0, 2.0, 0]] * 6))  # argmax: six conv3x3
    del model.cost
    assert model.genotype() == NB201Genotype(("nor_conv_3x3",) * 6)
    model.cost = budget
    g = model.genotype()
    assert budget.exact(g) <= target
    # by hand, log p up to a constant: conv3x3 2, conv1x1 1, others 0, and c1 = c3/9: five conv1x1
    # and one conv3x3 score 7 for 1.56·c3; two of each (6) or two conv3x3 and the rest cheap (4)
    # score less. Equal cells: the first in lexicographic order (the conv3x3 last)
    assert g == NB201Genotype(("nor_conv_1x1",) * 5 + ("nor_conv_3x3",))
    assert budget.scalars()["derived"] == pytest.approx(budget.exact(g))
    # with the skip limit and derive_exclude the fitting cell obeys them too
    model, budget = supernet(target=target, derive_exclude=["none"], derive_max_skip=1)
    with torch.no_grad():
        model.arch["cell"].alpha.copy_(torch.tensor([[0, 1.5, 0.9, 2.0, 0]] * 6))
    g = model.genotype()
    # one skip (1.5), then two conv3x3 + two conv1x1 + a pool (5.8) beat one conv3x3 + four conv1x1 (5.6)
    assert g == NB201Genotype(("skip_connect", "nor_conv_1x1", "nor_conv_1x1", "nor_conv_3x3",
                               "nor_conv_3x3", "avg_pool_3x3"))
    assert budget.exact(g) <= target


def test_budget_errors_are_one_line():
    with pytest.raises(ConfigError, match="below the cheapest cell"):
        supernet(target=0.03)  # the skeleton alone costs 0.0356
    with pytest.raises(ConfigError, match="cost.target must be positive"):
        supernet(target=-1.0)
    with pytest.raises(ConfigError, match="cost.hard=true needs cost.target"):
        supernet(hard=True)
    with pytest.raises(ConfigError, match="cost.form: unknown form 'square'"):
        supernet(target=1.0, form="square")


def test_darts_hard_derive_stays_within_the_target():
    space = get_space("darts")
    model = space.build_supernet(build_estimator("softmax"), num_classes=3, C=4, layers=3, steps=2, multiplier=2,
                                 generator=torch.Generator().manual_seed(0))
    budget = attach_budget(model, space.cost_model(), metric="macs", target=None, weight=1.0, form="hinge", hard=None,
                           num_classes=3, in_channels=3, resolution=8, network=space.cost_model().trained_network(C=4, layers=3),
                           cell={"steps": 2, "multiplier": 2})
    with torch.no_grad():  # favour the most expensive op everywhere
        for name in ("normal", "reduce"):
            a = torch.zeros(5, 8)
            a[:, space.ops.index("sep_conv_5x5")] = 3.0
            model.arch[name].alpha.copy_(a + 0.01 * torch.arange(5.0)[:, None])
    free = model.genotype()
    top = budget.exact(free)
    budget.target, budget.hard = 0.7 * top, True
    g = model.genotype()
    assert budget.exact(g) <= 0.7 * top < top
    assert float(budget.expected().detach()) > budget.table.fixed


def test_derived_estimate_is_the_argmax_cells_cost_with_the_distributions_gradient():
    model, budget = supernet(derive_exclude=["none"])
    alpha = model.arch["cell"].alpha
    with torch.no_grad():
        alpha.copy_(torch.randn(6, 5, generator=torch.Generator().manual_seed(2)))
    (g_exp,) = torch.autograd.grad(budget.expected(), alpha)
    budget.estimate = "derived"
    e = budget.expected()
    assert float(e.detach()) == pytest.approx(budget.exact(model.genotype()), rel=1e-6)
    (g_der,) = torch.autograd.grad(e, alpha)
    assert torch.allclose(g_der, g_exp)
    with pytest.raises(ConfigError, match="cost.estimate: unknown estimate 'mean'"):
        Budget(model, budget.table, {"arch.cell": torch.ones(5, dtype=torch.bool)}, budget.selected, estimate="mean")


def test_the_penalty_waits_for_its_warmup_epochs_in_the_search_loop():
    """``cost.warmup_epochs=0.5``: in a 1-epoch search of 4 steps the first two architecture steps
    carry no penalty, the last two the hinge; the budget's progress is set by the loop each step."""
    from nas.searcher.loop import Searcher
    from nas.searcher.optim import build_optimizers
    space = get_space("nb201")
    est = build_estimator("softmax")
    model = space.build_supernet(est, num_classes=3, C=4, N=1, generator=torch.Generator().manual_seed(0))
    budget = attach_budget(model, space.cost_model(), metric="macs", target=0.01, weight=1.0, form="hinge", hard=False,
                           warmup=0.5, num_classes=3, in_channels=3, resolution=8, network=NET)
    assert budget.penalty().item() > 0  # outside a search (epochs_done unset) it acts
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, 3, (4,), generator=g)) for _ in range(4)]
    searcher = Searcher(model, est, build_optimizers(model, est, epochs=1), batches, batches, epochs=1)
    seen = []
    real = budget.penalty
    budget.penalty = lambda: seen.append((budget.epochs_done, float(real().detach()))) or real()
    searcher.train_epoch(0)
    assert [t for t, _ in seen] == [0.0, 0.25, 0.5, 0.75]
    assert [p > 0 for _, p in seen] == [False, False, True, True]
    with pytest.raises(ConfigError, match="cost.warmup_epochs must be >= 0"):
        attach_budget(model, space.cost_model(), metric="macs", target=1.0, weight=1.0, form="hinge", hard=False, warmup=-1,
                      num_classes=3, in_channels=3, resolution=8, network=NET)


def test_feasible_argmax_is_the_best_fitting_cell_of_additive_scores():
    from nas.cost.feasible import FeasibleArgmax
    gen = torch.Generator().manual_seed(5)
    cost = torch.rand(4, 3, generator=gen)
    allowed = torch.ones(4, 3, dtype=torch.bool)
    allowed[2, 1] = False
    decode = FeasibleArgmax(cost, 1.5, allowed, count_limit=(0, 2))
    for _ in range(20):
        scores = torch.randn(4, 3, generator=gen) * 3  # logits, not log-probabilities: any real scores
        best = max((sum(float(scores[e, k]) for e, k in enumerate(combo)), list(combo))
                   for combo in itertools.product(range(3), repeat=4)
                   if all(allowed[e, k] for e, k in enumerate(combo)) and combo.count(0) <= 2
                   and sum(float(cost[e, k]) for e, k in enumerate(combo)) <= 1.5)
        assert decode(scores).tolist() == best[1]
    with pytest.raises(ConfigError, match="no cell the derive rules allow fits"):
        FeasibleArgmax(cost, 0.0, allowed)


@pytest.mark.parametrize("name", ["gumbel_hard", "ste", "ste+noise"])
def test_sample_within_draws_only_cells_within_the_target(name):
    estimator, noise = (name.split("+")[0], "adaptive") if "+" in name else (name, "none")
    model, budget = supernet(estimator, target=1.0, noise=noise, weight=0.0, derive_exclude=["none"],
                             derive_max_skip=1)
    c = costs(budget)
    budget.target = budget.exact(NB201Genotype(("nor_conv_3x3",) + ("nor_conv_1x1",) * 3 + ("none",) * 2))
    model, budget = supernet(estimator, target=budget.target, noise=noise, weight=0.0, derive_exclude=["none"],
                             derive_max_skip=1, sample_within=True)
    ch = model.arch["cell"]
    with torch.no_grad():
        ch.alpha.copy_(torch.tensor([[0, 0.2, 0.5, 1.0, 0.1]] * 6))  # unconstrained: six conv3x3
    model.train()
    torch.manual_seed(0)
    seen = set()
    for _ in range(200 if name == "gumbel_hard" else 3):
        s = ch()
        w = s.weights.detach()
        idx = w.argmax(-1) if s.index is None else torch.tensor(s.index)
        ops = tuple(OPS[k] for k in idx.tolist())
        g = NB201Genotype(ops)
        assert budget.exact(g) <= budget.target * (1 + 1e-9) and "none" not in ops and ops.count("skip_connect") <= 1
        if noise == "none":
            assert torch.equal(w, torch.nn.functional.one_hot(idx, 5).float())  # still one-hot
        seen.add(ops)
    if name == "gumbel_hard":
        assert len(seen) > 5  # it samples: many cells, all within
    else:
        # the STE's decision is the best fitting cell by α (one conv3x3, three conv1x1, skip, pool)
        assert seen == {tuple(OPS[k] for k in most_probable_within(
            ch.alpha.detach(), c, budget.target - budget.table.fixed, budget._allowed["arch.cell"], (1, 1)))}
    # straight through: the gradient reaches every entry of α
    ch.alpha.grad = None
    (ch().weights * torch.randn(6, 5)).sum().backward()
    assert bool((ch.alpha.grad != 0).any()) and bool((ch.alpha.grad[:, 3] != 0).all())
    # eval: the one-hot decision is the derived cell within the target
    model.eval()
    assert NB201Genotype(tuple(OPS[k] for k in ch().weights.argmax(-1).tolist())) == model.genotype()


def test_gumbel_hard_draws_are_unchanged_without_a_decoder():
    from nas.estimators.gumbel import gumbel_noise
    est = build_estimator("gumbel_hard")
    alpha = torch.randn(6, 5, generator=torch.Generator().manual_seed(2))
    for seed in range(5):
        torch.manual_seed(seed)
        s = est.sample({"alpha": alpha}, "categorical", True)
        torch.manual_seed(seed)
        h = torch.softmax((torch.log_softmax(alpha, -1) + gumbel_noise(alpha)) / est.values["tau"], -1)
        assert s.index == h.argmax(-1).tolist() and torch.allclose(s.weights, torch.nn.functional.one_hot(h.argmax(-1), 5).float())


def test_sample_within_errors_are_one_line():
    with pytest.raises(ConfigError, match="one-hot .gumbel_hard, ste.; 'softmax' mixes"):
        supernet("softmax", target=10.0, sample_within=True)
    with pytest.raises(ConfigError, match="needs cost.target"):
        supernet("ste", sample_within=True)
