"""Async embedding (SPEC A1, A2, A4): examples/fastapi_app.py served by a real uvicorn.

The example runs in uvicorn on 127.0.0.1 (a free port) in a background thread, so the app
has its own loop, distinct from the test's; the tests talk to it over TCP with
httpx.AsyncClient. The second half checks A1's edge cases on runners bound to the test's loop.

The example registers a process-wide trigger (`svc_events`) when it is imported. It is
imported by a module fixture (not at collection, which would let every runner of every test
file poll it) and removed again when this module's tests are done.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.util
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any, Awaitable, Callable, Iterator, Optional

import httpx
import pytest
import uvicorn

import cloaca
from cloaca._registry import REGISTRY

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_PATH = REPO / "examples" / "fastapi_app.py"
EXAMPLE_MODULE = "examples.fastapi_app"
EVENT_TRIGGER = "svc_events"
WAIT_SECONDS = 20.0  # upper bound for "eventually" (never reached when things work)


# ======================================================================== helpers
def _load_example() -> ModuleType:
    """The example module; (re)executed if its trigger is not registered."""
    module = sys.modules.get(EXAMPLE_MODULE)
    if module is not None and REGISTRY.get_trigger(EVENT_TRIGGER) is not None:
        return module
    spec = importlib.util.spec_from_file_location(EXAMPLE_MODULE, EXAMPLE_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[EXAMPLE_MODULE] = module  # dataclasses look their module up while executing
    spec.loader.exec_module(module)
    return module


class _NoSignalsServer(uvicorn.Server):
    """uvicorn without its SIGINT/SIGTERM handlers (they belong to pytest here)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ServerThread:
    """An app served by uvicorn on 127.0.0.1:<free port>, in its own thread and loop."""

    def __init__(self, app: Any, graceful_timeout: Optional[float] = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, lifespan="on", loop="asyncio", http="h11", log_config=None,
            log_level="warning", access_log=False, timeout_graceful_shutdown=graceful_timeout,
        )
        self.server = _NoSignalsServer(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="uvicorn-test", daemon=True
        )

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + WAIT_SECONDS
        while not self.server.started:
            assert self.thread.is_alive(), "uvicorn exited during startup (see the log above)"
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Graceful stop: uvicorn drains, then runs the lifespan's exit (the runner's shutdown)."""
        self.server.should_exit = True
        self.thread.join(WAIT_SECONDS + 10)
        assert not self.thread.is_alive(), "uvicorn did not stop"


async def eventually(probe: Callable[[], Awaitable[Any]], what: str) -> Any:
    """Poll `probe` until it returns something truthy; fail after WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {WAIT_SECONDS:g}s")
        await asyncio.sleep(0.05)


def client(base_url: str, **kwargs: Any) -> httpx.AsyncClient:
    # The timeout turns a hung request into a failure rather than a hung test.
    return httpx.AsyncClient(base_url=base_url, timeout=30.0, **kwargs)


