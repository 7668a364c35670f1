"""Group commit in the PostgreSQL store keeps every call's contract.

Concurrent `create_execution` and `commit_step` calls are written together, one statement a
group (cloaca/_store/postgres_group.py). Whatever their grouping, each call must keep its own
outcome: a step's compare-and-set is decided per run (of two steps of one run at one
version, exactly one is written), a call that fails fails alone, every new run is persisted
once, and a group's lost connection is reported to each of its calls rather than replayed.
The database tests run on a fresh schema (skipped without CLOACA_TEST_POSTGRES_URL); the
tests of the queue's own rules use a stand-in pool.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any, Optional, Sequence

import asyncpg
import pytest
import pytest_asyncio

from cloaca._store import postgres_group
from cloaca._store import postgres_queries as q
from cloaca._store.base import TaskRecord
from cloaca._store.postgres import PostgresStore
from test_store_contract import POSTGRES_URL, T0, PostgresBackend, execution, finished
from test_store_task_claims import Notices, holders, tasks_of, version_of

pytestmark = pytest.mark.asyncio

RUNS = 40
CONTENDED = 200
"""Steps of so many runs that two groups writing them overlap on the server."""


# ====================================================================== fixtures, helpers
@pytest_asyncio.fixture
async def backend():
    if not POSTGRES_URL:
        pytest.skip("CLOACA_TEST_POSTGRES_URL is not set")
    b = PostgresBackend(POSTGRES_URL)
    b.schema = f"cloaca_group_{uuid.uuid4().hex[:12]}"
    try:
        yield b
    finally:
        await b.cleanup()


@pytest.fixture
def groups(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, Optional[BaseException]]]:
    """(writes, error or None) of every statement the store's group commit sends."""
    sent: list[tuple[int, Optional[BaseException]]] = []
    write_group = postgres_group.write_group

    async def recording(executor: Any, writes: Sequence[Any], channel: str) -> Any:
        try:
            outcome = await write_group(executor, writes, channel)
        except BaseException as exc:
            sent.append((len(writes), exc))
            raise
        sent.append((len(writes), None))
        return outcome

    monkeypatch.setattr(postgres_group, "write_group", recording)
    return sent


def running(run_id: str, name: str = "a") -> TaskRecord:
    return TaskRecord(run_id, name, "Running", attempt=1, started_at=T0)


def completed(run_id: str, name: str = "a", output: str = '{"by": "?"}') -> TaskRecord:
    return TaskRecord(run_id, name, "Completed", attempt=1, started_at=T0, completed_at=T0 + 1,
                      output_context=output, finish_seq=1)


async def create(store: PostgresStore, run_id: str, owner: str = "creator") -> bool:
    return await store.create_execution(execution(run_id), [running(run_id)], owner, T0 + 50)


def grouped(sent: list[tuple[int, Optional[BaseException]]]) -> bool:
    """Whether some statement carried several calls' writes."""
    return any(size > 1 for size, _ in sent)


# ====================================================================== compare-and-set
async def test_of_concurrent_steps_of_one_run_at_one_version_exactly_one_is_written(opened, groups):
    store = await opened()
    await create(store, "r")
    outputs = [f'{{"by": {n}}}' for n in range(8)]

    won = await asyncio.gather(*(
        store.commit_step("r", 0, "A", T0 + 50, [completed("r", output=o)], finished("r", T0 + 2))
        for o in outputs
    ))

    assert grouped(groups)
    assert won.count(True) == 1
    winner = outputs[won.index(True)]
    assert (await tasks_of(store, "r"))["a"].output_context == winner
    assert await version_of(store, "r") == 1


async def test_steps_of_many_runs_in_one_group_are_each_compared_with_their_own_run(opened, groups):
    store = await opened()
    ids = [f"r{n:02}" for n in range(RUNS)]
    await asyncio.gather(*(create(store, i) for i in ids))
    moved_on = set(ids[::3])  # another runner wrote a step of these first
    await asyncio.gather(*(
        store.commit_step(i, 0, "B", T0 + 50, [running(i, "a")]) for i in moved_on
    ))

    won = await asyncio.gather(*(
        store.commit_step(i, 0, "A", T0 + 50, [completed(i, output=f'"{i}"')], finished(i, T0 + 2))
        for i in ids
    ))

    assert grouped(groups)
    assert {i for i, w in zip(ids, won) if not w} == moved_on
    for i in ids:
        run = await store.get_run(i)
        assert run is not None
        if i in moved_on:
            assert (run.execution.status, run.version) == ("Running", 1)
            assert run.tasks[0].status == "Running"
        else:
            assert (run.execution.status, run.version) == ("Completed", 1)
            assert run.tasks[0].output_context == f'"{i}"'


