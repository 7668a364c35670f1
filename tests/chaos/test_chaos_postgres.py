"""PostgreSQL failing under a loaded runner: connections terminated by the server, the
server unreachable at start, and unreachable for a few seconds mid-run (a TCP proxy the
test controls stands between the runner and the server).

tests/test_postgres_connection_loss.py (issue 20) shows every run ends after such cuts;
these scenarios add what the *caller* sees meanwhile: every API call made while the
connections are being cut returns or raises a clear error (never hangs), and during an
outage work pauses (no task completes) and then resumes.

Every scenario uses a database of its own, dropped at the end.
"""

from __future__ import annotations

import asyncio
import random
import uuid
import re
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, TimeoutError as FutureTimeout
from typing import Any, Callable, Iterator

import pytest

import cloaca
from cloaca import Context, DefaultRunner, DefaultRunnerConfig

from _chaos import CUT_RUNS, CUTS, HANG_GUARD_SECONDS, POSTGRES_URL, SEED, report
from _tcp_proxy import TcpProxy
from pg_admin import proxy  # noqa: F401 (a fixture)

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.skipif(not POSTGRES_URL, reason="CLOACA_TEST_POSTGRES_URL is not set"),
]

CALL_GUARD_SECONDS = 60.0
"""One API call answering later than this is a hang (the connect timeout is 10 s)."""
MAX_PROBE_RUNS = 20
"""Runs the probing thread submits (beyond these it only reads)."""
CLEAR_CONNECTION_ERROR = re.compile(
    r"connection|connect|terminat|unreachable|closed|timed out|timeout|shutdown|refused", re.IGNORECASE
)
"""What an error raised because the connection was lost must say."""

WORKFLOW = "chaos_pg_chain"
with cloaca.WorkflowBuilder(WORKFLOW):

    @cloaca.task(id="a")
    def _a(context: Context) -> Context:
        time.sleep(0.02)
        context.set("steps", ["a"])
        return context

    @cloaca.task(id="b", dependencies=["a"])
    def _b(context: Context) -> Context:
        time.sleep(0.02)
        context.set("steps", context.get("steps") + ["b"])
        return context

    @cloaca.task(id="c", dependencies=["b"])
    def _c(context: Context) -> Context:
        time.sleep(0.02)
        context.set("steps", context.get("steps") + ["c"])
        return context


def runner_on(url: str) -> DefaultRunner:
    return DefaultRunner.with_config(
        url, DefaultRunnerConfig(max_concurrent_tasks=8, lease_seconds=2.0, workflow_timeout_seconds=None),
    )


@pytest.fixture
def database() -> Iterator[tuple[str, str]]:
    """(name, url) of a new database, dropped at the end."""
    from pg_admin import created_database

    with created_database("cloaca_chaos_pg") as url:
        yield url.rsplit("/", 1)[1], url


