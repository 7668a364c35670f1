"""`DefaultRunner`: the embedded engine, with a sync facade over one async core.

Every operation is written once, as a coroutine of this module running on the runner's
loop. A runner made in sync code owns that loop, in a daemon thread behind an anyio
BlockingPortal; `async with DefaultRunner(url)` or `await runner.astart()` binds it to the
caller's running loop instead. The `a`-prefixed twins may be awaited from any loop. Every
crossing between threads and that loop goes through the runner's one `Bridge`.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import socket
import sys
import threading
import time
import uuid
import weakref
from types import TracebackType
from typing import Any, Awaitable, Callable, Iterable, Optional, TypeVar

import anyio

from ._bridge import Bridge
from ._config import DefaultRunnerConfig
from ._context import Context
from ._cron.api import CronAPI
from ._cron.scheduler import Clock, CronScheduler
from ._engine.executor import RUN_STATUSES, Engine
from ._engine.observe import caller_trace_context
from ._engine.run_state import Run
from ._engine.settings import EngineSettings
from ._paging import page
from ._reactors.api import ReactorAPI
from ._reactors.runtime import LiveReactors
from ._reactors.subscriptions import SubscriptionPoller
from ._registry import REGISTRY
from ._result import WorkflowResult, rfc3339
from ._secrets import resolver_for
from ._store import Store, store_for_url
from ._store.base import StoredRun, TaskRecord
from ._tenancy import validate_schema_argument
from ._triggers.api import TriggerAPI
from ._triggers.definition import TriggerDefinition
from ._triggers.poller import TriggerPoller
from ._workflow import Workflow

T = TypeVar("T")
TraceParent = Optional[dict[str, str]]

_REACTOR_THREADS = 40
"""Worker threads for sync graph nodes and accumulator bodies of the live reactors."""
_LIVE_RUNNERS: "weakref.WeakSet[DefaultRunner]" = weakref.WeakSet()


class DefaultRunner(CronAPI, TriggerAPI, ReactorAPI):
    """Persists and executes workflows; keeps triggers polling and cron schedules firing."""

    def __init__(self, database_url: str, *, secrets: Any = None,
                 granted_secrets: Optional[Iterable[str]] = None,
                 _config: Optional[DefaultRunnerConfig] = None,
                 _schema: Optional[str] = None, _clock: Clock = time.time) -> None:
        """`secrets`: where `Context.secret` looks (None: `CLOACINA_SECRETS_<name>` environment
        variables; a mapping, a callable, an object with resolve()/aresolve(); False: none);
        `granted_secrets`: if given, the only names tasks may resolve."""
        if _config is not None and not isinstance(_config, DefaultRunnerConfig):
            raise TypeError(f"config must be a DefaultRunnerConfig, got {type(_config).__name__}")
        self._secrets = resolver_for(secrets, granted_secrets)
        self._config = _config or DefaultRunnerConfig.default()
        self._store: Store = store_for_url(database_url, _schema, self._config.db_pool_size,
                                           create=self._config.create_database)
        self._state = "new"  # new -> running -> closed
        self._lock = threading.Lock()
        self._bridge = Bridge("cloaca-runner", "DefaultRunner")
        self._engine: Optional[Engine] = None
        self._poller: Optional[TriggerPoller] = None
        self._cron: Optional[CronScheduler] = None
        self._subscriptions: Optional[SubscriptionPoller] = None
        self._reactors: Optional[LiveReactors] = None
        self._clock = _clock
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        _LIVE_RUNNERS.add(self)
        if not _in_running_loop():
            self._start_in_own_thread()
        # Inside a running loop, `async with`/`astart()` binds the runner to that loop;
        # a sync call made before that starts it in its own thread instead.

    @staticmethod
    def with_config(database_url: str, config: DefaultRunnerConfig, *, secrets: Any = None,
                    granted_secrets: Optional[Iterable[str]] = None) -> DefaultRunner:
        """A runner with explicit tuning."""
        return DefaultRunner(database_url, secrets=secrets, granted_secrets=granted_secrets,
                             _config=config)

    @staticmethod
    def with_schema(database_url: str, schema: str, *, secrets: Any = None,
                    granted_secrets: Optional[Iterable[str]] = None) -> DefaultRunner:
        """A runner whose tables live in PostgreSQL schema `schema` (created if missing)."""
        validate_schema_argument(database_url, schema)
        try:
            return DefaultRunner(database_url, secrets=secrets, granted_secrets=granted_secrets,
                                 _schema=schema)
        except RuntimeError as exc:
            raise RuntimeError(f"Failed to set up schema '{schema}': {exc}") from None

    # ================================================================== lifecycle
    def _start_in_own_thread(self) -> None:
        try:
            self._bridge.start_thread()
        except BaseException as exc:  # pragma: no cover - the thread could not start its loop
            raise RuntimeError(f"Failed to create DefaultRunner: {exc}") from None
        try:
            self._bridge.call(self._open_services)
        except BaseException as exc:
            self._bridge.stop_thread()
            self._state = "closed"
            raise _construction_error(exc) from None

    async def astart(self) -> DefaultRunner:
        """Bind the runner to the running loop and start it (tasks then run on that loop)."""
        with self._lock:
            if self._state != "new":
                raise RuntimeError(
                    "DefaultRunner.astart(): the runner is already started"
                    if self._state == "running" else
                    "DefaultRunner.astart(): the runner has been shut down; create a new one"
                )
            self._state = "starting"
        self._bridge.bind()
        try:
            await self._open_services()
        except BaseException as exc:
            self._state = "closed"
            raise _construction_error(exc) from None
        return self

    async def _open_services(self) -> None:
        config = self._config
        await self._store.open()
        settings = EngineSettings(
            max_concurrent_tasks=config.max_concurrent_tasks,
            max_concurrent_async_tasks=config.max_concurrent_async_tasks,
            task_timeout_seconds=config.task_timeout_seconds,
            lease_seconds=config.lease_seconds,
            enable_recovery=config.enable_recovery,
            poll_interval_seconds=config.scheduler_poll_interval_ms / 1000.0,
        )
        self._engine = Engine(self._store, REGISTRY, settings, self._owner, self._secrets)
        self._poller = TriggerPoller(
            self._engine, self._store, REGISTRY,
            config.trigger_poll_timeout_seconds, config.max_concurrent_trigger_polls,
        )
        if config.enable_cron_scheduling:
            self._cron = CronScheduler(
                self._engine, self._store, REGISTRY,
                max_catchup=config.cron_max_catchup_executions,
                poll_interval=config.cron_poll_interval_seconds,
                recovery=config.cron_enable_recovery,
                recovery_interval=config.cron_recovery_interval_seconds,
                lost_threshold=config.cron_lost_threshold_minutes * 60.0,
                max_recovery_age=config.cron_max_recovery_age_seconds,
                max_recovery_attempts=config.cron_max_recovery_attempts,
                clock=self._clock,
            )
        self._subscriptions = SubscriptionPoller(
            self._store, self._engine.submit, config.reactor_poll_interval_seconds, self._owner,
            self._clock,
        )
        try:
            await self._poller.start()
            await self._engine.start()
            if self._cron is not None and config.enable_cron_firing:
                await self._cron.start()
            REGISTRY.add_trigger_listener(self._on_declared)
            getattr(self._clock, "add_jump_listener", _no_jumps)(self._on_clock_jump)
            self._subscriptions.start()
            if config.enable_reactors:
                self._reactors = LiveReactors(
                    self._store, anyio.CapacityLimiter(_REACTOR_THREADS), self._subscriptions.wake,
                    config.max_reactor_tenants,
                )
                await self._reactors.start()
        except BaseException:
            await self._close_services()
            raise
        self._state = "running"

    async def _close_services(self) -> None:
        REGISTRY.remove_trigger_listener(self._on_declared)
        getattr(self._clock, "remove_jump_listener", _no_jumps)(self._on_clock_jump)
        if self._cron is not None:
            await self._cron.stop()
        if self._poller is not None:
            await self._poller.stop()
        if self._reactors is not None:
            await self._reactors.shutdown(self._config.shutdown_grace_seconds)
        if self._subscriptions is not None:  # last (C13.7); firings left wait for the next runner
            await self._subscriptions.stop()
        if self._engine is not None:
            await self._engine.stop(self._config.shutdown_grace_seconds)
        await self._store.close()

    # ------------------------------------------------------------------ crossings to the loop
    def _on_declared(self, name: str, definition: Optional[TriggerDefinition]) -> None:
        """The registry: a trigger was declared or removed, on any thread."""
        for scheduler in (self._poller, self._cron):
            if scheduler is not None:
                self._bridge.apply(
                    lambda s=scheduler: s.apply_declaration(name, definition),
                    f"the declaration of trigger '{name}'",
                )

    def _on_clock_jump(self) -> None:
        """The clock (a test's fake clock) jumped, on any thread: fire what became due."""
        cron = self._cron
        if cron is not None:
            self._bridge.apply(_awaitable(cron.rearm), "a jump of the clock")

    def shutdown(self) -> None:
        """Stop polling and scheduling, let running tasks finish (grace period), close. Idempotent."""
        with self._lock:
            if self._state in ("closed", "new"):
                self._state = "closed"
                return
            self._check_not_on_loop_thread("shutdown", "ashutdown")
            self._state = "closing"
        try:
            self._bridge.call(self._close_services)
        except KeyboardInterrupt:
            self._state = "closed"  # stop at once: the loop's daemon thread dies with the process
            raise
        finally:
            if self._state != "closed":
                self._state = "closed"
                self._bridge.stop_thread()

    async def ashutdown(self) -> None:
        """Async twin of `shutdown` (idempotent); also safe while the caller is being cancelled."""
        with self._lock:
            if self._state in ("closed", "new"):
                self._state = "closed"
                return
            self._state = "closing"
        try:
            with anyio.CancelScope(shield=True):
                await self._bridge.acall(self._close_services)
        finally:
            self._state = "closed"
            if self._bridge.owns_thread:
                await anyio.to_thread.run_sync(self._bridge.stop_thread)

    def __enter__(self) -> DefaultRunner:
        return self

    def __exit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.shutdown()

    async def __aenter__(self) -> DefaultRunner:
        if self._state == "new":
            await self.astart()
        return self

    async def __aexit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                        tb: Optional[TracebackType]) -> None:
        await self.ashutdown()

    def __repr__(self) -> str:
        return "DefaultRunner(thread_separated_async_runtime)"

    # ================================================================== dispatch
    def _check_not_on_loop_thread(self, name: str, twin: str) -> None:
        if self._bridge.on_loop_thread():
            raise RuntimeError(
                f"DefaultRunner.{name}() blocks, and was called on the thread of the event loop "
                f"the runner runs on (it would deadlock); use 'await runner.{twin}(...)' instead"
            )

    def _check_running(self, name: str) -> None:
        if self._state in ("closed", "closing"):
            raise ValueError(f"DefaultRunner.{name}(): the runner has been shut down")

    def _call(self, name: str, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run core coroutine `fn` from sync code (the facade of every blocking method)."""
        self._check_running(name)
        self._check_not_on_loop_thread(name, "a" + name)
        if self._state == "new":
            with self._lock:
                if self._state == "new":
                    self._state = "starting"
                    self._start_in_own_thread()
        try:
            return self._bridge.call(fn, *args)
        except Exception as exc:
            self._raise_if_connection_lost(exc)
            raise

    def _interruptible(self, name: str, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """`_call` for the blocking waits: Ctrl-C shuts the runner down gracefully (running
        tasks get the grace period); a second Ctrl-C stops at once. Unfinished runs resume
        when a runner next starts on the database."""
        try:
            return self._call(name, fn, *args)
        except KeyboardInterrupt:
            grace = self._config.shutdown_grace_seconds
            print(f"cloaca: interrupted; running tasks get {grace:g}s (shutdown_grace_seconds) to "
                  "finish; press Ctrl-C again to stop at once", file=sys.stderr, flush=True)
            try:
                self.shutdown()
            except KeyboardInterrupt:
                print("cloaca: stopped at once; unfinished runs resume when a runner next starts "
                      "on this database", file=sys.stderr, flush=True)
                raise SystemExit(130) from None
            raise

    async def _acall(self, name: str, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run core coroutine `fn` from async code, on the runner's loop (the async twins)."""
        self._check_running(name)
        if self._state == "new":
            await self.astart()
        try:
            return await self._bridge.acall(fn, *args)
        except Exception as exc:
            self._raise_if_connection_lost(exc)
            raise

    def _raise_if_connection_lost(self, exc: Exception) -> None:
        """A call that failed because the database connection was lost raises a RuntimeError
        saying so and naming the database, not the driver's internal error (a TimeoutError
        already says what happened, and get_result raises its own)."""
        if isinstance(exc, TimeoutError) or not self._store.unavailable(exc):
            return
        raise RuntimeError(
            f"{self._store.description} could not be reached (the connection was lost or refused: "
            f"{type(exc).__name__}: {exc}); the call did not complete and may be made again"
        ) from exc

    # ================================================================== executions
    def execute(self, workflow_name: str, context: Context) -> WorkflowResult:
        """Run a workflow to its end and return the result (blocking)."""
        return _result(self._interruptible("execute", self._execute, workflow_name,
                                           _context_json(context), caller_trace_context()))

    async def aexecute(self, workflow_name: str, context: Context) -> WorkflowResult:
        """Run a workflow to its end and return the result."""
        return _result(await self._acall("aexecute", self._execute, workflow_name,
                                         _context_json(context), caller_trace_context()))

    def _execute(self, workflow_name: str, input_json: str, parent: TraceParent) -> Awaitable[StoredRun]:
        timeout = self._config.workflow_timeout_seconds
        return self._require_engine().execute(
            workflow_name, input_json, parent, None if timeout is None else float(timeout))

    async def _submit_run(self, workflow_name: str, input_json: str, parent: TraceParent) -> Run:
        engine = self._require_engine()
        # Shielded: a caller cancelled while the run is being saved must not strand it.
        submitting = asyncio.ensure_future(engine.submit(workflow_name, input_json, trace_parent=parent))
        submitting.add_done_callback(_retrieve_exception)
        run = await asyncio.shield(submitting)
        assert run is not None
        return run

    # ================================================================== run control
    def submit(self, workflow_name: str, context: Context) -> str:
        """Start a run and return its execution id once it is persisted (does not wait for it)."""
        return self._call("submit", self._submit, workflow_name, _context_json(context),
                          caller_trace_context())

    async def asubmit(self, workflow_name: str, context: Context) -> str:
        return await self._acall("asubmit", self._submit, workflow_name, _context_json(context),
                                 caller_trace_context())

    async def _submit(self, workflow_name: str, input_json: str, parent: TraceParent) -> str:
        return (await self._submit_run(workflow_name, input_json, parent)).id

    def get_result(self, execution_id: str, timeout: Optional[float] = None) -> WorkflowResult:
        """Wait for a run (of any process) to end; TimeoutError after `timeout` seconds."""
        return self._interruptible("get_result", self._get_result, execution_id, timeout)

    async def aget_result(self, execution_id: str, timeout: Optional[float] = None) -> WorkflowResult:
        return await self._acall("aget_result", self._get_result, execution_id, timeout)

    async def _get_result(self, execution_id: str, timeout: Optional[float]) -> WorkflowResult:
        _check_execution_id(execution_id)
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0):
            raise ValueError(f"get_result: timeout must be None or seconds >= 0, got {timeout!r}")
        try:
            return _result(await self._require_engine().result(execution_id, timeout))
        except TimeoutError:
            raise TimeoutError(
                f"execution {execution_id} did not end within {timeout:g}s (it goes on)"
            ) from None

    def cancel(self, execution_id: str) -> bool:
        """Cancel a run wherever it executes; False if it had already ended."""
        return self._call("cancel", self._cancel, execution_id)

    async def acancel(self, execution_id: str) -> bool:
        return await self._acall("acancel", self._cancel, execution_id)

    async def _cancel(self, execution_id: str) -> bool:
        _check_execution_id(execution_id)
        return await self._require_engine().cancel(execution_id)

    def retry_execution(self, execution_id: str) -> str:
        """Resume a Failed or Cancelled run under the same id (completed tasks are kept).

        Here if its workflow is registered here; else the run is reopened "Pending" and the
        first runner that has the workflow (and `enable_recovery`) takes it over."""
        return self._call("retry_execution", self._retry_execution, execution_id)

    async def aretry_execution(self, execution_id: str) -> str:
        return await self._acall("aretry_execution", self._retry_execution, execution_id)

    async def _retry_execution(self, execution_id: str) -> str:
        _check_execution_id(execution_id)
        return await self._require_engine().retry(execution_id)

    def list_executions(self, workflow_name: Optional[str] = None, status: Optional[str] = None,
                        limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """Runs, newest first: id, workflow_name, status, started_at, completed_at, error_message."""
        return self._call("list_executions", self._list_executions, workflow_name, status, limit, offset)

    async def alist_executions(self, workflow_name: Optional[str] = None, status: Optional[str] = None,
                               limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        return await self._acall("alist_executions", self._list_executions, workflow_name, status,
                                 limit, offset)

    async def _list_executions(self, workflow_name: Optional[str], status: Optional[str],
                               limit: int, offset: int) -> list[dict[str, Any]]:
        limit, offset = page(limit, offset)
        if status is not None and status not in RUN_STATUSES:
            raise ValueError(
                f"list_executions: unknown status {status!r}; valid statuses are "
                + ", ".join(RUN_STATUSES)
            )
        rows = await self._store.list_executions(workflow_name, status, limit, offset)
        return [
            {"id": r.id, "workflow_name": r.workflow_name, "status": r.status,
             "started_at": rfc3339(r.started_at), "completed_at": rfc3339(r.completed_at),
             "error_message": r.error_message}
            for r in rows
        ]

    def get_execution(self, execution_id: str) -> Optional[WorkflowResult]:
        """A run by id (any process, any time), or None."""
        return self._call("get_execution", self._get_execution, execution_id)

    async def aget_execution(self, execution_id: str) -> Optional[WorkflowResult]:
        return await self._acall("aget_execution", self._get_execution, execution_id)

    async def _get_execution(self, execution_id: str) -> Optional[WorkflowResult]:
        _check_execution_id(execution_id)
        active = self._require_engine().active_run(execution_id)
        if active is not None:
            return _result(active.snapshot())
        stored = await self._store.get_run(execution_id)
        return None if stored is None else _result(stored)

    def count_executions(self, workflow_name: Optional[str] = None) -> dict[str, int]:
        """The number of runs of each status, of one workflow or of all (statuses with none omitted)."""
        return self._call("count_executions", self._count_executions, workflow_name)

    async def acount_executions(self, workflow_name: Optional[str] = None) -> dict[str, int]:
        return await self._acall("acount_executions", self._count_executions, workflow_name)

    async def _count_executions(self, workflow_name: Optional[str]) -> dict[str, int]:
        if workflow_name is not None and not isinstance(workflow_name, str):
            raise TypeError(f"workflow_name must be a str or None, got {type(workflow_name).__name__}")
        return await self._store.count_executions(workflow_name)

    def get_workflow(self, workflow_name: str) -> Optional[Workflow]:
        """The workflow this process executes under `workflow_name`, or None (never blocks)."""
        if not isinstance(workflow_name, str):
            raise TypeError(f"workflow_name must be a str, got {type(workflow_name).__name__}")
        return REGISTRY.get_workflow(workflow_name)

    async def aget_workflow(self, workflow_name: str) -> Optional[Workflow]:
        return self.get_workflow(workflow_name)

    # ================================================================== internals
    def _require_engine(self) -> Engine:
        if self._engine is None:
            raise ValueError("DefaultRunner: the runner is not running")
        return self._engine


# ====================================================================== helpers
def _in_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _no_jumps(listener: Callable[[], None]) -> None:
    """What a clock that never jumps does with a jump listener."""


def _awaitable(function: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    async def call() -> None:
        function()

    return call


def _check_execution_id(execution_id: Any) -> None:
    if not isinstance(execution_id, str):
        raise TypeError(f"execution_id must be a str, got {type(execution_id).__name__}")


def _retrieve_exception(future: "asyncio.Future[Any]") -> None:
    if not future.cancelled():
        future.exception()


def _construction_error(exc: BaseException) -> BaseException:
    if isinstance(exc, (ValueError, TypeError)):
        return exc
    return RuntimeError(f"Failed to create DefaultRunner: {exc}")


def _context_json(context: Context) -> str:
    if not isinstance(context, Context):
        raise TypeError(f"context must be a cloaca.Context, got {type(context).__name__}")
    return json.dumps(context._data_view())


def _result(stored: StoredRun) -> WorkflowResult:
    e = stored.execution
    return WorkflowResult._create(
        execution_id=e.id, workflow_name=e.workflow_name, status=e.status, start=e.started_at,
        end=e.completed_at, final_context_json=e.final_context or e.input_context,
        input_context_json=e.input_context,
        error_message=e.error_message,
        task_results=lambda: _task_results(stored.tasks),
    )


def _task_results(records: list[TaskRecord]) -> list[dict[str, Any]]:
    tasks = sorted(records, key=lambda t: (t.started_at is None, t.started_at or 0, t.task_name))
    return [
        {"task_name": t.task_name.rsplit("::", 1)[-1], "task_namespace": t.task_name,
         "status": t.status, "start_time": rfc3339(t.started_at),
         "end_time": rfc3339(t.completed_at), "attempt_count": t.attempt,
         "error_message": t.error_message, "traceback": t.traceback}
        for t in tasks
    ]


def _shutdown_all_runners() -> None:
    """Shut down every live runner that owns its thread (registered with atexit)."""
    for runner in list(_LIVE_RUNNERS):
        if not runner._bridge.owns_thread:
            continue  # bound to an application's loop: the application closes it
        try:
            runner.shutdown()
        except Exception:
            pass


atexit.register(_shutdown_all_runners)
