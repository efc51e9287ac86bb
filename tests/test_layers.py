"""The import graph of executor/ and runtimes/, read from the source (ast, nothing imported):
imports only point down the layers of docs/architecture.md, and no folder imports a folder
that imports it back.

A *unit* is a top-level package of executor (`executor/agents/` → "agents"), a top-level
module of executor (`executor/jsondoc.py` → "jsondoc"), or `runtimes` as a whole. Every unit
has a layer; a unit may import units of its own layer or below, never above, and the units of
one layer must not import each other in a cycle. A new unit must be given a layer here, on
purpose: the test fails for a unit it does not know.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# From the bottom up. See docs/architecture.md for what each layer owns.
LAYERS: list[tuple[str, set[str]]] = [
    ("foundation", {"errors", "settings", "faults", "jsondoc", "observability"}),
    ("records", {"records", "pricing", "limits", "pagination", "instants", "schemas", "schema_keywords", "schema_refs",
                 "schema_regex", "ratelimit", "sweeps", "hostlists"}),
    ("adapters", {"storage", "queue", "runtimes", "embedded"}),
    ("domain", {"tokens", "agents", "entitlements", "executions", "receipts", "webhooks", "images", "replays",
                "secrets", "egress"}),
    ("api", {"api", "mcp"}),
    ("assembly", {"service", "examples"}),
    ("entry points", {"cli", "__main__", "client"}),
]
RANK = {unit: rank for rank, (_, units) in enumerate(LAYERS) for unit in units}
LAYER_NAME = {unit: name for name, units in LAYERS for unit in units}


def unit_of(module: str) -> str | None:
    """The unit a dotted module name belongs to; None outside executor/ and runtimes/."""
    parts = module.split(".")
    if parts[0] == "runtimes":
        return "runtimes"
    if parts[0] != "executor":
        return None
    return parts[1] if len(parts) > 1 else "executor"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[tuple[str, int]]:
    """(dotted module, line) of every import in a file, relative ones resolved; `from executor
    import x` counts as importing executor.x. Imports under TYPE_CHECKING count too: a type
    reaching up the layers is still a dependency on what is above."""
    module = module_name(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            if node.module is None or target in ("executor", "runtimes"):  # `from . import x`: x is a module
                found.extend((f"{target}.{alias.name}", node.lineno) for alias in node.names)
            else:
                found.append((target, node.lineno))
    return found


def import_edges() -> dict[str, dict[str, list[str]]]:
    """unit → {imported unit → ["path:line", ...]}, between different units only."""
    edges: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for root in ("executor", "runtimes"):
        for path in sorted((REPO / root).rglob("*.py")):
            source = unit_of(module_name(path))
            assert source is not None
            for target_module, line in imported_modules(path):
                target = unit_of(target_module)
                if target is not None and target != source:
                    edges[source][target].append(f"{path.relative_to(REPO)}:{line}")
    return edges


def cycles(edges: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """Every strongly connected set of more than one unit (Tarjan), as sorted lists."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(unit: str) -> None:
        index[unit] = low[unit] = len(index)
        stack.append(unit)
        on_stack.add(unit)
        for target in edges.get(unit, {}):
            if target not in index:
                visit(target)
                low[unit] = min(low[unit], low[target])
            elif target in on_stack:
                low[unit] = min(low[unit], index[target])
        if low[unit] == index[unit]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == unit:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for unit in sorted(set(edges) | {t for targets in edges.values() for t in targets}):
        if unit not in index:
            visit(unit)
    return found


def test_every_unit_has_a_layer() -> None:
    units = {unit_of(module_name(path)) for root in ("executor", "runtimes") for path in (REPO / root).rglob("*.py")}
    unknown = sorted(u for u in units if u not in RANK and u != "executor")
    assert not unknown, f"give these a layer in LAYERS (and in docs/architecture.md): {unknown}"


def test_imports_only_point_down() -> None:
    upward = [
        f"{source} ({LAYER_NAME[source]}) imports {target} ({LAYER_NAME[target]}) at {', '.join(sites)}"
        for source, targets in import_edges().items() if source in RANK
        for target, sites in targets.items() if target in RANK and RANK[target] > RANK[source]
    ]
    assert not upward, "imports that point up the layers:\n" + "\n".join(upward)


def test_no_folder_imports_a_folder_that_imports_it_back() -> None:
    edges = import_edges()
    found = cycles(edges)
    detail = [
        f"{' <-> '.join(cycle)}: " + "; ".join(
            f"{s} -> {t} at {edges[s][t][0]}" for s in cycle for t in cycle if t in edges.get(s, {}))
        for cycle in found
    ]
    assert not found, "import cycles between units:\n" + "\n".join(detail)


def test_runtimes_depends_on_nothing_in_executor() -> None:
    reaching = [f"{path.relative_to(REPO)}:{line} imports {module}"
                for path in sorted((REPO / "runtimes").rglob("*.py"))
                for module, line in imported_modules(path) if unit_of(module) not in (None, "runtimes")]
    assert not reaching, "runtimes/ must stand on its own:\n" + "\n".join(reaching)


def test_no_cycle_inside_runtimes() -> None:
    """Module by module inside runtimes/ (it is one unit above, so its own graph is read here)."""
    edges: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted((REPO / "runtimes").rglob("*.py")):
        source = module_name(path)
        for module, line in imported_modules(path):
            if module.startswith("runtimes.") and module != source:
                edges[source][module].append(f"{path.relative_to(REPO)}:{line}")
    assert not cycles(edges), f"cycles inside runtimes/: {cycles(edges)}"


# The checks themselves, on graphs made up for the purpose: each must see what it is for.

def test_the_cycle_finder_finds_a_cycle_and_only_cycles() -> None:
    graph: dict[str, dict[str, list[str]]] = {"a": {"b": ["x"]}, "b": {"c": ["x"]}, "c": {"a": ["x"]},
                                              "d": {"a": ["x"]}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b": ["x"]}, "b": {}}) == []


@pytest.mark.parametrize(("module", "unit"), [
    ("executor.storage.executions", "storage"), ("executor.jsondoc", "jsondoc"), ("runtimes.pool", "runtimes"),
    ("executor", "executor"), ("asyncpg", None),
])
def test_modules_map_to_their_units(module: str, unit: str | None) -> None:
    assert unit_of(module) == unit


def test_relative_and_package_imports_are_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "executor" / "agents"
    package.mkdir(parents=True)
    (package / "service.py").write_text(
        "from executor import jsondoc\nfrom ..storage import agents\nfrom . import records\nimport runtimes.pool\n")
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    assert imported_modules(package / "service.py") == [
        ("executor.jsondoc", 1), ("executor.storage", 2), ("executor.agents.records", 3), ("runtimes.pool", 4)]
