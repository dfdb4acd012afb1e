"""The program block: exact tables, one step by hand, the maze template run exactly with a one-hot
program and a perfect LOOK on every test maze, relaxed execution against finite differences
(float64), and the learnable lines under every estimator."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from nas.blocks.program import (FixedProgram, Instruction, ProgramBlock, Template, apply_table, program_text,
                                run_program, table)
from nas.data.maze import MazeInput, MazeOptions, follow, generate
from nas.estimators import CATEGORICAL, ESTIMATORS, build_estimator
from nas.supernet import arch_parameters, weight_parameters
from nas.spaces.program.maze import INSTRUCTIONS, MazeSupernet, joint_log_probs, maze_template, perfect_look

CAT = [n for n in ESTIMATORS.names() if CATEGORICAL in ESTIMATORS.get(n).kinds]
SPECS = [(n, "none") for n in CAT] + [(n, "adaptive") for n in CAT if ESTIMATORS.get(n).supports_noise]
# every program of the 3-line template that is correct on all mazes (found by running all 1,728 on
# 300 test mazes): halting on the value, LOOK first, then MOVE and INC in a cycle; halting on a
# write, also MOVE, LOOK, INC in a cycle (dir = 0 at the start: a first MOVE stays)
CORRECT = [(("LOOK", "MOVE", "INC"), (1, 2, 0)), (("LOOK", "INC", "MOVE"), (1, 2, 0)),
           (("LOOK", "MOVE", "INC"), (2, 0, 1)), (("LOOK", "INC", "MOVE"), (2, 0, 1))]
CORRECT_ON_WRITE = CORRECT + [(("MOVE", "LOOK", "INC"), (1, 2, 0)), (("MOVE", "INC", "LOOK"), (2, 0, 1))]


@pytest.fixture(scope="module")
def test_mazes():
    return generate("test", 0, MazeOptions())


def one_hot_program(instrs, gotos, names=INSTRUCTIONS, dtype=torch.float32):
    W = F.one_hot(torch.tensor([names.index(x) for x in instrs]), len(names)).to(dtype)
    return W, F.one_hot(torch.tensor(gotos), len(gotos)).to(dtype)


def run_maze(program, data, dtype=torch.float32, halt_on="value"):
    tpl = maze_template(5, 3, 15, halt_on=halt_on)
    W, G = one_hot_program(*program, dtype=dtype)
    init = {"X": F.one_hot(data.start[:, 0], 5).to(dtype), "Y": F.one_hot(data.start[:, 1], 3).to(dtype),
            "dir": F.one_hot(torch.zeros_like(data.moves), 5).to(dtype),
            "reg": F.one_hot(torch.zeros_like(data.moves), 15).to(dtype)}
    return run_program(tpl, W, G, init, {"look": perfect_look(data.digits, dtype)})


# ----------------------------------------------------------------------------- tables and one step

def test_table_is_the_one_hot_graph_of_the_function():
    t = table(lambda a, b: (a + b) % 3, (3, 2), 3)
    assert t.shape == (3, 2, 3)
    for a, b in itertools.product(range(3), range(2)):
        assert t[a, b].tolist() == F.one_hot(torch.tensor((a + b) % 3), 3).float().tolist()
    with pytest.raises(ValueError, match="outside"):
        table(lambda a: a + 1, (3,), 3)


def test_apply_table_is_the_distribution_of_f_of_independent_inputs():
    t = table(lambda a, b: (a + b) % 3, (3, 2), 3)
    pa = torch.tensor([[0.5, 0.25, 0.25]])
    pb = torch.tensor([[0.75, 0.25]])
    out = apply_table(t, [pa, pb])[0]
    want = torch.zeros(3)
    for a, b in itertools.product(range(3), range(2)):
        want[(a + b) % 3] += pa[0, a] * pb[0, b]
    assert torch.allclose(out, want)
    per_example = t.expand(1, *t.shape)                           # the layout of a learned function
    assert torch.allclose(apply_table(per_example, [pa, pb]), out[None])


def test_template_checks_registers_and_table_shapes():
    ok = table(lambda r: r, (3,), 3)
    with pytest.raises(ValueError, match="unknown register 'z'"):
        Template({"r": 3}, [Instruction("A", {"r": (("z",), ok)})], lines=1, steps=1)
    with pytest.raises(ValueError, match="shape"):
        Template({"r": 4}, [Instruction("A", {"r": (("r",), ok)})], lines=1, steps=1)
    with pytest.raises(ValueError, match="learned function 'look'"):
        ProgramBlock(maze_template(5, 3, 15), build_estimator("softmax"))


def test_one_relaxed_step_by_hand():
    """One step of a 2-line machine with a mixed program: q = ip·W, the written register mixes the
    instruction outputs, the others keep their value, ip' = ip·G."""
    tpl = Template({"r": 3, "s": 2}, [Instruction("INC", {"r": (("r",), table(lambda r: (r + 1) % 3, (3,), 3))}),
                                      Instruction("NOP", {})], lines=2, steps=1)
    W = torch.tensor([[0.25, 0.75], [1.0, 0.0]])
    G = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    r0 = torch.tensor([[0.5, 0.5, 0.0]])
    s0 = torch.tensor([[0.3, 0.7]])
    out = run_program(tpl, W, G, {"r": r0, "s": s0}, {})
    # line 0 runs (ip = [1, 0]): INC with 0.25, NOP with 0.75
    assert torch.allclose(out["r"], 0.75 * r0 + 0.25 * torch.tensor([[0.0, 0.5, 0.5]]))
    assert torch.allclose(out["s"], s0)


