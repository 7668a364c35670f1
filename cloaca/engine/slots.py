"""Executor slots: the bound on task bodies running at once (`max_concurrent_tasks`)."""

from __future__ import annotations

import asyncio
from collections import deque


class SlotPool:
    """A counting semaphore that can also be taken without waiting (`try_acquire`)."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiters: deque[asyncio.Future[None]] = deque()

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

    __slots__ = ("_pool", "held")

    def __init__(self, pool: SlotPool, held: bool) -> None:
        self._pool = pool
        self.held = held

    async def release(self) -> None:
        self.give_back()

    async def acquire(self) -> None:
        if not self.held:
            await self._pool.acquire()
            self.held = True

    def give_back(self) -> None:
        if self.held:
            self.held = False
            self._pool.release()
