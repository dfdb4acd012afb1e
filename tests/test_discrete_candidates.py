"""DNF and L0-gated ops as candidates of the nb201 and darts spaces: their discrete parameters
learned by every estimator (ste/bop with adaptive noise included), L0 gates learned by hard
concrete or by the search's estimator, DARTS gates, the learned rules in the run folder, and the
retrained network's DNF op staying binary."""
import re

import pytest
import torch
import torch.nn.functional as F
import yaml

from nas.blocks.dnf import DNFOp
from nas.blocks.l0 import GATE_INIT_LOGIT, ChannelGatedOp, EstimatorGate, HardConcreteGate
from nas.blocks.rules import clauses_of, literal_name, rule_text
from nas.estimators import BINARY, ESTIMATORS, build_estimator
from nas.spaces.base import module_penalty as regularization
from nas.supernet import choices
from nas.spaces import get_space
from nas.spaces.nb201 import EDGE_NAMES, NB201Genotype

from recompute import retrain_test_acc, search_val_acc
from test_dnf import set_binary

BINARY_ESTIMATORS = [n for n in ESTIMATORS.names() if BINARY in ESTIMATORS.get(n).kinds]
SPECS = [(n, "none") for n in BINARY_ESTIMATORS] + [("ste", "adaptive"), ("bop", "adaptive")]
NB201_OPS = ["none", "skip_connect", "nor_conv_3x3", "dnf_1x1", "l0_nor_conv_3x3"]
DARTS_OPS = ["none", "skip_connect", "sep_conv_3x3", "dnf_1x1", "l0_dil_conv_3x3"]


def supernet(space, name, noise="none", **kw):
    torch.manual_seed(0)
    args = dict(num_classes=3, C=4, in_channels=3, op_args={"dnf_1x1": {"rules": 2}},
                generator=torch.Generator().manual_seed(0))
    args.update(dict(N=1, ops=NB201_OPS) if space == "nb201" else dict(layers=3, ops=DARTS_OPS))
    args.update(kw)
    est = build_estimator(name, noise=noise)
    return get_space(space).build_supernet(est, **args), est


def ops_of(model, cls):
    return [m for m in model.modules() if isinstance(m, cls)]


def trained(choice):
    return [getattr(choice, n) for n, r in choice.roles.items() if r in ("logits", "discrete")]


@pytest.mark.parametrize("space", ["nb201", "darts"])
@pytest.mark.parametrize("name,noise", SPECS, ids=[f"{n}+noise" if z != "none" else n for n, z in SPECS])
def test_dnf_and_gated_candidates_learn_through_every_estimator(space, name, noise):
    gate_estimator = "search" if name in ("ste", "bop") else None
    model, est = supernet(space, name, noise)
    if gate_estimator:  # the same supernet with the L0 gates learned by the search's estimator
        model, est = supernet(space, name, noise, gate_estimator=est)
    x, y = torch.randn(2, 3, 8, 8), torch.tensor([0, 1])
    loss = F.cross_entropy(model(x), y) + regularization(model)
    loss.backward()
    dnf = ops_of(model, DNFOp)
    assert dnf and all(op.block.W.estimator is est for op in dnf)   # the run's estimator, not its own
    for choice in [c for op in dnf for c in (op.block.W, op.block.S)]:
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in trained(choice))
    # an op the estimator did not select (Bop, GDAS) learns from the sparsity penalty alone, whose
    # gradient is 0 at an entry that is 0: a few such ops may get none; most get one
    learning = [op for op in dnf if all((p.grad != 0).any() for c in (op.block.W, op.block.S) for p in trained(c))]
    assert len(learning) >= len(dnf) // 2, f"{len(learning)} of {len(dnf)} DNF ops get a gradient"
    gated = ops_of(model, ChannelGatedOp)
    assert gated and all(isinstance(g.gate, EstimatorGate if gate_estimator else HardConcreteGate) for g in gated)
    for g in gated:  # the penalty alone reaches every gate
        assert all(p.grad is not None and (p.grad != 0).any() for p in trained(g.gate.choice))
    if noise == "adaptive":
        sigmas = [p for op in dnf for p in op.block.W.parameters_by_role("noise")]
        assert sigmas and any(s.grad is not None and (s.grad != 0).any() for s in sigmas)