def test_halting_on_the_value_stops_a_program_that_does_not_look_first():
    """dir starts at 0: under halt_on="value" a first line other than LOOK halts after one step."""
    data = generate("test", 0, MazeOptions(test=20))
    out = run_maze((("INC", "MOVE", "LOOK"), (1, 2, 0)), data)
    assert out["reg"].argmax(1).tolist() == [1] * 20
    assert torch.equal(out["X"].argmax(1), data.start[:, 0]) and out["halted"].min() == 1


def test_halting_on_a_write_ignores_the_initial_dir():
    """halt_on="write": a program that never LOOKs never halts (INC and MOVE alternate: 23 INCs in
    45 steps, reg = 8; MOVE by dir 0 stays); INC, LOOK, MOVE halts at the first LOOK of a halt
    cell, one INC ahead of the moves."""
    data = generate("test", 0, MazeOptions(test=40))
    never = run_maze((("INC", "MOVE", "MOVE"), (1, 0, 0)), data, halt_on="write")
    assert never["reg"].argmax(1).tolist() == [8] * 40 and never["halted"].max() == 0
    assert torch.equal(never["X"].argmax(1), data.start[:, 0])
    out = run_maze((("INC", "LOOK", "MOVE"), (1, 2, 0)), data, halt_on="write")
    assert bool(out["halted"].eq(1).all())
    assert torch.equal(out["reg"].argmax(1), (data.moves + 1) % 15)
    assert torch.equal(out["X"].argmax(1), data.final[:, 0]) and torch.equal(out["Y"].argmax(1), data.final[:, 1])
    with pytest.raises(ValueError, match="halt_on"):
        maze_template(5, 3, 15, halt_on="never")


# ----------------------------------------------------------------------------- exact execution

@pytest.mark.parametrize("program,halt_on", [(p, "value") for p in CORRECT] + [(p, "write") for p in CORRECT_ON_WRITE])
def test_correct_program_with_a_perfect_look_is_exact_on_every_test_maze(program, halt_on, test_mazes):
    out = run_maze(program, test_mazes, halt_on=halt_on)
    for r in ("X", "Y", "reg", "dir"):
        assert torch.equal(out[r].max(1).values, torch.ones(len(test_mazes)))  # one-hot: a discrete run
    assert torch.equal(out["X"].argmax(1), test_mazes.final[:, 0])
    assert torch.equal(out["Y"].argmax(1), test_mazes.final[:, 1])
    assert torch.equal(out["reg"].argmax(1), test_mazes.moves % 15)
    assert bool(out["halted"].eq(1).all())
    # and the joint outcome the search loop scores
    assert torch.equal(joint_log_probs(out).argmax(1), test_mazes.targets())


