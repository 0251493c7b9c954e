"""The package's structure (issue 12): floors, no import circles, no oversized files.

The import graph is read from the source with ``ast`` (every ``import`` / ``from`` statement,
at module level or inside functions; nothing is imported), so these tests are fast and see
lazy imports too. Floors, lowest first (a module imports only from its own floor or below):

1. ``core``
2. ``config``, ``images``, ``distributions``, ``data``
3. family maths: ``diffusion``, ``sde``, ``vae``, ``gan``, ``flows``, ``autoregressive``
   (pure JAX; one family does not import another, except ``sde`` -> ``diffusion``)
4. ``nets``
5. ``evaluation`` (sample-quality metrics; the digit FD runs a network of ``nets``)
6. ``engine`` (defines the recipe protocol; knows no family)
7. ``recipes``
8. ``run`` (the application floor)
9. ``cli``
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "jaxgen"
MAX_LINES = 500

FLOORS: dict[str, int] = {
    "core": 1,
    "config": 2,
    "images": 2,
    "distributions": 2,
    "data": 2,
    "diffusion": 3,
    "sde": 3,
    "vae": 3,
    "gan": 3,
    "flows": 3,
    "autoregressive": 3,
    "guidance": 3,
    "flow_matching": 3,
    "distillation": 3,
    "superres": 3,
    "nets": 4,
    "evaluation": 5,
    "engine": 6,
    "recipes": 7,
    "run": 8,
    "cli": 9,
}
FAMILY_MATHS = 3
# Imports between two family-maths packages that the layering allows: the SDE family builds
# on the discrete diffusion maths (its DDPM-schedule special cases).
ALLOWED_ACROSS_FAMILIES = {("sde", "diffusion")}


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, pathlib.Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def _imports(name: str, path: pathlib.Path) -> set[str]:
    """The jaxgen modules that ``name`` imports (a ``from pkg import x`` names ``pkg.x`` when
    that is a module, else ``pkg``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                if not is_package:
                    anchor = anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = []
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.append(sub if sub in MODULES else base)
        else:
            continue
        for target in targets:
            if target == "jaxgen" or target.startswith("jaxgen."):
                # ``import jaxgen.a.b`` is module jaxgen.a.b (or its nearest existing parent)
                while target not in MODULES and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target != name:
                    out.add(target)
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _area(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def floor_violations(graph: dict[str, set[str]]) -> list[str]:
    """``importer -> imported`` edges that go to a higher floor (or across families)."""
    bad = []
    for src, targets in sorted(graph.items()):
        src_area = _area(src)
        if src_area is None:  # the top package ``jaxgen`` (version, docstring)
            continue
        for dst in sorted(targets):
            dst_area = _area(dst)
            if dst_area is None:
                bad.append(f"{src} -> {dst} (the top package)")
                continue
            if src_area == dst_area:
                continue
            src_floor, dst_floor = FLOORS[src_area], FLOORS[dst_area]
            if dst_floor > src_floor:
                bad.append(f"{src} -> {dst} (floor {src_floor} imports floor {dst_floor})")
            elif (
                src_floor == dst_floor == FAMILY_MATHS
                and (src_area, dst_area) not in ALLOWED_ACROSS_FAMILIES
            ):
                bad.append(f"{src} -> {dst} (one family's maths imports another's)")
    return bad


def test_every_area_has_a_floor():
    areas = {_area(m) for m in MODULES} - {None}
    assert areas <= set(FLOORS), f"areas without a floor: {sorted(areas - set(FLOORS))}"


def test_the_import_graph_is_read():
    # The reader sees module-level, function-level, relative and ``from pkg import module``
    # imports (a check of the checker).
    assert "jaxgen.engine.recipe" in GRAPH["jaxgen.recipes.base"]
    assert "jaxgen.run" in GRAPH["jaxgen.cli"]  # function-level imports only
    assert "jaxgen.core.validation" in GRAPH["jaxgen.core"]  # from pkg import module


def test_checker_finds_a_circle_and_a_floor_violation():
    graph = {"jaxgen.engine.a": {"jaxgen.recipes.b"}, "jaxgen.recipes.b": {"jaxgen.engine.a"}}
    assert _cycles(graph) == [["jaxgen.engine.a", "jaxgen.recipes.b"]]
    assert floor_violations(graph) == [
        "jaxgen.engine.a -> jaxgen.recipes.b (floor 6 imports floor 7)"
    ]


def test_no_import_circles():
    cycles = _cycles(GRAPH)
    assert not cycles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_import_from_a_higher_floor():
    bad = floor_violations(GRAPH)
    assert not bad, "imports from a higher floor:\n" + "\n".join(bad)


@pytest.mark.parametrize("module", ["jaxgen.config", "jaxgen.engine"])
def test_config_and_engine_import_nothing_above_them(module):
    below = {m for m in GRAPH if m == module or m.startswith(module + ".")}
    reached = {dst for src in below for dst in GRAPH[src]}
    above = sorted(m for m in reached if _area(m) in ("recipes", "run", "cli"))
    assert not above, f"{module} imports {above}"


def test_no_file_over_500_lines():
    long = {
        name: n
        for name, path in MODULES.items()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"files over {MAX_LINES} lines: {long}"