def test_estimator_gate_penalty_is_lambda_times_the_open_gates_and_starts_open():
    for name in ("ste", "bop", "sigmoid"):
        gate = EstimatorGate(5, 0.5, build_estimator(name))
        gate.train()
        z = gate()
        if name == "sigmoid":
            assert torch.allclose(z, torch.full((5,), GATE_INIT_LOGIT).sigmoid(), atol=1e-2)
        else:
            assert torch.equal(z.detach(), torch.ones(5))       # gates start open
        assert float(gate.penalty().detach()) == pytest.approx(0.5 * float(z.detach().sum()))
        assert gate.open().all()


def test_bop_closes_a_gate_whose_only_gradient_is_the_penalty():
    """Bop on a binary state: m ← (1-γ)m + γ·λ, flip 1 → 0 once m > τ: with γ = 0.5, λ = 1,
    τ = 0.7, m is 0.5, 0.75, ... so the gate closes at the second step, not the first."""
    est = build_estimator("bop", gamma=0.5, threshold=0.7)
    gate = EstimatorGate(3, 1.0, est)
    opt = est.discrete_optimizer(trained(gate.choice))
    for step, want_open in ((1, True), (2, False)):
        gate.zero_grad()
        gate()
        gate.penalty().backward()
        opt.step()
        assert bool(gate.open().all()) is want_open, step


def test_channel_gated_op_keeps_the_shared_relu_and_describes_its_open_channels():
    from nas.ops import build_op
    op = build_op("l0_nor_conv_3x3", 4, 4, 1, False)
    assert isinstance(op, ChannelGatedOp) and op.takes_relu_input
    x = torch.randn(2, 4, 5, 5)
    op.eval()
    assert torch.allclose(op(x), op(F.relu(x), True))
    with torch.no_grad():
        op.gate.log_alpha.copy_(torch.tensor([4.0, -4.0, 4.0, -4.0]))
    assert op.open_channels() == [0, 2] and op.describe() == "open channels 2/4: 0 2"
    y = op(x)
    assert torch.equal(y[:, 1], torch.zeros_like(y[:, 1])) and y[:, 0].abs().sum() > 0


# ----------------------------------------------------------------------------- DARTS gates

def darts_gated(gates):
    return supernet("darts", "softmax", gates=gates, ops=["none", "skip_connect", "sep_conv_3x3", "max_pool_3x3"])[0]


def prefer_darts(model, op):
    with torch.no_grad():
        for name in ("normal", "reduce"):
            model.arch[name].alpha.zero_()
            model.arch[name].alpha[:, model.op_names.index(op)] = 1.0
            model.arch[name].alpha[:, model.op_names.index("max_pool_3x3")] = 0.5


def test_darts_edge_gates_rank_closed_edges_last():
    model = darts_gated("edge")
    prefer_darts(model, "sep_conv_3x3")
    la = torch.full((14,), 4.0)
    la[0] = -4.0            # node 2 loses input 0: with 2 inputs it must keep both anyway
    la[[2, 4]] = -4.0       # node 3 (edges 2, 3, 4 = inputs 0, 1, 2): only input 1 open
    with torch.no_grad():
        model.arch["normal_gates"].log_alpha.copy_(la)
    nodes = model.genotype().nodes("normal")
    assert [src for _, src in nodes[0]] == [1, 0]        # the open edge first, the closed one last
    assert nodes[1][0] == ("sep_conv_3x3", 1)
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 3)


