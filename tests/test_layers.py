"""The import graph of the ``nas`` package: no module imports another that (directly or through
others) imports it, and no module of a lower layer imports one of a higher layer. Imports are read
with ``ast`` from the source, function-level ones included (a lazy import is still a dependency)."""
import ast
from pathlib import Path
from typing import Dict, List, Set

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nas"

# Bottom to top: a module may import its own layer's modules and those of the layers below. A
# module belongs to the layer of the longest prefix that names it (``nas.searcher.loop`` is a loop,
# the rest of ``nas.searcher`` a run).
LAYERS: List[List[str]] = [
    ["nas.errors", "nas.registry", "nas.bounds", "nas.plugins", "nas.utils", "nas.version",
     "nas.options"],                                   # shared leaves (an entry's declared options)
    ["nas.config", "nas.legacy"],                      # typed configs (and the previous release's keys)
    ["nas.engine", "nas.estimators", "nas.data"],      # run machinery, relaxations, data
    ["nas.ops"],                                       # candidate ops
    ["nas.supernet"],                                  # choices, mixed ops, the supernet contract
    ["nas.blocks", "nas.cost"],                        # discrete blocks, the cost model
    ["nas.searcher.loop", "nas.searcher.optim", "nas.searcher.unrolled",   # the loops: no space
     "nas.searcher.hooks", "nas.searcher.registries", "nas.searcher.regularisers",  # and their hooks
     "nas.searcher.sdarts", "nas.searcher.lambda_darts", "nas.searcher.oles", "nas.searcher.progressive",
     "nas.retrainer.trainer", "nas.retrainer.augment"],
    ["nas.spaces"],                                    # search spaces
    # the NB201 device latency table and the per-device latency models fitted on it: they read NB201
    # genotypes, and a search's budget reads them (so they sit between the spaces and the runs)
    ["nas.benchmarks.device_latency", "nas.cost.device", "nas.cost.latency_model"],
    ["nas.searcher", "nas.retrainer"],                 # runs: config -> objects
    ["nas.benchmarks", "nas.deploy"],                  # baselines, benchmark tables, export
    ["nas.api", "nas"],                                # the Python API
    ["nas.commands", "nas.cli", "nas.__main__"],       # the installed commands
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> Dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(mods: Dict[str, Path]) -> Dict[str, Set[str]]:
    """Each module's imports of other ``nas`` modules (``from X import name`` counts ``X.name``
    where that is a module, else ``X``)."""
    def known(name: str) -> str:
        while name not in mods:
            name = name.rpartition(".")[0]
        return name

    graph: Dict[str, Set[str]] = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        out: Set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                out.update(known(a.name) for a in node.names if a.name.split(".")[0] == "nas")
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.split(".")[0] != "nas":
                    continue
                out.update(known(f"{target}.{a.name}") if f"{target}.{a.name}" in mods else known(target)
                           for a in node.names)
        out.discard(name)
        graph[name] = out
    return graph


def layer_of(name: str) -> int:
    best, layer = -1, None
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (name == p or name.startswith(p + ".")) and len(p) > best:
                best, layer = len(p), i
    assert layer is not None, f"{name} is in no layer: add it to LAYERS"
    return layer


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on: Set[str] = set()
    found: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def graph():
    return imports(modules())


def test_the_reader_sees_the_imports(graph):
    """The parser resolves relative, absolute, package and function-level imports."""
    assert "nas.engine.prepare" in graph["nas.searcher.loop"]           # from ..engine.prepare import
    assert "nas.spaces.registry" in graph["nas.spaces.base"]            # function-level, from .registry
    assert "nas.blocks.ops" in graph["nas.blocks"]                      # from .ops import, in __init__
    assert "nas.data.sets" in graph["nas.data.stream"]
    assert "nas.benchmarks.steps" in graph["nas.commands.bench_xautodl"]  # from nas.benchmarks.steps import


def test_no_import_cycles(graph):
    assert cycles(graph) == []


def test_a_cycle_is_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_lower_layers_do_not_import_upper_ones(graph):
    upward = [f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})"
              for m, targets in sorted(graph.items()) for t in sorted(targets) if layer_of(t) > layer_of(m)]
    assert upward == []


def test_every_module_has_a_layer(graph):
    for name in graph:
        layer_of(name)
    assert layer_of("nas.searcher.loop") < layer_of("nas.spaces") < layer_of("nas.searcher.run")
