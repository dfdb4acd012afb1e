"""Candidate ops: the building blocks and the one op registry every space builds from."""
from .common import DilConv, FactorizedReduce, Identity, Pool, ReLUConvBN, SepConv, Zero
from .registry import OPS, build_op, check_op_args, describe_ops, op_options, register_op
from . import builtin  # noqa: E402,F401  (registers the built-in ops)

__all__ = ["OPS", "build_op", "check_op_args", "describe_ops", "op_options", "register_op", "DilConv",
           "FactorizedReduce", "Identity", "Pool", "ReLUConvBN", "SepConv", "Zero"]
