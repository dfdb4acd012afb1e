"""A discrete network as a standalone ``model.py``: plain ``torch.nn`` code, no import of nas.

The network's forward is traced with ``torch.fx`` down to *leaf* modules, whatever the space: the
trace of a cell is the cell with every op spelled out, one line per layer. A leaf is a module that
knows how to spell itself as a constructor expression (and, for a class of its own, the class's
source): every ``torch.nn`` layer, the types in :data:`TYPE_SPELLINGS` (ops whose forward reads
shapes, which fx cannot trace) and a user's op registered with a ``spelling``
(``nas.register_op(name, spelling=fn)``, :data:`nas.ops.registry.SPELLINGS`). A user op that is
none of these is traced like the rest; one that fx cannot trace is a one-line error naming it.

Every leaf becomes one attribute of ``Network`` named by its path (``cells.0.ops.3`` ->
``cells_0_ops_3``), so ``weights.pt`` is the state dict of that flat module and loads with
``strict=True``.
"""
from __future__ import annotations

import builtins
import keyword
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.fx as fx
from torch import nn

from ..errors import ConfigError
from ..ops.common import Zero
from ..ops.registry import SPELLINGS
from .forms import DNF_LOGIC_SOURCE, DNFLogic

FORMAT = "python"


@dataclass
class Spelling:
    """``expr``: the constructor expression of a leaf; ``classes``: source of the classes it
    needs, by class name; ``comment``: lines written above it."""

    expr: str
    classes: Dict[str, str] = field(default_factory=dict)
    comment: List[str] = field(default_factory=list)


def _args(*pos: Any, **kw: Any) -> str:
    return ", ".join([repr(p) for p in pos] + [f"{k}={v!r}" for k, v in kw.items()])


def _pair(v: Any) -> Any:
    return v[0] if isinstance(v, tuple) and len(set(v)) == 1 else v


def _conv(m: nn.Conv2d) -> Spelling:
    kw = {k: _pair(getattr(m, k)) for k, d in (("stride", 1), ("padding", 0), ("dilation", 1), ("groups", 1))
          if _pair(getattr(m, k)) != d}
    if m.bias is None:
        kw["bias"] = False
    if m.padding_mode != "zeros":
        kw["padding_mode"] = m.padding_mode
    return Spelling(f"nn.Conv2d({_args(m.in_channels, m.out_channels, _pair(m.kernel_size), **kw)})")


def _bn(m: nn.BatchNorm2d) -> Spelling:
    kw = {k: getattr(m, k) for k, d in (("eps", 1e-5), ("momentum", 0.1), ("affine", True),
                                        ("track_running_stats", True)) if getattr(m, k) != d}
    return Spelling(f"nn.BatchNorm2d({_args(m.num_features, **kw)})")


def _pool(m: nn.Module) -> Spelling:
    keys = ["kernel_size", "stride", "padding", "ceil_mode"]
    keys += ["count_include_pad"] if isinstance(m, nn.AvgPool2d) else ["dilation"]
    return Spelling(f"nn.{type(m).__name__}({_args(**{k: getattr(m, k) for k in keys})})")


TORCH_SPELLINGS: Dict[type, Callable[[Any], Spelling]] = {
    nn.Conv2d: _conv, nn.BatchNorm2d: _bn, nn.AvgPool2d: _pool, nn.MaxPool2d: _pool,
    nn.Linear: lambda m: Spelling(f"nn.Linear({_args(m.in_features, m.out_features, bias=m.bias is not None)})"),
    nn.ReLU: lambda m: Spelling("nn.ReLU()"),   # not in place: a traced graph reuses its inputs
    nn.AdaptiveAvgPool2d: lambda m: Spelling(f"nn.AdaptiveAvgPool2d({m.output_size!r})"),
}

