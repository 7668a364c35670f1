"""Work shared by task: a claim on its way to the store takes none of its runner's slots.

Slots taken for a claim while it is on its way would leave the runner's own new tasks
Ready for want of one: announced to every runner, claimed by whichever is quickest, so
that, with several busy runners, runs hop from one to another and each claim of one
leaves more tasks Ready (measured: 4 processes made less than half the runs/s of 2). The
runner's own tasks take its free slots; a claimed task that finds none when the claim
comes back waits here for one.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from support import drop_postgres_schema_later, wait_until

import cloaca
from cloaca import Context, DefaultRunner, DefaultRunnerConfig

POSTGRES_URL = os.environ.get("CLOACA_TEST_POSTGRES_URL")
needs_postgres = pytest.mark.skipif(not POSTGRES_URL, reason="CLOACA_TEST_POSTGRES_URL is not set")

SINGLE = "claim_slots_single_wf"
PAIR = "claim_slots_pair_wf"
events: list[str] = []
released: dict[str, asyncio.Event] = {}


async def _held(name: str) -> None:
    """Record that `name` started, hold its slot until released, record that it ended."""
    events.append(f"{name} started")
    await released[name].wait()
    events.append(f"{name} ended")


with cloaca.WorkflowBuilder(SINGLE):

    @cloaca.task(id="only")
    async def _only(context: Context) -> Context:
        await _held("only")
        return context


with cloaca.WorkflowBuilder(PAIR):

    @cloaca.task(id="hold")
    async def _hold(context: Context) -> Context:
        await _held("hold")
        return context

    @cloaca.task(id="other")
    async def _other(context: Context) -> Context:
        events.append("other started")
        return context


OpenRunner = Callable[..., DefaultRunner]


@pytest.fixture(params=[pytest.param("postgres", marks=needs_postgres), "sqlite"])
def open_runner(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenRunner]:
    """Runners sharing one database's work by task (a fresh PostgreSQL schema, or a SQLite
    file), with these async slots each."""
    def config(slots: int) -> DefaultRunnerConfig:
        return DefaultRunnerConfig(enable_cron_scheduling=False, max_concurrent_async_tasks=slots,
                                   lease_seconds=600.0)

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'claim_slots.db'}?sharing=task"
        yield lambda slots: DefaultRunner.with_config(url, config(slots))
        return
    schema = f"cloaca_claim_slots_{uuid.uuid4().hex[:10]}"
    yield lambda slots: DefaultRunner(POSTGRES_URL, _config=config(slots), _schema=schema)  # type: ignore[arg-type]
    drop_postgres_schema_later(POSTGRES_URL, schema)


@pytest.fixture(autouse=True)
def fresh_events() -> None:
    events.clear()
    released.clear()
    released.update(only=asyncio.Event(), hold=asyncio.Event())


class GatedClaims:
    """Holds the runner's next claim on its way to the store until `open()`."""

    def __init__(self, runner: DefaultRunner) -> None:
        self.store: Any = runner._engine.store
        self.claim_tasks = self.store.claim_tasks
        self.on_its_way = asyncio.Event()
        self.gate = asyncio.Event()
        self.store.claim_tasks = self._gated

    async def _gated(self, *args: Any, **kwargs: Any) -> Any:
        self.store.claim_tasks = self.claim_tasks  # only this claim is held
        self.on_its_way.set()
        await self.gate.wait()
        return await self.claim_tasks(*args, **kwargs)

    async def wait_on_its_way(self) -> None:
        await asyncio.wait_for(self.on_its_way.wait(), 20)

    def open(self) -> None:
        self.gate.set()


def count_queued(runner: DefaultRunner) -> list[str]:
    """The tasks the runner's steps leave Ready for want of a slot, as they are."""
    sharing: Any = runner._engine.sharing
    queued: list[str] = []
    queue = sharing.queue

    def counted(run: Any, states: Any) -> None:
        queued.extend(s.record.task_name for s in states)
        queue(run, states)

    sharing.queue = counted
    return queued


@pytest.mark.asyncio
async def test_a_claim_on_its_way_leaves_the_free_slots_to_the_runners_own_tasks(open_runner):
    async with open_runner(4) as runner:
        queued = count_queued(runner)
        claims = GatedClaims(runner)
        runner._engine.sharing.claims.wake()
        await claims.wait_on_its_way()

        running = asyncio.create_task(runner.aexecute(SINGLE, Context({})))
        try:
            # Started here at once, though the claim has not come back.
            await wait_until(lambda: "only started" in events, "the run's task to start while the claim is held")
            assert queued == []
        finally:
            claims.open()
            released["only"].set()
        result = await asyncio.wait_for(running, 20)
        assert result.status == "Completed", result.error_message
        assert queued == []


@pytest.mark.asyncio
async def test_a_claimed_task_that_finds_no_free_slot_waits_here_for_one(open_runner):
    async with open_runner(1) as claimer, open_runner(1) as other:
        claims = GatedClaims(claimer)
        claimer._engine.sharing.claims.wake()
        await claims.wait_on_its_way()  # with the claimer's one slot free
        # Meanwhile the claimer's own run takes that slot, and the other runner leaves a
        # task Ready (its one slot is held by the pair's other task).
        own = asyncio.create_task(claimer.aexecute(SINGLE, Context({})))
        pair = asyncio.create_task(other.aexecute(PAIR, Context({})))
        try:
            await wait_until(lambda: {"only started", "hold started"} <= set(events), "both held tasks to start")
            claims.open()
            await wait_until(lambda: claimer._engine.async_slots._waiters, "the claimed task to wait for a slot")
            assert "other started" not in events
            released["only"].set()
            await wait_until(lambda: "other started" in events, "the claimed task to run")
        finally:
            claims.open()
            released["only"].set()
            released["hold"].set()
        for running in (own, pair):
            result = await asyncio.wait_for(running, 20)
            assert result.status == "Completed", result.error_message
        assert events.index("only ended") < events.index("other started")  # one slot: one body at a time
