"""The one loop timer that async trigger pollers sleep on (cloaca/_triggers/shared_timer.py)."""

from __future__ import annotations

import asyncio

import pytest

from cloaca._triggers.shared_timer import SharedTimer


async def woken_at(timer: SharedTimer, when: float, log: list[tuple[float, float]]) -> None:
    loop = asyncio.get_running_loop()
    await timer.wait_until(when)
    log.append((when, loop.time()))


@pytest.mark.asyncio
async def test_each_waiter_wakes_at_its_time_not_before_and_in_order_whatever_the_order_of_arrival():
    loop = asyncio.get_running_loop()
    timer, log = SharedTimer(loop), []
    start = loop.time()
    times = [start + d for d in (0.06, 0.02, 0.04, 0.02, 0.0, -1.0)]  # the last two have passed
    await asyncio.gather(*(woken_at(timer, t, log) for t in times))
    assert sorted(when for when, _ in log) == sorted(times)
    assert all(woke >= when for when, woke in log)  # never early
    assert [when for when, _ in log] == sorted(times)  # woken in the order of their times
    assert len(timer) == 0


@pytest.mark.asyncio
async def test_an_earlier_wait_arriving_later_is_not_held_up_by_the_armed_timer():
    loop = asyncio.get_running_loop()
    timer = SharedTimer(loop)
    late = timer.wait_until(loop.time() + 3600)
    await asyncio.wait_for(timer.wait_until(loop.time() + 0.01), 10)
    assert not late.done()
    timer.close()
    assert late.cancelled()


@pytest.mark.asyncio
async def test_a_cancelled_waiter_leaves_the_others_on_time_and_the_loop_quiet():
    loop = asyncio.get_running_loop()
    timer, log = SharedTimer(loop), []
    handler_calls: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: handler_calls.append(context))
    try:
        start = loop.time()
        gone = asyncio.ensure_future(woken_at(timer, start + 0.02, log))
        stays = asyncio.ensure_future(woken_at(timer, start + 0.02, log))
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.wait_for(stays, 10)
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert [when for when, _ in log] == [start + 0.02]
        await asyncio.sleep(0.01)
        assert handler_calls == []  # no "exception in callback" for the cancelled wait
    finally:
        loop.set_exception_handler(None)


@pytest.mark.asyncio
async def test_many_sleepers_hold_one_loop_timer_between_them():
    loop = asyncio.get_running_loop()
    timer = SharedTimer(loop)
    before = len(loop._scheduled)  # type: ignore[attr-defined]
    start = loop.time()
    waits = [timer.wait_until(start + 3600 + i) for i in range(100)]
    assert len(loop._scheduled) - before == 1  # type: ignore[attr-defined]
    timer.close()
    assert all(w.cancelled() for w in waits)
