"""The export form of a discrete network: ops with discrete parameters of their own become the fixed
computation they decided on, so that the exported network is smaller, not a masked copy.

* ``dnf_1x1`` (:class:`~nas.blocks.dnf.DNFOp`, Lu 2020): the derived binary rule pool ``W`` and
  selector ``S`` become :class:`DNFLogic`, fixed logic over only the selected rules;
* ``l0_*`` (:class:`~nas.blocks.l0.ChannelGatedOp`, Louizos et al. 2018): the test-time gates
  ``z`` become fixed channel masks: the op computes only its open channels (its last conv and BN
  lose the closed rows) and :class:`ScatterChannels` puts them back at their places, zeros
  elsewhere; an op with every gate closed becomes :class:`~nas.ops.common.Zero`.

Both compute what the op computes in eval mode, up to the order of float sums.
:data:`EXPORT_FORMS` maps a module type to its conversion; :func:`export_form` applies them to a
copy of a network.
"""
from __future__ import annotations

import copy
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..blocks.dnf import DNFOp
from ..blocks.l0 import ChannelGatedOp
from ..ops.common import Zero


DNF_LOGIC_SOURCE = '''class DNFLogic(nn.Module):
    """Learned logical rules (Neural DNF, Lu 2020): output channel t is the OR of its selected
    AND-rules over the input predicates sigmoid(x_k) and their negations, then a BN."""

    def __init__(self, C_in, C_out, rules, stride):
        super().__init__()
        self.C_out, self.rules_per_channel, self.stride = C_out, rules, stride
        self.register_buffer("rules", torch.zeros(2 * C_in, C_out * rules))  # 1: literal in the rule
        self.register_buffer("select", torch.zeros(C_out, rules))            # 1: rule in the OR
        self.bn = nn.BatchNorm2d(C_out)

    def forward(self, x):
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]
        B, C, H, W = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(B * H * W, C)
        log_b = torch.stack((F.logsigmoid(rows), F.logsigmoid(-rows)), -1).reshape(B * H * W, 2 * C)
        r = (log_b @ self.rules).exp().reshape(B * H * W, self.C_out, self.rules_per_channel)
        y = 1 - (1 - self.select * r).prod(-1)
        return self.bn(y.reshape(B, H, W, self.C_out).permute(0, 3, 1, 2))

    def forward_macs(self, output):
        """MACs per image of the conjunctions (the matmul with the kept rules), for nas.utils.count_macs."""
        return output[0, 0].numel() * self.rules.numel()   # per image
'''

# one text for both: the class below is the one model.py spells out, so the two cannot drift
_namespace = {"torch": torch, "nn": nn, "F": F}
exec(DNF_LOGIC_SOURCE, _namespace)
DNFLogic = _namespace["DNFLogic"]
DNFLogic.__module__ = __name__
DNFLogic.__doc__ = """The rules of a trained ``dnf_1x1`` as fixed logic (Lu 2020, ALGORITHMS.md §4): output channel
    ``t`` is ``1 - Π_m (1 - select[t, m] · r_tm)``, the disjunction of its ``M`` selected
    conjunctions ``r = exp(log_b @ rules)`` over the literals ``log_b = [logσ(x_k), logσ(-x_k)]``
    (the log-space conjunction of :func:`~nas.blocks.dnf.dnf_forward_log`), then the op's BN.
    ``rules [2·C_in, C_out·M]`` holds only selected rules (``M``: the most any channel selects)."""


