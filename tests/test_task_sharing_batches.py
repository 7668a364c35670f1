"""Work shared by task: outcomes of one run's attempts that end while a step of the run is
being written wait, and are written together as one step (one round trip for all of them);
a refused or failed write of such a step falls back to writing each on its own."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from support import drop_postgres_schema_later

import cloaca
from cloaca import Context, DefaultRunner, DefaultRunnerConfig

POSTGRES_URL = os.environ.get("CLOACA_TEST_POSTGRES_URL")
needs_postgres = pytest.mark.skipif(not POSTGRES_URL, reason="CLOACA_TEST_POSTGRES_URL is not set")

WIDTH = 40
WIDE = "sharing_batches_wide_wf"
bodies: list[str] = []


async def _body(context: Context) -> Context:
    bodies.append(context.get("key") or "?")
    return context


with cloaca.WorkflowBuilder(WIDE):
    cloaca.task(id="root")(_body)
    for _i in range(WIDTH):
        cloaca.task(id=f"leaf{_i}", dependencies=["root"])(_body)
    cloaca.task(id="sink", dependencies=[f"leaf{i}" for i in range(WIDTH)])(_body)


@pytest.fixture(params=[pytest.param("postgres", marks=needs_postgres), "sqlite"])
def open_runner(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], DefaultRunner]]:
    """A runner sharing work by task: on a fresh PostgreSQL schema, or a SQLite file."""
    config = DefaultRunnerConfig(enable_cron_scheduling=False)
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'batches.db'}?sharing=task"
        yield lambda: DefaultRunner.with_config(url, config)
        return
    schema = f"cloaca_batches_{uuid.uuid4().hex[:10]}"
    yield lambda: DefaultRunner(POSTGRES_URL, _config=config, _schema=schema)  # type: ignore[arg-type]
    drop_postgres_schema_later(POSTGRES_URL, schema)


def completed_in(tasks: Any) -> int:
    return sum(1 for t in tasks if t.status == "Completed")


def watch_step_writes(store: Any, on_shared_write: Callable[..., Any]) -> list[int]:
    """Wrap `store.commit_step`: the number of attempts each write completes; a write that
    completes more than one (the first such) goes through `on_shared_write` instead."""
    written: list[int] = []
    commit_step = store.commit_step
    state = {"first": True}

    async def watched(execution_id: str, version: int, owner: str, lease_until: float,
                      tasks: Any, finished: Any = None) -> bool:
        written.append(completed_in(tasks))
        if written[-1] > 1 and state["first"]:
            state["first"] = False
            return await on_shared_write(commit_step, execution_id, version, owner, lease_until, tasks, finished)
        return await commit_step(execution_id, version, owner, lease_until, tasks, finished)

    store.commit_step = watched
    return written


async def run_wide(runner: DefaultRunner) -> Any:
    key = uuid.uuid4().hex
    result = await asyncio.wait_for(runner.aexecute(WIDE, Context({"key": key})), 60)
    assert result.status == "Completed", result.error_message
    assert sorted(t["attempt_count"] for t in result.task_results) == [1] * (WIDTH + 2)
    assert bodies.count(key) == WIDTH + 2  # every task ran once
    return result


async def plain(commit_step: Callable[..., Any], *args: Any) -> bool:
    return await commit_step(*args)


@pytest.mark.asyncio
async def test_attempts_that_end_together_are_written_as_one_step(open_runner):
    async with open_runner() as runner:
        written = watch_step_writes(runner._store, plain)
        await run_wide(runner)
    assert max(written) > 1  # some write completed several leaves
    assert sum(written) == WIDTH + 2  # each attempt was written once
    assert len(written) < WIDTH  # fewer writes than leaves


@pytest.mark.asyncio
async def test_a_shared_step_refused_because_another_runner_wrote_first_is_written_attempt_by_attempt(
        open_runner):
    async with open_runner() as runner:
        store = runner._store
        alone: list[str] = []
        commit_step_locked = store.commit_step_locked

        async def locked(execution_id: str, version: int, undone: Any, *args: Any) -> bool:
            alone.append(execution_id)
            return await commit_step_locked(execution_id, version, undone, *args)

        store.commit_step_locked = locked

        async def another_runner_writes_first(commit_step: Callable[..., Any], execution_id: str,
                                              version: int, owner: str, *rest: Any) -> bool:
            assert await commit_step(execution_id, version, owner, rest[0], [], None)  # version + 1
            return await commit_step(execution_id, version, owner, *rest)  # refused: stale version

        written = watch_step_writes(store, another_runner_writes_first)
        await run_wide(runner)
    shared = next(n for n in written if n > 1)
    assert len(alone) >= shared  # each attempt of the refused step was written on its own


@pytest.mark.asyncio
async def test_a_shared_step_whose_reply_was_lost_is_found_written_and_nothing_runs_twice(open_runner, caplog):
    caplog.set_level(logging.INFO, logger="cloaca")
    async with open_runner() as runner:
        store = runner._store
        unavailable = store.unavailable
        store.unavailable = lambda exc: isinstance(exc, ConnectionResetError) or unavailable(exc)

        async def written_then_cut(commit_step: Callable[..., Any], *args: Any) -> bool:
            assert await commit_step(*args)
            raise ConnectionResetError("connection reset by peer (after the commit)")

        watch_step_writes(store, written_then_cut)
        await run_wide(runner)  # the sink ran once: the step found written started it
    assert any("was written before the connection dropped" in r.getMessage() for r in caplog.records)
