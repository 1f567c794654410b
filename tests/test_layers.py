"""The import graph of `src/` has no circles and follows the declared layers.

Every import counts, including those inside functions and `if TYPE_CHECKING:`
blocks (a function-level import is how a circle hides). A module may import its own
layer or a lower one: settings and errors at the bottom, then the database and
observability, the cross-cutting services, the domains in order, and the edge on
top: `web` and every domain's `api` module, then `app`, `cli`. Domain services
reach the caller through `context`, never `web`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "melhor_saude"

# The HTTP edge: also every domain's `api` module.
EDGE = ("web", "middleware", "functions")
# Lowest first. A module belongs to the longest prefix that names it.
LAYERS: list[tuple[str, ...]] = [
    ("settings", "errors", "context", "schemas"),
    ("db", "observability", "migrate", "cache"),
    ("authz", "compliance", "notification", "jobs", "storage"),
    ("company",),
    ("identity",),
    ("specialist",),
    ("availability",),
    ("credit", "idempotency"),
    ("booking",),
    ("package", "recurring", "note", "recording"),
    EDGE,
    ("app", "runner", "demo", "cli"),
]


def layer_of(module: str) -> int:
    """The layer index of a `melhor_saude...` module: a domain's `api` module is part of
    the HTTP edge; otherwise its first component decides."""
    parts = module.split(".")
    if parts[-1] == "api":
        return LAYERS.index(EDGE)
    first = parts[1] if len(parts) > 1 else ""
    for index, names in enumerate(LAYERS):
        if first in names:
            return index
    if first in ("", "__init__"):
        return 0
    raise AssertionError(f"{module} is in no declared layer: add it to LAYERS")


def imports_of(path: Path, module: str) -> set[str]:
    """Every `melhor_saude` module `path` imports, anywhere in it."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith(PACKAGE)}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.startswith(PACKAGE):
                found.add(target)
                # `from melhor_saude.x import y` may name the module x.y.
                found |= {f"{target}.{a.name}" for a in node.names}
    return found


def module_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (only ones that exist)."""
    paths = {
        ".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__"): p
        for p in (SRC / PACKAGE).rglob("*.py")
    }
    return {
        module: {m for m in imports_of(path, module) if m in paths and m != module}
        for module, path in paths.items()
    }


def upward_imports(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """Imports from a lower layer to a higher one."""
    return sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        for target in targets
        if layer_of(target) > layer_of(module)
    )


def circles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_src_has_no_import_circles() -> None:
    assert circles(module_graph()) == []


def test_src_imports_follow_the_layers() -> None:
    assert upward_imports(module_graph()) == []


@pytest.mark.parametrize(
    ("graph", "circle", "upward"),
    [
        # The circle issue 15 removed: availability and booking importing each other,
        # one side hidden in a function.
        (
            {
                "melhor_saude.availability.absences": {"melhor_saude.booking.service"},
                "melhor_saude.booking.service": {"melhor_saude.availability.absences"},
            },
            [["melhor_saude.availability.absences", "melhor_saude.booking.service"]],
            ["melhor_saude.availability.absences -> melhor_saude.booking.service"],
        ),
        # A service reaching up into the HTTP edge.
        (
            {"melhor_saude.identity.accounts": {"melhor_saude.web"}},
            [],
            ["melhor_saude.identity.accounts -> melhor_saude.web"],
        ),
        ({"melhor_saude.booking.service": {"melhor_saude.db"}}, [], []),
    ],
)
def test_the_checker_sees_circles_and_upward_imports(
    graph: dict[str, set[str]], circle: list[list[str]], upward: list[str]
) -> None:
    assert circles(graph) == circle
    assert upward_imports(graph) == upward


def test_imports_inside_functions_are_seen(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text(
        "def f():\n    from melhor_saude.booking.service import create_booking\n"
        "    return create_booking\n"
    )
    assert "melhor_saude.booking.service" in imports_of(source, "melhor_saude.availability.mod")


def test_every_module_can_be_read_in_one_sitting() -> None:
    """No file in `src/` over 500 lines (split by responsibility, as storage/ is)."""
    long = {
        str(path.relative_to(SRC)): n
        for path in SRC.rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > 500
    }
    assert long == {}