ZERO_SOURCE = '''class Zero(nn.Module):
    """The 'none' op: zeros of the output shape."""

    def __init__(self, C_out, stride):
        super().__init__()
        self.C_out, self.stride = C_out, stride

    def forward(self, x):
        if self.stride == 1 and x.shape[1] == self.C_out:
            return x.mul(0.0)
        n, _, h, w = x.shape
        return x.new_zeros(n, self.C_out, (h + self.stride - 1) // self.stride, (w + self.stride - 1) // self.stride)
'''


def _dnf(m: DNFLogic) -> Spelling:
    C_in = m.rules.shape[0] // 2
    return Spelling(f"DNFLogic({_args(C_in, m.C_out, m.rules_per_channel, m.stride)})", {"DNFLogic": DNF_LOGIC_SOURCE},
                    [f"# {line}" for line in getattr(m, "rule_text", [])])


# nas's own module types that fx cannot trace (their forward reads shapes)
TYPE_SPELLINGS: Dict[type, Callable[[Any], Spelling]] = {
    Zero: lambda m: Spelling(f"Zero({m.C_out}, {m.stride})", {"Zero": ZERO_SOURCE}),
    DNFLogic: _dnf,
}


def _generic_torch(m: nn.Module) -> Spelling:
    """A torch.nn layer without an entry: its ``extra_repr`` as the constructor's arguments,
    accepted only if the module it builds prints the same."""
    expr = f"nn.{type(m).__name__}({m.extra_repr()})"
    try:
        ok = repr(eval(expr, {"nn": nn, "torch": torch})) == repr(m)
    except Exception:
        ok = False
    if not ok:
        raise ConfigError(f"the torch layer {type(m).__name__} cannot be written to python by nas-export; "
                          f"add it to nas.deploy.codegen.TORCH_SPELLINGS")
    return Spelling(expr)


def _is_torch_layer(m: nn.Module) -> bool:
    mod = type(m).__module__
    return (mod.startswith("torch.nn") or mod.startswith("torch.ao.nn")) and not isinstance(m, nn.Sequential)


def _user_spelling(m: nn.Module) -> Optional[Callable[[nn.Module], Any]]:
    name = getattr(m, "_nas_op", None)
    return SPELLINGS.get(name) if name is not None else None


def spelling(m: nn.Module) -> Spelling:
    """How leaf ``m`` is written (see the module docstring)."""
    user = _user_spelling(m)
    if user is not None:
        out = user(m)
        if isinstance(out, Spelling):
            return out
        if not (isinstance(out, tuple) and len(out) == 2):
            raise ConfigError(f"op '{m._nas_op}': its spelling must return (class_source, constructor), "
                              f"got {type(out).__name__}")
        source, expr = out
        name = expr.split("(")[0].strip()
        return Spelling(expr, {name: source} if source else {})
    for t, spell in TYPE_SPELLINGS.items():
        if type(m) is t:
            return spell(m)
    for t, spell in TORCH_SPELLINGS.items():
        if type(m) is t:
            return spell(m)
    return _generic_torch(m)


def is_leaf(m: nn.Module) -> bool:
    return _user_spelling(m) is not None or type(m) in TYPE_SPELLINGS or _is_torch_layer(m)


def _first_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return (text[:140] + "...") if len(text) > 140 else (text or type(e).__name__)


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return is_leaf(m)

    def call_module(self, m: nn.Module, forward: Callable, args: Tuple, kwargs: Dict) -> Any:
        try:
            return super().call_module(m, forward, args, kwargs)
        except ConfigError:
            raise
        except Exception as e:
            name = getattr(m, "_nas_op", None)
            if name is None:
                raise
            raise ConfigError(f"op '{name}' cannot be exported to {FORMAT}: torch.fx cannot trace its "
                              f"{type(m).__name__} ({_first_line(e)}); register it with a spelling, "
                              f"nas.register_op('{name}', spelling=...) (see docs/export.md)") from None


