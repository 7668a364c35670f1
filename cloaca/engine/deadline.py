"""A per-await deadline: `async with deadline(seconds):` raises TimeoutError when it passes.

On Python 3.11+ this is `asyncio.timeout` (about half the cost of an anyio cancel scope,
which matters at thousands of trigger polls per second); on 3.10 it is `anyio.fail_after`.
"""

from __future__ import annotations

import asyncio
import sys
from contextlib import asynccontextmanager
from typing import Any, AsyncContextManager, AsyncIterator, Awaitable, Callable, TypeVar

T = TypeVar("T")

import anyio


@asynccontextmanager
async def _anyio_deadline(seconds: float) -> AsyncIterator[None]:
    with anyio.fail_after(seconds):
        yield


def cancelled_from_outside() -> bool:
    """Inside `except CancelledError`: is the current task itself being cancelled?

    False when user code merely awaited something that was cancelled (a cancelled future):
    that is the user's error, to be reported, not a reason to stop.
    """
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return task is None or cancelling is None or cancelling() > 0


def deadline(seconds: float) -> AsyncContextManager[None]:
    """Cancel the enclosed awaits after `seconds`, raising TimeoutError."""
    if sys.version_info >= (3, 11):
        return asyncio.timeout(seconds)
    return _anyio_deadline(seconds)


async def call_with_deadline(function: Callable[[], Awaitable[T]], seconds: float) -> T:
    """`await function()`, raising TimeoutError after `seconds`.

    The hot path of async trigger polls: a bare timer handle, about a third of the cost of
    `asyncio.timeout`'s state machine (needs `Task.uncancel`, Python 3.11+).
    """
    task: Any = asyncio.current_task()
    if not hasattr(task, "uncancel"):
        async with deadline(seconds):
            return await function()
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        task.cancel()

    timer = asyncio.get_running_loop().call_later(seconds, expire)
    try:
        return await function()
    except asyncio.CancelledError:
        if expired and task.uncancel() == 0:
            raise TimeoutError from None
        raise
    finally:
        timer.cancel()
