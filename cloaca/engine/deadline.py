"""A per-await deadline: `async with deadline(seconds):` raises TimeoutError when it passes.

On Python 3.11+ this is `asyncio.timeout` (about half the cost of an anyio cancel scope,
which matters at thousands of trigger polls per second); on 3.10 it is `anyio.fail_after`.
"""

from __future__ import annotations

import asyncio
import sys
from contextlib import asynccontextmanager
from typing import Any, AsyncContextManager, AsyncIterator, Awaitable, Callable, Optional, TypeVar

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


class Watchdog:
    """Deadlines of many concurrent awaits, enforced by one periodic check instead of a timer
    each: the hot path of async trigger polls (thousands per second). A deadline fires at
    most `resolution` seconds late. Needs `Task.uncancel` (3.11+); on 3.10 each call has
    its own timer (`call_with_deadline`).
    """

    def __init__(self, resolution: float) -> None:
        self.resolution = resolution
        self._due: dict[Any, float] = {}
        self._expired: set[Any] = set()
        self._check_handle: Optional[asyncio.TimerHandle] = None

    async def call(self, function: Callable[[], Awaitable[T]], seconds: float) -> T:
        """`await function()`, raising TimeoutError once `seconds` have passed."""
        task: Any = asyncio.current_task()
        if not hasattr(task, "uncancel"):
            return await call_with_deadline(function, seconds)
        loop = asyncio.get_running_loop()
        self._due[task] = loop.time() + seconds
        if self._check_handle is None:
            self._check_handle = loop.call_later(self.resolution, self._check)
        try:
            return await function()
        except asyncio.CancelledError:
            if task in self._expired:
                self._expired.discard(task)
                if task.uncancel() == 0:
                    raise TimeoutError from None
            raise
        finally:
            del self._due[task]
            if task in self._expired:  # expired, but the function swallowed the cancellation
                self._expired.discard(task)
                task.uncancel()

    def _check(self) -> None:
        self._check_handle = None
        if not self._due:
            return  # re-armed by the next call
        loop = asyncio.get_running_loop()
        now = loop.time()
        for task, due in self._due.items():
            if due <= now and task not in self._expired:
                self._expired.add(task)
                task.cancel()
        self._check_handle = loop.call_later(self.resolution, self._check)
