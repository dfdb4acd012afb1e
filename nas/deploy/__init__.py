"""Export a found network out of the tool (``nas-export``, ``nas.export``): ONNX, a ``torch.export``
program, and a standalone ``model.py`` + ``weights.pt``; each checked against the PyTorch network.

One module per format (:mod:`.onnx_format`, :mod:`.pt2_format`, :mod:`.python_format`, each with
``write(model, example, out, dynamic_batch)`` and ``run(path, x)``); :mod:`.forms` turns the
network into its export form (DNF rules as fixed logic, L0 gates as fixed channel masks),
:mod:`.codegen` writes plain torch code, :mod:`.source` reads what RUN names. ``export.json``
beside the files makes them usable on their own.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
from torch import nn

from ..errors import ConfigError, NasError
from . import onnx_format, pt2_format, python_format
from .deps import require
from .forms import export_form
from .source import Source, load_source

FORMATS = {m.NAME: m for m in (onnx_format, pt2_format, python_format)}
TOLERANCE = 1e-4   # max abs difference of the logits in float32 above which an export fails
META = "export.json"


class ExportMismatch(NasError):
    """An export whose outputs differ from the PyTorch network's by more than :data:`TOLERANCE`."""


@dataclass
class ExportResult:
    out_dir: Path
    files: Dict[str, List[str]] = field(default_factory=dict)
    max_abs_diff: Dict[str, float] = field(default_factory=dict)
    meta: Dict[str, Any] = field(default_factory=dict)


def parse_formats(spec: Union[str, Sequence[str]]) -> List[str]:
    """``"all"``, one format or a comma-separated list of them; an unknown one lists the formats."""
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    out: List[str] = []
    for n in names or ["all"]:
        if n == "all":
            out += [f for f in FORMATS if f not in out]
        elif n in FORMATS:
            out += [n] if n not in out else []
        else:
            raise ConfigError(f"unknown export format '{n}'; formats: {', '.join(FORMATS)}, all")
    return out


def logits(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    text = lines[0] if lines else type(e).__name__
    return text[:160] + ("..." if len(text) > 160 else "")


def blame(model: nn.Module, example: torch.Tensor, fmt: str, error: BaseException) -> NasError:
    """The one-line error for a failed export: the first op (by its registered name) that fails
    the same export on its own input, else the network as a whole."""
    inputs: Dict[str, Any] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, args, n=n: inputs.setdefault(n, (mod, args)))
             for n, m in model.named_modules() if getattr(m, "_nas_op", None)]
    try:
        with torch.no_grad():
            model(example)
    except Exception:
        pass
    finally:
        for h in hooks:
            h.remove()
    tried = set()
    for mod, args in inputs.values():
        if mod._nas_op in tried or not args or not isinstance(args[0], torch.Tensor):
            continue
        tried.add(mod._nas_op)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                FORMATS[fmt].write(mod, args[0], Path(tmp), False)
            except NasError:
                raise
            except Exception as e:
                return ConfigError(f"op '{mod._nas_op}' cannot be exported to {fmt} ({_first_line(e)})")
    return ConfigError(f"the {type(model).__name__} cannot be exported to {fmt} ({_first_line(error)})")


def export(run: Union[str, os.PathLike], formats: Union[str, Sequence[str]] = "all",
           out_dir: Optional[Union[str, os.PathLike]] = None, *, batch: int = 1, resolution: Optional[int] = None,
           dynamic_batch: bool = False, allow_untrained: bool = False,
           echo: Callable[[str], None] = lambda s: None) -> ExportResult:
    """Write ``formats`` of ``run``'s network to ``out_dir`` (default ``RUN/export``), run each on a
    batch of ``batch`` random inputs (and of ``batch + 3`` with ``dynamic_batch``) against the
    PyTorch network and raise :class:`ExportMismatch` above :data:`TOLERANCE`; ``echo`` gets one
    line per format."""
    fmts = parse_formats(formats)
    if "onnx" in fmts:  # before anything is built: one line saying what to install
        require("onnx", "onnxruntime", "onnxscript", what="--format onnx")
    src = load_source(str(run), allow_untrained=allow_untrained, resolution=resolution)
    run_path = Path(run)
    out = Path(out_dir) if out_dir is not None else (run_path / "export" if run_path.is_dir() else Path("export"))
    return export_source(src, fmts, out, batch=batch, dynamic_batch=dynamic_batch, echo=echo)


