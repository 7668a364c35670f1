"""Deadlines of awaits: `async with deadline(seconds):` raises TimeoutError when it passes.

`asyncio.timeout` for one-off deadlines; `Deadlines`, buckets with one timer, where many
are set and cleared each second: the engine's task bodies and run waits, and async trigger
polls. It relies on `Task.cancelling`/`Task.uncancel` (Python 3.11+).
"""

from __future__ import annotations

import asyncio
import heapq
import math
from typing import Any, AsyncContextManager, Optional


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


BUCKETS_PER_SPAN = 1024
"""A deadline `seconds` away lands in a bucket at most about `seconds / BUCKETS_PER_SPAN` wide:
the buckets waiting at once for deadlines of one length stay about this many, however long
that length (a run's hour-long deadline in 50 ms buckets would keep 72,000)."""


class Deadlines:
    """Deadlines of the awaits of many concurrent tasks (task bodies, waits for runs), kept
    in buckets with one loop timer for the earliest: setting and clearing one is a set
    operation, not a timer in the loop's heap each as with `asyncio.timeout`. A deadline
    `seconds` away fires at most `resolution` seconds late, or `seconds / 512` for long ones.

        with deadlines.limit(seconds):   # in a task; raises TimeoutError once they pass
            await ...
    """

    def __init__(self, resolution: float) -> None:
        self.resolution = resolution
        self._steps: dict[float, int] = {}
        """Bucket width, in `resolution`s, by length of deadline (a power of two)."""
        self._buckets: dict[int, set[Any]] = {}
        self._keys: list[int] = []
        """Heap of bucket numbers (some may be emptied already)."""
        self._expired: set[Any] = set()
        self._timer: Optional[asyncio.TimerHandle] = None
        self._timer_key: Optional[int] = None

    def limit(self, seconds: Optional[float]) -> "_Limit":
        """A context manager bounding the current task's awaits to `seconds` (None: none)."""
        return _Limit(self, seconds)

    def arm(self, task: "asyncio.Task[Any]", seconds: float, now: Optional[float] = None) -> int:
        """Cancel `task` once `seconds` have passed (since loop time `now`, if the caller has
        just read it), unless disarmed; the key to disarm it with."""
        if now is None:
            now = asyncio.get_running_loop().time()
        step = self._steps.get(seconds) or self._step(seconds)
        key = math.ceil((now + seconds) / self.resolution / step) * step
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = set()
            heapq.heappush(self._keys, key)
            if self._timer_key is None or key < self._timer_key:
                self._schedule(asyncio.get_running_loop(), key)
        bucket.add(task)
        return key

    def disarm(self, task: "asyncio.Task[Any]", key: int) -> bool:
        """Drop `task`'s deadline; True if it had passed (its cancellation is then taken back:
        the task is still cancelled only if something else cancelled it too)."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.discard(task)
            if not bucket:
                # An emptied bucket stays until its time (no heap churn), but not the table
                # it grew to: a set keeps its size when emptied one by one, clear() frees it.
                bucket.clear()
        if task not in self._expired:
            return False
        self._expired.discard(task)
        task.uncancel()
        return True

    def _step(self, seconds: float) -> int:
        step = 1 << max(0, math.ceil(math.log2(max(seconds, self.resolution)
                                                / self.resolution / BUCKETS_PER_SPAN)))
        if len(self._steps) < 64:  # deadlines come in a few lengths; never grow without bound
            self._steps[seconds] = step
        return step

    def _schedule(self, loop: asyncio.AbstractEventLoop, key: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_key = key
        self._timer = loop.call_at(key * self.resolution, self._fire)

    def _fire(self) -> None:
        self._timer = self._timer_key = None
        loop = asyncio.get_running_loop()
        now = loop.time() + 0.001  # the loop runs a timer up to its clock's resolution early
        while self._keys:
            key = self._keys[0]
            if key * self.resolution <= now:
                heapq.heappop(self._keys)
                for task in self._buckets.pop(key):
                    self._expired.add(task)
                    task.cancel()
            else:
                self._schedule(loop, key)
                return


class _Limit:
    __slots__ = ("_deadlines", "_seconds", "_task", "_key")

    def __init__(self, deadlines: Deadlines, seconds: Optional[float]) -> None:
        self._deadlines = deadlines
        self._seconds = seconds

    def __enter__(self) -> None:
        if self._seconds is not None:
            self._task: Any = asyncio.current_task()
            self._key = self._deadlines.arm(self._task, self._seconds)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._seconds is None:
            return
        if (self._deadlines.disarm(self._task, self._key) and exc_type is asyncio.CancelledError
                and self._task.cancelling() == 0):
            raise TimeoutError from exc
