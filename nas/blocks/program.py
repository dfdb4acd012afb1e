"""Differentiable programs: a program template whose lines are discrete choices.

TerpreT (Gaunt, Brockschmidt, Singh, Kushman, Kohli, Taylor, Tarlow, "TerpreT: A Probabilistic
Programming Language for Program Induction", 2016) and its neural-library follow-up (Gaunt,
Brockschmidt, Kushman, Tarlow, "Differentiable Programs with Neural Libraries", ICML 2017). A
:class:`Template` fixes

* registers, each a finite set of values ``{0, …, size-1}`` with an initial value;
* instructions, each writing some registers as an exact function of others, given as a one-hot
  table ``table[u_1, …, u_m, v] = 1[f(u_1, …, u_m) = v]`` (:func:`table`), or as a *learned
  function*: an ``nn.Module`` that maps the block's context (e.g. images) to per-example logits
  ``[B, size(u_1), …, size(u_m), size(v)]``;
* ``n`` program lines, ``T`` unrolled steps and an optional halting condition (register, value).

The learnable discrete parameters are, per line ``i``, its instruction ``instr[i]`` and the next
line ``goto[i]``: two categorical :class:`~nas.supernet.Choice` s (``[n, I]`` and ``[n, n]``)
driven by the run's estimator, exactly as the op choices of a cell.

Execution (TerpreT's forward marginals, FMGD): every register ``r`` is carried as a distribution
``p_r [B, size]``, the instruction pointer as ``ip [B, n]`` (line 0 at the start) and halting as
``h [B]`` = P(halted). With ``W [n, I]`` and ``G [n, n]`` the rows of the two choices, normalised to
sum to 1 (the identity for one-hot and softmax rows; it keeps the noisy rows of
``estimator.noise=adaptive`` and the independent gates of ``sigmoid``/``tanh``/``softsign``
proper mixtures), one step is::

    q    = ip · W                                   # [B, I]  P(instruction k runs)
    f_k  = Σ_u Π_j p_{in_j}[u_j] · table_k[u, ·]    # what instruction k writes into r
    r'   = Σ_{k not writing r} q_k · p_r + Σ_{k writing r} q_k · f_k
    ip'  = ip · G
    s    = p'_{halt register}[halt value]              # halt_on="value" (the default)
         = Σ_{k writing the halt register} q_k · f_k[halt value]   # halt_on="write"
    state ← h·state + (1-h)·state'                  # a halted machine stays as it is
    h    ← h + (1-h)·s                              # computed as 1-h ← (1-h)(1-s)

``halt_on="value"``: the machine halts after the first step that leaves the halt register at the
halt value, whatever ran (the maze: ``dir`` starts at 0, so a program whose first line is not LOOK
halts after one step). ``halt_on="write"``: after a step whose instruction *writes* that value (a
LOOK at a halt cell); the initial value does not stop the machine, so every line and goto of a
hard program that keeps running bears on the output. The maze learns its program more often with
"value" (docs/results/programs.md).

Every instruction reads the registers as they were before the step. Registers are treated as
independent (a product of marginals), so a relaxed execution is TerpreT's mean-field
approximation; with a one-hot program and one-hot tables every distribution stays one-hot and the
execution is the exact discrete run. The estimator decides what the block executes in training:
relaxed weights (softmax, gumbel, dirichlet, gates) or hard straight-through one-hot rows (ste,
gumbel_hard, bop, noisy under ``estimator.noise=adaptive``). Learned functions give
``softmax(logits)`` in training. In eval mode the block runs the *derived* program (argmax) with
the ``argmax`` of every learned function: a discrete program, exactly what :func:`program_text`
prints.
"""
from __future__ import annotations

import itertools
import string
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..estimators.base import Estimator
from ..supernet.choice import Choice

TableSpec = Union[Tensor, str]   # a fixed one-hot table, or the name of a learned function
HALT_ON = ("value", "write")     # see Template


def table(fn: Callable[..., int], in_sizes: Sequence[int], out_size: int) -> Tensor:
    """The one-hot table ``[*in_sizes, out_size]`` of ``fn`` over every tuple of input values:
    ``T[u, v] = 1`` iff ``fn(*u) == v``. ``fn`` must return a value in ``range(out_size)``."""
    t = torch.zeros(*in_sizes, out_size)
    for u in itertools.product(*(range(s) for s in in_sizes)):
        v = fn(*u)
        if not 0 <= v < out_size:
            raise ValueError(f"table: f{u} = {v} lies outside 0..{out_size - 1}")
        t[u + (v,)] = 1.0
    return t