def export_source(src: Source, formats: Union[str, Sequence[str]], out: Union[str, os.PathLike], *, batch: int = 1,
                  dynamic_batch: bool = False, echo: Callable[[str], None] = lambda s: None) -> ExportResult:
    """:func:`export` of a :class:`~nas.deploy.source.Source` (``Source.of(network, shape)`` for
    any network)."""
    fmts = parse_formats(formats)
    if batch < 1:
        raise ConfigError(f"--batch must be 1 or more, got {batch}")
    if "onnx" in fmts:
        require("onnx", "onnxruntime", "onnxscript", what="--format onnx")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = export_form(src.network)
    gen = torch.Generator().manual_seed(0)
    # torch.export specialises a dimension of size 1: a dynamic batch is traced at 2 or more
    example = torch.randn(max(batch, 2) if dynamic_batch else batch, *src.input_shape, generator=gen)
    checks = [torch.randn(b, *src.input_shape, generator=gen) for b in ([batch, batch + 3] if dynamic_batch else [batch])]
    with torch.no_grad():
        refs = [logits(src.network(x)) for x in checks]
    result = ExportResult(out)
    for fmt in fmts:
        mod = FORMATS[fmt]
        try:
            kw = {"title": f"The {src.space} network of {src.genotype}"} if fmt == "python" else {}
            path = mod.write(model, example, out, dynamic_batch, **kw)
        except NasError:
            raise
        except Exception as e:
            raise blame(model, example, fmt, e) from None
        diff = max(float((logits(mod.run(path, x)) - ref).abs().max()) for x, ref in zip(checks, refs))
        files = [path.name] + ([python_format.WEIGHTS] if fmt == "python" else [])
        result.files[fmt], result.max_abs_diff[fmt] = files, diff
        echo(f"{fmt:7s} {', '.join(str(out / f) for f in files)}  max abs diff {diff:.2e}"
             + (" (ONNX Runtime)" if fmt == "onnx" else ""))
        if not diff <= TOLERANCE:
            raise ExportMismatch(f"the {fmt} export differs from the PyTorch network by {diff:.3g} (max abs, "
                                 f"float32; the limit is {TOLERANCE:g}): {out / path.name} is not reliable")
    result.meta = _meta(src, result, batch, dynamic_batch, int(refs[0].shape[1]))
    (out / META).write_text(json.dumps(result.meta, indent=2))
    return result


def _meta(src: Source, result: ExportResult, batch: int, dynamic_batch: bool, n_out: int) -> Dict[str, Any]:
    from ..version import __version__
    return {
        "space": src.space, "genotype": src.genotype, "genotype_record": src.record,
        "input": {"name": onnx_format.INPUT, "shape": ["batch" if dynamic_batch else batch, *src.input_shape],
                  "dtype": "float32"},
        "output": {"name": onnx_format.OUTPUT, "shape": ["batch" if dynamic_batch else batch, n_out]},
        "classes": src.classes,
        "normalisation": None if src.mean is None else {
            "mean": src.mean, "std": src.std, "formula": "x = (image / 255 - mean) / std, per channel"},
        "test_acc": src.test_acc, "trained": src.trained, "source": src.origin,
        "files": result.files, "max_abs_diff": result.max_abs_diff, "tolerance": TOLERANCE,
        "onnx_opset": onnx_format.OPSET if "onnx" in result.files else None,
        "torch": torch.__version__, "nas": __version__,
    }
