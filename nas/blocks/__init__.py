"""Discrete blocks that can join a search: the Neural DNF block and L0 hard-concrete gates."""
from .dnf import DNFBlock, DNFOp, class_logits, dnf_forward, dnf_op, literals, sparsity
from .l0 import ChannelGate, GatedEdge, GatedOp, HardConcrete, HardConcreteGate, gate_channels

__all__ = ["DNFBlock", "DNFOp", "dnf_forward", "dnf_op", "literals", "sparsity", "class_logits",
           "HardConcrete", "HardConcreteGate", "GatedOp", "GatedEdge", "ChannelGate", "gate_channels"]
