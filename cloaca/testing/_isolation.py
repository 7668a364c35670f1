"""Registry isolation: declarations made inside a block are forgotten when it ends."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from .._registry import REGISTRY, Registry


@contextmanager
def isolated_registry() -> Iterator[Registry]:
    """Inside the block, declare workflows, tasks and triggers freely; on exit the registry
    holds again exactly what it held on entry (live runners stop polling and scheduling the
    triggers declared inside, and go back to any trigger re-declared inside)."""
    snapshot = REGISTRY.snapshot()
    try:
        yield REGISTRY
    finally:
        REGISTRY.restore(snapshot)
