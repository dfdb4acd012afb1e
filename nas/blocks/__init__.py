"""Discrete blocks that can join a search: the Neural DNF block and L0 hard-concrete gates."""
from .dnf import DNFBlock, DNFOp, class_logits, dnf_forward, dnf_op, literals, sparsity
from .l0 import ChannelGate, GatedEdge, GatedOp, HardConcrete, HardConcreteGate, gate_channels
from .ops import register_l0  # registers the blocks' ops: dnf_1x1, l0_<conv>

__all__ = ["DNFBlock", "DNFOp", "dnf_forward", "dnf_op", "literals", "sparsity", "class_logits",
           "HardConcrete", "HardConcreteGate", "GatedOp", "GatedEdge", "ChannelGate", "gate_channels",
           "register_l0"]