def db_rows(path: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows read straight from the SQLite file (not through cloaca)."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


# ======================================================================== fixtures
@pytest.fixture(scope="module")
def example() -> Iterator[ModuleType]:
    module = _load_example()
    try:
        yield module
    finally:
        REGISTRY.remove_trigger(EVENT_TRIGGER)


@pytest.fixture(scope="module")
def service(example: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """The example app on a SQLite file, served for the whole module."""
    path = tmp_path_factory.mktemp("fastapi") / "service.db"
    config = cloaca.DefaultRunnerConfig(max_concurrent_tasks=256)
    server = ServerThread(example.create_app(f"sqlite:///{path}", config)).start()
    try:
        yield server
    finally:
        server.stop()


# ======================================================================== HTTP
@pytest.mark.asyncio
async def test_async_task_runs_on_the_apps_loop_with_its_resources(service: ServerThread) -> None:
    async with client(service.base_url) as http:
        response = await http.post("/runs/svc_greet", json={"name": "ada"})
        assert response.status_code == 200, response.text
        run = response.json()
        stats = (await http.get("/stats")).json()
    assert run["status"] == "Completed"
    assert run["workflow_name"] == "svc_greet"
    assert run["error_message"] is None
    context = run["final_context"]
    assert context["greeting"] == "hello, ada"
    # The task found the lifespan's resources through its loop, and the loop is the one
    # the lifespan ran on: the server thread's, not the test's.
    assert context["on_app_loop"] is True
    assert context["thread_id"] == stats["loop_thread_id"] == service.thread.ident
    assert context["thread_id"] != threading.get_ident()
    # ... and it used the app's asyncio.Lock-guarded counter.
    assert 1 <= context["greeting_number"] <= stats["greetings"]


@pytest.mark.asyncio
async def test_async_task_uses_the_apps_httpx_client(service: ServerThread) -> None:
    async with client(service.base_url) as http:
        response = await http.post("/runs/svc_fetch", json={"url": f"{service.base_url}/health"})
    assert response.status_code == 200, response.text
    run = response.json()
    assert run["status"] == "Completed", run
    assert run["final_context"]["http_status"] == 200
    assert run["final_context"]["body"] == {"ok": True}


@pytest.mark.asyncio
async def test_failing_workflow_returns_its_failure(service: ServerThread) -> None:
    async with client(service.base_url) as http:
        response = await http.post("/runs/svc_fail", json={"reason": "no such customer"})
        assert response.status_code == 200, response.text  # the failure is in the body
        run = response.json()
        stored = await http.get(f"/runs/{run['execution_id']}")
    assert run["status"] == "Failed"
    assert run["error_message"] == "1 task(s) failed, 0 completed, 0 skipped"
    [task] = run["task_results"]
    assert task["status"] == "Failed"
    assert task["attempt_count"] == 1
    assert "ValueError: no such customer" in task["error_message"]
    assert stored.status_code == 200
    assert stored.json()["status"] == "Failed"
    assert stored.json()["execution_id"] == run["execution_id"]


@pytest.mark.asyncio
async def test_unknown_names_are_404(service: ServerThread) -> None:
    async with client(service.base_url) as http:
        unknown_workflow = await http.post("/runs/no_such_workflow", json={})
        unknown_run = await http.get(f"/runs/{uuid.uuid4()}")
        unknown_trigger = await http.post("/triggers/no_such_trigger/enabled", params={"value": "false"})
        not_an_object = await http.post("/runs/svc_greet", json=[1, 2])
    assert unknown_workflow.status_code == 404
    assert "no_such_workflow" in unknown_workflow.json()["detail"]
    assert unknown_run.status_code == 404
    assert unknown_trigger.status_code == 404
    assert not_an_object.status_code == 422


@pytest.mark.asyncio
async def test_runs_are_listed_and_fetched(service: ServerThread) -> None:
    async with client(service.base_url) as http:
        ids = {}
        for name in ("grace", "linus"):
            response = await http.post("/runs/svc_greet", json={"name": name})
            ids[name] = response.json()["execution_id"]
        failed_id = (await http.post("/runs/svc_fail", json={})).json()["execution_id"]
        greets = (await http.get("/runs", params={"workflow_name": "svc_greet"})).json()
        failed = (await http.get("/runs", params={"status": "Failed"})).json()
        first = (await http.get("/runs", params={"limit": 1})).json()
        fetched = (await http.get(f"/runs/{ids['grace']}")).json()
    listed = {row["id"]: row for row in greets}
    assert set(ids.values()) <= set(listed)
    assert all(row["workflow_name"] == "svc_greet" for row in greets)
    assert listed[ids["linus"]]["status"] == "Completed"
    assert listed[ids["linus"]]["completed_at"] is not None
    assert failed_id in {row["id"] for row in failed}
    assert all(row["status"] == "Failed" for row in failed)
    assert [row["id"] for row in first] == [failed_id]  # newest first
    assert fetched["execution_id"] == ids["grace"]
    assert fetched["status"] == "Completed"
    assert fetched["final_context"]["greeting"] == "hello, grace"
    assert fetched["task_results"][0]["task_name"] == "greet"
    assert fetched["task_results"][0]["task_namespace"].endswith("::greet")


@pytest.mark.asyncio
async def test_triggers_are_listed_and_toggled(service: ServerThread) -> None:
    async with client(service.base_url) as http:
        try:
            schedules = (await http.get("/triggers")).json()
            [schedule] = [s for s in schedules if s["trigger_name"] == EVENT_TRIGGER]
            assert schedule["workflow_name"] == "svc_event"
            assert schedule["poll_interval_ms"] == 100
            assert schedule["allow_concurrent"] is True
            assert schedule["enabled"] is True

            disabled = await http.post(f"/triggers/{EVENT_TRIGGER}/enabled", params={"value": "false"})
            assert disabled.status_code == 200
            assert disabled.json()["enabled"] is False
            listed = (await http.get("/triggers")).json()
            assert [s["enabled"] for s in listed if s["trigger_name"] == EVENT_TRIGGER] == [False]
            enabled_only = (await http.get("/triggers", params={"enabled_only": "true"})).json()
            assert EVENT_TRIGGER not in {s["trigger_name"] for s in enabled_only}
        finally:
            enabled = await http.post(f"/triggers/{EVENT_TRIGGER}/enabled", params={"value": "true"})
        assert enabled.json()["enabled"] is True
        enabled_only = (await http.get("/triggers", params={"enabled_only": "true"})).json()
        assert EVENT_TRIGGER in {s["trigger_name"] for s in enabled_only}


@pytest.mark.asyncio
async def test_posted_event_makes_the_trigger_fire_a_run(service: ServerThread) -> None:
    async with client(service.base_url) as http:
        posted = await http.post("/events", json={"kind": "signup", "user": "ada"})
        assert posted.status_code == 202
        event_id = posted.json()["event_id"]

        async def run_of_the_event() -> Optional[dict[str, Any]]:
            rows = (await http.get("/runs", params={"workflow_name": "svc_event"})).json()
            for row in rows:
                if row["status"] != "Completed":
                    continue
                run = (await http.get(f"/runs/{row['id']}")).json()
                if run["final_context"].get("event", {}).get("event_id") == event_id:
                    return run
            return None

        run = await eventually(run_of_the_event, "a run of svc_event for the posted event")
        stats = (await http.get("/stats")).json()
        history = (await http.get("/triggers")).json()
    context = run["final_context"]
    assert context["event"] == {"kind": "signup", "user": "ada", "event_id": event_id}
    assert context["handled"] is True
    assert context["trigger_name"] == EVENT_TRIGGER
    assert event_id in stats["handled_events"]  # the task used the app's list
    [schedule] = [s for s in history if s["trigger_name"] == EVENT_TRIGGER]
    assert schedule["last_poll_at"] is not None


@pytest.mark.asyncio
async def test_200_concurrent_requests_all_complete(service: ServerThread) -> None:
    names = [f"user{i}" for i in range(200)]
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with client(service.base_url, limits=limits) as http:
        responses = await asyncio.gather(
            *(http.post("/runs/svc_greet", json={"name": name}) for name in names)
        )
    assert [r.status_code for r in responses] == [200] * 200
    runs = [r.json() for r in responses]
    assert [run["status"] for run in runs] == ["Completed"] * 200
    assert [run["final_context"]["greeting"] for run in runs] == [f"hello, {n}" for n in names]
    assert all(run["final_context"]["on_app_loop"] for run in runs)
    assert len({run["execution_id"] for run in runs}) == 200
    assert len({run["final_context"]["greeting_number"] for run in runs}) == 200


@pytest.mark.asyncio
async def test_server_stop_leaves_a_running_run_resumable(example: ModuleType, tmp_path: Path) -> None:
    """Lifespan exit mid-run: the run stays Running in the file; a restarted app finishes it."""
    path = tmp_path / "restart.db"
    url = f"sqlite:///{path}"
    config = cloaca.DefaultRunnerConfig(lease_seconds=1.0, shutdown_grace_seconds=0.2)
    ticket = uuid.uuid4().hex

    first = ServerThread(example.create_app(url, config), graceful_timeout=0.5).start()
    try:
        async with client(first.base_url) as http:
            waiting = asyncio.ensure_future(http.post("/runs/svc_approval", json={"ticket": ticket}))

            async def running_id() -> Optional[str]:
                rows = (await http.get("/runs", params={"workflow_name": "svc_approval"})).json()
                return rows[0]["id"] if rows and rows[0]["status"] == "Running" else None

            execution_id = await eventually(running_id, "the approval run to start")
            await asyncio.to_thread(first.stop)  # uvicorn drains, then the lifespan exits
            try:
                interrupted = await waiting
            except httpx.HTTPError:
                interrupted = None  # the connection went away: also not a success
    finally:
        if first.thread.is_alive():
            first.stop()
    if interrupted is not None:
        assert interrupted.status_code != 200, interrupted.text

    # The run is unfinished but whole in the file, and its lease was given up.
    [(status, completed_at, final_context, owner)] = db_rows(
        path, "SELECT status, completed_at, final_context, owner FROM workflow_executions WHERE id = ?",
        execution_id,
    )
    assert (status, completed_at, final_context, owner) == ("Running", None, None, None)
    [(task_status, attempt, output)] = db_rows(
        path, "SELECT status, attempt, output_context FROM task_executions WHERE execution_id = ?",
        execution_id,
    )
    assert task_status in ("Running", "Ready")
    assert (attempt, output) == (1, None)

    second = ServerThread(example.create_app(url, config), graceful_timeout=0.5).start()
    try:
        async with client(second.base_url) as http:
            approved = await http.post(f"/approvals/{ticket}")
            assert approved.status_code == 200

            async def finished() -> Optional[dict[str, Any]]:
                run = (await http.get(f"/runs/{execution_id}")).json()
                return run if run["status"] != "Running" else None

            run = await eventually(finished, "the resumed run to finish")
    finally:
        second.stop()
    assert run["status"] == "Completed"
    assert run["final_context"] == {"ticket": ticket, "approved": True}
    [task] = run["task_results"]
    assert task["attempt_count"] == 2  # interrupted once, run again (at-least-once)


@pytest.mark.asyncio
async def test_script_serves_and_ctrl_c_stops_it_gracefully(tmp_path: Path) -> None:
    """`python examples/fastapi_app.py`, then SIGINT while a run is in flight."""
    path = tmp_path / "script.db"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "CLOACA_DATABASE_URL": f"sqlite:///{path}", "PORT": str(port),
           "SHUTDOWN_TIMEOUT": "0.5"}
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLE_PATH)], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        async with client(f"http://127.0.0.1:{port}") as http:
            async def serving() -> bool:
                assert process.poll() is None, process.communicate()[1]
                try:
                    return (await http.get("/health")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(serving, "the example script to serve")
            greeted = (await http.post("/runs/svc_greet", json={"name": "script"})).json()
            assert greeted["status"] == "Completed"
            assert greeted["final_context"]["on_app_loop"] is True

            waiting = asyncio.ensure_future(http.post("/runs/svc_approval", json={"ticket": "t"}))

            async def running_id() -> Optional[str]:
                rows = (await http.get("/runs", params={"workflow_name": "svc_approval"})).json()
                return rows[0]["id"] if rows and rows[0]["status"] == "Running" else None

            execution_id = await eventually(running_id, "the approval run to start")
            process.send_signal(signal.SIGINT)
            _, stderr = await asyncio.to_thread(process.communicate, timeout=WAIT_SECONDS)
            with contextlib.suppress(httpx.HTTPError):
                assert (await waiting).status_code != 200
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert "Application shutdown complete" in stderr
    [(status, owner)] = db_rows(
        path, "SELECT status, owner FROM workflow_executions WHERE id = ?", execution_id
    )
    assert (status, owner) == ("Running", None)  # resumable, its lease given up


# ======================================================================== A1 edge cases
# Workflows of their own, bound to the test's loop.
STATE: dict[str, Any] = {}

with cloaca.WorkflowBuilder("fa_test_quick") as _builder:

    @cloaca.task(id="quick")
    async def _quick(context: cloaca.Context) -> cloaca.Context:
        context.set("loop_id", id(asyncio.get_running_loop()))
        return context


with cloaca.WorkflowBuilder("fa_test_two_steps") as _builder:

    @cloaca.task(id="first")
    async def _first(context: cloaca.Context) -> cloaca.Context:
        STATE["first_runs"] = STATE.get("first_runs", 0) + 1
        context.set("first", True)
        return context

    @cloaca.task(id="second", dependencies=["first"], retry_attempts=1)
    async def _second(context: cloaca.Context) -> cloaca.Context:
        if STATE.get("block"):
            STATE["second_started"].set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                STATE["second_cancelled"] = True
                raise
        context.set("second", True)
        return context


def _short_config() -> cloaca.DefaultRunnerConfig:
    return cloaca.DefaultRunnerConfig(lease_seconds=1.0, shutdown_grace_seconds=0.2)


@pytest.mark.asyncio
async def test_methods_after_shutdown_raise_value_error(tmp_path: Path) -> None:
    async with cloaca.DefaultRunner(str(tmp_path / "closed.db")) as runner:
        assert (await runner.aexecute("fa_test_quick", cloaca.Context())).status == "Completed"
    with pytest.raises(ValueError, match="shut down"):
        await runner.aexecute("fa_test_quick", cloaca.Context())
    with pytest.raises(ValueError, match="shut down"):
        await runner.alist_executions()
    with pytest.raises(ValueError, match="shut down"):
        await runner.alist_trigger_schedules()
    with pytest.raises(ValueError, match="shut down"):
        runner.list_executions()  # the sync facade says the same, even on the loop's thread
    await runner.ashutdown()  # idempotent
    runner.shutdown()


@pytest.mark.asyncio
async def test_starting_twice_raises_runtime_error(tmp_path: Path) -> None:
    runner = cloaca.DefaultRunner(str(tmp_path / "twice.db"))
    await runner.astart()
    try:
        with pytest.raises(RuntimeError, match="already started"):
            await runner.astart()
        assert (await runner.aexecute("fa_test_quick", cloaca.Context())).status == "Completed"
    finally:
        await runner.ashutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        await runner.astart()


@pytest.mark.asyncio
async def test_blocking_methods_on_the_bound_loop_name_the_async_twin(tmp_path: Path) -> None:
    async with cloaca.DefaultRunner(str(tmp_path / "bound.db")) as runner:
        with pytest.raises(RuntimeError, match=r"await runner\.aexecute"):
            runner.execute("fa_test_quick", cloaca.Context())
        with pytest.raises(RuntimeError, match=r"await runner\.alist_executions"):
            runner.list_executions()
        with pytest.raises(RuntimeError, match=r"await runner\.ashutdown"):
            runner.shutdown()
        result = await runner.aexecute("fa_test_quick", cloaca.Context())
    assert result.final_context.get("loop_id") == id(asyncio.get_running_loop())


@pytest.mark.asyncio
async def test_sync_runner_is_awaitable_from_another_loop(tmp_path: Path) -> None:
    # Made outside any loop, the runner owns a loop in its own thread; awaiting its twins
    # from this loop is bridged, and its tasks run on its own loop.
    runner = await asyncio.to_thread(cloaca.DefaultRunner, str(tmp_path / "own.db"))
    try:
        result = await runner.aexecute("fa_test_quick", cloaca.Context())
        assert result.status == "Completed"
        assert result.final_context.get("loop_id") != id(asyncio.get_running_loop())
        assert [e["id"] for e in await runner.alist_executions()] == [result.execution_id]
        assert (await asyncio.to_thread(runner.get_execution, result.execution_id)).status == "Completed"
    finally:
        await runner.ashutdown()
    with pytest.raises(ValueError, match="shut down"):
        await runner.aexecute("fa_test_quick", cloaca.Context())


@pytest.mark.asyncio
async def test_cancelling_the_task_holding_the_runner_shuts_it_down_cleanly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "cancel.db"
    STATE.clear()
    STATE.update(block=True, second_started=asyncio.Event())
    holder_runner: list[cloaca.DefaultRunner] = []

    async def application() -> None:
        async with cloaca.DefaultRunner.with_config(str(path), _short_config()) as runner:
            holder_runner.append(runner)
            await runner.aexecute("fa_test_two_steps", cloaca.Context({"order": 7}))

    caplog.set_level(logging.ERROR, logger="asyncio")
    app_task = asyncio.ensure_future(application())
    await asyncio.wait_for(STATE["second_started"].wait(), WAIT_SECONDS)
    app_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await app_task

    # ashutdown ran to its end: the running body was cancelled after the grace period,
    # nothing of the runner is left on the loop, and the runner refuses work.
    assert STATE.get("second_cancelled") is True
    leftovers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert leftovers == []
    with pytest.raises(ValueError, match="shut down"):
        await holder_runner[0].alist_executions()
    gc.collect()
    assert "Task was destroyed but it is pending" not in caplog.text

    # The file holds the run whole and unfinished: first done with its output, second not.
    [(execution_id, status, completed_at, final_context)] = db_rows(
        path, "SELECT id, status, completed_at, final_context FROM workflow_executions"
    )
    assert (status, completed_at, final_context) == ("Running", None, None)
    tasks = {
        name.rsplit("::", 1)[1]: (task_status, output is not None)
        for name, task_status, output in db_rows(
            path, "SELECT task_name, status, output_context FROM task_executions WHERE execution_id = ?",
            execution_id,
        )
    }
    assert tasks["first"] == ("Completed", True)
    assert tasks["second"][0] in ("Running", "Ready") and tasks["second"][1] is False

    # A new runner on the file finishes it without running `first` again.
    STATE["block"] = False
    async with cloaca.DefaultRunner.with_config(str(path), _short_config()) as runner:
        async def finished() -> Optional[cloaca.WorkflowResult]:
            result = await runner.aget_execution(execution_id)
            return result if result is not None and result.status != "Running" else None

        result = await eventually(finished, "the interrupted run to resume and finish")
    assert result.status == "Completed"
    assert result.final_context.to_dict() == {"order": 7, "first": True, "second": True}
    attempts = {r["task_name"]: r["attempt_count"] for r in result.task_results}
    assert attempts == {"first": 1, "second": 2}
    assert STATE["first_runs"] == 1


@pytest.mark.asyncio
async def test_cancelled_aexecute_leaves_no_stuck_run(tmp_path: Path) -> None:
    """Cancelling the caller while the run's first write is queued: the write commits anyway,
    so the runner must go on and execute the run (it used to stay Running forever)."""
    async with cloaca.DefaultRunner.with_config(str(tmp_path / "stuck.db"), _short_config()) as runner:
        call = asyncio.ensure_future(runner.aexecute("fa_test_quick", cloaca.Context()))
        await asyncio.sleep(0)  # aexecute is now waiting for the run's first commit
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call

        # Acceptable outcomes: no run at all, or a run that this runner executes to its end.
        async def nothing_running() -> list[dict[str, Any]]:
            rows = await runner.alist_executions("fa_test_quick")
            return [] if any(row["status"] == "Running" for row in rows) else rows or [{}]

        rows = await eventually(nothing_running, "the cancelled call's run to finish")
        assert all(row.get("status", "Completed") == "Completed" for row in rows)


FORGOTTEN_SHUTDOWN = textwrap.dedent("""
    import asyncio, sys
    import cloaca

    KEPT = []

    async def main():
        runner = cloaca.DefaultRunner(sys.argv[1])
        await runner.astart()
        KEPT.append(runner)          # e.g. kept on an application object
        await asyncio.sleep(0.3)     # the loop ends without ashutdown()

    asyncio.run(main())
    try:
        asyncio.run(KEPT[0].alist_executions())
    except ValueError as exc:
        print("ValueError:", exc, flush=True)
""")


def test_loop_closed_without_shutdown_gives_clear_error_and_process_exits(tmp_path: Path) -> None:
    """A runner bound with astart() whose loop ends without ashutdown(): awaiting it later is a
    clear ValueError, and the interpreter still exits (the store's thread is a daemon)."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", FORGOTTEN_SHUTDOWN, str(tmp_path / "forgotten.db")],
            capture_output=True, text=True, timeout=20,
        )
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        # The clear error was given; only the exit hangs.
        assert "the event loop this runner ran on is closed" in output
        raise AssertionError("the interpreter did not exit (a non-daemon thread is left)") from None
    assert "ValueError: DefaultRunner: the event loop this runner ran on is closed" in done.stdout
    assert done.returncode == 0, done.stderr


# ======================================================================== the 202 pattern (A9)
@pytest.mark.asyncio
async def test_submit_returns_202_at_once_then_progress_then_cancel(service: ServerThread) -> None:
    ticket = f"t-{uuid.uuid4().hex[:8]}"
    async with client(service.base_url) as http:
        response = await http.post("/runs", json={"workflow": "svc_approval", "context": {"ticket": ticket}})
        assert response.status_code == 202, response.text
        execution_id = response.json()["execution_id"]
        assert response.json()["status_url"] == f"/runs/{execution_id}"

        async def running() -> Any:
            run = (await http.get(f"/runs/{execution_id}")).json()
            return run if run["status"] == "Running" and run["task_results"][0]["status"] == "Running" else None

        progress = await eventually(running, "the submitted run to be running")
        assert progress["task_results"][0]["task_name"]

        cancelled = await http.delete(f"/runs/{execution_id}")
        assert cancelled.status_code == 200
        assert cancelled.json() == {"execution_id": execution_id, "cancelled": True}
        ended = (await http.get(f"/runs/{execution_id}")).json()
        assert ended["status"] == "Cancelled"
        assert {t["status"] for t in ended["task_results"]} == {"Cancelled"}
        again = await http.delete(f"/runs/{execution_id}")
        assert again.json()["cancelled"] is False
        assert (await http.delete("/runs/no-such-run")).status_code == 404
        assert (await http.post("/runs", json={"workflow": "nope"})).status_code == 404


@pytest.mark.asyncio
async def test_a_submitted_run_completes_and_its_result_is_read_back(service: ServerThread) -> None:
    ticket = f"t-{uuid.uuid4().hex[:8]}"
    async with client(service.base_url) as http:
        response = await http.post("/runs", json={"workflow": "svc_approval", "context": {"ticket": ticket}})
        execution_id = response.json()["execution_id"]

        async def waiting() -> Any:
            run = (await http.get(f"/runs/{execution_id}")).json()
            return run["task_results"][0]["status"] == "Running"

        await eventually(waiting, "the approval task to wait")
        await http.post(f"/approvals/{ticket}")

        async def completed() -> Any:
            run = (await http.get(f"/runs/{execution_id}")).json()
            return run if run["status"] == "Completed" else None

        run = await eventually(completed, "the approved run to complete")
    assert run["final_context"]["ticket"] == ticket


@pytest.mark.asyncio
async def test_requests_while_the_runner_shuts_down_get_503_without_a_traceback(
    example: ModuleType, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = example.create_app(f"sqlite:///{tmp_path}/closing.db")
    async with app.router.lifespan_context(app):
        pass  # the lifespan has exited: the runner is shut down, the app still answers
    caplog.set_level(logging.ERROR)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        for method, url, body in [("POST", "/runs/svc_greet", {}), ("GET", "/runs", None),
                                  ("POST", "/runs", {"workflow": "svc_greet"})]:
            response = await http.request(method, url, json=body)
            assert response.status_code == 503, (url, response.text)
            assert "shut" in response.json()["detail"]
    assert "Traceback" not in caplog.text


# ======================================================================== tracing (A11)
@pytest.mark.asyncio
async def test_a_runs_span_is_a_child_of_the_fastapi_request_span(example: ModuleType, tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.instrumentation.fastapi")
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from support import otel_sdk

    exporter, _ = otel_sdk()
    exporter.clear()
    app = example.create_app(f"sqlite:///{tmp_path}/traced.db")
    FastAPIInstrumentor.instrument_app(app)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
                response = await http.post("/runs/svc_greet", json={"name": "otel"})
        assert response.status_code == 200, response.text
        execution_id = response.json()["execution_id"]
    finally:
        FastAPIInstrumentor.uninstrument_app(app)
    spans = exporter.get_finished_spans()
    [request] = [s for s in spans if s.name == "POST /runs/{workflow}"]
    [run] = [s for s in spans if s.name == "cloaca.run svc_greet"]
    [task] = [s for s in spans if s.name.startswith("cloaca.task ") and
              s.attributes["cloaca.execution_id"] == execution_id]
    assert run.parent is not None and run.parent.span_id == request.context.span_id
    assert task.parent.span_id == run.context.span_id
    assert run.context.trace_id == request.context.trace_id == task.context.trace_id