def test_a_wrong_program_is_not_exact_and_the_truth_is_what_following_the_arrows_gives(test_mazes):
    out = run_maze((("LOOK", "MOVE", "INC"), (1, 2, 1)), test_mazes)   # LOOKs once only
    assert not torch.equal(joint_log_probs(out).argmax(1), test_mazes.targets())
    for i in range(0, len(test_mazes), 97):
        x, y, n = follow(test_mazes.digits[i], tuple(test_mazes.start[i].tolist()), 14)
        assert (x, y, n) == (*test_mazes.final[i].tolist(), int(test_mazes.moves[i]))


def test_relaxed_execution_keeps_every_register_a_distribution():
    g = torch.Generator().manual_seed(0)
    data = generate("test", 0, MazeOptions(test=8))
    W = F.softmax(torch.randn(3, 4, generator=g), -1).double()
    G = F.softmax(torch.randn(3, 3, generator=g), -1).double()
    look = F.softmax(torch.randn(8, 5, 3, 5, generator=g), -1).double()
    init = {"X": F.one_hot(data.start[:, 0], 5).double(), "Y": F.one_hot(data.start[:, 1], 3).double(),
            "dir": F.one_hot(torch.zeros(8, dtype=torch.long), 5).double(),
            "reg": F.one_hot(torch.zeros(8, dtype=torch.long), 15).double()}
    out = run_program(maze_template(5, 3, 15), W, G, init, {"look": look})
    for r in ("X", "Y", "dir", "reg"):
        assert torch.allclose(out[r].sum(1), torch.ones(8, dtype=torch.float64))
        assert bool((out[r] >= 0).all())
    assert bool(((out["halted"] > 0) & (out["halted"] <= 1)).all())


def test_float32_sums_stay_one_over_all_45_steps():
    """Tables over two registers multiply rounding errors; without renormalising every step the
    float32 sums drifted exponentially (1e-3 after 30 steps, then NaN in a search)."""
    g = torch.Generator().manual_seed(2)
    data = generate("test", 0, MazeOptions(test=64))
    W, G = one_hot_program(*CORRECT[0])
    look = F.softmax(3 * torch.randn(64, 5, 3, 5, generator=g), -1)
    init = {"X": F.one_hot(data.start[:, 0], 5).float(), "Y": F.one_hot(data.start[:, 1], 3).float(),
            "dir": F.one_hot(torch.zeros(64, dtype=torch.long), 5).float(),
            "reg": F.one_hot(torch.zeros(64, dtype=torch.long), 15).float()}
    out = run_program(maze_template(5, 3, 15), W, G, init, {"look": look})
    for r in ("X", "Y", "dir", "reg"):
        assert float((out[r].sum(1) - 1).abs().max()) < 1e-5
    assert float(out["halted"].max()) <= 1.0 + 1e-6


def test_relaxed_execution_gradients_match_finite_differences_float64():
    """Program weights W, G, the LOOK table and the initial distributions, 15 steps."""
    g = torch.Generator().manual_seed(1)
    B, tpl = 2, maze_template(5, 3, 15, steps=15)
    W = F.softmax(torch.randn(3, 4, generator=g, dtype=torch.float64), -1).requires_grad_()
    G = F.softmax(torch.randn(3, 3, generator=g, dtype=torch.float64), -1).requires_grad_()
    look = F.softmax(torch.randn(B, 5, 3, 5, generator=g, dtype=torch.float64), -1).requires_grad_()
    X0 = F.softmax(torch.randn(B, 5, generator=g, dtype=torch.float64), -1).requires_grad_()
    Y0 = F.one_hot(torch.tensor([0, 2]), 3).double()
    zero = torch.zeros(B, dtype=torch.long)

    def f(W, G, look, X0):
        out = run_program(tpl, W, G, {"X": X0, "Y": Y0, "dir": F.one_hot(zero, 5).double(),
                                      "reg": F.one_hot(zero, 15).double()}, {"look": look})
        return torch.cat([out["X"], out["Y"], out["reg"], out["halted"][:, None]], 1)

    assert torch.autograd.gradcheck(f, (W, G, look, X0), eps=1e-6, atol=1e-6, rtol=1e-4)


