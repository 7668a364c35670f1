"""`Deadlines`: the bucketed deadlines of task attempts and run waits."""

from __future__ import annotations

import asyncio
import random
import sys

import pytest

from cloaca._engine.deadline import BUCKETS_PER_SPAN, Deadlines


async def bounded(deadlines: Deadlines, seconds: float | None, sleep: float) -> str:
    with deadlines.limit(seconds):
        await asyncio.sleep(sleep)
    return "done"


@pytest.mark.asyncio
async def test_an_await_past_its_deadline_times_out_and_one_within_it_returns():
    deadlines = Deadlines(resolution=0.01)
    with pytest.raises(TimeoutError):
        await bounded(deadlines, 0.03, 3600)
    assert await bounded(deadlines, 10, 0) == "done"
    assert await bounded(deadlines, None, 0) == "done"
    await asyncio.sleep(0.05)  # no cancellation is left pending on this task


@pytest.mark.asyncio
async def test_only_the_overdue_of_many_concurrent_awaits_time_out():
    deadlines = Deadlines(resolution=0.01)
    short = [asyncio.ensure_future(bounded(deadlines, 0.02, 3600)) for _ in range(50)]
    long = [asyncio.ensure_future(bounded(deadlines, 10, 0.1)) for _ in range(50)]
    results = await asyncio.gather(*short, *long, return_exceptions=True)
    assert all(isinstance(r, TimeoutError) for r in results[:50])
    assert results[50:] == ["done"] * 50
    assert not any(deadlines._buckets.values()) and deadlines._expired == set()


@pytest.mark.asyncio
async def test_a_later_deadline_set_first_does_not_delay_an_earlier_one():
    deadlines = Deadlines(resolution=0.01)
    late = asyncio.ensure_future(bounded(deadlines, 3600, 3600))
    await asyncio.sleep(0)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(bounded(deadlines, 0.02, 3600), timeout=5)
    late.cancel()
    with pytest.raises(asyncio.CancelledError):
        await late


@pytest.mark.asyncio
async def test_cancelling_the_task_is_a_cancellation_not_a_timeout():
    deadlines = Deadlines(resolution=0.01)
    task = asyncio.ensure_future(bounded(deadlines, 10, 3600))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not any(deadlines._buckets.values())


@pytest.mark.asyncio
async def test_an_await_that_swallows_the_expiry_keeps_its_result_and_no_cancellation():
    deadlines = Deadlines(resolution=0.01)

    async def stubborn() -> str:
        with deadlines.limit(0.01):
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass
        await asyncio.sleep(0.03)  # would raise if a cancellation were still pending
        return "kept"

    assert await stubborn() == "kept"
    assert asyncio.current_task().cancelling() == 0


@pytest.mark.asyncio
async def test_a_deadline_counted_from_a_loop_time_read_by_the_caller():
    deadlines = Deadlines(resolution=0.01)
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    key = deadlines.arm(task, 0.02, loop.time() - 10)  # read long ago: already overdue
    with pytest.raises(asyncio.CancelledError):
        await asyncio.sleep(3600)
    assert deadlines.disarm(task, key)  # it had passed: the cancellation is taken back
    assert task.cancelling() == 0
    quick = deadlines.arm(task, 10, loop.time())
    assert not deadlines.disarm(task, quick)
    await asyncio.sleep(0.05)  # no cancellation is left pending on this task
    assert not any(deadlines._buckets.values()) and deadlines._expired == set()


# ------------------------------------------------------------------ bounded memory
@pytest.mark.asyncio
async def test_a_bucket_is_never_early_and_late_by_at_most_its_resolution_or_1_512th():
    deadlines = Deadlines(resolution=0.05)
    task = asyncio.current_task()
    start = asyncio.get_running_loop().time()
    rng = random.Random(19)
    for seconds in (0.01, 0.05, 1, 30, 51.2, 300, 3600, 86400):
        for _ in range(200):
            now = start + rng.uniform(0, 1000)
            key = deadlines.arm(task, seconds, now)
            deadlines.disarm(task, key)
            late = key * deadlines.resolution - (now + seconds)
            assert -1e-9 <= late <= max(deadlines.resolution, seconds / 512) + 1e-9, (seconds, late)


@pytest.mark.asyncio
async def test_deadlines_of_one_length_keep_a_bounded_number_of_buckets():
    """Runs wait under an hour-long deadline: over 1,000 s of arming and disarming one every
    10 ms, the buckets kept until their time stay at 1,000 s ÷ (3,600 s ÷ BUCKETS_PER_SPAN)
    or fewer (in 50 ms buckets, as before, there were 20,000)."""
    deadlines = Deadlines(resolution=0.05)
    task = asyncio.current_task()
    start = asyncio.get_running_loop().time()
    for i in range(100_000):
        deadlines.disarm(task, deadlines.arm(task, 3600, start + i * 0.01))
    assert len(deadlines._buckets) <= 1000 / (3600 / BUCKETS_PER_SPAN) + 2


@pytest.mark.asyncio
async def test_an_emptied_bucket_gives_its_table_back():
    deadlines = Deadlines(resolution=0.05)
    now = asyncio.get_running_loop().time()
    tasks = [object() for _ in range(1000)]  # stand-ins: a bucket only holds and cancels them
    keys = {deadlines.arm(t, 300, now) for t in tasks}  # type: ignore[arg-type]
    (key,) = keys
    assert sys.getsizeof(deadlines._buckets[key]) > sys.getsizeof(set())
    for t in tasks:
        deadlines.disarm(t, key)  # type: ignore[arg-type]
    assert deadlines._buckets[key] == set()
    assert sys.getsizeof(deadlines._buckets[key]) == sys.getsizeof(set())
