"""The step loops read nothing off the device per step: running sums stay on the device, and a
non-finite or diverging loss is caught at once on the CPU and within SYNC_EVERY steps on an
accelerator (where only the run's first step is read at once, as the divergence reference)."""
import math
from types import SimpleNamespace

import pytest
import torch

from nas.cli import main
from nas.errors import TrainingError
from nas.engine.meter import DIVERGENCE_FACTOR, SYNC_EVERY, LossGuard, Meter


def test_meter_sums_match_a_hand_computation():
    m = Meter()
    assert m.result() == {"loss": 0.0, "acc": 0.0}
    m.update(torch.tensor(2.0), torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))
    m.update(torch.tensor(0.5), torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]),
             torch.tensor([1, 1, 1, 1]))
    r = m.result()
    assert r["loss"] == pytest.approx((2.0 * 2 + 0.5 * 4) / 6)
    assert r["acc"] == pytest.approx(100.0 * 4 / 6)
    assert isinstance(m.loss_sum(), torch.Tensor)  # kept as a tensor between results


class AcceleratorLoss:
    """A loss as an accelerator would hold it: reading it is the costly part."""

    device = SimpleNamespace(type="cuda")

    def __init__(self, value):
        self.value = torch.tensor(value)
        self.reads = 0

    def detach(self):
        self.reads += 1
        return self.value


def test_the_guard_on_an_accelerator_waits_for_the_next_sync_step():
    guard = LossGuard("a learning rate too high")
    first = AcceleratorLoss(2.0)
    start = Meter()
    start.update(first.value, torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))
    guard.check(first, start, 0, 0, last=False)  # the run's first step is read once: the reference
    assert first.reads == 1 and guard.start == 2.0
    meter = Meter()
    meter.update(torch.tensor(float("nan")), torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))
    loss = AcceleratorLoss(1.0)  # this step's loss is fine; an earlier one was not
    guard.check(loss, meter, 0, 3, last=False)
    assert loss.reads == 0
    with pytest.raises(TrainingError, match=rf"^the loss became nan in epoch 1, one of the steps up to "
                                            rf"{SYNC_EVERY}; likely causes: a learning rate too high$"):
        guard.check(loss, meter, 0, SYNC_EVERY - 1, last=False)
    with pytest.raises(TrainingError, match="up to 8"):
        guard.check(loss, meter, 0, 7, last=True)
    fine = Meter()
    fine.update(torch.tensor(1.0), torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))
    guard.check(loss, fine, 0, SYNC_EVERY - 1, last=True)


def test_the_guard_on_the_cpu_names_the_step_and_the_causes():
    with pytest.raises(TrainingError, match="^the loss became inf in epoch 3 step 6; likely causes: tau$"):
        LossGuard("tau").check(torch.tensor(math.inf), Meter(), 2, 5, last=False)
    LossGuard("x").check(torch.tensor(1.0), Meter(), 2, 5, last=False)


def test_the_guard_stops_a_finite_loss_far_beyond_its_first_step():
    guard, meter = LossGuard("lr"), Meter()
    for step, value in enumerate([2.0, 50.0, 150.0]):  # mean 2, 26, 67.3: below 100 x 2
        meter.update(torch.tensor(value), torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))
        guard.check(torch.tensor(value), meter, 0, step, last=False)
    meter.update(torch.tensor(700.0), torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))  # mean 225.5
    with pytest.raises(TrainingError, match=r"^the loss diverged: 225.5 in epoch 1 step 4, over 100x the "
                                            r"first step's 2; likely causes: lr$"):
        guard.check(torch.tensor(700.0), meter, 0, 3, last=False)
    assert DIVERGENCE_FACTOR == 100
    # the reference survives a checkpoint
    other = LossGuard("lr")
    other.load_state_dict(guard.state_dict())
    assert other.start == 2.0
    other.load_state_dict(None)  # a checkpoint from before the guard: the next first step sets it
    assert other.start is None


