"""L0 hard-concrete gates: the sample, penalty and test-time gate against hand computations, the
sample distribution against the penalty, log α init and clamping, the wrappers, and NB201 cells
with edge / op / channel gates deriving without what is closed."""
import math

import pytest
import torch

from nas.blocks import ChannelGate, GatedEdge, GatedOp, HardConcreteGate, gate_channels
from nas.blocks.l0 import (BETA, GAMMA, LOG_ALPHA_MAX, LOG_ALPHA_MIN, ZETA, eval_gate, expected_l0,
                           hard_concrete_sample)
from nas.estimators import build_estimator
from nas.spaces.base import module_penalty
from nas.supernet import MixedOp, arch_parameters, choices
from nas.spaces import get_space
from nas.spaces.nb201 import OPS


def sigmoid(v):
    return 1 / (1 + math.exp(-v))


def stretch(s):
    return min(1.0, max(0.0, s * (ZETA - GAMMA) + GAMMA))


def test_constants_are_the_papers():
    assert (BETA, GAMMA, ZETA) == (2 / 3, -0.1, 1.1)
    assert LOG_ALPHA_MIN == pytest.approx(math.log(1e-2)) and LOG_ALPHA_MAX == pytest.approx(math.log(1e2))


@pytest.mark.parametrize("log_alpha,u", [(0.0, 0.5), (1.0, 0.5), (-0.5, 0.3), (2.0, 0.9), (-3.0, 0.2), (3.0, 0.95)])
def test_training_sample_matches_a_hand_computation(log_alpha, u):
    s = sigmoid((math.log(u) - math.log(1 - u) + log_alpha) / BETA)
    want = stretch(s)
    got = hard_concrete_sample(torch.tensor([log_alpha]), torch.tensor([u])).item()
    assert got == pytest.approx(want, abs=1e-6)


def test_hand_numbers_spelled_out():
    # log α = 1, u = 0.5: s = sigmoid(1.5) = 0.817574, z = 0.817574·1.2 - 0.1 = 0.881089
    assert hard_concrete_sample(torch.tensor([1.0]), torch.tensor([0.5])).item() == pytest.approx(0.881089, abs=1e-5)
    # test time: log α = 0 -> 0.5; -3 -> sigmoid(-3)·1.2 - 0.1 < 0 -> 0; 3 -> > 1 -> 1; 1 -> 0.777289
    got = eval_gate(torch.tensor([0.0, -3.0, 3.0, 1.0])).tolist()
    assert got == pytest.approx([0.5, 0.0, 1.0, sigmoid(1.0) * 1.2 - 0.1], abs=1e-6)
    # penalty: sigmoid(log α - β log(-γ/ζ)) = sigmoid(log α + (2/3) log 11); log α = 0 -> 0.831813
    assert expected_l0(torch.tensor([0.0])).item() == pytest.approx(sigmoid(2 / 3 * math.log(11)), abs=1e-6)
    assert expected_l0(torch.tensor([0.0])).item() == pytest.approx(0.831813, abs=1e-5)


def test_samples_lie_in_0_1_and_hit_zero_as_often_as_the_penalty_says():
    torch.manual_seed(0)
    gate = HardConcreteGate(200_000)
    with torch.no_grad():
        gate.log_alpha.fill_(-0.5)
        z = gate()
    assert z.min().item() == 0.0 and z.max().item() == 1.0
    assert ((z >= 0) & (z <= 1)).all()
    p_nonzero = expected_l0(torch.tensor([-0.5])).item()
    assert (z > 0).float().mean().item() == pytest.approx(p_nonzero, abs=0.005)
    # P(z = 1) = P(s >= (1-γ)/(ζ-γ)) = sigmoid(log α - β·logit((1-γ)/(ζ-γ)))
    q = (1 - GAMMA) / (ZETA - GAMMA)
    p_one = sigmoid(-0.5 - BETA * math.log(q / (1 - q)))
    assert (z == 1).float().mean().item() == pytest.approx(p_one, abs=0.005)


def test_penalty_value_and_gradient():
    gate = HardConcreteGate(3, l0_lambda=0.01)
    with torch.no_grad():
        gate.log_alpha.copy_(torch.tensor([0.0, 1.0, -2.0]))
    pen = gate.penalty()
    want = 0.01 * sum(sigmoid(a + 2 / 3 * math.log(11)) for a in (0.0, 1.0, -2.0))
    assert pen.item() == pytest.approx(want, rel=1e-6)
    pen.backward()
    assert (gate.log_alpha.grad > 0).all()   # the penalty pushes every gate towards closing


def test_test_time_gate_is_deterministic_and_init_follows_the_spec():
    gate = HardConcreteGate(10_000, generator=torch.Generator().manual_seed(0))
    la = gate.log_alpha.detach()
    assert la.mean().item() == pytest.approx(math.log((1 - 0.5) / 0.5), abs=1e-3)
    assert la.std().item() == pytest.approx(0.01, rel=0.05)
    gate.eval()
    assert torch.equal(gate(), gate()) and torch.equal(gate(), eval_gate(la))
    gate.train()
    assert not torch.equal(gate(), gate())