def _flat(path: str, taken: set) -> str:
    name = path.replace(".", "_") or "root"
    if not name.isidentifier() or keyword.iskeyword(name) or name[0].isdigit():
        name = f"m_{name}"
    base, k = name, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name


ALLOWED_GLOBALS = {"torch", "inf", "nan", "NoneType", "device", "fx_pytree", "pytree"}


def generate(network: nn.Module, *, header: str = "") -> Tuple[str, Dict[str, torch.Tensor]]:
    """``(model.py source, weights state dict)`` of ``network`` (in eval mode, export form)."""
    network = network.eval()
    try:
        graph = _Tracer().trace(network)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"the {type(network).__name__} cannot be exported to {FORMAT}: torch.fx cannot trace "
                          f"its forward ({_first_line(e)})") from None
    root, taken, lines, classes = nn.Module(), set(), [], {}
    done: Dict[str, str] = {}
    for node in graph.nodes:
        if node.op in ("placeholder", "output"):
            node.type = None  # annotations would name types model.py does not import
        if node.op not in ("call_module", "get_attr") or node.target in done:
            if node.op in ("call_module", "get_attr"):
                node.target = done[node.target]
            continue
        path, flat = node.target, _flat(node.target, taken)
        if node.op == "call_module":
            m = network.get_submodule(path)
            spell = spelling(m)
            classes.update(spell.classes)
            root.add_module(flat, m)
            lines += [f"        {c}" for c in spell.comment] + [f"        self.{flat} = {spell.expr}"]
        else:
            owner, _, attr = path.rpartition(".")
            t = getattr(network.get_submodule(owner) if owner else network, attr)
            if isinstance(t, nn.Parameter):
                root.register_parameter(flat, t)
                lines.append(f"        self.{flat} = nn.Parameter(torch.empty({tuple(t.shape)}, dtype={t.dtype}))")
            else:
                root.register_buffer(flat, t)
                lines.append(f"        self.register_buffer({flat!r}, torch.zeros({tuple(t.shape)}, dtype={t.dtype}))")
        done[path] = flat
        node.target = flat
    graph.lint()
    code = graph.python_code(root_module="self")
    extra = set(code.globals) - ALLOWED_GLOBALS - set(classes) - {"getattr", "_Tensor_"}
    extra = {k for k in extra if not (k.startswith("_") or hasattr(builtins, k))}
    if extra:
        raise ConfigError(f"the network cannot be exported to {FORMAT}: its forward calls {', '.join(sorted(extra))}, "
                          f"which is neither torch nor a builtin; give the op holding it a spelling "
                          f"(nas.register_op(name, spelling=...))")
    # fx frees each value after its last use (";  a = b = None"), which keeps eager memory reuse
    # (without it the forward runs 2x slower on a CPU); written as a plain del
    src = re.sub(r";  ((?:\w+ = )+)None$", lambda m: "; del " + ", ".join(m.group(1).split(" = ")[:-1]),
                 code.src.strip("\n"), flags=re.M)
    forward = "\n".join(("    " + ln) if ln.strip() else "" for ln in src.splitlines())
    body = "\n".join(lines) or "        pass"
    parts = [header.rstrip() + "\n" if header else "", "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"]
    parts += ["\n" + src.rstrip() + "\n" for src in classes.values()]
    parts.append(f"\nclass Network(nn.Module):\n    def __init__(self):\n        super().__init__()\n{body}\n\n{forward}\n")
    parts.append(LOAD_SOURCE)
    weights = {k: v.detach().clone() for k, v in root.state_dict().items()}
    return "\n".join(p for p in parts if p), weights


LOAD_SOURCE = '''

def load(weights=None, map_location="cpu"):
    """``Network()`` with the exported weights (``weights.pt`` beside this file), in eval mode."""
    import os
    path = weights or os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights.pt")
    net = Network()
    net.load_state_dict(torch.load(path, map_location=map_location))
    return net.eval()
'''
