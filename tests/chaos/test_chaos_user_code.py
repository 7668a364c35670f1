"""Broken user code around a runner: 100 triggers that hang, raise, return garbage or leak
threads, and task callbacks that hang, raise or return garbage.

The runner's own work (runs of a plain three-task chain) must go on, each run delayed by
no more than README's bounds ("What the runner guarantees": triggers and callbacks never
take a task slot; a trigger poll is bounded by `trigger_poll_timeout_seconds`, a callback
by `task_timeout_seconds`). The asserts are hang guards, far above those bounds; the
measured delays (against the same runs on the same runner before the triggers were
declared) are reported as figures, not asserted (the machine is shared and noisy).
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
import uuid
from typing import Any, Callable, Iterator

import pytest

import cloaca
from cloaca import Context, DefaultRunner, DefaultRunnerConfig
from cloaca._registry import REGISTRY

from _chaos import LONG, report
from support import poll_until

pytestmark = pytest.mark.chaos

TRIGGERS = 100
RUNS = 60 if LONG else 20
POLL_TIMEOUT = 1.0
TASK_TIMEOUT = 2
HANG_GUARD = 60
"""Far above what a run may be delayed by (POLL_TIMEOUT and TASK_TIMEOUT are the bounds)."""

RELEASE = threading.Event()
"""Set at the end: hung user code returns, and leaked threads end with the test."""

CHAIN = "chaos_user_code_chain"
with cloaca.WorkflowBuilder(CHAIN):
    for _i, _name in enumerate(("one", "two", "three")):
        def _step(context: Context) -> Context:
            time.sleep(0.005)
            context.set("steps", (context.get("steps") or 0) + 1)
            return context

        cloaca.task(id=_name, dependencies=[("one", "two")[_i - 1]] if _i else [])(_step)


def hang(*args: Any) -> None:
    RELEASE.wait()


async def ahang(*args: Any) -> None:
    while not RELEASE.is_set():
        await asyncio.sleep(0.1)


def boom(*args: Any) -> None:
    raise RuntimeError("broken user code")


async def aboom(*args: Any) -> None:
    raise RuntimeError("broken async user code")


def garbage(*args: Any) -> Any:
    return object()


def leak(*args: Any) -> bool:
    threading.Thread(target=RELEASE.wait, daemon=True).start()
    return False


CALLBACK_KINDS: dict[str, Callable[..., Any]] = {
    "hang": hang, "ahang": ahang, "boom": boom, "aboom": aboom, "garbage": garbage,
}
TRIGGER_KINDS: dict[str, Callable[..., Any]] = {**CALLBACK_KINDS, "leak": leak}


def callback_workflow(kind: str) -> str:
    """A one-task workflow whose task's on_success is `kind`, and a failing task whose
    on_failure is `kind` too (called on each of its 3 attempts, 10 ms apart rather than the
    default 1 s then 2 s: what is waited for is the callbacks, not the backoff)."""
    name = f"chaos_callbacks_{kind}_{uuid.uuid4().hex[:6]}"
    callback = CALLBACK_KINDS[kind]
    with cloaca.WorkflowBuilder(name):

        @cloaca.task(id="fine", on_success=callback)
        def _fine(context: Context) -> Context:
            context.set("fine", True)
            return context

        @cloaca.task(id="fails", on_failure=callback, retry_delay_ms=10)
        def _fails(context: Context) -> Context:
            raise ValueError("this task fails")

    return name


@pytest.fixture
def broken_triggers() -> Iterator[Callable[[], list[str]]]:
    """`declare()` declares the 100 broken triggers (on one workflow) and returns their
    names; all are removed, and hung code released, at the end."""
    names: list[str] = []
    calls: dict[str, int] = {}

    def declare() -> list[str]:
        target = callback_workflow("garbage")
        kinds = list(TRIGGER_KINDS)
        for i in range(TRIGGERS):
            kind = kinds[i % len(kinds)]
            name = f"chaos_trigger_{kind}_{i}_{uuid.uuid4().hex[:6]}"
            function = TRIGGER_KINDS[kind]
            if kind.startswith("a"):
                async def poll(function: Any = function, name: str = name) -> Any:
                    calls[name] = calls.get(name, 0) + 1
                    return await function()
            else:
                def poll(function: Any = function, name: str = name) -> Any:
                    calls[name] = calls.get(name, 0) + 1
                    return function()
            poll.__name__ = name
            cloaca.trigger(workflow=target, name=name, poll_interval="100ms")(poll)
            names.append(name)
        return names

    declare.calls = calls  # type: ignore[attr-defined]
    try:
        yield declare
    finally:
        for name in names:
            REGISTRY.remove_trigger(name)
        RELEASE.set()


def chain_latencies(runner: DefaultRunner, runs: int) -> list[float]:
    """Seconds each of `runs` sequential chain runs took, end to end (each must complete)."""
    latencies = []
    for n in range(runs):
        started = time.monotonic()
        result = runner.execute(CHAIN, Context({"n": n}))
        latencies.append(time.monotonic() - started)
        assert result.status == "Completed" and result.final_context.get("steps") == 3
        assert latencies[-1] < HANG_GUARD
    return latencies


def test_broken_triggers_and_callbacks_do_not_hold_up_the_runners_own_work(broken_triggers) -> None:
    RELEASE.clear()
    config = DefaultRunnerConfig(
        trigger_poll_timeout_seconds=POLL_TIMEOUT, task_timeout_seconds=TASK_TIMEOUT,
        workflow_timeout_seconds=HANG_GUARD, max_concurrent_tasks=4,
    )
    runner = DefaultRunner.with_config(":memory:", config)
    try:
        chain_latencies(runner, 5)  # warm up
        baseline = chain_latencies(runner, RUNS)

        names = broken_triggers()
        callback_runs = [runner.submit(callback_workflow(kind), Context({}))
                         for kind in CALLBACK_KINDS for _ in range(4)]
        time.sleep(2 * POLL_TIMEOUT)  # every trigger has been polled, the hung ones have timed out
        loaded = chain_latencies(runner, RUNS)

        for execution_id in callback_runs:  # a broken callback delays its own task by at most TASK_TIMEOUT
            result = runner.get_result(execution_id, timeout=HANG_GUARD)
            assert result.status == "Failed", result
            fine = next(t for t in result.task_results if t["task_name"] == "fine")
            fails = next(t for t in result.task_results if t["task_name"] == "fails")
            assert fine["status"] == "Completed" and fails["status"] == "Failed"
        calls = broken_triggers.calls  # type: ignore[attr-defined]
        poll_until(lambda: all(calls.get(n, 0) >= 2 for n in names if "hang" not in n),
                   "every broken trigger that returns to be polled again", timeout=HANG_GUARD)
        assert all(calls.get(n, 0) >= 1 for n in names)
        report(
            "user-code", triggers=TRIGGERS, runs=RUNS, threads_alive=threading.active_count(),
            baseline_median_ms=round(1000 * statistics.median(baseline), 1),
            loaded_median_ms=round(1000 * statistics.median(loaded), 1),
            baseline_max_ms=round(1000 * max(baseline), 1), loaded_max_ms=round(1000 * max(loaded), 1),
            median_ratio=round(statistics.median(loaded) / statistics.median(baseline), 2),
        )
    finally:
        RELEASE.set()
        runner.shutdown()


def test_healthy_triggers_go_on_polling_when_more_triggers_hang_than_there_are_poll_threads() -> None:
    """Found with the scenario above, scaled up: a sync poll that timed out kept counting
    against `max_concurrent_trigger_polls`, so once that many polls hung for good no thread
    was left and every other sync trigger stopped being polled."""
    RELEASE.clear()
    max_polls, hung, healthy = 8, 12, 5
    target = callback_workflow("garbage")
    calls: dict[str, int] = {}
    names = []

    def make(name: str, hangs: bool) -> Callable[[], bool]:
        def poll() -> bool:
            calls[name] = calls.get(name, 0) + 1
            if hangs:
                RELEASE.wait()
            return False

        return poll

    config = DefaultRunnerConfig(trigger_poll_timeout_seconds=POLL_TIMEOUT,
                                 max_concurrent_trigger_polls=max_polls, workflow_timeout_seconds=HANG_GUARD)
    runner = DefaultRunner.with_config(":memory:", config)
    try:
        for i in range(hung + healthy):
            name = f"chaos_poll_{'hung' if i < hung else 'healthy'}_{i}_{uuid.uuid4().hex[:6]}"
            cloaca.trigger(workflow=target, name=name, poll_interval="50ms")(make(name, i < hung))
            names.append(name)
        poll_until(lambda: all(calls.get(n, 0) >= 1 for n in names[:hung]), "every hanging trigger to be called")
        time.sleep(2 * POLL_TIMEOUT)  # every hung poll has timed out
        before = {n: calls.get(n, 0) for n in names[hung:]}
        poll_until(lambda: all(calls.get(n, 0) >= before[n] + 3 for n in names[hung:]),
                   "the healthy triggers to be polled again", timeout=HANG_GUARD)
        assert all(calls[n] == 1 for n in names[:hung])  # a hung trigger is not called again
    finally:
        for name in names:
            REGISTRY.remove_trigger(name)
        RELEASE.set()
        runner.shutdown()
