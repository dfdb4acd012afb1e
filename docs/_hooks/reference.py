"""MkDocs hook: the configuration reference and the registry listings, generated from the code.

Every key, type, default and allowed range comes from the config dataclasses (the roots below,
walked recursively) and their declared ranges (``nas/bounds.py``); a key's meaning is the comment
on (or just above) its field in the source, else a line of ``NOTES`` below. Dataclasses that
registry entries carry as their own options are found by looking at each entry, so a key that
moves from a config section into a registry entry still appears. The page cannot drift from the
code because it is rebuilt from it on every ``mkdocs build``.

The hook also warns (so ``mkdocs build --strict`` fails) when a public name of ``nas`` or an entry
of a public registry has no docstring.
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import io
import logging
import re
import textwrap
import tokenize
import typing
from typing import Any, Dict, Iterator, List, Optional, Tuple

log = logging.getLogger("mkdocs.hooks.reference")

PAGE = "reference/config.md"
ROOTS = (("Search config", "nas.config", "Config", "nas-search CONFIG key=value ..."),
         ("Retrain config", "nas.retrainer.config", "RetrainConfig", "nas-retrain CONFIG key=value ..."))
# (title, module, registry, the key that names an entry, where an entry's own options sit)
REGISTRIES = (("Estimators", "nas.estimators", "ESTIMATORS", "estimator.name", "estimator."),
              ("Search spaces", "nas.spaces", "SPACES", "space.name", "space."),
              ("Candidate ops", "nas.ops.registry", "OPS", "space.ops", "space.op_args.{name}."),
              ("Datasets", "nas.data", "DATASETS", "data.dataset", "data."),
              ("Regularisers", "nas.searcher.registries", "REGULARISERS", "optim.regularisers",
               "optim.regularisers.{name}."),
              ("Step hooks", "nas.searcher.registries", "HOOKS", "optim.hooks", "optim.hooks.{name}."))

# Meanings of keys whose field carries no comment. A note for a key that no longer exists is
# ignored (the key list itself always comes from the dataclasses).
NOTES = {
    "name": "run name; the default run folder is `runs/<name>-<time>`",
    "seed": "seed of everything (weights, data order, sampling)",
    "device": "`auto` (a GPU when there is one), `cpu` or `cuda`",
    "data.dataset": "a registered dataset (see [Datasets](#datasets))",
    "data.root": "where the data is (a folder or a `.tar.gz`)",
    "data.download": "let torchvision download the data (needs internet)",
    "data.resize": "resize images to R×R",
    "data.subset": "use a stratified subset of N images",
    "data.train_portion": "fraction of the train split for the weights; the rest is the architecture split",
    "data.batch_size": "batch size (the global batch under data parallelism)",
    "data.workers": "decoding processes for image folders and the streaming loader",
    "data.augment": "random crop + horizontal flip on the batch tensors",
    "space.name": "a registered search space (see [Search spaces](#search-spaces))",
    "space.C": "channels of the first stage",
    "estimator.name": "a registered estimator (see [Estimators](#estimators))",
    "estimator.noise": "`adaptive`: learned noise on the discrete value (`ste`, `bop`)",
    "estimator.sigma0": "initial σ of the adaptive noise",
    "estimator.sigma_max": "σ is clipped to [0, sigma_max] after every step",
    "optim.mode": "`alternating`: weight step on a train batch, then arch step on a val batch; `joint`: one backward",
    "optim.order": "`2`: second-order DARTS (unrolled virtual step)",
    "optim.weights.lr": "SGD learning rate of the weights (cosine to `lr_min`)",
    "optim.weights.lr_min": "end of the cosine schedule",
    "optim.weights.momentum": "SGD momentum",
    "optim.weights.nesterov": "Nesterov momentum",
    "optim.weights.weight_decay": "weight decay of the weights",
    "optim.arch.lr": "Adam learning rate of the architecture parameters",
    "optim.arch.betas": "Adam betas",
    "optim.arch.weight_decay": "weight decay of the architecture parameters",
    "optim.arch.init_std": "std of the initial architecture logits",
    "trainer.epochs": "epochs",
    "trainer.ckpt_every": "checkpoint every N epochs (and at the end)",
    "cost.metric": "the budget's metric: MACs, parameters or latency of the trained network",
    "model.auxiliary_weight": "weight of the auxiliary head's loss",
    "optim.lr": "SGD learning rate (cosine to `lr_min`)",
    "optim.lr_min": "end of the cosine schedule",
    "optim.momentum": "SGD momentum",
    "optim.nesterov": "Nesterov momentum",
    "optim.weight_decay": "weight decay",
}


# --------------------------------------------------------------------------- source comments

def field_comments(cls: type) -> Dict[str, str]:
    """``{field: comment}`` from ``cls``'s source: the comment on the field's line, else the
    comment lines right above it."""
    try:
        src = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    names = {f.name for f in dataclasses.fields(cls)}
    out: Dict[str, str] = {}
    pending: List[str] = []
    line_name: Dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.NAME and tok.start[1] == 4 and tok.string in names and tok.start[0] not in line_name:
            line_name[tok.start[0]] = tok.string
            if pending and tok.string not in out:
                out[tok.string] = " ".join(pending)
            pending = []
        elif tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip()
            name = line_name.get(tok.start[0])
            if name is not None:
                out[name] = text
            elif tok.start[1] == 4:
                pending.append(text)
        elif tok.type == tokenize.NL and tok.start[1] == 0:
            pending = []
    return out


# --------------------------------------------------------------------------- rendering a section

def _type(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a!r}`".replace("'", "") for a in typing.get_args(tp))
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        inner = " \\| ".join(_type(a) for a in args)
        return f"{inner} or `null`" if len(args) < len(typing.get_args(tp)) else inner
    if origin in (list, tuple, dict):
        return f"`{getattr(origin, '__name__', origin)}`"
    return f"`{getattr(tp, '__name__', str(tp))}`"


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        v = f.default
    elif f.default_factory is not dataclasses.MISSING:
        v = f.default_factory()
    else:
        return "required"
    if v is None:
        return "`null`"
    if v == "":
        return '`""`'
    if isinstance(v, bool):
        return f"`{str(v).lower()}`"
    return f"`{v!r}`".replace("'", "")


def describe(rng: Any) -> str:
    """A range as ``Range.describe`` words it (a bound naming a sibling key shown by that name)."""
    return rng.describe()


def _allowed(f: dataclasses.Field) -> str:
    rng = f.metadata.get("range")
    pattern = f.metadata.get("pattern")
    if rng is not None:
        return _cell(describe(rng))
    if pattern is not None:
        return _cell(pattern[1])
    return ""


def _cell(text: str) -> str:
    """``text`` for a table cell: pipes escaped outside code spans (inside them the table keeps
    them as they are, and an escape would show)."""
    parts = re.split(r"(`[^`]*`)", text.replace("\n", " "))
    return "".join(p if p.startswith("`") else
                   p.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;") for p in parts)


def key_table(cls: type, prefix: str = "", readers: Optional[Dict[str, List[str]]] = None) -> List[str]:
    comments: Dict[type, Dict[str, str]] = {}
    rows = ["| key | type | default | allowed | meaning |", "| --- | --- | --- | --- | --- |"]
    from nas.bounds import walk_owned
    for key, f, tp, owner in walk_owned(cls, prefix):
        if owner not in comments:
            comments[owner] = field_comments(owner)
        meaning = "; ".join(m for m in (NOTES.get(key), comments[owner].get(f.name)) if m)
        if readers and key in readers:
            meaning = f"{meaning} (read by {', '.join(f'`{r}`' for r in readers[key])})".lstrip()
        rows.append(f"| `{key}` | {_type(tp)} | {_default(f)} | {_allowed(f)} | {_cell(meaning)} |")
    return rows


def space_readers() -> Dict[str, List[str]]:
    """``{"space.C": ["darts", "nb201"], ...}``: which registered spaces read each space key."""
    from nas.spaces import SPACES
    out: Dict[str, List[str]] = {}
    for name in SPACES.names():
        keys = [f.name for f in dataclasses.fields(SPACES.get(name).options())]  # its declared options
        for k in keys:
            out.setdefault(f"space.{k}", []).append(name)
    return out


def _first_line(obj: Any) -> str:
    """The first paragraph of ``obj``'s docstring, its reST roles as code (``:class:`~a.B``` -> `B`)."""
    doc = (inspect.getdoc(obj) or "").strip().split("\n\n")[0].replace("\n", " ")
    doc = re.sub(r":\w+:`~[\w.]*?(\w+)`", r"`\1`", doc)
    return re.sub(r":\w+:`([^`]+)`", r"`\1`", doc).replace("``", "`")