@dataclass(frozen=True)
class Instruction:
    """``writes``: register -> (input registers, table or learned-function name)."""

    name: str
    writes: Mapping[str, Tuple[Tuple[str, ...], TableSpec]] = field(default_factory=dict)


@dataclass
class Template:
    """A program template: registers (name -> number of values), initial values (default 0),
    instructions, ``lines`` learnable lines, ``steps`` unrolled steps and an optional halting
    condition ``halt = (register, value)``: the machine halts after the first step that leaves
    that register at that value (``halt_on="value"``) or whose instruction writes that value into
    it (``halt_on="write"``)."""

    registers: Dict[str, int]
    instructions: List[Instruction]
    lines: int
    steps: int
    init: Dict[str, int] = field(default_factory=dict)
    halt: Optional[Tuple[str, int]] = None
    halt_on: str = "value"

    def __post_init__(self) -> None:
        if self.lines < 1 or self.steps < 1 or not self.instructions:
            raise ValueError(f"a template needs lines >= 1, steps >= 1 and instructions; got lines="
                             f"{self.lines}, steps={self.steps}, {len(self.instructions)} instructions")
        if self.halt_on not in HALT_ON:
            raise ValueError(f"halt_on must be one of {', '.join(HALT_ON)}, got {self.halt_on!r}")
        names = [ins.name for ins in self.instructions]
        if len(set(names)) != len(names):
            raise ValueError(f"instruction names must be distinct, got {names}")
        for ins in self.instructions:
            for reg, (inputs, spec) in ins.writes.items():
                unknown = [r for r in (reg, *inputs) if r not in self.registers]
                if unknown:
                    raise ValueError(f"instruction {ins.name} names unknown register '{unknown[0]}'")
                want = tuple(self.registers[r] for r in (*inputs, reg))
                if isinstance(spec, Tensor) and tuple(spec.shape) != want:
                    raise ValueError(f"instruction {ins.name}: the table of {reg} has shape "
                                     f"{list(spec.shape)}, its registers need {list(want)}")
        for reg, v in {**self.init, **dict([self.halt] if self.halt else [])}.items():
            if reg not in self.registers or not 0 <= v < self.registers[reg]:
                raise ValueError(f"init/halt value {reg}={v} is not a value of a register")

    @property
    def names(self) -> List[str]:
        return [ins.name for ins in self.instructions]

    def functions(self) -> List[str]:
        """Names of the learned functions the instructions use."""
        return sorted({spec for ins in self.instructions for _, spec in ins.writes.values()
                       if isinstance(spec, str)})


def apply_table(tab: Tensor, inputs: Sequence[Tensor]) -> Tensor:
    """``Σ_u Π_j p_j[b, u_j] · tab[(b,) u, v]`` -> ``[B, V]``: the distribution of ``f(u)`` for
    independent inputs ``p_j [B, size_j]``; ``tab`` is ``[*sizes, V]`` or per example ``[B, *sizes, V]``."""
    idx = string.ascii_lowercase[:len(inputs)]
    t_sub = ("z" if tab.dim() == len(inputs) + 2 else "") + idx + "y"
    spec = ",".join(f"z{c}" for c in idx) + f",{t_sub}->zy"
    return torch.einsum(spec, *inputs, tab)


def one_hot(values: Tensor, size: int, dtype: torch.dtype) -> Tensor:
    return F.one_hot(values.long(), size).to(dtype)


def normalise_rows(w: Tensor) -> Tensor:
    """Rows divided by their sums: a mixture over candidates (see the module docstring)."""
    return w / w.sum(-1, keepdim=True)


