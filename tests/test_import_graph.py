"""cloaca's modules import one another without a circle (ARCHITECTURE.md: imports point down
the layers). Every import statement counts: at module level, under `if TYPE_CHECKING:` (a type
named from another module is a dependency on it all the same) and inside a function (where an
import would only hide a circle)."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Iterator, Optional

import cloaca

PACKAGE_DIR = Path(cloaca.__file__).parent


def module_names() -> dict[str, Path]:
    """Dotted name -> file of every module of the package (a package by its __init__.py)."""
    names = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imported(module: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The modules of the package that `module` imports, by any import statement in it."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(package, node.level, node.module)
            submodules = [f"{base}.{alias.name}" for alias in node.names
                          if f"{base}.{alias.name}" in known]
            yield from submodules
            if len(submodules) < len(node.names) and base in known:
                yield base


def _absolute(package: str, level: int, name: Optional[str]) -> str:
    if level == 0:
        return name or ""
    base = package.rsplit(".", level - 1)[0] if level > 1 else package
    return f"{base}.{name}" if name else base


def import_graph() -> dict[str, set[str]]:
    known = module_names()
    return {module: set(imported(module, path, known)) - {module} for module, path in known.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in graph[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_the_graph_sees_every_kind_of_import():
    graph = import_graph()
    assert "cloaca._store.base" in graph["cloaca._store.sqlite"]  # from .base import (...)
    assert "cloaca._store.sqlite_queries" in graph["cloaca._store.sqlite"]  # from . import sqlite_queries
    assert "cloaca._store.sqlite" in graph["cloaca._store"]  # inside a function
    assert "cloaca._store" in graph["cloaca._runner"]  # a package's __init__.py
    assert "cloaca._triggers.poller" in graph["cloaca._triggers.api"]  # under TYPE_CHECKING


def test_no_import_circle_among_cloacas_modules():
    assert circles(import_graph()) == []


SQL_STATEMENT = re.compile(
    r"^\s*(SELECT\s|INSERT INTO\s|UPDATE\s+\w+\s+SET\s|DELETE FROM\s|WITH\s+\w+\s+AS\s"
    r"|(CREATE|ALTER|DROP)\s+(UNIQUE\s+)?(TABLE|INDEX|SCHEMA|ROLE|DEFAULT|OWNED)\s|GRANT\s|REVOKE\s"
    r"|BEGIN\b|COMMIT\b|ROLLBACK\b|PRAGMA\s)"
)
"""The start of a statement as the store writes them (keywords in capitals)."""
STORE = "cloaca._store"


def _above_the_store() -> dict[str, Path]:
    return {m: p for m, p in module_names().items() if m != STORE and not m.startswith(STORE + ".")}


def test_sql_lives_in_the_store_and_nowhere_else():
    """ARCHITECTURE.md: "SQL lives here [the store] and nowhere else (tenant administration
    included)". A string literal that begins like a statement is SQL."""
    found = []
    for module, path in _above_the_store().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL_STATEMENT.match(node.value):
                found.append(f"{module}:{node.lineno}: {node.value.strip()[:60]}")
    assert found == []


def test_nothing_above_the_store_names_a_backend():
    """Only the store's factories (`store_for_url`, `tenants_for_url`) pick a backend module."""
    graph = import_graph()
    backends = {m for m in module_names() if m.startswith(STORE + ".") and m != STORE + ".base"}
    named = {module: sorted(graph[module] & backends) for module in _above_the_store()}
    assert {module: names for module, names in named.items() if names} == {}