class Prober:
    """Calls the runner's API over and over from a thread of its own, each call under a
    hang guard, recording how each ended and how long it took."""

    def __init__(self, runner: DefaultRunner) -> None:
        self.runner = runner
        self.outcomes: list[tuple[str, float, BaseException | None]] = []
        self.submitted: list[str] = []
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(1)
        self._rng = random.Random(SEED)
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _calls(self) -> list[tuple[str, Callable[[], Any]]]:
        some_id = self.submitted[-1] if self.submitted else "00000000-0000-0000-0000-000000000000"
        return [
            ("list_executions", lambda: self.runner.list_executions(WORKFLOW, limit=50)),
            ("get_execution", lambda: self.runner.get_execution(some_id)),
            ("get_result", lambda: self.runner.get_result(some_id, timeout=5) if self.submitted else None),
            ("list_trigger_schedules", lambda: self.runner.list_trigger_schedules()),
        ] + ([("submit", self._submit)] if len(self.submitted) < MAX_PROBE_RUNS else [])

    def _submit(self) -> None:
        self.submitted.append(self.runner.submit(WORKFLOW, Context({"probe": True})))

    def _loop(self) -> None:
        while not self._stop.is_set():
            name, call = self._rng.choice(self._calls())
            started = time.monotonic()
            future = self._pool.submit(call)
            try:
                future.result(timeout=CALL_GUARD_SECONDS)
                error = None
            except FutureTimeout:
                self.outcomes.append((name, time.monotonic() - started, AssertionError("hung")))
                return  # the pool's one thread is stuck: nothing more can be probed
            except TimeoutError as exc:  # get_result's own timeout: the run goes on
                error = None if "did not end within" in str(exc) else exc
            except Exception as exc:
                error = exc
            self.outcomes.append((name, time.monotonic() - started, error))
            time.sleep(0.05)

    def __enter__(self) -> "Prober":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(CALL_GUARD_SECONDS + 5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def check(self) -> dict[str, Any]:
        hung = [name for name, _, e in self.outcomes if isinstance(e, AssertionError)]
        assert not hung, f"API calls hung while connections were cut: {hung}"
        unclear = [(name, f"{type(e).__name__}: {e}") for name, _, e in self.outcomes
                   if e is not None and not CLEAR_CONNECTION_ERROR.search(f"{type(e).__name__} {e}")]
        assert not unclear, f"calls failed with errors that do not say the connection was lost: {unclear[:5]}"
        failed = [(n, type(e).__name__) for n, _, e in self.outcomes if e is not None]
        return {
            "calls": len(self.outcomes), "calls_failed": len(failed),
            "failures_by_kind": dict(Counter(f"{n}:{k}" for n, k in failed)),
            "slowest_call_seconds": round(max((d for _, d, _ in self.outcomes), default=0.0), 2),
        }


def execute_all(runner: DefaultRunner, runs: int, during: Callable[[], None]) -> list[Any]:
    """`runs` blocking executes from 16 threads while `during()` runs; each must return."""
    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(runner.execute, WORKFLOW, Context({"n": i})) for i in range(runs)]
        during()
        outcomes = []
        deadline = time.monotonic() + HANG_GUARD_SECONDS
        for f in futures:
            try:
                outcomes.append(f.result(timeout=max(0.0, deadline - time.monotonic())))
            except FutureTimeout:
                raise AssertionError("an execute call never returned") from None
            except Exception as exc:
                outcomes.append(exc)
    return outcomes


# ====================================================================== connections cut
def test_calls_answer_and_runs_end_while_the_server_terminates_connections(database) -> None:
    from pg_admin import terminate_backends

    name, url = database
    rng = random.Random(SEED)
    runner = runner_on(url)
    terminated = 0
    try:
        def cut() -> None:
            nonlocal terminated
            for _ in range(CUTS):
                time.sleep(rng.uniform(0.1, 0.6))
                terminated += terminate_backends(name)

        with Prober(runner) as prober:
            outcomes = execute_all(runner, CUT_RUNS, cut)
        figures = prober.check()
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        assert not errors, f"execute calls raised: {errors[:3]!r}"
        assert [o.status for o in outcomes] == ["Completed"] * CUT_RUNS
        assert all(o.final_context.get("steps") == ["a", "b", "c"] for o in outcomes)
        for execution_id in prober.submitted:  # the probes' runs end too
            assert runner.get_result(execution_id, timeout=HANG_GUARD_SECONDS).status == "Completed"
        assert terminated > 0
        report("postgres-terminate", runs=CUT_RUNS + len(prober.submitted), cuts=CUTS,
               connections_terminated=terminated, **figures)
    finally:
        runner.shutdown()


# ====================================================================== unreachable server
def closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_server_unreachable_at_start_is_a_clear_error_at_once(database, proxy: TcpProxy) -> None:
    from pg_admin import url_for

    name, _ = database
    proxy.refuse()
    for url in (url_for(name, "127.0.0.1", proxy.port), url_for(name, "127.0.0.1", closed_port())):
        started = time.monotonic()
        with pytest.raises(RuntimeError) as caught:
            DefaultRunner(url)
        message = str(caught.value)
        assert f"'{name}' on 127.0.0.1:" in message, message
        assert CLEAR_CONNECTION_ERROR.search(message), message
        assert time.monotonic() - started < CALL_GUARD_SECONDS
    assert proxy.refused > 0


def completed_tasks(url: str) -> int:
    from pg_admin import admin

    return admin("SELECT count(*) FROM task_executions WHERE status = 'Completed'", url=url)[0][0]


