"""Executor slots: the bound on task bodies running at once (`max_concurrent_tasks`)."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Callable, Optional


class SlotPool:
    """A counting semaphore that can also be taken without waiting (`try_acquire`)."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def available(self) -> int:
        """Slots that `try_acquire` would take now (none while somebody is queued)."""
        return 0 if self._waiters else self._free

    def try_acquire(self) -> bool:
        """Take a slot if one is free now and nobody is queued for one."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    async def acquire(self) -> None:
        """Take a slot, waiting in line for one if none is free."""
        if self.try_acquire():
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot just as we were cancelled: give it back
            else:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Give a slot back, handing it to the longest waiter if there is one."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1


class TaskSlot:
    """One task's hold on a slot, as a `TaskHandle` sees it (release and re-take)."""

    __slots__ = ("_pool", "held", "_on_release", "closed")

    def __init__(
        self, pool: SlotPool, held: bool, on_release: Optional[Callable[[], None]] = None
    ) -> None:
        self._pool = pool
        self.held = held
        self._on_release = on_release
        self.closed = False

    async def release(self) -> None:
        self.give_back()
        if self._on_release is not None:
            self._on_release()

    async def acquire(self) -> None:
        if self.closed:
            raise ValueError("defer_until failed: TaskHandle has already been consumed")
        if not self.held:
            await self._pool.acquire()
            self.held = True
            if self.closed:
                self.give_back()

    def give_back(self) -> None:
        if self.held:
            self.held = False
            self._pool.release()

    def close(self) -> None:
        """The attempt is over: give the slot back for good (an abandoned thread cannot re-take it)."""
        self.closed = True
        self.give_back()
