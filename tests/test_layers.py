"""Layers point down: every import inside ``simulator/`` goes to a module of its own layer or a
lower one, and no modules import each other in a circle.

Every import counts — at module level, under ``if TYPE_CHECKING:`` and inside functions alike — so
a circle cannot hide behind a lazy import. A new module must be placed in :data:`LAYERS` (the test
says which one is missing). The order, top to bottom, is the architecture page's
(``simulator/ARCHITECTURE.md``); change both together.
"""

from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "simulator"

LAYERS: list[tuple[str, list[str]]] = [
    ("cli", ["simulator.cli", "simulator.workload.cli", "simulator.deploy.cli"]),
    ("front ends: plan, sweep, mitigations, report, calibrate, deploy",
     ["simulator.plan", "simulator.sweep", "simulator.mitigations", "simulator.report",
      "simulator.report.*", "simulator.calibrate", "simulator.calibrate.*", "simulator.deploy",
      "simulator.deploy.*"]),
    ("calibration: validation suites and the step-time fit (below the validate command, its report "
     "and the calibrate commands)",
     ["simulator.calibrate.validate_base", "simulator.calibrate.validate_silicon",
      "simulator.calibrate.validate_dstack", "simulator.calibrate.validate_rocm",
      "simulator.calibrate.validate_load", "simulator.calibrate.fit", "simulator.calibrate.fit_*"]),
    ("run (and the package's notebook entry points)", ["simulator", "simulator.run"]),
    ("summary", ["simulator.metrics.summary", "simulator.metrics.regime"]),
    ("cost (the bill of a run)", ["simulator.cost"]),
    ("results", ["simulator.results"]),
    ("config (the scenario)", ["simulator.config"]),
    ("cluster (SimPy processes)", ["simulator.cluster", "simulator.cluster.*"]),
    ("metrics recorder", ["simulator.metrics", "simulator.metrics.recorder",
                          "simulator.metrics.names", "simulator.metrics.scrape"]),
    ("engine, workload, prices",
     ["simulator.engine", "simulator.engine.*", "simulator.workload", "simulator.workload.*",
      "simulator.prices"]),
    ("specs (scenario sections)", ["simulator.cluster.spec", "simulator.cluster.autoscale_spec",
                                   "simulator.workload.spec", "simulator.plan_spec"]),
    ("profiles and measured data", ["simulator.profiles", "simulator.calibrate.datasets"]),
    ("base", ["simulator.errors", "simulator._native", "simulator.store", "simulator.simenv"]),
]
"""Top to bottom. A module's layer is that of its most specific pattern (an exact name before a
``*`` pattern, a longer pattern before a shorter one)."""

ROOT_CONSTANTS = {"__version__"}
"""Names taken from the package root (``from simulator import __version__``) that are not an
import of the run: ``simulator/__init__.py`` sets them before it imports anything."""

KNOWN_CYCLES: set[frozenset[str]] = set()


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted name → source file of every module of the package."""
    out: dict[str, Path] = {}
    for f in sorted(root.rglob("*.py")):
        parts = list(f.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _package(name: str, mods: dict[str, Path]) -> str:
    return name if mods[name].name == "__init__.py" else name.rpartition(".")[0]


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module → the package modules it imports (anywhere in the file)."""
    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = _package(name, mods).split(".")
                    base = ".".join(pkg[:len(pkg) - node.level + 1] + ([base] if base else []))
                targets = []
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    if sub in mods:
                        targets.append(sub)  # a submodule
                    elif not (base == "simulator" and a.name in ROOT_CONSTANTS):
                        targets.append(base)
            else:
                continue
            for t in targets:
                if t == "simulator" or t.startswith("simulator."):
                    r = resolve(t)
                    if r is not None and r != name:
                        found.add(r)
        graph[name] = found
    return graph


def layer_of(name: str, layers: list[tuple[str, list[str]]] = LAYERS) -> int | None:
    """Index of ``name``'s layer (0 = top), or None if no pattern places it."""
    best: tuple[tuple[int, int], int] | None = None
    for i, (_, patterns) in enumerate(layers):
        for p in patterns:
            if fnmatch.fnmatchcase(name, p):
                rank = (0 if "*" in p else 1, len(p))
                if best is None or rank > best[0]:
                    best = (rank, i)
    return None if best is None else best[1]


def upward(graph: dict[str, set[str]],
           layers: list[tuple[str, list[str]]] = LAYERS) -> list[str]:
    """Every import of a higher layer, as 'a (layer) -> b (layer)'."""
    out = []
    for a, targets in sorted(graph.items()):
        la = layer_of(a, layers)
        for b in sorted(targets):
            lb = layer_of(b, layers)
            if la is not None and lb is not None and lb < la:
                out.append(f"{a} ({layers[la][0]}) -> {b} ({layers[lb][0]})")
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles: strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


GRAPH = imports(modules())


def test_every_module_has_a_layer() -> None:
    missing = [m for m in GRAPH if layer_of(m) is None]
    assert not missing, f"place these modules in tests/test_layers.py LAYERS: {missing}"


def test_imports_point_down() -> None:
    bad = upward(GRAPH)
    assert not bad, "imports of a higher layer:\n" + "\n".join(bad)


def test_no_import_circles() -> None:
    found = [c for c in cycles(GRAPH) if frozenset(c) not in KNOWN_CYCLES]
    assert not found, "import circles: " + "; ".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize("known", sorted(sorted(c) for c in KNOWN_CYCLES))
def test_known_circles_are_still_there(known: list[str]) -> None:
    # An entry of KNOWN_CYCLES that is no longer a circle must be deleted.
    assert known in cycles(GRAPH), f"{known} is no longer a circle: delete it from KNOWN_CYCLES"


def test_the_checks_catch_an_upward_import_and_a_circle(tmp_path: Path) -> None:
    pkg = tmp_path / "simulator"
    (pkg / "engine").mkdir(parents=True)
    (pkg / "__init__.py").write_text("__version__ = '0'\n")
    (pkg / "engine" / "__init__.py").write_text("")
    (pkg / "run.py").write_text("from simulator import __version__\nfrom simulator.engine import a\n")
    (pkg / "engine" / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from simulator.run import x\n")
    (pkg / "engine" / "b.py").write_text("def f():\n    from . import c\n")
    (pkg / "engine" / "c.py").write_text("from simulator.engine.b import f\n")
    graph = imports(modules(pkg))
    assert graph["simulator.run"] == {"simulator.engine.a"}  # __version__ is not the package
    assert graph["simulator.engine.b"] == {"simulator.engine.c"}  # a relative lazy import counts
    layers = [("run", ["simulator.run"]), ("engine", ["simulator.engine.*"])]
    assert upward(graph, layers) == ["simulator.engine.a (engine) -> simulator.run (run)"]
    assert cycles(graph) == [["simulator.engine.a", "simulator.run"],
                             ["simulator.engine.b", "simulator.engine.c"]]