async def test_two_runners_writing_steps_of_the_same_runs_in_opposite_orders_write_each_once_and_never_fail(opened, groups):
    first, second = await opened(), await opened()
    for store in (first, second):  # past PostgreSQL's first custom plans: rows are then
        for n in range(8):         # updated in the order of each group's arrays
            await create(store, f"warm-{id(store)}-{n}")
    ids = [f"r{n:03}" for n in range(CONTENDED)]
    await asyncio.gather(*(create(first, i) for i in ids))

    def steps(store: PostgresStore, owner: str, order: list[str]) -> list[Any]:
        return [store.commit_step(i, 0, owner, T0 + 50, [completed(i, output=f'"{owner}"')],
                                  finished(i, T0 + 2)) for i in order]

    outcomes = await asyncio.gather(*steps(first, "A", ids), *steps(second, "B", ids[::-1]))

    assert [error for _, error in groups if error is not None] == []  # no group failed (deadlock)
    by_a, by_b = outcomes[:CONTENDED], outcomes[CONTENDED:][::-1]
    assert all(a != b for a, b in zip(by_a, by_b)), "each run's step is written exactly once"
    for i, a in zip(ids, by_a):
        assert (await tasks_of(first, i))["a"].output_context == ('"A"' if a else '"B"')


# ====================================================================== one call's failure
async def test_a_failing_create_fails_alone_and_its_neighbours_are_persisted(opened, groups):
    store = await opened()
    await create(store, "taken")
    ids = [f"new{n:02}" for n in range(RUNS)]

    outcomes = await asyncio.gather(*(create(store, i) for i in ["taken", *ids]), return_exceptions=True)

    assert grouped(groups)
    assert isinstance(outcomes[0], asyncpg.UniqueViolationError)
    assert outcomes[1:] == [True] * RUNS
    for i in ids:
        run = await store.get_run(i)
        assert run is not None and [t.task_name for t in run.tasks] == ["a"]
    assert len(await store.list_executions(None, None, 1000, 0)) == RUNS + 1


async def test_a_step_the_server_rejects_fails_alone_and_its_neighbours_are_written(opened, groups):
    store = await opened()
    ids = [f"r{n:02}" for n in range(RUNS)]
    await asyncio.gather(*(create(store, i) for i in ids))
    bad = ids[7]

    def output(i: str) -> str:
        return "\x00" if i == bad else f'"{i}"'  # PostgreSQL text cannot hold a NUL

    outcomes = await asyncio.gather(*(
        store.commit_step(i, 0, "A", T0 + 50, [completed(i, output=output(i))], finished(i, T0 + 2))
        for i in ids
    ), return_exceptions=True)

    assert grouped(groups)
    assert isinstance(outcomes[ids.index(bad)], asyncpg.PostgresError)
    assert [o for i, o in zip(ids, outcomes) if i != bad] == [True] * (RUNS - 1)
    assert (await store.get_run(bad)).execution.status == "Running"  # type: ignore[union-attr]
    for i in ids:
        if i != bad:
            assert (await tasks_of(store, i))["a"].output_context == f'"{i}"'


# ====================================================================== creates
async def test_many_concurrent_creates_are_all_persisted_once_and_duplicates_refused(opened, backend, groups):
    store = await opened()
    ids = [f"r{n:03}" for n in range(200)]
    duplicates = ids[::10]

    outcomes = await asyncio.gather(*(create(store, i, owner=f"o{n}") for n, i in enumerate(ids + duplicates)),
                                    return_exceptions=True)

    assert grouped(groups)
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(refused) == len(duplicates)
    assert all(isinstance(o, asyncpg.UniqueViolationError) for o in refused)
    listed = await store.list_executions(None, None, 1000, 0)
    assert sorted(r.id for r in listed) == ids
    # each run's task row is claimed by its own creator, whichever call of an id won
    for i in duplicates:
        owner = (await holders(backend, i))["a"][1]
        assert owner in (f"o{ids.index(i)}", f"o{len(ids) + duplicates.index(i)}")