def test_darts_op_gates_remove_a_closed_candidate_from_its_edge():
    model = darts_gated("op")
    prefer_darts(model, "sep_conv_3x3")
    la = torch.full((14, 4), 4.0)
    la[:, 2] = -4.0         # sep_conv_3x3 closed everywhere in the normal cell: max_pool is next
    with torch.no_grad():
        model.arch["normal_gates"].log_alpha.copy_(la.flatten())
    g = model.genotype()
    assert {op for op, _ in g.normal} == {"max_pool_3x3"} and {op for op, _ in g.reduce} == {"sep_conv_3x3"}


def test_darts_channel_gates_close_an_edge_only_when_closed_in_every_cell_of_its_type():
    model = darts_gated("channel")
    prefer_darts(model, "sep_conv_3x3")
    normal = [c for c in model.cells if not c.reduction]
    for cell in normal:
        la = torch.full((14, cell.C), 4.0)
        la[0] = -4.0                                    # edge 2<-0 closed in every normal cell
        with torch.no_grad():
            cell.gate.log_alpha.copy_(la.flatten())
    nodes = model.genotype().nodes("normal")
    assert [src for _, src in nodes[0]] == [1, 0]
    loss = F.cross_entropy(model(torch.randn(2, 3, 8, 8)), torch.tensor([0, 1])) + regularization(model)
    loss.backward()
    assert all(c.gate.log_alpha.grad is not None for c in model.cells)


# ----------------------------------------------------------------------------- learned rules

def test_a_derived_dnf_edge_writes_its_rules_per_output_channel():
    model, _ = supernet("nb201", "bop")
    with torch.no_grad():
        model.arch["cell"].state.zero_()
        model.arch["cell"].state[:, NB201_OPS.index("skip_connect")] = 1
        model.arch["cell"].state[3, :] = 0
        model.arch["cell"].state[3, NB201_OPS.index("dnf_1x1")] = 1     # edge 3<-0 is the DNF op
    cells = [c for c in model.cells if type(c).__name__ == "SearchCell"]
    op = cells[0].edges[3].ops[NB201_OPS.index("dnf_1x1")]
    # out 0 = (in1 AND NOT in2), out 1 = TRUE (an empty conjunction), out 2 and 3 = FALSE
    W = torch.zeros(4, 8, 2)
    S = torch.zeros(4, 2)
    W[0, 2, 0] = W[0, 5, 0] = 1
    S[0, 0] = S[1, 1] = 1
    set_binary(op.block.W, W.flatten())
    set_binary(op.block.S, S.flatten())
    assert op.rules() == ["IF (in1 AND NOT in2) THEN out 0", "IF TRUE THEN out 1",
                          "IF FALSE THEN out 2", "IF FALSE THEN out 3"]
    text = model.artifacts()["learned_ops.txt"]
    assert text.count("edge 3<-0 dnf_1x1:") == 3                 # one section per cell
    assert "cells.0 edge 3<-0 dnf_1x1:\nIF (in1 AND NOT in2) THEN out 0\nIF TRUE THEN out 1\n" in text
    # every other cell's section is its own op's rules, each line one output channel
    for i, cell in enumerate(cells):
        other = cell.edges[3].ops[NB201_OPS.index("dnf_1x1")]
        W, S = other.block.derived()
        lines = [rule_text([[literal_name(l, [f"in{k}" for k in range(other.block.K)]) for l in cl]
                            for cl in clauses_of(W[t], S[t])], str(t), "out") for t in range(other.block.T)]
        assert other.rules() == lines and len(lines) == cell.C
        assert "\n".join(lines) in text