def test_a_diverging_search_stops_with_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["space.C=4", "space.N=1", "data.subset=128", "data.resize=8", "data.batch_size=32",
               "trainer.epochs=1", "trainer.max_steps_per_epoch=4", "optim.weights.lr=1e30",
               "trainer.grad_clip=0", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err, err
    assert "the loss became" in err and "optim.weights.lr=1e+30" in err and "trainer.grad_clip=0" in err
    assert "no checkpoint was written yet" in err  # it failed in epoch 1: nothing to resume
    assert "error: the loss became" in (out / "log.txt").read_text()


@pytest.mark.parametrize("name", ["softmax", "ste+noise", "bop"])
def test_first_order_arch_step_computes_only_architecture_gradients(name):
    """The arch step asks autograd for the architecture's gradients alone; they equal those of a
    full backward, and no weight gradient is computed."""
    from nas.estimators import build_estimator
    from nas.searcher.loop import Searcher
    from nas.searcher.optim import build_optimizers
    from nas.supernet import arch_parameters, weight_parameters
    from nas.spaces import get_space

    base, _, noise = name.partition("+")
    est = build_estimator(base, **({"noise": "adaptive"} if noise else {}))
    torch.manual_seed(0)
    model = get_space("nb201").build_supernet(est, num_classes=3, C=4, N=1,
                                              generator=torch.Generator().manual_seed(0))
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 3, (8,))
    opt = build_optimizers(model, est, epochs=1, arch_lr=0.0, arch_weight_decay=0.0)
    searcher = Searcher(model, est, opt, [], [], epochs=1, grad_clip=0)
    arch = [p for ps in opt.arch_params.values() for p in ps]
    assert arch
    # the reference: a full backward from the same sample
    torch.manual_seed(1)
    model.zero_grad(set_to_none=True)
    searcher.loss(x, y, with_penalty=True)[0].backward()
    expected = [p.grad.clone() for p in arch]
    assert all(w.grad is not None for w in weight_parameters(model) if w.requires_grad and w.dim() > 1)
    torch.manual_seed(1)
    opt.arch = opt.discrete = None  # keep the parameters where they are; look at the gradients
    searcher.arch_step(x, y, (x, y))
    for p, g in zip(arch, expected):
        assert torch.allclose(p.grad, g, atol=1e-6, rtol=1e-5)
    assert all(w.grad is None for w in weight_parameters(model))


@pytest.mark.parametrize("name", ["softmax", "gumbel_hard", "ste+noise", "bop"])
def test_weight_step_builds_no_architecture_graph_and_keeps_its_gradients(name):
    """The weight step freezes the architecture while it builds the graph: the weight gradients
    equal a full backward's from the same sample, no architecture gradient is computed, and the
    architecture parameters are trainable again afterwards (also after an error in the forward)."""
    from nas.estimators import build_estimator
    from nas.searcher.loop import Searcher
    from nas.searcher.optim import build_optimizers
    from nas.supernet import weight_parameters
    from nas.spaces import get_space

    base, _, noise = name.partition("+")
    est = build_estimator(base, **({"noise": "adaptive"} if noise else {}))
    torch.manual_seed(0)
    model = get_space("nb201").build_supernet(est, num_classes=3, C=4, N=1,
                                              generator=torch.Generator().manual_seed(0)).double()
    x, y = torch.randn(8, 3, 8, 8, dtype=torch.double), torch.randint(0, 3, (8,))
    opt = build_optimizers(model, est, epochs=1)
    searcher = Searcher(model, est, opt, [], [], epochs=1, grad_clip=0)
    arch = searcher.arch_trainable()
    weights = [w for w in weight_parameters(model) if w.requires_grad]
    torch.manual_seed(1)
    model.zero_grad(set_to_none=True)
    searcher.loss(x, y, with_penalty=False)[0].backward()
    expected = [None if w.grad is None else w.grad.clone() for w in weights]
    assert any(p.grad is not None for p in arch)  # the full backward reaches the architecture
    torch.manual_seed(1)
    opt.weights = None  # look at the gradients, do not step
    searcher.weight_grad.step = lambda *a, **k: None
    seen = []
    model.register_forward_pre_hook(lambda m, i: seen.append(any(p.requires_grad for p in arch)))
    searcher.weight_step(x, y)
    assert seen == [False]  # the forward ran with the architecture frozen
    for w, g in zip(weights, expected):
        assert (w.grad is None) == (g is None) or (g is not None and not g.any())
        if w.grad is not None:
            assert torch.allclose(w.grad, g, atol=1e-12, rtol=1e-10)
    assert all(p.grad is None for p in arch) and all(p.requires_grad for p in arch)
    with pytest.raises(RuntimeError):
        searcher.weight_step(x[:, :2], y)  # a wrong input: the forward fails inside the freeze
    assert all(p.requires_grad for p in arch)
