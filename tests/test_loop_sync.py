"""The step loops read nothing off the device per step: running sums stay on the device, and a
non-finite loss is caught at once on the CPU and within SYNC_EVERY steps on an accelerator."""
import math
from types import SimpleNamespace

import pytest
import torch

from nas.cli import main
from nas.errors import NasError
from nas.engine.meter import SYNC_EVERY, Meter, check_finite


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


def test_check_finite_on_an_accelerator_waits_for_the_next_sync_step():
    meter = Meter()
    meter.update(torch.tensor(float("nan")), torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))
    loss = AcceleratorLoss(1.0)  # this step's loss is fine; an earlier one was not
    check_finite(loss, meter, 0, 3, last=False, fix="lower the lr")
    assert loss.reads == 0
    with pytest.raises(NasError, match=rf"^loss became nan at epoch 0 one of the steps up to {SYNC_EVERY - 1}; "
                                       r"lower the lr \(checkpoint of the last epoch kept\)$"):
        check_finite(loss, meter, 0, SYNC_EVERY - 1, last=False, fix="lower the lr")
    with pytest.raises(NasError, match="up to 7"):
        check_finite(loss, meter, 0, 7, last=True, fix="x")
    fine = Meter()
    fine.update(torch.tensor(1.0), torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))
    check_finite(loss, fine, 0, SYNC_EVERY - 1, last=True, fix="x")


def test_check_finite_on_the_cpu_names_the_step():
    with pytest.raises(NasError, match="^loss became inf at epoch 2 step 5; fix"):
        check_finite(torch.tensor(math.inf), Meter(), 2, 5, last=False, fix="fix")
    check_finite(torch.tensor(1.0), Meter(), 2, 5, last=False, fix="fix")


def test_a_diverging_search_stops_with_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["space.C=4", "space.N=1", "data.subset=128", "data.resize=8", "data.batch_size=32",
               "trainer.epochs=1", "trainer.max_steps_per_epoch=4", "optim.weights.lr=1e30",
               "trainer.grad_clip=0", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err, err
    assert "loss became" in err and "lower optim.weights.lr or set trainer.grad_clip" in err


@pytest.mark.parametrize("name", ["softmax", "ste+noise", "bop"])
def test_first_order_arch_step_computes_only_architecture_gradients(name):
    """The arch step asks autograd for the architecture's gradients alone; they equal those of a
    full backward, and no weight gradient is computed."""
    from nas.estimators import build_estimator
    from nas.searcher.loop import Searcher
    from nas.searcher.optim import build_optimizers
    from nas.supernet import arch_parameters, weight_parameters
    from search_spaces import get_space

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
