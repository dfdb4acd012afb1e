"""User code in a run: the ``imports:`` config key, and what a run folder records of it.

``imports:`` lists module names (``my_package.ops``) or ``.py`` paths (relative to the working
directory), imported before anything is built so that their ``nas.register_*`` calls are seen
(mmengine's ``custom_imports``). A search or retrain stores the list with absolute paths in its
``config.yaml`` (and so in its checkpoint) and in its ``genotype.yaml``, beside the options its
ops were built with (``op_args``); derive, resume, retrain and ``build_network`` import them again.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from .errors import CheckpointError, ConfigError, NasError

# keys a genotype.yaml may carry besides the genotype itself
RECORD_KEYS = ("imports", "op_args", "derived")  # derived: where nas-derive took it from


def _is_path(item: str) -> bool:
    return item.endswith(".py") or "/" in item or "\\" in item


def resolve_imports(items: Iterable[str]) -> List[str]:
    """Module names as given; ``.py`` paths absolute, so a run folder imports them from anywhere."""
    out = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise ConfigError(f"imports: {item!r} is neither a module name nor a .py path")
        item = item.strip()
        out.append(str(Path(item).expanduser().absolute()) if _is_path(item) else item)
    return out


def _failure(item: str, e: BaseException) -> ConfigError:
    frames = [f for f in traceback.extract_tb(e.__traceback__) if not f.filename.startswith(str(Path(__file__).parent))]
    at = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    if isinstance(e, SyntaxError) and e.filename:  # raised by the compiler: no frame of the user's file
        at = f" at {e.filename}:{e.lineno}"
        e = SyntaxError(e.msg)
    return ConfigError(f"imports: {item} failed{at} ({type(e).__name__}: {' '.join(str(e).split())[:160]})")


def import_user_modules(items: Iterable[str]) -> List[str]:
    """Import every entry once per process (a ``.py`` file under a name derived from its path);
    a missing or failing one is a one-line :class:`ConfigError`. Returns the resolved entries."""
    resolved = resolve_imports(items)
    for item in resolved:
        if not _is_path(item):
            try:
                importlib.import_module(item)
            except ModuleNotFoundError as e:
                if e.name and item.split(".")[0] == e.name.split(".")[0]:
                    raise ConfigError(f"imports: no module named '{item}'; give an importable module "
                                      f"(on PYTHONPATH) or the path of a .py file") from None
                raise _failure(item, e) from None
            except NasError:
                raise
            except Exception as e:  # the user's module failed: say where, in one line
                raise _failure(item, e) from None
            continue
        path = Path(item)
        if not path.is_file():
            raise ConfigError(f"imports: {item} is not a file; give a .py path or a module name")
        name = f"nas_user_{path.stem}_{hashlib.sha1(item.encode()).hexdigest()[:10]}"
        if name in sys.modules:
            continue
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except NasError:
            del sys.modules[name]
            raise
        except Exception as e:
            del sys.modules[name]
            raise _failure(item, e) from None
    return resolved


def genotype_record(space: Any, genotype: Any, imports: Iterable[str] = (),
                    op_args: Optional[Mapping[str, Mapping[str, Any]]] = None) -> Dict[str, Any]:
    """The content of a run's ``genotype.yaml``: the space's genotype dict, plus the imports and
    op options a network of it needs (only when there are any)."""
    data = dict(space.genotype_to_dict(genotype))
    if imports:
        data["imports"] = list(imports)
    if op_args:
        data["op_args"] = {op: dict(v) for op, v in op_args.items()}
    return data


def split_record(data: Any) -> Tuple[Any, Dict[str, Any]]:
    """``(genotype data, {"imports": [...], "op_args": {...}})`` of a genotype.yaml's mapping."""
    if not isinstance(data, dict):
        return data, {"imports": [], "op_args": {}}
    imports, op_args = data.get("imports") or [], data.get("op_args") or {}
    if not isinstance(imports, list) or not all(isinstance(i, str) for i in imports):
        raise CheckpointError(f"genotype.yaml: 'imports' must be a list of module names or .py paths, got {imports!r}")
    if not isinstance(op_args, dict) or not all(isinstance(v, dict) for v in op_args.values()):
        raise CheckpointError(f"genotype.yaml: 'op_args' must map op names to options, got {op_args!r}")
    extras = {"imports": list(imports), "op_args": {k: dict(v) for k, v in op_args.items()}}
    return {k: v for k, v in data.items() if k not in RECORD_KEYS}, extras


def accepted_kwargs(fn: Any, what: str, values: Mapping[str, Any], defaults: Optional[Mapping[str, Any]] = None,
                    extra: Mapping[str, Any] = {}, extra_key: str = "", prefix: str = "") -> Dict[str, Any]:
    """Keywords for a user space's ``build_supernet``/``build_network``: the config ``values`` it
    names, plus every ``extra`` (``space.args``/``model.args``). A value set away from its
    ``defaults`` that ``fn`` does not take, or an ``extra`` it does not take, is a one-line error;
    without ``defaults`` the values it does not take are left out."""
    import inspect
    params = inspect.signature(fn).parameters
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    named = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    out = {k: v for k, v in values.items() if k in named}
    for k, v in values.items():
        if defaults is not None and k not in named and v != defaults.get(k) and not takes_any:
            raise ConfigError(f"{prefix}{k}={v!r} is not used by {what} (it takes {', '.join(named[1:]) or 'no options'}); "
                              f"remove it or set {prefix}{k}={defaults.get(k)!r}")
    for k, v in extra.items():
        if k not in named and not takes_any:
            raise ConfigError(f"{extra_key}.{k} is not a keyword of {what}; it takes: {', '.join(named[1:])}")
        out[k] = v
    return out
