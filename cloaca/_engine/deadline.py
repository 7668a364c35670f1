"""Deadlines of awaits: `async with deadline(seconds):` raises TimeoutError when it passes.

`asyncio.timeout` for one-off deadlines; one shared periodic check (`Watchdog`) on the hot
path of async trigger polls, where thousands of deadlines a second are set and cancelled.
Both rely on `Task.cancelling`/`Task.uncancel` (Python 3.11+).
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncContextManager, Awaitable, Callable, Optional, TypeVar

T = TypeVar("T")


def cancelled_from_outside() -> bool:
    """Inside `except CancelledError`: is the current task itself being cancelled?

    False when user code merely awaited something that was cancelled (a cancelled future):
    that is the user's error, to be reported, not a reason to stop.
    """
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


def deadline(seconds: float) -> AsyncContextManager[None]:
    """Cancel the enclosed awaits after `seconds`, raising TimeoutError."""
    return asyncio.timeout(seconds)


class Watchdog:
    """Deadlines of many concurrent awaits, enforced by one periodic check instead of a timer
    each: the hot path of async trigger polls (thousands per second). A deadline fires at
    most `resolution` seconds late.
    """

    def __init__(self, resolution: float) -> None:
        self.resolution = resolution
        self._due: dict[Any, float] = {}
        self._expired: set[Any] = set()
        self._check_handle: Optional[asyncio.TimerHandle] = None

    async def call(self, function: Callable[[], Awaitable[T]], seconds: float) -> T:
        """`await function()`, raising TimeoutError once `seconds` have passed."""
        task: Any = asyncio.current_task()
        self.arm(task, asyncio.get_running_loop().time(), seconds)
        try:
            result = await function()
        except asyncio.CancelledError:
            if self.disarm(task) and task.cancelling() == 0:
                raise TimeoutError from None
            raise
        except BaseException:
            self.disarm(task)
            raise
        self.disarm(task)  # expired, but the function swallowed the cancellation
        return result

    def arm(self, task: "asyncio.Task[Any]", now: float, seconds: float) -> None:
        """Cancel `task` once `seconds` have passed since `now` (loop time), unless disarmed:
        the inline form of `call` for hot loops, which spares a coroutine per await."""
        self._due[task] = now + seconds
        if self._check_handle is None:
            self._check_handle = asyncio.get_running_loop().call_later(self.resolution, self._check)

    def disarm(self, task: "asyncio.Task[Any]") -> bool:
        """Drop `task`'s deadline; True if it had passed (its cancellation is then taken back:
        the task is still cancelled only if something else cancelled it too)."""
        del self._due[task]
        if task not in self._expired:
            return False
        self._expired.discard(task)
        task.uncancel()
        return True

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
