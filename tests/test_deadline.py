"""The shared `Watchdog` that bounds async trigger polls."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import pytest

from cloaca._engine.deadline import Watchdog


async def hang() -> None:
    await asyncio.sleep(3600)


async def quick() -> str:
    await asyncio.sleep(0)
    return "done"


def call(function: Callable[[], Awaitable[Any]], seconds: float) -> Awaitable[Any]:
    return Watchdog(resolution=0.01).call(function, seconds)


@pytest.mark.asyncio
async def test_a_hanging_await_times_out_and_a_quick_one_returns():
    with pytest.raises(TimeoutError):
        await call(hang, 0.05)
    assert await call(quick, 10) == "done"
    await asyncio.sleep(0.02)  # nothing is left pending on this task: it sleeps undisturbed


@pytest.mark.asyncio
async def test_cancelling_the_caller_is_a_cancellation_not_a_timeout():
    task = asyncio.ensure_future(call(hang, 10))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.asyncio
async def test_a_function_that_swallows_the_expiry_leaves_no_cancellation_behind():
    watchdog = Watchdog(resolution=0.01)

    async def stubborn() -> str:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return "swallowed"
        return "slept"

    assert await watchdog.call(stubborn, 0.03) == "swallowed"
    task: Any = asyncio.current_task()
    assert task.cancelling() == 0
    await asyncio.sleep(0.02)  # would raise CancelledError if a cancellation were pending


@pytest.mark.asyncio
async def test_one_watchdog_times_out_only_the_overdue_of_many_calls():
    watchdog = Watchdog(resolution=0.01)
    results = await asyncio.gather(
        watchdog.call(hang, 0.05), watchdog.call(quick, 0.05),
        watchdog.call(lambda: asyncio.sleep(0.01, "slept"), 10), watchdog.call(hang, 0.1),
        return_exceptions=True,
    )
    assert [type(r).__name__ if isinstance(r, BaseException) else r for r in results] == [
        "TimeoutError", "done", "slept", "TimeoutError"]
    await asyncio.sleep(0.05)
    assert watchdog._check_handle is None  # idle: no timer left running