def run_program(template: Template, W: Tensor, G: Tensor, init: Mapping[str, Tensor],
                tables: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """Execute ``template`` for ``template.steps`` steps with instruction weights ``W [n, I]`` and
    goto weights ``G [n, n]`` (rows summing to 1), initial distributions ``init`` (register ->
    ``[B, size]``; every register must be given) and learned-function tables ``tables`` (name ->
    ``[B, *in_sizes, out]`` probabilities). Returns the final distributions, plus ``"halted"``
    ``[B]`` when the template halts.

    Every written distribution (and ``ip``) is divided by its sum after each step. In exact
    arithmetic that is the identity; in floating point it is needed: a table over two registers
    multiplies their rounding errors (``Σ f = Σp_X · Σp_dir``), so without it the sums drift away
    from 1 exponentially over the steps (float32: 1e-3 after 30 steps, then NaN).
    """
    state = dict(init)
    B = next(iter(state.values())).shape[0]
    dtype = W.dtype
    ip = one_hot(torch.zeros(B, dtype=torch.long, device=W.device), template.lines, dtype)
    # P(still running), kept as a product of factors in [0, 1] rather than as 1 - P(halted)
    run = torch.ones(B, 1, dtype=dtype, device=W.device) if template.halt else None
    fixed = {(k, reg): spec.to(dtype=dtype, device=W.device)
             for k, ins in enumerate(template.instructions)
             for reg, (_, spec) in ins.writes.items() if isinstance(spec, Tensor)}
    writers = {reg: [k for k, ins in enumerate(template.instructions) if reg in ins.writes]
               for reg in template.registers}
    halt_reg, halt_value = template.halt or (None, None)
    on_write = template.halt_on == "write"
    for _ in range(template.steps):
        q = ip @ W                                                            # [B, I]
        new = {}
        stops = torch.zeros(B, 1, dtype=dtype, device=W.device)              # P(this step halts the machine)
        for reg, ks in writers.items():
            if not ks:
                continue
            rest = [k for k in range(W.shape[1]) if k not in ks]
            out = q[:, rest].sum(1, keepdim=True) * state[reg] if rest else 0.0
            for k in ks:
                inputs, spec = template.instructions[k].writes[reg]
                tab = tables[spec] if isinstance(spec, str) else fixed[(k, reg)]
                written = q[:, k:k + 1] * apply_table(tab, [state[r] for r in inputs])
                out = out + written
                if on_write and reg == halt_reg:
                    stops = stops + written[:, halt_value:halt_value + 1]
            new[reg] = normalise_rows(out)
        ip_new = normalise_rows(ip @ G)
        if run is None:
            state.update(new)
            ip = ip_new
            continue
        if not on_write:  # P(halt value) after the step
            stops = (new[halt_reg] if halt_reg in new else state[halt_reg])[:, halt_value:halt_value + 1]
        state.update({r: (1 - run) * state[r] + run * v for r, v in new.items()})
        ip = (1 - run) * ip + run * ip_new
        run = run * (1 - (stops.clamp(max=1) if on_write else stops))   # rounding may leave Σ q_k f_k[v] above 1
    if run is not None:
        state["halted"] = 1 - run[:, 0]
    return state


def initial_state(template: Template, init: Mapping[str, Tensor], dtype: torch.dtype) -> Dict[str, Tensor]:
    """Distributions ``[B, size]`` of every register: ``init`` gives LongTensor ``[B]`` values or
    distributions; registers left out start at ``template.init`` (default 0)."""
    first = next(iter(init.values()))
    state = {}
    for reg, size in template.registers.items():
        v = init.get(reg)
        if v is None:
            v = torch.full((first.shape[0],), template.init.get(reg, 0), dtype=torch.long, device=first.device)
        state[reg] = one_hot(v, size, dtype) if v.dim() == 1 else v.to(dtype)
    return state


def function_tables(functions: Mapping[str, nn.Module], context: Any, dtype: torch.dtype, training: bool,
                    given: Optional[Mapping[str, Tensor]] = None) -> Dict[str, Tensor]:
    """Probabilities of every learned function on ``context``: ``softmax`` of its logits in
    training, the one-hot ``argmax`` in eval; ``given`` tables are used as they are."""
    out = {k: v.to(dtype) for k, v in (given or {}).items()}
    for name, fn in functions.items():
        if name not in out:
            logits = fn(context).to(dtype)
            out[name] = F.softmax(logits, -1) if training else one_hot(logits.argmax(-1), logits.shape[-1], dtype)
    return out


def execute(template: Template, W: Tensor, G: Tensor, init: Mapping[str, Tensor],
            functions: Mapping[str, nn.Module], context: Any, tables: Optional[Mapping[str, Tensor]],
            training: bool) -> Dict[str, Tensor]:
    """:func:`run_program` from initial values and learned functions (see :class:`ProgramBlock`)."""
    return run_program(template, W, G, initial_state(template, init, W.dtype),
                       function_tables(functions, context, W.dtype, training, tables))


LOG_EPS = 1e-2  # see log_probs


def log_probs(p: Tensor, eps: float = LOG_EPS) -> Tensor:
    """``log p̃`` of a register's distribution ``p [..., K]``, ``p̃ = (p + ε)/(1 + Kε)``: normalised,
    and a wrong one-hot output keeps a finite loss and a gradient (a clamp would give none), so a
    hard program still learns. ε bounds the loss of a hopeless output at ``log((1 + Kε)/ε)``."""
    return ((p + eps) / (1 + p.shape[-1] * eps)).log()


def program_text(instrs: Sequence[str], gotos: Sequence[int], sep: str = " / ") -> str:
    """``0: LOOK; goto 1 / 1: MOVE; goto 2 / …`` (``sep="\\n"``: one line per program line)."""
    return sep.join(f"{i}: {ins}; goto {g}" for i, (ins, g) in enumerate(zip(instrs, gotos)))


class ProgramBlock(nn.Module):
    """A template with learnable lines: ``forward(init, context) -> final distributions``.

    ``init``: register -> LongTensor ``[B]`` of values or a distribution ``[B, size]``; registers
    left out start at ``template.init`` (default 0). ``functions``: learned function name ->
    ``nn.Module`` called as ``module(context)`` and returning logits ``[B, *in_sizes, out]``.
    ``tables`` given to :meth:`forward` replace learned functions by fixed probabilities (e.g. a
    perfect perception), and ``program=(W, G)`` replaces the learnable lines.
    """

    def __init__(self, template: Template, estimator: Estimator,
                 functions: Optional[Mapping[str, nn.Module]] = None, *, init_std: float = 1e-3,
                 generator: Optional[torch.Generator] = None):
        super().__init__()
        self.template = template
        functions = dict(functions or {})
        missing = [f for f in template.functions() if f not in functions]
        if missing:
            raise ValueError(f"the template uses learned function '{missing[0]}'; pass it in functions")
        self.functions = nn.ModuleDict(functions)
        n = template.lines
        labels = [f"line{i}" for i in range(n)]
        self.instr = Choice(estimator, n, template.names, init_std=init_std, generator=generator,
                            labels=labels)
        self.goto = Choice(estimator, n, [f"goto{j}" for j in range(n)], init_std=init_std,
                           generator=generator, labels=labels)

    def program(self) -> Tuple[Tensor, Tensor]:
        """``(W [n, I], G [n, n])`` this forward executes: the estimator's sample in training
        (rows normalised), the derived one-hot program in eval mode."""
        if self.training:
            return normalise_rows(self.instr().weights), normalise_rows(self.goto().weights)
        W = one_hot(self.instr.derive(), len(self.template.instructions), self.instr_dtype())
        return W, one_hot(self.goto.derive(), self.template.lines, W.dtype)

    def instr_dtype(self) -> torch.dtype:
        return next(self.instr.parameters()).dtype

    def derived(self) -> Tuple[List[str], List[int]]:
        """The derived program: an instruction name and a goto per line."""
        names = self.template.names
        return [names[k] for k in self.instr.derive().tolist()], self.goto.derive().tolist()

    def text(self, sep: str = " / ") -> str:
        return program_text(*self.derived(), sep=sep)

    def forward(self, init: Mapping[str, Tensor], context: Any = None,
                tables: Optional[Mapping[str, Tensor]] = None,
                program: Optional[Tuple[Tensor, Tensor]] = None) -> Dict[str, Tensor]:
        W, G = program if program is not None else self.program()
        return execute(self.template, W, G, init, self.functions, context, tables, self.training)

    def extra_repr(self) -> str:
        t = self.template
        return (f"registers={t.registers}, instructions={t.names}, lines={t.lines}, steps={t.steps}, "
                f"halt={t.halt}, halt_on={t.halt_on}")


class FixedProgram(nn.Module):
    """A template with a given program (instruction names and gotos per line): the discrete
    network a derived program is rebuilt into. Same ``forward`` as :class:`ProgramBlock`; the
    learned functions keep their training/eval behaviour."""

    def __init__(self, template: Template, instrs: Sequence[str], gotos: Sequence[int],
                 functions: Optional[Mapping[str, nn.Module]] = None):
        super().__init__()
        if len(instrs) != template.lines or len(gotos) != template.lines:
            raise ValueError(f"a program for this template has {template.lines} lines, got "
                             f"{len(instrs)} instructions and {len(gotos)} gotos")
        bad = [x for x in instrs if x not in template.names] + [g for g in gotos if not 0 <= g < template.lines]
        if bad:
            raise ValueError(f"program names unknown instruction or line {bad[0]!r}; instructions: "
                             f"{', '.join(template.names)}, lines 0..{template.lines - 1}")
        self.template = template
        self.instrs, self.gotos = list(instrs), [int(g) for g in gotos]
        self.functions = nn.ModuleDict(dict(functions or {}))
        self.register_buffer("W", one_hot(torch.tensor([template.names.index(x) for x in instrs]),
                                          len(template.names), torch.float32))
        self.register_buffer("G", one_hot(torch.tensor(self.gotos), template.lines, torch.float32))

    def text(self, sep: str = " / ") -> str:
        return program_text(self.instrs, self.gotos, sep=sep)

    def forward(self, init: Mapping[str, Tensor], context: Any = None,
                tables: Optional[Mapping[str, Tensor]] = None) -> Dict[str, Tensor]:
        return execute(self.template, self.W, self.G, init, self.functions, context, tables, self.training)
