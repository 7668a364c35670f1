"""The sync facade of the testing helpers: each is written once as a coroutine."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, TypeVar

T = TypeVar("T")


def run_blocking(name: str, function: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """Run coroutine function `function` to its end on a fresh event loop (sync callers only)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_call(function, *args, **kwargs))
    raise RuntimeError(
        f"cloaca.testing.{name}() blocks, and was called inside a running event loop; "
        f"use 'await cloaca.testing.a{name}(...)' instead"
    )


async def _call(function: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    return await function(*args, **kwargs)