def entry_options(obj: Any) -> List[Tuple[str, type]]:
    """Dataclasses a registry entry (a class or a function) carries as its own options: any
    attribute of its own that is a dataclass or a dataclass instance, and the ``Options`` it
    inherits (``nas/options.py``: the options an entry declares)."""
    found = []
    own = getattr(obj, "__dict__", {})
    for attr, value in sorted(own.items()):
        if dataclasses.is_dataclass(value):
            found.append((attr, value if isinstance(value, type) else type(value)))
    inherited = getattr(obj, "Options", None)
    if "Options" not in own and dataclasses.is_dataclass(inherited):
        found.append(("Options", inherited))
    return found


def registry_section(title: str, module: str, name: str, key: str, prefix: str) -> List[str]:
    reg = getattr(importlib.import_module(module), name)
    lines = [f"## {title}", "", f"`{key}` names one of these (`{module}.{name}`; add your own as in "
             f"[Extending](../extending.md)).", "", "| name | what |", "| --- | --- |"]
    options: List[str] = []
    for entry in reg.names():
        obj = reg.get(entry)
        lines.append(f"| `{entry}` | {_cell(_first_line(obj))} |")
        for attr, dc in entry_options(obj):
            where = "derive." if attr == "DeriveOptions" else prefix.format(name=entry)  # a space's derive: keys
            options += ["", f"### `{entry}`: `{attr}`", ""] + key_table(dc, where)
    return lines + options + [""]


