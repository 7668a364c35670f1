"""Stopping never waits for ever on a task that goes on after being cancelled
(`cloaca._cancelling`): a user's `async def` body that catches CancelledError and loops, or a
loop of ours that drops a cancel."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest

import cloaca
from cloaca import _bridge, _cancelling
from cloaca._cancelling import cancel_and_wait


class Stubborn:
    """A coroutine that shrugs off cancellation until `release` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.cancels = 0

    async def __call__(self) -> None:
        while not self.release.is_set():
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancels += 1


def _stubborn_runner(wf_name: Any, tmp_path: Any, body: Any) -> tuple[str, cloaca.DefaultRunner]:
    """A workflow of one task, `body`, and a runner on a file for it (grace period 0.1 s)."""
    name = wf_name()
    with cloaca.WorkflowBuilder(name):
        cloaca.task(id="stubborn")(body)
    config = cloaca.DefaultRunnerConfig(shutdown_grace_seconds=0.1)
    return name, cloaca.DefaultRunner.with_config(f"sqlite:///{tmp_path}/stubborn.db", config)


@pytest.fixture
def short_stop(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(_cancelling, "STOP_SECONDS", 0.2)
    return 0.2


@pytest.mark.asyncio
async def test_tasks_that_end_are_waited_for_and_their_errors_retrieved(caplog, short_stop) -> None:
    async def fails() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("ended badly")

    failing = asyncio.ensure_future(fails())
    await asyncio.sleep(0.01)  # it has ended with its error before the stop
    sleeping = asyncio.ensure_future(asyncio.sleep(3600))
    with caplog.at_level(logging.ERROR, logger="cloaca"):
        await cancel_and_wait([failing, sleeping], "stopping the test")
    assert sleeping.cancelled() and failing.done()
    assert caplog.records == []
    await cancel_and_wait([], "nothing to stop")


@pytest.mark.asyncio
async def test_a_task_that_goes_on_after_its_cancel_is_logged_and_left(caplog, short_stop) -> None:
    stubborn = Stubborn()
    task = asyncio.ensure_future(stubborn())
    task.set_name("the-stubborn-one")
    await asyncio.sleep(0.01)
    with caplog.at_level(logging.ERROR, logger="cloaca"):
        async with asyncio.timeout(5):
            await cancel_and_wait([task], "stopping the test")
    assert stubborn.cancels == 1 and not task.done()
    (record,) = caplog.records
    assert "stopping the test: 1 task(s) still running 0.2s after being cancelled" in record.getMessage()
    assert "the-stubborn-one" in record.getMessage()
    stubborn.release.set()
    await task


@pytest.mark.asyncio
async def test_shutdown_returns_when_a_task_body_shrugs_off_its_cancel(tmp_path, wf_name, caplog,
                                                                        short_stop) -> None:
    stubborn = Stubborn()
    started = asyncio.Event()

    async def body(context: cloaca.Context) -> cloaca.Context:
        started.set()
        await stubborn()
        return context

    name, runner = _stubborn_runner(wf_name, tmp_path, body)
    await runner.astart()
    execution_id = await runner.asubmit(name, cloaca.Context())
    await started.wait()
    with caplog.at_level(logging.ERROR, logger="cloaca"):
        async with asyncio.timeout(10):
            await runner.ashutdown()
    assert stubborn.cancels >= 1
    assert any("stopping the engine after its 0.1s grace period" in r.getMessage()
               and "_run_task" in r.getMessage() for r in caplog.records)
    stubborn.release.set()  # the body left running ends: its write finds the store closed
    await asyncio.sleep(0.1)
    assert [r for r in caplog.records if r.name == "asyncio"] == []  # nothing never retrieved
    async with cloaca.DefaultRunner(f"sqlite:///{tmp_path}/stubborn.db") as next_runner:
        result = await next_runner.aget_result(execution_id, timeout=10)
    assert result.status == "Completed"  # the run was left to resume, and did


def test_a_sync_shutdown_that_cannot_stop_its_loop_says_why(tmp_path, wf_name, caplog, short_stop,
                                                              monkeypatch) -> None:
    monkeypatch.setattr(_bridge, "JOIN_SECONDS", 0.2)
    started = threading.Event()
    held: dict[str, Any] = {}

    async def body(context: cloaca.Context) -> cloaca.Context:
        held["loop"], held["stubborn"] = asyncio.get_running_loop(), Stubborn()
        started.set()
        await held["stubborn"]()
        return context

    name, runner = _stubborn_runner(wf_name, tmp_path, body)
    runner.submit(name, cloaca.Context())
    assert started.wait(10)
    thread = runner._bridge._thread
    with caplog.at_level(logging.ERROR, logger="cloaca"):
        with pytest.raises(ValueError) as raised:
            runner.shutdown()
    message = str(raised.value)
    assert message.startswith("Failed to shutdown async runtime: ")  # (SPEC Part B)
    assert "did not stop within 0.2s" in message and "catches CancelledError" in message
    assert any("still running 0.2s after being cancelled" in r.getMessage() and "_run_task" in r.getMessage()
               for r in caplog.records)  # the error the message points at names the task
    held["loop"].call_soon_threadsafe(held["stubborn"].release.set)
    thread.join(10)
    assert not thread.is_alive()  # once the body ends, the loop's thread ends too