def test_log_alpha_is_clamped_before_use():
    gate = HardConcreteGate(2)
    with torch.no_grad():
        gate.log_alpha.copy_(torch.tensor([10.0, -10.0]))
    gate()
    assert gate.log_alpha.tolist() == pytest.approx([LOG_ALPHA_MAX, LOG_ALPHA_MIN])
    # in range: forward, penalty and backward work without an in-place error
    (gate().sum() + gate.penalty()).backward()


def test_gates_are_architecture_parameters_with_a_penalty_and_scalars():
    gate = HardConcreteGate(4, l0_lambda=0.5)
    assert arch_parameters(gate, "logits") == [gate.log_alpha]
    with torch.no_grad():
        gate.log_alpha.copy_(torch.tensor([-4.0, -3.0, 0.0, 4.0]))
    s = gate.scalars()
    assert s["l0/open"] == 2 and s["l0/gates"] == 4
    assert s["l0/penalty"] == pytest.approx(gate.penalty().item())
    assert module_penalty(torch.nn.Sequential(gate)).item() == pytest.approx(gate.penalty().item())


def test_wrappers_gate_ops_edges_and_channels():
    x = torch.randn(2, 3, 4, 4)
    op = GatedOp(torch.nn.Identity())
    edge = GatedEdge(MixedOp([torch.nn.Identity(), torch.nn.Identity()], ["a", "b"]))
    ch = gate_channels(torch.nn.Identity(), 3)
    for m in (op, edge, ch):
        m.eval()
    with torch.no_grad():
        op.gate.log_alpha.fill_(-4.0)                 # closed
        edge.gate.log_alpha.fill_(4.0)                # fully open
        ch[1].gate.log_alpha.copy_(torch.tensor([4.0, -4.0, 0.0]))
    assert torch.equal(op(x), torch.zeros_like(x))
    assert torch.allclose(edge(x, torch.tensor([0.25, 0.75])), x)
    y = ch(x)
    assert torch.equal(y[:, 0], x[:, 0]) and torch.equal(y[:, 1], torch.zeros_like(x[:, 1]))
    assert torch.allclose(y[:, 2], 0.5 * x[:, 2])
    assert isinstance(ch[1], ChannelGate)


# ----------------------------------------------------------------------------- gated NB201 cells

def build(gates):
    return get_space("nb201").build_supernet(build_estimator("softmax"), num_classes=3, C=4, N=1,
                                             in_channels=3, gates=gates, l0_lambda=1e-3,
                                             generator=torch.Generator().manual_seed(0))


def prefer(model, op):
    with torch.no_grad():
        model.arch["cell"].alpha.zero_()
        model.arch["cell"].alpha[:, OPS.index(op)] = 1.0


def test_edge_gates_drop_closed_edges_from_the_genotype():
    model = build("edge")
    prefer(model, "nor_conv_3x3")
    with torch.no_grad():
        model.arch["gates"].log_alpha.copy_(torch.tensor([4.0, -4.0, 4.0, -4.0, 0.0, 4.0]))
    assert model.genotype().ops == ("nor_conv_3x3", "none", "nor_conv_3x3", "none", "nor_conv_3x3", "nor_conv_3x3")
    model.eval()
    x = torch.randn(2, 3, 8, 8)
    assert model(x).shape == (2, 3)


def test_op_gates_pick_the_best_open_candidate():
    model = build("op")
    prefer(model, "nor_conv_3x3")
    la = torch.full((6, 5), 4.0)
    la[0, OPS.index("nor_conv_3x3")] = -4.0          # edge 0: preferred op closed -> next best open
    with torch.no_grad():
        model.arch["cell"].alpha[0, OPS.index("avg_pool_3x3")] = 0.5
        la[1] = -4.0                                  # edge 1: every op closed -> none
        model.arch["gates"].log_alpha.copy_(la.flatten())
    ops = model.genotype().ops
    assert ops[0] == "avg_pool_3x3" and ops[1] == "none" and ops[2:] == ("nor_conv_3x3",) * 4


def test_channel_gates_close_an_edge_only_when_all_its_channels_are_closed_in_every_cell():
    model = build("channel")
    prefer(model, "skip_connect")
    cells = [m for n, m in model.named_modules() if type(m).__name__ == "SearchCell"]
    assert len(cells) == 3
    for cell in cells:
        la = torch.full((6, cell.C), 4.0)
        la[2] = -4.0                                  # edge 2 closed everywhere
        if cell is cells[0]:
            la[4, :-1] = -4.0                         # edge 4: one channel still open in one cell
        with torch.no_grad():
            cell.gate.log_alpha.copy_(la.flatten())
    ops = model.genotype().ops
    assert ops[2] == "none" and ops[4] == "skip_connect" and ops.count("none") == 1


@pytest.mark.parametrize("gates", ["edge", "op", "channel"])
def test_gated_supernet_trains_gates_through_the_penalty(gates):
    model = build(gates)
    x, y = torch.randn(2, 3, 8, 8), torch.tensor([0, 1])
    loss = torch.nn.functional.cross_entropy(model(x), y) + model.penalty()
    loss.backward()
    gate_params = [c.log_alpha for n, c in choices(model).items() if "gate" in n]
    assert gate_params and all(p.grad is not None and (p.grad != 0).any() for p in gate_params)
