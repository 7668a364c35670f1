"""Runs survive lost PostgreSQL connections (issue 20).

Every run must end, and every `execute` return, however often the database connections
are cut: by the server (`pg_terminate_backend`), by a store call failing at a chosen point
(fault injection), or by the network refusing connections for a while (a TCP proxy the
test controls). The waits below are hang guards, not timing assertions.

Each test uses a database of its own, dropped at teardown.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

import pytest

import cloaca
from cloaca import Context, DefaultRunner, DefaultRunnerConfig

from _tcp_proxy import TcpProxy
from pg_admin import admin, created_database, proxy, terminate_backends, url_for  # noqa: F401 (proxy: a fixture)
from support import poll_until

POSTGRES_URL = os.environ.get("CLOACA_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="CLOACA_TEST_POSTGRES_URL is not set")

HANG_GUARD_SECONDS = 120.0
"""Far above what any run needs: only a run that never ends reaches it."""

CHAIN = "pg_connection_loss_chain"
with cloaca.WorkflowBuilder(CHAIN):

    @cloaca.task(id="one", retry_attempts=3)
    def _one(context: Context) -> Context:
        time.sleep(0.05)
        context.set("steps", ["one"])
        return context

    @cloaca.task(id="two", dependencies=["one"], retry_attempts=3)
    def _two(context: Context) -> Context:
        time.sleep(0.05)
        context.set("steps", context.get("steps") + ["two"])
        return context

    @cloaca.task(id="three", dependencies=["two"], retry_attempts=3)
    def _three(context: Context) -> Context:
        time.sleep(0.05)
        context.set("steps", context.get("steps") + ["three"])
        return context


# ====================================================================== helpers
@pytest.fixture
def fresh_db() -> Iterator[str]:
    """The name of a new, empty database, dropped (with its connections) at teardown."""
    with created_database("cloaca_connloss") as url:
        yield url.rsplit("/", 1)[1]


def proxied_runner(proxy: TcpProxy, database: str) -> DefaultRunner:
    return runner_on(url_for(database, "127.0.0.1", proxy.port))


def run_many(runner: DefaultRunner, runs: int, threads: int, during: Callable[[], None]) -> list[Any]:
    """`runs` blocking `execute` calls from `threads` threads while `during()` runs; every
    call must return (result or exception) before the hang guard."""
    pool = ThreadPoolExecutor(threads)
    try:
        futures = [pool.submit(runner.execute, CHAIN, Context({"n": i})) for i in range(runs)]
        during()
        outcomes: list[Any] = []
        deadline = time.monotonic() + HANG_GUARD_SECONDS
        for f in futures:
            try:
                outcomes.append(f.result(timeout=max(0.0, deadline - time.monotonic())))
            except TimeoutError:
                stuck = [r["id"] for r in runner.list_executions(CHAIN, limit=1000) if r["status"] == "Running"]
                raise AssertionError(
                    f"an execute call never returned; runs still Running: {stuck}"
                ) from None
            except Exception as exc:  # judged below, with the others
                outcomes.append(exc)
        return outcomes
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # stuck calls end with the runner


def assert_all_completed(runner: DefaultRunner, outcomes: list[Any], runs: int) -> None:
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert not errors, f"{len(errors)} execute call(s) raised: {errors[:3]!r}"
    assert [o.status for o in outcomes] == ["Completed"] * runs
    assert all(o.final_context.get("steps") == ["one", "two", "three"] for o in outcomes)
    listed = runner.list_executions(CHAIN, limit=1000)
    assert len(listed) == runs
    assert {r["status"] for r in listed} == {"Completed"}


def runner_on(url: str) -> DefaultRunner:
    return DefaultRunner.with_config(
        url, DefaultRunnerConfig(max_concurrent_tasks=8, lease_seconds=2.0, workflow_timeout_seconds=600),
    )


# ====================================================================== server cuts
@pytest.mark.parametrize("first_cut, gap", [(0.2, 0.7), (0.5, 0.3), (0.05, 0.15)])
def test_every_run_ends_when_the_server_terminates_connections(
    fresh_db: str, first_cut: float, gap: float
) -> None:
    runner = runner_on(url_for(fresh_db))
    try:
        def cut() -> None:
            time.sleep(first_cut)
            for _ in range(3):
                terminate_backends(fresh_db)
                time.sleep(gap)

        outcomes = run_many(runner, runs=60, threads=20, during=cut)
        assert_all_completed(runner, outcomes, 60)
    finally:
        runner.shutdown()


# ====================================================================== injected faults
class FaultyCalls:
    """Makes chosen store calls fail like a dropped connection: every `every`-th call of
    each named method raises, before the call reaches the server or after it committed
    (the reply was lost)."""

    def __init__(self, store: Any, methods: list[str], every: int, after_commit: bool) -> None:
        import asyncpg

        self.failed = 0
        self._error = asyncpg.ConnectionDoesNotExistError
        self._lock = threading.Lock()
        for name in methods:
            setattr(store, name, self._wrap(getattr(store, name), every, after_commit))

    def _wrap(self, call: Callable[..., Any], every: int, after_commit: bool) -> Callable[..., Any]:
        count = 0

        async def faulty(*args: Any, **kwargs: Any) -> Any:
            nonlocal count
            count += 1
            fail = count % every == 0
            if fail and not after_commit:
                self.failed += 1
                raise self._error("connection was closed in the middle of operation")
            result = await call(*args, **kwargs)
            if fail:
                self.failed += 1
                raise self._error("connection was closed in the middle of operation")
            return result

        return faulty


@pytest.mark.parametrize("after_commit", [False, True], ids=["before", "after-commit"])
@pytest.mark.parametrize("methods", [
    ["commit_step"], ["commit_step", "commit_step_locked"], ["claim_tasks"],
    ["create_execution"],
])
def test_every_run_ends_when_store_calls_fail(
    fresh_db: str, methods: list[str], after_commit: bool
) -> None:
    runner = runner_on(url_for(fresh_db))
    try:
        faults = FaultyCalls(runner._store, methods, every=4, after_commit=after_commit)
        outcomes = run_many(runner, runs=24, threads=12, during=lambda: None)
        assert faults.failed > 0
        assert_all_completed(runner, outcomes, 24)
    finally:
        runner.shutdown()


@pytest.mark.parametrize("after_commit", [False, True], ids=["before", "after-commit"])
def test_every_run_ends_when_a_recomputed_step_fails(fresh_db: str, after_commit: bool) -> None:
    runner = runner_on(url_for(fresh_db))
    try:
        store, calls = runner._store, itertools.count(1)
        commit_step = store.commit_step

        async def refused_sometimes(*args: Any) -> bool:
            if next(calls) % 3 == 0:
                return False  # as if another runner had written first: recomputed under lock
            return await commit_step(*args)

        store.commit_step = refused_sometimes
        faults = FaultyCalls(store, ["commit_step_locked"], every=2, after_commit=after_commit)
        outcomes = run_many(runner, runs=24, threads=12, during=lambda: None)
        assert faults.failed > 0
        assert_all_completed(runner, outcomes, 24)
    finally:
        runner.shutdown()


@pytest.mark.parametrize("after_commit", [False, True], ids=["before", "after-commit"])
def test_every_trigger_fire_starts_its_run_once_when_inserts_fail(fresh_db: str, after_commit: bool) -> None:
    from cloaca._registry import REGISTRY

    suffix = uuid.uuid4().hex[:10]
    workflow, trigger, fires = f"pg_connloss_fired_{suffix}", f"pg_connloss_trigger_{suffix}", 8
    received: list[int] = []
    with cloaca.WorkflowBuilder(workflow):

        @cloaca.task(id="record")
        def record(context: Context) -> Context:
            received.append(context.get("n"))
            return context

    pending = iter(range(fires))

    @cloaca.trigger(workflow=workflow, name=trigger, poll_interval="50ms")
    def poll() -> cloaca.TriggerResult:
        n = next(pending, None)
        return cloaca.TriggerResult.skip() if n is None else cloaca.TriggerResult.fire(Context({"n": n}))

    try:
        runner = runner_on(url_for(fresh_db))
        try:
            faults = FaultyCalls(runner._store, ["create_execution"], every=2, after_commit=after_commit)
            poll_until(
                lambda: [r["status"] for r in runner.list_executions(workflow)] == ["Completed"] * fires,
                "every fire's run to complete", timeout=HANG_GUARD_SECONDS,
            )
            assert faults.failed > 0
            assert sorted(received) == list(range(fires))  # each fire ran once
            assert len(runner.get_trigger_execution_history(trigger)) == fires
        finally:
            runner.shutdown()
    finally:
        REGISTRY.remove_trigger(trigger)


# ====================================================================== unreachable server
def test_every_run_ends_when_the_network_refuses_connections_for_a_while(
    fresh_db: str, proxy: TcpProxy
) -> None:
    runner = proxied_runner(proxy, fresh_db)
    try:
        def outage() -> None:
            time.sleep(0.3)
            proxy.cut(refuse_for=3.0)

        outcomes = run_many(runner, runs=40, threads=16, during=outage)
        assert proxy.refused > 0
        assert_all_completed(runner, outcomes, 40)
    finally:
        runner.shutdown()


def test_the_listener_reconnects_after_the_network_comes_back(fresh_db: str, proxy: TcpProxy) -> None:
    listening = "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'LISTEN %'"
    runner = proxied_runner(proxy, fresh_db)
    try:
        poll_until(lambda: admin(listening, fresh_db)[0][0] == 1, "the runner to LISTEN")
        proxy.cut(refuse_for=2.0)
        poll_until(lambda: proxy.refused > 0, "the listener to try again while refused")
        poll_until(lambda: admin(listening, fresh_db)[0][0] == 1, "the listener to LISTEN again",
                   timeout=HANG_GUARD_SECONDS)
        assert runner.execute(CHAIN, Context({})).status == "Completed"
    finally:
        runner.shutdown()


def test_a_runner_stopping_while_the_database_is_unreachable_names_it_and_the_run(
    fresh_db: str, proxy: TcpProxy
) -> None:
    runner = proxied_runner(proxy, fresh_db)
    proxy.refuse()
    with ThreadPoolExecutor(1) as pool:
        call = pool.submit(runner.execute, CHAIN, Context({}))
        poll_until(lambda: proxy.refused >= 2, "the run's insert to be tried again")
        runner.shutdown()
        with pytest.raises(RuntimeError) as caught:
            call.result(timeout=HANG_GUARD_SECONDS)
    message = str(caught.value)
    assert fresh_db in message and "unreachable" in message
    assert re.search(r"run [0-9a-f-]{36} of workflow 'pg_connection_loss_chain'", message)


def test_the_postgres_store_tells_a_lost_connection_from_other_errors() -> None:
    import asyncpg

    from cloaca._store.postgres import PostgresStore

    store = PostgresStore(POSTGRES_URL)
    lost = [
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
        asyncpg.InterfaceError("cannot perform operation: connection is closed"),
        ConnectionRefusedError(111, "Connection refused"), asyncio.TimeoutError(),
    ]
    other = [
        asyncpg.UniqueViolationError("duplicate key"), asyncpg.exceptions._base.DataError("bad argument"),
        asyncpg.UndefinedTableError("no such table"), ValueError("bug"),
    ]
    assert [store.unavailable(e) for e in lost] == [True] * len(lost)
    assert [store.unavailable(e) for e in other] == [False] * len(other)
