"""One loop timer for many sleepers: async trigger pollers wait for their next poll here.

With `asyncio.sleep`, every poll makes a `TimerHandle` (in Python, with a copy of the
context) and pushes it on the loop's heap, which orders handles by a Python `__lt__`: with
thousands of pollers that bookkeeping was about a third of what a poll costs. Here due times
are tuples on a heap of our own (compared in C), and the loop holds a single timer, for the
earliest of them; when it goes off, every sleeper due by then is woken at once.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from typing import Optional


class SharedTimer:
    """Wakes waiters at loop times of `loop`, all through one timer on that loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()  # breaks ties: futures are never compared
        self._timer: Optional[asyncio.TimerHandle] = None
        self._timer_at = math.inf

    def wait_until(self, when: float) -> asyncio.Future[None]:
        """A future done at loop time `when` (at the next loop iteration if it has passed).
        Cancelling it (as cancelling the task awaiting it does) stops the wait."""
        future = self._loop.create_future()
        heapq.heappush(self._heap, (when, next(self._order), future))
        if when < self._timer_at:
            self._arm(when)
        return future

    def __len__(self) -> int:
        """Waits scheduled, cancelled ones included until their time comes."""
        return len(self._heap)

    def close(self) -> None:
        """Cancel every wait and the timer."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, math.inf
        heap, self._heap = self._heap, []
        for _, _, future in heap:
            future.cancel()

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = self._loop.call_at(when, self._wake), when

    def _wake(self) -> None:
        self._timer, self._timer_at = None, math.inf
        heap, now = self._heap, self._loop.time()
        while heap and heap[0][0] <= now:
            future = heapq.heappop(heap)[2]
            if not future.done():  # a cancelled wait: its waiter has gone
                future.set_result(None)
        if heap:
            self._arm(heap[0][0])