def render() -> str:
    out = ["# Configuration reference", "",
           "Generated from the config dataclasses and their declared ranges on every build of this "
           "site, so it lists exactly what the code accepts. How configs are written, inherited and "
           "overridden: [Configuration](../configuration.md).", ""]
    readers = space_readers()
    for title, module, name, command in ROOTS:
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
        doc = _first_line(cls)
        out += [f"## {title}", "", f"`{command}`, or `nas.load_config(...)`: `{module}.{name}`."
                + (f" {doc}" if doc and not doc.startswith(name + "(") else ""), ""]
        out += key_table(cls, readers=readers if name == "Config" else None) + [""]
    for reg in REGISTRIES:
        out += registry_section(*reg)
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- docstring check

def undocumented() -> List[str]:
    """Public names of ``nas`` and registry entries without a docstring."""
    import nas
    missing = [f"nas.{n}" for n in nas.__all__
               if not isinstance(getattr(nas, n), str) and not (inspect.getdoc(getattr(nas, n)) or "").strip()]
    for title, module, name, *_ in REGISTRIES:
        reg = getattr(importlib.import_module(module), name)
        # an entry's own docstring: inspect.getdoc would lend a subclass its base class's
        missing += [f"{name}['{e}']" for e in reg.names() if not (reg.get(e).__doc__ or "").strip()]
    return missing


# --------------------------------------------------------------------------- MkDocs hook entry points

def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File
    for name in undocumented():
        log.warning(f"{name} has no docstring: every public name is documented on the site")
    files.append(File.generated(config, PAGE, content=render()))
    return files
