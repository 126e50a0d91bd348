"""The package's shape, pinned: layers import only downward, no import cycles, small modules that say their job.

These read the source (no import of anything but ``ast``), so a change that breaks the design fails here with
the module and the line that did it, not later as a tangle.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "stashly"
MAX_LINES = 400
TOO_LARGE_FOR_NOW = {
    # module -> why it is still over MAX_LINES (remove the entry when it is split)
}

# Each layer may import the layers below it, never one above: (layer, what it must not import).
LAYERS = {
    "stashly.config": ("stashly.backends", "stashly.engine", "stashly.manager", "stashly.decorator", "stashly.cli"),
    "stashly.storage": ("stashly.backends", "stashly.engine", "stashly.manager", "stashly.decorator", "stashly.cli"),
    "stashly.tags": ("stashly.backends", "stashly.engine", "stashly.manager", "stashly.decorator", "stashly.cli"),
    "stashly.keys": ("stashly.backends", "stashly.engine", "stashly.manager", "stashly.decorator", "stashly.cli"),
    "stashly.backends": ("stashly.engine", "stashly.manager", "stashly.decorator", "stashly.integrations"),
    "stashly.engine": ("stashly.manager", "stashly.decorator", "stashly.integrations", "stashly.cli"),
    "stashly.manager": ("stashly.decorator", "stashly.integrations", "stashly.cli"),
    "stashly.decorator": ("stashly.cli",),
}
LAZY_UPWARD = {
    # (importer, imported): imported inside a function, on purpose
    ("stashly.keys", "stashly.integrations.sqlalchemy.identity"): "only once the application passes an ORM row",
    ("stashly.decorator.cached", "stashly.integrations.fastapi.endpoints"): "only for http=True (needs FastAPI)",
}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    lazy: bool  # inside a function: runs when called, not when the module loads


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(module: str, path: Path) -> list[Import]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []

    def target(node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = package.split(".")
        base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
        return ".".join([*base, node.module] if node.module else base)

    def visit(body: list[ast.stmt], lazy: bool) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue  # annotations only: never executed
            if isinstance(node, ast.ImportFrom):
                where = target(node)
                for alias in node.names:
                    name = f"{where}.{alias.name}"
                    found.append(Import(module, name if name in MODULES else where, node.lineno, lazy))
            elif isinstance(node, ast.Import):
                found.extend(Import(module, alias.name, node.lineno, lazy) for alias in node.names)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(node.body, True)
            elif isinstance(node, ast.ClassDef | ast.Try | ast.If | ast.With):
                visit(node.body, lazy)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body, lazy)

    visit(ast.parse(path.read_text()).body, False)
    return [i for i in found if i.imported.startswith("stashly") and i.imported != module]


IMPORTS = [found for module, path in MODULES.items() for found in _imports(module, path)]


def _within(module: str, layer: str) -> bool:
    return module == layer or module.startswith(layer + ".")


def test_every_layer_imports_only_downward() -> None:
    upward = []
    for found in IMPORTS:
        for layer, forbidden in LAYERS.items():
            if not _within(found.importer, layer):
                continue
            for above in forbidden:
                if _within(found.imported, above) and not (
                    found.lazy and any(_within(found.importer, a) and b == found.imported for a, b in LAZY_UPWARD)
                ):
                    upward.append(f"{found.importer}:{found.line} imports {found.imported} ({layer} is below {above})")
    assert upward == []


def test_no_import_cycles() -> None:
    edges: dict[str, set[str]] = {module: set() for module in MODULES}
    for found in IMPORTS:
        if not found.lazy and found.imported in MODULES:
            edges[found.importer].add(found.imported)
    cycles = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def walk(module: str, path: list[str]) -> None:
        state[module] = 1
        for imported in sorted(edges[module]):
            if state.get(imported) == 1:
                cycles.append(" -> ".join([*path[path.index(imported) :], imported]))
            elif imported not in state:
                walk(imported, [*path, imported])
        state[module] = 2

    for module in sorted(MODULES):
        if module not in state:
            walk(module, [module])
    # A package importing its own modules is how a package re-exports; only cycles through other modules count.
    real = [c for c in cycles if not all(_within(m, c.split(" -> ")[0]) for m in c.split(" -> "))]
    assert real == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_are_small_and_say_their_job(module: str) -> None:
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    docstring = ast.get_docstring(tree)
    assert docstring, f"{module} has no docstring saying its job"
    summary = docstring.split("\n\n")[0]
    assert len(summary) >= 20, f"{module}: say its job in a sentence first"
    assert summary.count("\n") <= 2, f"{module}: say its job in a sentence or two first"
    lines = len(path.read_text().splitlines())
    if module in TOO_LARGE_FOR_NOW:
        return
    assert lines <= MAX_LINES, f"{module} has {lines} lines (over {MAX_LINES}): split it by concern"


def test_the_exceptions_are_still_needed() -> None:
    """An entry of TOO_LARGE_FOR_NOW whose module shrank (or moved) must go."""
    stale = [m for m in TOO_LARGE_FOR_NOW if m not in MODULES or len(MODULES[m].read_text().splitlines()) <= MAX_LINES]
    assert stale == []
