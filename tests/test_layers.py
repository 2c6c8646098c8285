"""The package's shape, read from its own imports: no cycles, no upward imports.

Every import counts: at module level, inside functions, and under ``if TYPE_CHECKING:``
(a type-only cycle still ties two modules together). CI also runs import-linter over
the contracts in ``.importlinter``; this test is the quick, dependency-free twin that
fails in ``uv run pytest`` before a cycle lands. ``docs/architecture.md`` draws the
layers these checks enforce.
"""

from __future__ import annotations

import ast
import configparser
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = "replicate_home"
ROOT = Path(__file__).resolve().parents[1] / "src" / PACKAGE

# Pure modules: values, decoding, schedules, the budget's arithmetic, scrubbing, the
# catalog. They do no I/O and import nothing that does, so each is tested directly.
PURE = (
    "_api_errors",
    "_budget",
    "_catalog",
    "_decode",
    "_exceptions",
    "_media",
    "_prompt",
    "_schedule",
    "_scrub",
    "_service_clock",
    "_version",
    "comparisons._assertions",
    "comparisons._judging",
    "comparisons._ranking",
    "comparisons._summary",
    "emulator._account_models",
    "emulator._directory",
    "emulator._search",
)
# Libraries that reach the network, the disk or a server: no pure module imports one,
# directly or through a package module. (anyio is allowed: the rate budget waits on its
# clock and lock, which open nothing.)
IO_LIBRARIES = (
    "httpx",
    "httpx_sse",
    "sqlite3",
    "socket",
    "ssl",
    "starlette",
    "hypercorn",
    "tempfile",
    "shutil",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def resolve(importer: str, node: ast.ImportFrom) -> str:
    """The absolute module an ``from X import ...`` names, relative levels resolved."""
    if node.level == 0:
        return node.module or ""
    is_package = MODULES[importer].name == "__init__.py"
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(name: str) -> Iterator[str]:
    """Every module ``name`` imports, whether package-internal or external."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = resolve(name, node)
            submodules = [
                f"{target}.{alias.name}"
                for alias in node.names
                if f"{target}.{alias.name}" in MODULES
            ]
            # `from . import _x` imports the submodule, not the package's re-exports.
            if len(submodules) < len(node.names):
                yield target
            yield from submodules


def internal_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name in MODULES:
        edges = {target for target in imports_of(name) if target in MODULES}
        edges.discard(name)
        # A module importing its own package's __init__ only to reach a sibling is
        # still an edge: the package re-exports, so that is a real dependency.
        graph[name] = edges
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_cycles() -> None:
    graph = internal_graph()
    # A package's __init__ re-exports its modules; a module importing the package it
    # belongs to would close a loop through it, which the cycle search reports too.
    assert find_cycles(graph) == []


def test_the_cycle_search_finds_a_type_only_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c"]]


@pytest.mark.parametrize("pure", PURE)
def test_pure_modules_import_no_io(pure: str) -> None:
    name = f"{PACKAGE}.{pure}"
    assert name in MODULES, f"{name} was moved: update PURE and docs/architecture.md"
    graph = internal_graph()
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        external = {target.split(".")[0] for target in imports_of(current)}
        assert not external & set(IO_LIBRARIES), (current, external & set(IO_LIBRARIES))
        todo.extend(graph[current])


def test_the_library_never_imports_the_command_line_or_the_emulator() -> None:
    # The programs over the library (the command line, the viewer) and the emulator.
    above = (f"{PACKAGE}.cli", f"{PACKAGE}.viewer", f"{PACKAGE}.emulator")
    graph = internal_graph()
    library = [name for name in MODULES if not name.startswith((*above, f"{PACKAGE}.__main__"))]
    upward = {
        (name, target) for name in library for target in graph[name] if target.startswith(above)
    }
    assert upward == set()


def test_no_module_is_over_600_lines() -> None:
    # Data tables (the emulator's model schemas) are the agreed exception.
    data_tables = {f"{PACKAGE}.emulator._schemas"}
    long = {
        name: lines
        for name, path in MODULES.items()
        if name not in data_tables
        and (lines := len(path.read_text(encoding="utf-8").splitlines())) > 600
    }
    assert long == {}


def test_every_library_module_has_a_layer() -> None:
    """A new module must be placed in ``.importlinter``'s layers, or no layer rule sees it."""
    config = configparser.ConfigParser()
    config.read(ROOT.parents[1] / ".importlinter", encoding="utf-8")
    layers = config["importlinter:contract:layers"]["layers"]
    placed = {name for name in re.split(r"[\s|:]+", layers) if name}
    top = {
        name.split(".")[1]
        for name in MODULES
        if name.count(".") >= 1 and not name.endswith(".__init__")
    }
    # The emulator is kept apart by contracts of its own, not placed among the layers.
    assert top - placed - {"emulator"} == set()
