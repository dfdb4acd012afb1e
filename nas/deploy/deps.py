"""The optional dependencies of the export (``pip install 'nas[export]'``): the core install does
not carry them, and a format that needs one says in one line what to install."""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import List

from ..errors import ConfigError

EXTRA = "pip install 'nas[export]'"


def missing(*modules: str) -> List[str]:
    out = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            out.append(name)
    return out


def require(*modules: str, what: str) -> List[ModuleType]:
    """The modules, or a one-line :class:`ConfigError` naming those missing and the extra."""
    lost = missing(*modules)
    if lost:
        raise ConfigError(f"{what} needs {', '.join(lost)}, which are not installed: {EXTRA} "
                          f"(onnx, onnxruntime, onnxscript)")
    return [importlib.import_module(m) for m in modules]
