"""The supernet side: discrete choices and the mixed ops that use them."""
from .bn import recalibrate_bn
from .choice import Choice, arch_parameters, choices, weight_parameters
from .mixed import MixedOp

__all__ = ["Choice", "MixedOp", "arch_parameters", "recalibrate_bn", "choices", "weight_parameters"]