# ----------------------------------------------------------------------------- the learnable lines

def tiny_batch(n=6):
    data = generate("train", 0, MazeOptions(train=n))
    return MazeInput(data.images, data.start), data.targets()


@pytest.mark.parametrize("name,noise", SPECS)
def test_every_estimator_trains_the_lines_and_look(name, noise):
    torch.manual_seed(0)
    est = build_estimator(name, noise=noise)
    model = MazeSupernet(est, width=5, height=3, count=15, steps=12, look_hidden=8,
                         generator=torch.Generator().manual_seed(0))
    # a program that keeps running (a first line other than LOOK halts at once, and then no goto
    # matters: a true zero gradient of a hard program)
    set_program(model.block, ("LOOK", "MOVE", "DEC"), (1, 2, 0))
    x, y = tiny_batch()
    loss = F.cross_entropy(model(x), y)
    assert torch.isfinite(loss)
    loss.backward()
    arch = arch_parameters(model, "logits") + arch_parameters(model, "discrete")
    assert len(arch) == 2 and all(p.grad is not None and torch.isfinite(p.grad).all() for p in arch)
    assert all(p.grad.abs().sum() > 0 for p in arch)
    look = weight_parameters(model)
    assert look and all(p.grad is not None and p.grad.abs().sum() > 0 for p in look)
    if noise == "adaptive":
        assert all(p.grad is not None for p in arch_parameters(model, "noise"))


def set_program(block, instrs, gotos, scale=5.0):
    """Make the block's choices derive to the given program whatever the estimator (logits:
    ``scale`` on the chosen candidates, 0 elsewhere)."""
    for choice, rows in ((block.instr, [INSTRUCTIONS.index(x) for x in instrs]), (block.goto, list(gotos))):
        hot = F.one_hot(torch.tensor(rows), len(choice.candidates)).float()
        with torch.no_grad():
            for pname, role in choice.roles.items():
                if role == "logits":
                    getattr(choice, pname).copy_(scale * hot)
                elif role == "discrete":
                    getattr(choice, pname).copy_(hot)


@pytest.mark.parametrize("name", ["softmax", "bop", "dirichlet"])
def test_eval_mode_runs_the_derived_program_with_argmax_look(name, test_mazes):
    model = MazeSupernet(build_estimator(name), width=5, height=3, count=15)
    set_program(model.block, *CORRECT[0])
    assert model.block.text() == program_text(*CORRECT[0]) == "0: LOOK; goto 1 / 1: MOVE; goto 2 / 2: INC; goto 0"
    model.eval()
    x = MazeInput(test_mazes.images[:50], test_mazes.start[:50])
    out = model.run(x)
    assert bool((out["X"].max(1).values == 1).all())          # a discrete run, argmax LOOK included
    ref = FixedProgram(model.template, *CORRECT[0], {"look": model.block.functions["look"]}).eval()
    ref_out = ref({"X": x.start[:, 0], "Y": x.start[:, 1]}, x)
    assert all(torch.equal(out[r], ref_out[r]) for r in ("X", "Y", "reg"))
    oracle = model.run(x, {"look": perfect_look(test_mazes.digits[:50])})
    assert torch.equal(joint_log_probs(oracle).argmax(1), test_mazes.targets()[:50])


def test_training_forward_mixes_normalised_rows_under_noise():
    """Noisy rows of STE + adaptive noise do not sum to 1; the block renormalises them, so the
    final registers are distributions."""
    model = MazeSupernet(build_estimator("ste", noise="adaptive", sigma0=0.5), width=5, height=3, count=15,
                         steps=10, look_hidden=8, generator=torch.Generator().manual_seed(0))
    W, G = model.block.program()
    assert torch.allclose(W.sum(1), torch.ones(3)) and torch.allclose(G.sum(1), torch.ones(3))
    raw = model.block.instr().weights
    assert not torch.allclose(raw.sum(1), torch.ones(3))
    x, _ = tiny_batch()
    out = model.run(x)
    assert torch.allclose(out["reg"].sum(1), torch.ones(6), atol=1e-5)