def test_dnf_rules_hold_on_binary_predicates():
    """A printed rule, evaluated on the signs of the input channels, is the op's output before
    its BN (eval mode: the derived binary rule pool)."""
    torch.manual_seed(0)
    op = DNFOp(3, 4, 1, False, build_estimator("ste"), rules=3)
    with torch.no_grad():
        op.block.W.alpha.copy_(torch.randn_like(op.block.W.alpha) - 0.8)
        op.block.S.alpha.copy_(torch.randn_like(op.block.S.alpha) + 0.5)
    op.eval()
    signs = torch.tensor([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=torch.float)
    x = (signs * 2 - 1) * 30.0                             # sigmoid(±30): the predicates 0 and 1
    y, _ = op.block(torch.sigmoid(x))
    for t, line in enumerate(op.rules()):
        cond = re.match(r"IF (.*) THEN out \d+", line).group(1)
        expr = cond.replace("NOT ", "not ").replace("AND", "and").replace("OR", "or")
        expr = expr.replace("TRUE", "True").replace("FALSE", "False")
        for row, bits in enumerate(signs.tolist()):
            env = {f"in{k}": bool(v) for k, v in enumerate(bits)}
            assert bool(eval(expr, {}, env)) == bool(y[row, t] > 0.5), (line, bits)


def test_retrained_dnf_op_stays_binary_and_writes_its_rules(tmp_path):
    from nas.retrainer import run_retrain
    from nas.config import load_config
    from nas.retrainer import RetrainConfig
    cell = "|dnf_1x1~0|+|nor_conv_3x3~0|l0_nor_conv_3x3~1|+|skip_connect~0|none~1|dnf_1x1~2|"
    net = get_space("nb201").build_network(NB201Genotype.from_string(cell), num_classes=3, C=4, N=1,
                                           op_args={"dnf_1x1": {"rules": 2}})
    dnf = ops_of(net, DNFOp)
    assert len(dnf) == 6 and all(op.block.N == 2 and op.block.W.estimator.name == "ste" for op in dnf)
    seen = []
    for op in dnf:
        op.block.register_forward_hook(lambda m, i, o: seen.append(m._last))
    net.train()
    net(torch.randn(2, 3, 8, 8)).sum().backward()
    assert seen and all(set(t.unique().tolist()) <= {0.0, 1.0} for W, S in seen for t in (W, S))
    # a retraining run: the op's penalty joins the loss, its rules and the open channels are written
    cfg = load_config("retrain_nb201_digits", ["model.C=4", "data.subset=96", "data.test_subset=64",
                                               "data.resize=8", "trainer.epochs=1", "trainer.max_steps_per_epoch=2",
                                               "device=cpu", f"model.genotype={cell}",
                                               "model.op_args={dnf_1x1: {rules: 2}}"], cls=RetrainConfig)
    res = run_retrain(cfg, tmp_path / "rt", quiet=True)
    learned = (tmp_path / "rt" / "learned_ops.txt").read_text()
    assert learned.count("THEN out") == 2 * (4 + 8 + 16) and "open channels" in learned
    assert yaml.safe_load((tmp_path / "rt" / "genotype.yaml").read_text())["op_args"] == {"dnf_1x1": {"rules": 2}}
    assert res.metrics["test_acc"] == pytest.approx(retrain_test_acc(tmp_path / "rt"))  # with the recorded op_args


def test_search_with_dnf_and_gated_candidates_end_to_end(tmp_path):
    """bop + adaptive noise learns α, the DNF rule pools and (gate_estimator=search) the L0 gates
    of a DARTS supernet; the run derives, writes its genotype with the op options, and its
    genotype retrains."""
    from nas.config import load_config
    from nas.searcher.run import run_search
    cfg = load_config("darts_tiny", ["space.C=4", "space.layers=3", "data.subset=96", "data.batch_size=16",
                                     "trainer.epochs=1", "trainer.max_steps_per_epoch=2", "trainer.bn_batches=1",
                                     "device=cpu", "estimator.name=bop", "estimator.noise=adaptive",
                                     "space.ops=[skip_connect, sep_conv_3x3, dnf_1x1, l0_sep_conv_3x3]",
                                     "space.op_args={dnf_1x1: {rules: 2}}", "space.gates=edge",
                                     "space.gate_estimator=search", "space.l0_lambda=0.01"])
    res = run_search(cfg, tmp_path / "run", quiet=True)
    # the supernet rebuilt from the checkpoint (rule pools, gates, Bop and σ state) scores the same
    assert res.metrics["val_acc"] == pytest.approx(search_val_acc(tmp_path / "run"))
    record = yaml.safe_load((tmp_path / "run" / "genotype.yaml").read_text())
    assert record["op_args"] == {"dnf_1x1": {"rules": 2}, "l0_sep_conv_3x3": {"l0_lambda": 0.01}}
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    gates = {k: v for k, v in ckpt["model"].items() if k.endswith("_gates.choice.state")}
    assert set(gates) == {"arch.normal_gates.choice.state", "arch.reduce_gates.choice.state"}
    assert all(set(v.unique().tolist()) <= {0.0, 1.0} for v in gates.values())
    ops = {op for op, _ in res.genotype.normal + res.genotype.reduce}
    learned = tmp_path / "run" / "learned_ops.txt"
    assert learned.is_file() == bool(ops & {"dnf_1x1", "l0_sep_conv_3x3"})
    net = get_space("darts").build_network(res.genotype, num_classes=10, C=4, layers=3, auxiliary=False,
                                           op_args=record["op_args"])
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 10)