@torch.no_grad()
def dnf_logic(op: DNFOp) -> DNFLogic:
    W, S = (t.cpu() for t in op.block.derived())          # [T, 2K, N], [T, N] bool
    T, K2, _ = W.shape
    chosen: List[Tensor] = [torch.nonzero(S[t], as_tuple=False).flatten() for t in range(T)]
    M = max([1] + [len(c) for c in chosen])
    out = DNFLogic(K2 // 2, T, M, op.stride)
    dtype = out.rules.dtype
    for t, js in enumerate(chosen):
        for m, j in enumerate(js.tolist()):
            out.rules[:, t * M + m] = W[t, :, j].to(dtype)
            out.select[t, m] = 1.0
    # a BN without affine is the same map as one with the identity affine
    out.bn.load_state_dict(op.bn.state_dict(), strict=op.bn.affine)
    out.rule_text = op.rules()  # written beside the op in model.py
    return out


class ScatterChannels(nn.Module):
    """``op`` computing only the open channels of an L0-gated op, times their gate values
    ``scale`` (``[1, k, 1, 1]``; None: all 1), put back at ``index``: channel ``c`` of the output is channel
    ``index[c]`` of ``[op(x)·scale, 0]`` (index ``k``, past the last open channel, is the zero)."""

    def __init__(self, op: nn.Module, index: Optional[Tensor], scale: Optional[Tensor]):
        super().__init__()
        self.op = op
        self.register_buffer("index", index)
        self.register_buffer("scale", None if scale is None else scale.view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        y = self.op(x)
        if self.scale is not None:
            y = y * self.scale
        if self.index is not None:
            y = F.pad(y, (0, 0, 0, 0, 0, 1)).index_select(1, self.index)
        return y


class _Unprunable(Exception):
    pass


ELEMENTWISE = (nn.ReLU, nn.ReLU6, nn.Identity, nn.Hardswish, nn.SiLU, nn.GELU, nn.Sigmoid)


@torch.no_grad()
def prune_outputs(m: nn.Module, keep: Tensor) -> bool:
    """Keep only output channels ``keep`` of ``m`` in place, from its end back to the first conv
    that mixes channels (True once it is pruned); raises :class:`_Unprunable` for a module whose
    output channels cannot be traced back so (then the gates stay a mask)."""
    if isinstance(m, nn.Conv2d) and m.groups == 1:
        m.weight = nn.Parameter(m.weight[keep].clone())
        if m.bias is not None:
            m.bias = nn.Parameter(m.bias[keep].clone())
        m.out_channels = len(keep)
        return True
    if isinstance(m, nn.BatchNorm2d):
        for name in ("weight", "bias"):
            if getattr(m, name) is not None:
                setattr(m, name, nn.Parameter(getattr(m, name)[keep].clone()))
        for name in ("running_mean", "running_var"):
            if getattr(m, name) is not None:
                setattr(m, name, getattr(m, name)[keep].clone())
        m.num_features = len(keep)
        return False
    if isinstance(m, ELEMENTWISE):
        return False
    if isinstance(m, nn.Sequential):
        for child in reversed(list(m.children())):
            if prune_outputs(child, keep):
                return True
        return False
    raise _Unprunable(type(m).__name__)


def _stride(op: nn.Module) -> int:
    strides = [s[0] if isinstance(s, tuple) else s for m in op.modules() for s in [getattr(m, "stride", 1)]
               if isinstance(s, (int, tuple))]
    return max(strides + [1])


@torch.no_grad()
def gated_channels(op: ChannelGatedOp) -> nn.Module:
    op.gate.eval()
    z = op.gate().detach().cpu().flatten()
    keep = torch.nonzero(z, as_tuple=False).flatten()
    C_out = len(z)
    if len(keep) == 0:
        first = next((m for m in op.op.modules() if isinstance(m, nn.Conv2d)), None)
        return Zero(first.in_channels if first is not None else C_out, C_out, _stride(op.op))
    scale = None if bool((z[keep] == 1).all()) else z[keep].clone()
    inner = copy.deepcopy(op.op)
    if len(keep) == C_out:
        return ScatterChannels(inner, None, scale)
    try:
        if not prune_outputs(inner, keep):
            raise _Unprunable(type(inner).__name__)
    except _Unprunable:  # an op of another structure: the full op, its closed channels times 0
        return ScatterChannels(copy.deepcopy(op.op), None, z.clone())
    index = torch.full((C_out,), len(keep), dtype=torch.long)
    index[keep] = torch.arange(len(keep))
    return ScatterChannels(inner, index, scale)


# module type -> its export form (the module in eval mode)
EXPORT_FORMS: Dict[type, Callable[[nn.Module], nn.Module]] = {DNFOp: dnf_logic, ChannelGatedOp: gated_channels}


def _convert(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        form = next((f for t, f in EXPORT_FORMS.items() if isinstance(child, t)), None)
        if form is not None:
            new = form(child)
            if hasattr(child, "_nas_op"):
                new._nas_op = child._nas_op
            setattr(module, name, new)
        _convert(getattr(module, name))


def export_form(network: nn.Module) -> nn.Module:
    """A copy of ``network`` in eval mode with every op of :data:`EXPORT_FORMS` converted."""
    net = copy.deepcopy(network).cpu().eval()
    _convert(net)
    return net.eval()