def test_work_pauses_while_the_server_is_unreachable_and_resumes_after(database, proxy: TcpProxy) -> None:
    from pg_admin import url_for

    name, direct_url = database
    outage = 3.0
    runner = runner_on(url_for(name, "127.0.0.1", proxy.port))
    progress: dict[str, int] = {}
    try:
        def go_dark() -> None:
            while completed_tasks(direct_url) < 10:  # the outage starts mid-run
                time.sleep(0.05)
            proxy.refuse()
            time.sleep(0.5)  # writes already on the wire have landed (or failed)
            progress["outage_start"] = completed_tasks(direct_url)
            time.sleep(outage)
            progress["outage_end"] = completed_tasks(direct_url)
            proxy.allow()
            progress["allowed_at"] = time.monotonic()

        runs = 3 * CUT_RUNS // 2
        outcomes = execute_all(runner, runs, go_dark)
        resumed_after = time.monotonic() - progress["allowed_at"]
        assert progress["outage_end"] == progress["outage_start"], "work went on without the database"
        assert progress["outage_start"] < 3 * runs, "the outage came after the work"
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        assert not errors, f"execute calls raised: {errors[:3]!r}"
        assert [o.status for o in outcomes] == ["Completed"] * runs
        assert completed_tasks(direct_url) == 3 * runs
        report("postgres-outage", runs=runs, outage_seconds=outage, refused_connections=proxy.refused,
               tasks_done_before_outage=progress["outage_start"],
               seconds_to_finish_after_outage=round(resumed_after, 2))
    finally:
        runner.shutdown()


# ====================================================================== regression
def test_a_call_failing_on_a_lost_connection_says_so_and_names_the_database(database) -> None:
    """Found by the probing above: a read on a connection the server had just terminated
    raised asyncpg's internal "cannot switch to state 15; another operation (2) is in
    progress", naming neither the database nor the lost connection."""
    import asyncpg

    name, url = database
    runner = runner_on(url)
    try:
        async def lost(*args: Any) -> Any:
            raise asyncpg.exceptions.InternalClientError("cannot switch to state 15; another operation (2) is in progress")

        async def slow(*args: Any) -> Any:
            raise TimeoutError()

        runner._store.list_executions = lost
        with pytest.raises(RuntimeError, match=rf"'{name}' on .*connection was lost.*InternalClientError") as caught:
            runner.list_executions(WORKFLOW)
        assert isinstance(caught.value.__cause__, asyncpg.exceptions.InternalClientError)
        runner._store.get_run = slow  # a TimeoutError says what it is already: left as it is
        with pytest.raises(TimeoutError):
            runner.get_execution("00000000-0000-0000-0000-000000000000")
    finally:
        runner.shutdown()


STREAM = "chaos_pg_stream"
with cloaca.WorkflowBuilder(STREAM):

    @cloaca.task(id="tick")
    async def _tick(context: Context) -> Context:
        await asyncio.sleep(0.03)
        return context


def test_a_dead_runners_task_is_taken_over_while_the_runners_stay_busy(database) -> None:
    """Found by the long kill run (a kill's in-flight tasks waited 21 s on PostgreSQL, while
    the lease is 2 s): tasks whose lease expired were taken over only after a full second
    without any notice of new work, so a steady stream of runs kept a dead runner's tasks
    waiting until the stream ended."""
    from cloaca._registry import REGISTRY
    from cloaca._store.base import ExecutionRecord, TaskRecord
    from cloaca._store.postgres import PostgresStore

    _, url = database
    now = time.time()
    orphan = str(uuid.uuid4())
    [tick] = REGISTRY.get_workflow(STREAM).tasks  # its full (namespaced) name

    async def leave_an_orphan() -> None:  # as a runner killed mid-task leaves it
        store = PostgresStore(url)
        await store.open()
        try:
            await store.create_execution(
                ExecutionRecord(orphan, STREAM, "v", "Running", "{}", now),
                [TaskRecord(orphan, tick, "Running", attempt=1, started_at=now)], "dead-runner", now + 0.5,
            )
        finally:
            await store.close()

    config = DefaultRunnerConfig(max_concurrent_tasks=2, max_concurrent_async_tasks=2, lease_seconds=1.0,
                                 workflow_timeout_seconds=None)
    stream_seconds = 20.0
    with DefaultRunner.with_config(url, config) as runner:
        asyncio.run(leave_an_orphan())
        stop = time.monotonic() + stream_seconds
        taken_over_after = None
        while time.monotonic() < stop:  # a run every 20 ms: the runner is never idle for long
            runner.submit(STREAM, Context({}))
            if runner.get_execution(orphan).status == "Completed":
                taken_over_after = time.time() - now
                break
            time.sleep(0.02)
        assert taken_over_after is not None, f"the orphaned task waited more than {stream_seconds:g}s"
        report("postgres-take-over-while-busy", lease_seconds=1.0,
               taken_over_after_seconds=round(taken_over_after, 2))