def test_log_and_product_conjunctions_agree_on_binary_rule_pools_only():
    from nas.blocks.dnf import dnf_forward, dnf_forward_log, literals
    # one literal c = 0.25 with weight 0.5: linear 1 - 0.5·0.75 = 0.625, geometric 0.25^0.5 = 0.5
    c, W, S = torch.tensor([[0.25]]), torch.tensor([[[0.5], [0.0]]]), torch.tensor([[1.0]])
    assert dnf_forward(literals(c), W, S)[0].item() == pytest.approx(0.625)
    assert dnf_forward_log(literals(c).log(), W, S)[0].item() == pytest.approx(0.5)
    gen = torch.Generator().manual_seed(3)
    c, W, S = torch.rand(40, 4, generator=gen), (torch.rand(2, 8, 3, generator=gen) > 0.6).float(), torch.ones(2, 3)
    assert torch.allclose(dnf_forward(literals(c), W, S)[0], dnf_forward_log(literals(c).log(), W, S)[0], atol=1e-6)
    # the op: with the STE's binary forward both forms compute the same, in training and in eval
    x = torch.randn(2, 3, 5, 5)
    outs = {}
    for form in ("log", "product"):
        torch.manual_seed(0)
        op = DNFOp(3, 4, 2, False, build_estimator("ste"), rules=3, form=form,
                   generator=torch.Generator().manual_seed(0))
        outs[form] = (op(x), op.eval()(x))
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(outs["log"], outs["product"]))
    with pytest.raises(ValueError, match="form must be one of log, product"):
        DNFOp(3, 4, 1, False, build_estimator("ste"), form="sum")


@pytest.mark.parametrize("name", ["softmax", "ste", "bop"])
def test_the_dnf_op_starts_from_short_conjunctions(name):
    """Each literal starts in a conjunction with probability 1/C_in (two of 2·C_in on average),
    whatever the estimator; the choices' own fair coin would make almost every conjunction hold a
    literal and its negation (constant FALSE)."""
    from nas.ops import build_op
    gen = torch.Generator().manual_seed(0)
    op = build_op("dnf_1x1", 16, 8, 1, False, estimator=build_estimator(name), rules=8, generator=gen)
    W, _ = op.block.derived()                                   # [8 towers, 32 literals, 8 rules]
    assert W.float().mean().item() == pytest.approx(1 / 16, abs=0.015)
    contradictory = (W[:, 0::2] & W[:, 1::2]).any(1).float().mean().item()
    assert contradictory < 0.1                                   # coin flips: 1 - (3/4)^16 = 0.99
    dense = build_op("dnf_1x1", 16, 8, 1, False, estimator=build_estimator(name), density=0.5, generator=gen)
    assert dense.block.derived()[0].float().mean().item() == pytest.approx(0.5, abs=0.05)
    with pytest.raises(Exception, match="density must be in"):
        build_op("dnf_1x1", 16, 8, 1, False, density=2.0)
