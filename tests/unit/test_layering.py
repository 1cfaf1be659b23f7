"""The package layering holds: bench -> streams -> workers, faust only in streams, no import cycle.

Imports are read from the source (``ast``), function-level ones included, so a lazy import that
closes a cycle counts too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("streams", "workers")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))
    }


def _imports(name: str, path: Path, modules: frozenset[str] = frozenset()) -> Iterator[str]:
    """What ``name`` imports; ``from pkg import mod`` counts as ``pkg.mod`` where that is one of
    ``modules`` (not as ``pkg``, whose ``__init__`` may re-export ``mod``)."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names]
            yield from names
            if not all(full in modules for full in names):
                yield base


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = frozenset(modules)
    return {
        name: {imported for imported in _imports(name, path, known) if imported in modules} - {name}
        for name, path in modules.items()
    }


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_finder_sees_a_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_streams_and_workers() -> None:
    graph = _graph()
    assert "workers.modeling.build" in graph and graph["workers.modeling.mt_build"]
    assert _find_cycle(graph) is None


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("workers", ("streams", "bench", "faust")), ("streams", ("bench",))],
)
def test_layers_import_only_downwards(package: str, forbidden: tuple[str, ...]) -> None:
    bad = [
        f"{name} imports {imported}"
        for name, path in _modules().items()
        if name.startswith(f"{package}.") or name == package
        for imported in _imports(name, path)
        if imported.split(".")[0] in forbidden
    ]
    assert bad == []
