"""Check the import graph against the floors: no upward or sideways import, no cycle.

Run ``python tools/check_layers.py`` from the repository root (``make test``
runs it through ``tests/tools/test_layers.py``). It reads every module of the
installed packages with :mod:`ast`, so imports inside functions and under
``if TYPE_CHECKING:`` count like any other: a function-local import that
dodges a cycle at run time is still the same dependency.

The floors, bottom to top; a package may import packages on lower floors only,
never a sibling on its own floor nor a higher one::

    core < ingest, detect, simulator, store < alerts < timeseries < engine < api < tapwatch

A module's floor is its top-level package's: there are no exceptions.
Every cycle between modules is reported, as well as every cycle between packages.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

FLOORS: tuple[tuple[str, ...], ...] = (
    ("core",),
    ("ingest", "detect", "simulator", "store"),
    ("alerts",),
    ("timeseries",),
    ("engine",),
    ("api",),
    ("tapwatch",),
)

# Alembic's revision scripts are loaded by file path, never imported.
SKIP_PARTS = frozenset({"versions", "__pycache__"})


@dataclass(frozen=True)
class Import:
    """One import statement: who imports what, where."""

    importer: str
    target: str
    path: Path
    line: int

    def where(self) -> str:
        return f"{self.path}:{self.line}"


def package_of(module: str) -> str:
    """The top-level package a module belongs to: its floor is that package's."""
    return module.split(".", 1)[0]


def floor_of(package_floors: Mapping[str, int], module: str) -> int | None:
    """The floor number a module sits on, or None for a module outside the floors (a library)."""
    return package_floors.get(package_of(module))


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def iter_modules(root: Path, packages: Iterable[str]) -> Iterator[tuple[str, Path]]:
    for package in packages:
        base = root / package
        if not base.is_dir():
            continue  # a package the tree being checked does not have (the tests' small trees)
        for path in sorted(base.rglob("*.py")):
            if SKIP_PARTS.isdisjoint(path.relative_to(root).parts):
                yield module_name(root, path), path


def resolve(known: set[str], importer: str, is_package: bool, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The modules an import statement loads, named as precisely as the known modules allow."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        anchor = importer.split(".") if is_package else importer.split(".")[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, base] if base else anchor)
    # ``from pkg import sub`` loads the submodule pkg.sub; ``from pkg import name`` loads pkg.
    return list(dict.fromkeys(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names))


def collect(root: Path) -> tuple[set[str], list[Import]]:
    """Every first-party module under ``root`` and every import between them."""
    packages = [name for floor in FLOORS for name in floor]
    modules = dict(iter_modules(root, packages))
    known = set(modules)
    imports: list[Import] = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in resolve(known, name, is_package, node):
                    if target.split(".", 1)[0] in packages:
                        imports.append(Import(name, closest(known, target), path.relative_to(root), node.lineno))
    return known, imports


def closest(known: set[str], target: str) -> str:
    """The longest known module that ``target`` names (``a.b.C`` -> ``a.b``)."""
    parts = target.split(".")
    while parts and ".".join(parts) not in known:
        parts.pop()
    return ".".join(parts) or target


def upward(imports: Iterable[Import]) -> list[str]:
    """Imports of a higher floor, or of another package on the same floor."""
    package_floors = {name: level for level, floor in enumerate(FLOORS) for name in floor}
    problems = []
    for imp in imports:
        low, high = floor_of(package_floors, imp.importer), floor_of(package_floors, imp.target)
        if low is None or high is None:
            continue
        if high > low:
            problems.append(f"{imp.where()}: {imp.importer} (floor {low}) imports {imp.target} (floor {high})")
        elif high == low and package_of(imp.importer) != package_of(imp.target):
            problems.append(f"{imp.where()}: {imp.importer} imports {imp.target}, a sibling on floor {low}")
    return problems


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def cycle_problems(imports: Iterable[Import]) -> list[str]:
    imports = list(imports)
    modules: dict[str, set[str]] = {}
    packages: dict[str, set[str]] = {}
    for imp in imports:
        if imp.importer != imp.target:
            modules.setdefault(imp.importer, set()).add(imp.target)
        a, b = package_of(imp.importer), package_of(imp.target)
        if a != b:
            packages.setdefault(a, set()).add(b)
    problems = []
    for kind, graph in (("modules", modules), ("packages", packages)):
        name = (lambda module: module) if kind == "modules" else package_of
        for component in cycles(graph):
            members = set(component)
            first: dict[tuple[str, str], Import] = {}
            for i in imports:
                a, b = name(i.importer), name(i.target)
                if a != b and a in members and b in members:
                    first.setdefault((a, b), i)
            edges = sorted(f"{a} -> {b} ({i.importer} -> {i.target}, {i.where()})" for (a, b), i in first.items())
            problems.append(f"cycle between {kind} {', '.join(component)}" + "".join(f"\n    {e}" for e in edges))
    return problems


def check(root: Path) -> list[str]:
    """Every upward import and every cycle under ``root``; empty when the floors hold."""
    _known, imports = collect(root)
    return upward(imports) + cycle_problems(imports)


def main(argv: list[str] | None = None) -> int:
    root = Path(argv[0] if argv else Path(__file__).resolve().parent.parent)
    problems = check(root)
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s) in the import graph" if problems else "import graph: floors hold, no cycle")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