async def test_grouped_creates_announce_new_work_once_it_is_committed(opened):
    listener, writer = await opened(), await opened()
    notices = Notices()
    assert await listener.listen(notices) is True
    since = len(notices.got)

    await asyncio.gather(*(
        writer.create_execution(execution(f"r{n}"), [TaskRecord(f"r{n}", "a", "Ready")], "c", T0 + 50)
        for n in range(10)
    ))

    await notices.wait_for(lambda n: n.work, since)


# ====================================================================== notices of ended runs
async def test_the_end_of_a_run_is_announced_unless_its_starter_ends_it(opened):
    listener, writer = await opened(), await opened()
    notices = Notices()
    assert await listener.listen(notices) is True
    await create(writer, "own", owner="A")
    await create(writer, "other", owner="A")
    since = len(notices.got)

    assert await writer.commit_step("own", 0, "A", T0 + 50, [completed("own")], finished("own", T0 + 2))
    assert await writer.commit_step("other", 0, "B", T0 + 50, [completed("other")], finished("other", T0 + 2))

    # Notices arrive in commit order: once the second run's end is heard, the first one's
    # would have been heard too.
    await notices.wait_for(lambda n: n.ended_run == "other", since)
    assert "own" not in [n.ended_run for n in notices.got[since:]]


# ====================================================================== the queue's own rules
class StandInPool:
    """Answers the group statements like the database would (every step written), or fails
    or waits as told; records how many writes each statement carried."""

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.fail: Optional[BaseException] = None
        self.gate: Optional[asyncio.Event] = None

    async def fetchrow(self, sql: str, *args: Any) -> list[Any]:
        self.sent.append(len(args[0]))  # run ids, or step ids for a group of steps only
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        steps = len(args[0]) if sql == q.WRITE_STATEMENTS[(False, True)] else 0
        return [list(range(1, steps + 1)), 0, 0]


def new_run(run_id: str) -> postgres_group.NewRun:
    return postgres_group.NewRun(execution(run_id), [running(run_id)], "A", T0 + 50, None)


def lost(exc: BaseException) -> bool:
    return isinstance(exc, asyncpg.ConnectionDoesNotExistError)


async def test_a_group_whose_connection_is_lost_fails_every_call_and_is_not_replayed():
    pool = StandInPool()
    pool.fail = asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
    group = postgres_group.GroupCommit(lambda: pool, "ch", lost, groups_in_flight=1)

    outcomes = await asyncio.gather(*(group.write(new_run(f"r{n}")) for n in range(5)),
                                    return_exceptions=True)

    assert all(isinstance(o, asyncpg.ConnectionDoesNotExistError) for o in outcomes)
    assert pool.sent == [5]  # the outcome is unknown: each caller decides, none is written twice


async def test_a_call_cancelled_before_its_group_is_sent_is_not_written():
    pool = StandInPool()
    pool.gate = asyncio.Event()
    group = postgres_group.GroupCommit(lambda: pool, "ch", lost, groups_in_flight=1)
    first = asyncio.ensure_future(group.write(new_run("first")))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the first group is in flight
    queued = [asyncio.ensure_future(group.write(new_run(f"q{n}"))) for n in range(3)]
    await asyncio.sleep(0)
    queued[1].cancel()

    pool.gate.set()
    await asyncio.gather(first, queued[0], queued[2])

    assert pool.sent == [1, 2]
    assert queued[1].cancelled()


async def test_writes_queued_while_groups_are_in_flight_go_out_together_and_none_is_left_behind():
    pool = StandInPool()
    pool.gate = asyncio.Event()
    group = postgres_group.GroupCommit(lambda: pool, "ch", lost, groups_in_flight=2, max_group=4)
    calls = [asyncio.ensure_future(group.write(new_run(f"r{n}"))) for n in range(11)]
    await asyncio.sleep(0)

    pool.gate.set()
    assert await asyncio.gather(*calls) == [None] * 11

    assert sum(pool.sent) == 11 and max(pool.sent) == 4
    late = await group.write(new_run("late"))  # after every flusher has ended
    assert late is None and pool.sent[-1] == 1


async def test_each_group_statement_gets_the_arguments_it_numbers():
    step = postgres_group.Step("s", 3, "A", T0, [completed("s")], finished("s", T0))
    for writes in ([new_run("r")], [step], [new_run("r"), step]):
        params = postgres_group._Params()
        for write in writes:
            params.add(write)
        sql, arguments = params.statement("ch")
        numbers = {int(n) for n in re.findall(r"\$(\d+)", sql)}
        assert numbers == set(range(1, len(arguments) + 1))
        assert arguments[-1] == "ch"
