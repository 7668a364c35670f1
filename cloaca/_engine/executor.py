"""The async core: runs workflow executions as DAGs, persisting every state change.

A run lives in memory only while this runner executes it; the store holds the truth. Each
step (a task finished, so its dependents became ready, maybe the run ended) is written in
one store call, awaited before anything that depends on it starts.

How runners share a database is the store's `WorkSharing`:
- BY_RUN: the runner holding a run's lease executes all its tasks; tasks beyond the free
  slots wait in a local queue, and their switch to Running is written without waiting
  (on recovery Ready and Running tasks are both re-run).
- BY_TASK: tasks beyond the free slots are left Ready in the store for any runner to claim
  (`claims.TaskClaims`); each step is a compare-and-set on the run's version, recomputed
  from the stored run when another runner wrote first.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import json
import logging
import os
import sys
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import anyio
import anyio.to_thread

from .._context import Context
from .._graphs.invocation import invoke_after_body
from .._ids import time_ordered_id
from .._registry import Registry
from .._rules import evaluate_rule
from .._secrets import SecretResolver
from .._store.base import (
    ClaimedWork,
    ClaimStore,
    ExecutionRecord,
    FireRequest,
    RunEnded,
    RunLost,
    Store,
    StoredRun,
    TaskRecord,
    WorkSharing,
)
from .._task import TaskDefinition, TaskHandle
from .._workflow import Workflow
from .callbacks import run_callback
from .claims import TaskClaims
from .deadline import cancelled_from_outside, deadline
from .merge import merge_contexts
from .observe import Observer, spans_on
from .slots import SlotPool, TaskSlot
from .store_retry import StoreRetryStopped, until_stored

log = logging.getLogger("cloaca.run")

TERMINAL = frozenset({"Completed", "Failed", "Skipped", "Cancelled"})
RUN_STATUSES = ("Pending", "Running", "Completed", "Failed", "Cancelled")
RULES_NOT_SATISFIED = "Trigger rules not satisfied"
TRACEBACK_LIMIT = 64 * 1024
"""Characters of a failed attempt's traceback that are kept (its end, where the error is)."""
UNKNOWN_VERSION = -1
"""BY_TASK: a run's version after a write that may or may not have been committed; the
next step or claim of the run reads all of its rows again (its memory may hold changes
that were never stored)."""


class EngineStopped(Exception):
    """The engine stopped before the run finished."""


@dataclass
class EngineSettings:
    """The knobs of DefaultRunnerConfig that the executor reads."""

    max_concurrent_tasks: int = 4
    max_concurrent_async_tasks: int = 1000
    task_timeout_seconds: float = 300.0
    lease_seconds: float = 5.0
    enable_recovery: bool = True
    poll_interval_seconds: float = 0.1
    """BY_TASK: how often to look for claimable work when the store cannot push notices."""


@dataclass(eq=False)
class _TaskState:
    definition: TaskDefinition
    record: TaskRecord
    remaining: int
    pending_write: Optional[asyncio.Future[Any]] = None
    body: Optional[asyncio.Task[Any]] = None
    """The attempt running here, while its task body executes (cancelled with the run)."""


@dataclass(eq=False)
class _Step:
    """What one scheduling step changed; applied (started, queued) only once it is committed."""

    now: float
    changed: list[TaskRecord] = field(default_factory=list)
    to_start: list[_TaskState] = field(default_factory=list)
    to_queue: list[_TaskState] = field(default_factory=list)


@dataclass(eq=False)
class Run:
    """A workflow execution that this runner is executing."""

    execution: ExecutionRecord
    workflow: Workflow
    tasks: dict[str, _TaskState]
    done: asyncio.Future[StoredRun]
    open_tasks: int = 0
    next_seq: int = 1
    on_finish: list[Callable[[Run], None]] = field(default_factory=list)
    version: int = 0
    watched: bool = False
    """Started here: someone may wait for its end, which another runner may write (BY_TASK)."""
    active: int = 0
    """Task bodies of this run executing in this runner."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """BY_TASK: held while a step is computed and written, and while claimed rows land."""
    stopped: bool = False
    """Ended elsewhere (cancelled): its attempts here are abandoned, their results dropped."""
    span: Any = None
    """The run's span in this process (tracing), if this runner started or resumed it."""
    traced: bool = False
    """Spans were on when this runner loaded the run: its attempts get spans."""

    @property
    def id(self) -> str:
        return self.execution.id

    def snapshot(self) -> StoredRun:
        return StoredRun(self.execution, [s.record for s in self.tasks.values()])


class Engine:
    """Executes runs on the current event loop."""

    def __init__(self, store: Store, registry: Registry, settings: EngineSettings, owner: str,
                 secrets: Optional[SecretResolver] = None) -> None:
        self.store = store
        self.secrets = secrets
        """What `Context.secret` resolves through in task bodies (None: not configured)."""
        self.registry = registry
        self.settings = settings
        self.owner = owner
        self.observe = Observer()
        self.slots = SlotPool(settings.max_concurrent_tasks)
        """Sync task bodies (threads)."""
        self.async_slots = SlotPool(settings.max_concurrent_async_tasks)
        """`async def` task bodies."""
        self._thread_limiter = anyio.CapacityLimiter(max(40, 4 * settings.max_concurrent_tasks))
        self._queues: dict[SlotPool, deque[tuple[Run, _TaskState]]] = {
            self.slots: deque(), self.async_slots: deque(),
        }
        self._runs: dict[str, Run] = {}
        self._bodies: set[asyncio.Task[Any]] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._lease_task: Optional[asyncio.Task[None]] = None
        self._stopping = False
        self.resumed_listeners: list[Callable[[Run], None]] = []
        self._active_tasks: set[tuple[str, str]] = set()
        self.claims: Optional[TaskClaims] = None
        if store.work_sharing is WorkSharing.BY_TASK:
            if not isinstance(store, ClaimStore):
                raise TypeError(f"{type(store).__name__} shares work by task but is no ClaimStore")
            self.claim_store: ClaimStore = store
            self.claims = TaskClaims(self, store, settings.poll_interval_seconds)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Resume orphaned runs (or claim ready tasks) of registered workflows; renew leases."""
        if self.claims is not None:
            await self.claims.start()
        elif self.settings.enable_recovery:
            await self.recover()
        self._lease_task = asyncio.get_running_loop().create_task(self._keep_leases())

    async def stop(self, grace_seconds: float) -> None:
        """Stop taking work, let running bodies finish up to the grace period, cancel the rest.

        What did not finish stays resumable: its store rows are left as they are and its
        leases are released so another runner can take it over at once.
        """
        self._stopping = True
        if self._lease_task is not None:
            self._lease_task.cancel()
        if self.claims is not None:
            await self.claims.stop()
        for queue in self._queues.values():
            queue.clear()
        if self._bodies:
            await asyncio.wait(set(self._bodies), timeout=grace_seconds)
        for body in list(self._bodies) + list(self._background):
            body.cancel()
        await asyncio.gather(*self._bodies, *self._background, return_exceptions=True)
        for run in list(self._runs.values()):
            if not run.done.done():
                run.done.set_exception(
                    EngineStopped(
                        f"the runner shut down before workflow '{run.execution.workflow_name}' "
                        f"finished (execution {run.id}); it resumes when a runner starts on "
                        "this database"
                    )
                )
                run.done.exception()  # mark retrieved: nobody may be waiting
        self._runs.clear()
        try:
            await self.store.release_leases(self.owner)
        except Exception as exc:
            log.warning("cloaca: could not release leases on shutdown: %s", exc)

    @property
    def running(self) -> int:
        return len(self._runs)

    # ------------------------------------------------------------------ submission
    async def submit(
        self, workflow_name: str, input_json: str, fire: Optional[FireRequest] = None,
        link_fire_id: Optional[str] = None, trace_parent: Optional[Mapping[str, str]] = None,
        attributes: Optional[Mapping[str, str]] = None,
    ) -> Optional[Run]:
        """Persist and start a run; None if `fire` was refused as a duplicate.

        `trace_parent` is the trace context it was submitted in; `attributes` describe where
        it came from (e.g. its cron schedule), for its span."""
        if self._stopping:
            raise ValueError("Workflow execution failed: the runner is shutting down")
        workflow = self.registry.get_workflow(workflow_name)
        if workflow is None:
            raise ValueError(
                f"Workflow execution failed: Workflow not found in registry: {workflow_name}"
            )
        now = time.time()
        execution = ExecutionRecord(
            id=time_ordered_id(), workflow_name=workflow_name, workflow_version=workflow.version,
            status="Running", input_context=input_json, started_at=now,
        )
        run = self._new_run(execution, workflow)
        if fire is not None:
            attributes = {**(attributes or {}), "cloaca.trigger_name": fire.trigger_name}
        run.span = self.observe.run_started(execution, trace_parent, attributes)
        for state in run.tasks.values():
            state.remaining = len(set(state.definition.dependencies))
        step = _Step(now)
        for name in workflow.get_roots():
            self._make_eligible(run, run.tasks[name], step)
        try:
            created = await self._create(run, fire, link_fire_id)
        except BaseException:
            created = False
            raise
        finally:
            if not created:
                self._abandon(step)
                self.observe.run_not_created(run.span)
        if not created:
            return None
        run.watched = True
        self._runs[run.id] = run
        await self._after_step(run, step)
        return run

    async def _create(self, run: Run, fire: Optional[FireRequest], link_fire_id: Optional[str]) -> bool:
        """Insert the run, again while the database is unreachable (unless an attempt whose
        reply was lost did insert it)."""
        execution, tasks = run.execution, [s.record for s in run.tasks.values()]
        tried = False

        async def attempt() -> bool:
            nonlocal tried
            if tried and await self.store.get_run(execution.id) is not None:
                return True
            tried = True
            return await self.store.create_execution(
                execution, tasks, self.owner, time.time() + self.settings.lease_seconds,
                fire, link_fire_id,
            )

        try:
            return await until_stored(
                self.store, f"new run {execution.id}", attempt, lambda: self._stopping
            )
        except StoreRetryStopped as exc:
            raise RuntimeError(
                f"Workflow execution failed: the runner shut down while {self.store.description} "
                f"was unreachable, before run {execution.id} of workflow "
                f"'{execution.workflow_name}' was known to be saved ({exc.__cause__}); if it was, "
                "it resumes when a runner starts on this database"
            ) from None

    def _abandon(self, step: _Step) -> None:
        """Give back the slots taken by a step that was not committed."""
        for state in step.to_start:
            self.pool_of(state.definition).release()

    def pool_of(self, definition: TaskDefinition) -> SlotPool:
        """The slots that bound this task's bodies: async ones, or threads."""
        return self.async_slots if definition.is_async else self.slots

    def _new_run(self, execution: ExecutionRecord, workflow: Workflow) -> Run:
        loop = asyncio.get_running_loop()
        tasks = {
            name: _TaskState(definition, TaskRecord(execution.id, name, "NotStarted"), 0)
            for name, definition in workflow.tasks.items()
        }
        return Run(execution, workflow, tasks, loop.create_future(), open_tasks=len(tasks),
                   traced=spans_on())

    async def wait(self, run: Run, timeout: Optional[float]) -> StoredRun:
        """The finished run; ValueError after `timeout` seconds (the run goes on)."""
        try:
            if timeout is None:
                return await asyncio.shield(run.done)
            async with deadline(timeout):
                return await asyncio.shield(run.done)
        except TimeoutError:
            raise ValueError(f"Workflow execution failed: Workflow timeout after {timeout:g}s") from None
        except EngineStopped as exc:
            raise ValueError(f"Workflow execution failed: {exc}") from None

    # ------------------------------------------------------------------ scheduling
    def _make_eligible(self, run: Run, state: _TaskState, step: _Step) -> None:
        """All dependencies are terminal: skip the task, or start it (now, or when a slot frees)."""
        record = state.record
        step.changed.append(record)
        if not self._rule_holds(run, state):
            record.status = "Skipped"
            record.completed_at = step.now
            record.error_message = RULES_NOT_SATISFIED
            self._task_terminal(run, state, step)
        elif self.pool_of(state.definition).try_acquire():
            self._mark_running(record, step.now)
            step.to_start.append(state)
        else:
            record.status = "Ready"
            step.to_queue.append(state)

    def _rule_holds(self, run: Run, state: _TaskState) -> bool:
        rule = state.definition.trigger_rule
        if rule.get("type") == "Always":
            return True
        statuses = {name: s.record.status for name, s in run.tasks.items()}
        try:
            return evaluate_rule(rule, statuses, self._input_data(run, state))
        except Exception as exc:
            log.error("cloaca: trigger rule of task '%s' failed to evaluate: %s", state.definition.id, exc)
            return False

    def _task_terminal(self, run: Run, state: _TaskState, step: _Step) -> None:
        run.open_tasks -= 1
        for child_name in run.workflow.dependents_of(state.record.task_name):
            child = run.tasks[child_name]
            child.remaining -= 1
            if child.remaining == 0 and child.record.status == "NotStarted":
                self._make_eligible(run, child, step)

    @staticmethod
    def _mark_running(record: TaskRecord, now: float) -> None:
        record.status = "Running"
        record.attempt += 1
        record.started_at = now
        record.not_before = None

    async def _after_step(self, run: Run, step: _Step) -> None:
        """Once a step is committed: start or queue what became runnable, or finish the run."""
        for state in step.to_start:
            self._start_body(run, state)
        if step.to_queue and self.claims is None:  # BY_TASK: left Ready in the store for anyone
            for state in step.to_queue:
                self._queues[self.pool_of(state.definition)].append((run, state))
            self._start_queued()
        if run.open_tasks == 0:
            await self._finish(run, step.now)

    def _start_body(self, run: Run, state: _TaskState) -> None:
        """Execute a task that holds a slot and is Running under this runner."""
        pool = self.pool_of(state.definition)
        self._spawn(self._run_task(run, state, TaskSlot(pool, held=True, on_release=self._start_queued)))

    def _spawn(self, coro: Any, background: bool = False) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        group = self._background if background else self._bodies
        group.add(task)
        task.add_done_callback(group.discard)

    def _start_queued(self) -> None:
        """Hand free slots to queued tasks (their switch to Running is written lazily)."""
        if self.claims is not None:
            self.claims.slot_freed()
            return
        for pool, queue in self._queues.items():
            while queue and not self._stopping and pool.try_acquire():
                run, state = queue.popleft()
                if run.id not in self._runs or run.stopped:
                    pool.release()
                    continue
                self._mark_running(state.record, time.time())
                state.pending_write = self._write_soon(state.record)
                self._start_body(run, state)

    def _write_soon(self, record: TaskRecord) -> asyncio.Future[Any]:
        snapshot = _copy(record)
        future = asyncio.ensure_future(self.store.save_progress([snapshot], None, self.owner))
        future.add_done_callback(_log_write_error)
        return future

    # ------------------------------------------------------------------ one attempt
    async def _run_task(self, run: Run, state: _TaskState, slot: TaskSlot) -> None:
        key = (run.id, state.record.task_name)
        run.active += 1
        self._active_tasks.add(key)
        try:
            await self._run_task_steps(run, state, slot)
        except Exception as exc:
            self._persist_failed(run, exc)
        finally:
            run.active -= 1
            self._active_tasks.discard(key)
            if self.claims is not None and not run.watched and run.active == 0:
                self._forget(run)

    def _persist_failed(self, run: Run, exc: Exception) -> None:
        if isinstance(exc, RunEnded):
            self._spawn(self.observe_ended([run.id]), background=True)
            return
        if isinstance(exc, RunLost):
            self._lost(run)
            return
        if self.claims is not None:
            # The task's lease is no longer renewed: a runner takes it over when it expires.
            log.error("cloaca: could not persist a step of run %s (its task will be retried "
                      "when its lease expires): %s", run.id, exc)
            return
        log.error("cloaca: run %s stopped: could not persist its progress: %s", run.id, exc)
        run.stopped = True  # the run has failed: its other attempts here are abandoned
        for state in run.tasks.values():
            if state.body is not None:
                state.body.cancel()
        if not run.done.done():
            run.done.set_exception(
                ValueError(f"Workflow execution failed: could not persist progress: {exc}")
            )
        self._spawn(self._record_unwritable(run, f"could not persist progress: {exc}"), background=True)

    async def _record_unwritable(self, run: Run, error: str) -> None:
        """BY_RUN: store the run as Failed (its unfinished tasks too) once the store takes
        writes again (e.g. a full disk was given room). Until then it stays in `_runs`,
        under this runner's lease, so that nobody resumes it meanwhile."""
        interval = self.settings.lease_seconds / 3
        while self._runs.get(run.id) is run:
            now = time.time()
            tasks = [_failed_copy(s.record, error, now) for s in run.tasks.values()
                     if s.record.status not in TERMINAL]
            execution = ExecutionRecord(**run.execution.__dict__)
            execution.status, execution.error_message, execution.completed_at = "Failed", error, now
            try:
                await self.store.save_progress(tasks, execution, self.owner)
            except (RunEnded, RunLost):
                break  # ended or taken over elsewhere meanwhile
            except Exception:
                await asyncio.sleep(interval)
                continue
            log.info("cloaca: run %s stored as Failed: %s", run.id, error)
            break
        self._forget(run)

    def _lost(self, run: Run) -> None:
        """BY_RUN: another runner took the run over while this one stalled past its lease."""
        if self._runs.get(run.id) is not run:
            return  # already known
        del self._runs[run.id]
        log.warning("cloaca: run %s was taken over by another runner while this one stalled past "
                    "its lease; this runner's late results are dropped", run.id)
        self._spawn(self._await_end_elsewhere(run), background=True)

    async def _await_end_elsewhere(self, run: Run) -> None:
        """Tell the run's waiters and listeners how it ends, in whichever runner ends it."""
        while True:
            await asyncio.sleep(self.settings.lease_seconds / 3)
            try:
                stored = await self.store.get_run(run.id)
            except Exception as exc:
                log.warning("cloaca: could not read run %s: %s", run.id, exc)
                continue
            if stored is None or stored.execution.status not in ("Pending", "Running"):
                self.finished(run, stored or run.snapshot())
                return

    def _forget(self, run: Run) -> None:
        if self._runs.get(run.id) is run:
            del self._runs[run.id]

    async def _run_task_steps(self, run: Run, state: _TaskState, slot: TaskSlot) -> None:
        definition = state.definition
        input_json = self._input_json(run, state)
        traced = self.observe.attempt_started(run.execution, state.record, run.span, run.traced)
        state.body = asyncio.current_task()
        try:
            attempt = await self._attempt(definition, input_json, slot)
        except BaseException:
            self.observe.attempt_abandoned(traced)
            raise
        finally:
            state.body = None
            slot.close()
            self._start_queued()
        if run.stopped:
            self.observe.attempt_abandoned(traced)
            return
        self.observe.attempt_ended(run.execution, state.record, traced, attempt.ok, attempt.error, attempt.exc)
        if attempt.ok:
            if definition.on_success is not None:
                await self._call(run, state, definition.on_success, definition.id, _context(attempt.output))
            await self._complete(run, state, attempt.output)
        else:
            if definition.on_failure is not None:
                await self._call(run, state, definition.on_failure, definition.id, attempt.error,
                                 _context(input_json))
            await self._fail_attempt(run, state, attempt)

    async def _attempt(self, definition: TaskDefinition, input_json: str, slot: TaskSlot) -> Attempt:
        """Run the body once, then the graph it invokes."""
        attempt = await self._attempt_body(definition, input_json, slot)
        if attempt.ok and definition.invokes is not None:
            ok, output, error, transient = await invoke_after_body(
                definition, attempt.output, self._thread_limiter, self.secrets,
                self.settings.task_timeout_seconds,
            )
            return Attempt(True, output) if ok else Attempt.failed(error, transient)
        return attempt

    async def _attempt_body(self, definition: TaskDefinition, input_json: str, slot: TaskSlot) -> Attempt:
        """Run the body once."""
        context = Context._from_trusted(json.loads(input_json), self.secrets)
        args: tuple[Any, ...] = (context,)
        handle = None
        if definition.wants_handle:
            handle = TaskHandle._create(slot)
            args = (context, handle)
        timeout = self.settings.task_timeout_seconds
        try:
            async with deadline(timeout):
                if definition.is_async:
                    result = await definition.function(*args)
                else:
                    result = await anyio.to_thread.run_sync(
                        definition.function, *args, abandon_on_cancel=True, limiter=self._thread_limiter
                    )
                if inspect.isawaitable(result):
                    result = await result
        except TimeoutError:
            return Attempt.failed(f"Task timed out after {timeout:g}s", transient=True, trace=_traceback())
        except asyncio.CancelledError as exc:
            if cancelled_from_outside():
                raise
            return Attempt.failed(f"Python task execution failed: CancelledError: {exc}", exc=exc)
        except BaseException as exc:
            return Attempt.failed(f"Python task execution failed: {type(exc).__name__}: {exc}", exc=exc)
        finally:
            if handle is not None:
                handle._consume()
        if result is None:
            result = context  # the body changed its context in place
        if isinstance(result, Context):
            try:
                return Attempt(True, json.dumps(result._data_view()))
            except (TypeError, ValueError) as exc:
                return Attempt.failed(f"Python task execution failed: TypeError: {exc}", exc=exc)
        return Attempt.failed(
            "Python task execution failed: TypeError: task returned "
            f"{type(result).__name__}; expected a cloaca.Context or None"
        )

    async def _call(self, run: Run, state: _TaskState, callback: Callable[..., Any], *args: Any) -> None:
        error = await run_callback(callback, args, self._thread_limiter, self.settings.task_timeout_seconds)
        if error is not None:
            self.observe.callback_failed(run.execution, state.record, callback, error)

    # ------------------------------------------------------------------ outcomes
    async def _complete(self, run: Run, state: _TaskState, output_json: str) -> None:
        now = time.time()
        outcome = _copy(state.record)
        outcome.status = "Completed"
        outcome.completed_at = now
        outcome.output_context = output_json
        outcome.error_message = None
        await self._settle(run, state, outcome)

    async def _fail_attempt(self, run: Run, state: _TaskState, attempt: Attempt) -> None:
        now = time.time()
        outcome = _copy(state.record)
        outcome.error_message = attempt.error
        if attempt.trace is not None:
            outcome.traceback = attempt.trace
        policy = state.definition.retry_policy
        tries = outcome.attempt - outcome.attempt_base  # attempts since the run was last retried
        if not self._stopping and policy._should_retry_error(tries, attempt.error, attempt.transient):
            delay = policy.calculate_delay(tries)
            self.observe.retry_scheduled(run.execution, outcome, delay)
            outcome.status = "Ready"
            outcome.not_before = now + delay
            if await self._settle(run, state, outcome):
                asyncio.get_running_loop().call_later(delay, self._retry, run, state)
            return
        outcome.status = "Failed"
        outcome.completed_at = now
        await self._settle(run, state, outcome)

    def _retry(self, run: Run, state: _TaskState) -> None:
        if self.claims is not None:
            self.claims.wake()  # the task is Ready in the store: whoever is free claims it
        elif run.id in self._runs and not self._stopping:
            self._queues[self.pool_of(state.definition)].append((run, state))
            self._start_queued()

    def _adopt(self, run: Run, state: _TaskState, outcome: TaskRecord) -> None:
        """Make an attempt's outcome the task's record (numbered if the task is over).

        Adopting the same outcome again, after a refused step, only renumbers it.
        """
        state.record = outcome
        if outcome.status in TERMINAL:
            outcome.finish_seq = run.next_seq
            run.next_seq += 1

    def _outcome_step(self, run: Run, state: _TaskState, outcome: TaskRecord) -> tuple[_Step, Optional[ExecutionRecord]]:
        """Adopt an outcome and compute what it changes: unblocked tasks, maybe the run's end."""
        self._adopt(run, state, outcome)
        now = outcome.completed_at or time.time()
        step = _Step(now, [state.record])
        finished = None
        if outcome.status in TERMINAL:
            self._task_terminal(run, state, step)
            if run.open_tasks == 0:
                finished = self._finished_record(run, now)
        return step, finished

    async def _settle(self, run: Run, state: _TaskState, outcome: TaskRecord) -> bool:
        """Write an attempt's outcome with the step it causes, then go on; False if the task
        was lost to another runner (BY_TASK: its lease expired and it was taken over)."""
        if self.claims is not None:
            step = await self._commit_shared(run, state, outcome)
            if step is None:
                return False
        else:
            step, finished = self._outcome_step(run, state, outcome)
            try:
                await self._write(step.changed, finished, state)
            except Exception:
                self._abandon(step)
                raise
        await self._after_step(run, step)
        return True

    async def _write(
        self, records: list[TaskRecord], finished: Optional[ExecutionRecord], state: _TaskState
    ) -> None:
        if state.pending_write is not None:
            await asyncio.shield(state.pending_write)
            state.pending_write = None
        await self.store.save_progress(records, finished, self.owner)

    async def _commit_shared(self, run: Run, state: _TaskState, outcome: TaskRecord) -> Optional[_Step]:
        """BY_TASK: write the step against the run's version; if another runner wrote first,
        compute it again under the run's row lock. None if the task is no longer ours."""
        async with run.lock:
            step, finished = self._outcome_step(run, state, outcome)
            try:
                committed = await self.claim_store.commit_step(
                    run.id, run.version, self.owner, time.time() + self.settings.lease_seconds,
                    step.changed, finished,
                )
            except Exception as exc:
                self._abandon(step)
                started = [_copy(s.record) for s in step.to_start]
                return await self._write_again(run, state, outcome, exc, started)
            if committed:
                run.version += 1
                return step
            self._abandon(step)
            try:
                return await self._commit_locked(run, state, outcome, [r.task_name for r in step.changed])
            except Exception as exc:
                return await self._write_again(run, state, outcome, exc, [])

    async def _write_again(
        self, run: Run, state: _TaskState, outcome: TaskRecord, exc: Exception, started: list[TaskRecord]
    ) -> Optional[_Step]:
        """A write of the run's step failed, after the step was applied in memory: forget
        what memory holds of the run and, if the store was unreachable, write the step
        again until it goes through. `started`: the tasks the failed write started."""
        run.version = UNKNOWN_VERSION
        if not self.store.unavailable(exc):
            raise exc
        return await until_stored(
            self.store, f"a step of run {run.id}",
            lambda: self._commit_reloaded(run, state, outcome, started), lambda: self._stopping,
        )

    async def _commit_reloaded(
        self, run: Run, state: _TaskState, outcome: TaskRecord, started: list[TaskRecord]
    ) -> Optional[_Step]:
        """`_commit_locked` from all of the run's stored rows, after a write that may have
        been lost or committed with its reply lost (then the tasks it `started` are
        executed here, as they would have been, and a run it ended is finished)."""
        try:
            step = await self._commit_locked(run, state, outcome, [])
        except Exception:
            run.version = UNKNOWN_VERSION
            raise
        if step is None and (state.record.attempt, state.record.status) == (outcome.attempt, outcome.status):
            for record in started:
                mine = run.tasks[record.task_name]
                if ((mine.record.status, mine.record.attempt, mine.record.started_at)
                        == ("Running", record.attempt, record.started_at)
                        and self.pool_of(mine.definition).try_acquire()):
                    self._start_body(run, mine)  # else its lease lapses and it is taken over
            if run.execution.status not in ("Pending", "Running"):
                self.finished(run, run.snapshot())
        return step

    async def _commit_locked(
        self, run: Run, state: _TaskState, outcome: TaskRecord, undone: list[str]
    ) -> Optional[_Step]:
        """Recompute the step from what others changed (and the rows of `undone`, which the
        refused step changed in memory only) while the run's row is locked."""
        computed: list[_Step] = []

        def compute(stored: StoredRun) -> Optional[tuple[list[TaskRecord], Optional[ExecutionRecord]]]:
            self._load(run, stored)
            if state.record.attempt == outcome.attempt and state.record.status == outcome.status:
                log.info("cloaca: the result of task '%s' of run %s was written before the "
                         "connection dropped", outcome.task_name, run.id)
                return None
            if stored.execution.status not in ("Pending", "Running"):
                log.warning("cloaca: run %s ended elsewhere; dropping the result of task '%s'",
                            run.id, outcome.task_name)
                return None
            if state.record.status != "Running" or state.record.attempt != outcome.attempt:
                log.warning("cloaca: task '%s' of run %s was taken over by another runner (its "
                            "lease expired); dropping this attempt's result", outcome.task_name, run.id)
                return None
            step, finished = self._outcome_step(run, state, outcome)
            computed.append(step)
            return step.changed, finished

        try:
            committed = await self.claim_store.commit_step_locked(
                run.id, run.version, undone, self.owner,
                time.time() + self.settings.lease_seconds, compute,
            )
        except Exception:
            for step in computed:
                self._abandon(step)
            raise
        if not committed:
            for step in computed:
                self._abandon(step)
            return None
        run.version += 1
        return computed[0]

    def _finished_record(self, run: Run, now: float) -> ExecutionRecord:
        execution = run.execution
        counts = {"Completed": 0, "Failed": 0, "Skipped": 0}
        last: Optional[TaskRecord] = None
        for s in run.tasks.values():
            counts[s.record.status] = counts.get(s.record.status, 0) + 1
            if s.record.status == "Completed" and (last is None or _later(s.record, last)):
                last = s.record
        execution.status = "Failed" if counts["Failed"] else "Completed"
        execution.error_message = (
            f"{counts['Failed']} task(s) failed, {counts['Completed']} completed, "
            f"{counts['Skipped']} skipped"
            if counts["Failed"] else None
        )
        execution.final_context = last.output_context if last else execution.input_context
        execution.completed_at = now
        return execution

    async def _finish(self, run: Run, now: float) -> None:
        if run.execution.completed_at is None:  # e.g. every task was skipped at submission
            finished = self._finished_record(run, now)
            if self.claims is None:
                await self.store.save_progress([], finished, self.owner)
            elif await until_stored(
                self.store, f"the end of run {run.id}",
                lambda: self.claim_store.commit_step(run.id, run.version, self.owner, now, [], finished),
                lambda: self._stopping,
            ):
                run.version += 1
        self.finished(run, run.snapshot(), ended_here=True)

    def finished(self, run: Run, stored: StoredRun, ended_here: bool = False) -> None:
        """The run has ended (here, or in another runner): tell its listeners and waiters."""
        self._forget(run)
        self.observe.run_ended(stored.execution, run.span, counted=ended_here)
        run.span = None
        for listener in run.on_finish:
            listener(run)
        if not run.done.done():
            run.done.set_result(stored)

    # ------------------------------------------------------------------ contexts
    def _input_json(self, run: Run, state: _TaskState) -> str:
        deps = state.definition.dependencies
        if not deps:
            return run.execution.input_context
        outputs = [
            run.tasks[d].record.output_context for d in dict.fromkeys(deps)
            if run.tasks[d].record.output_context is not None
        ]
        if len(outputs) == 1:
            return outputs[0]  # type: ignore[return-value]
        return json.dumps(merge_contexts(json.loads(o) for o in outputs))  # type: ignore[arg-type]

    def _input_data(self, run: Run, state: _TaskState) -> dict[str, Any]:
        return json.loads(self._input_json(run, state))

    # ------------------------------------------------------------------ recovery
    async def recover(self) -> None:
        """Take over unfinished runs of registered workflows whose owner's lease expired."""
        now = time.time()
        stored = await self.store.claim_orphans(
            self.owner, now, now + self.settings.lease_seconds, self.registry.workflow_names()
        )
        for run in stored:
            await self._resume(run, now)

    async def _resume(self, stored: StoredRun, now: float) -> None:
        workflow = self.registry.get_workflow(stored.execution.workflow_name)
        if workflow is None or stored.execution.id in self._runs:
            return
        run = self._adopt_run(stored, workflow)
        run.span = self.observe.run_resumed(run.execution)
        for listener in self.resumed_listeners:
            listener(run)
        log.info("cloaca: resumed run %s of workflow '%s'", run.id, run.execution.workflow_name)
        await self._restart(run, now)

    def _adopt_run(self, stored: StoredRun, workflow: Workflow) -> Run:
        run = self._new_run(stored.execution, workflow)
        self._load(run, stored)
        self._runs[run.id] = run
        return run

    async def _restart(self, run: Run, now: float) -> None:
        """Go on with a run read back from the store: re-run its interrupted tasks (BY_RUN),
        start those whose dependencies have ended."""
        step = _Step(now)
        for state in run.tasks.values():
            status = state.record.status
            if status in ("Ready", "Running") and self.claims is None:
                state.record.status = "Ready"
                step.to_queue.append(state)
            elif status == "NotStarted" and state.remaining == 0:
                self._make_eligible(run, state, step)
        try:
            if self.claims is None:
                await self.store.save_progress(step.changed, None, self.owner)
            elif not await self.claim_store.commit_step(
                run.id, run.version, self.owner, now + self.settings.lease_seconds, step.changed
            ):
                raise RunLost(run.id)
            else:
                run.version += 1
        except Exception:
            self._abandon(step)
            raise
        await self._after_step(run, step)

    # ------------------------------------------------------------------ run control
    async def cancel(self, execution_id: str) -> bool:
        """End a run "Cancelled" wherever it executes; False if it had already ended."""
        cancelled = await self.store.cancel_execution(execution_id, time.time())
        if cancelled is None:
            raise ValueError(f"Unknown execution id: {execution_id}")
        if cancelled:
            stored = await self.store.get_run(execution_id)
            if stored is not None:
                self.observe.count_run(stored.execution.workflow_name, "Cancelled")
        if execution_id in self._runs:
            await self.observe_ended([execution_id])
        return cancelled

    async def retry(self, execution_id: str) -> Run:
        """Reopen a Failed or Cancelled run and go on with it here; its completed tasks stay."""
        if self._stopping:
            raise ValueError("retry_execution failed: the runner is shutting down")
        stored = await self.store.get_run(execution_id)
        if stored is None:
            raise ValueError(f"Unknown execution id: {execution_id}")
        workflow = self.registry.get_workflow(stored.execution.workflow_name)
        if workflow is None:
            raise ValueError(
                f"retry_execution failed: Workflow not found in registry: {stored.execution.workflow_name}"
            )
        now = time.time()
        reopened = await self.store.reset_for_retry(
            execution_id, self.owner, now, now + self.settings.lease_seconds
        )
        if reopened is None:
            raise ValueError(f"Unknown execution id: {execution_id}")
        run = self._adopt_run(reopened, workflow)
        run.watched = True
        run.span = self.observe.run_resumed(run.execution)
        log.info("cloaca: retrying run %s of workflow '%s'", run.id, run.execution.workflow_name)
        await self._restart(run, now)
        return run

    async def result(self, execution_id: str, timeout: Optional[float]) -> StoredRun:
        """The run once it has ended, whichever runner ends it; TimeoutError after `timeout`."""
        async with asyncio.timeout(timeout):
            run = self._runs.get(execution_id)
            if run is not None:
                run.watched = True
                return await asyncio.shield(run.done)
            delay = 0.01
            while True:
                stored = await self.store.get_run(execution_id)
                if stored is None:
                    raise ValueError(f"Unknown execution id: {execution_id}")
                if stored.execution.status in TERMINAL:
                    return stored
                run = self._runs.get(execution_id)
                if run is not None:  # taken over or claimed here meanwhile
                    run.watched = True
                    return await asyncio.shield(run.done)
                await asyncio.sleep(delay)
                delay = min(2 * delay, self.settings.lease_seconds / 10)

    async def observe_ended(self, execution_ids: Optional[list[str]] = None) -> None:
        """Stop, here, the runs (of these, or all this runner holds) that ended elsewhere:
        their attempts here are abandoned and their waiters told how they ended."""
        ids = list(self._runs) if execution_ids is None else execution_ids
        if not ids:
            return
        for execution_id in await self.store.ended_runs(ids):
            run = self._runs.get(execution_id)
            if run is None or run.stopped:
                continue
            stored = await self.store.get_run(execution_id)
            if stored is None:
                log.warning("cloaca: run %s vanished from %s", execution_id, self.store.description)
            self._stop(run, stored or run.snapshot())

    def _stop(self, run: Run, stored: StoredRun) -> None:
        run.stopped = True
        for state in run.tasks.values():
            if state.body is not None:
                state.body.cancel()
        self.finished(run, stored)

    def _load(self, run: Run, stored: StoredRun) -> None:
        """Bring the run in memory up to what the store holds: the run's record and version,
        the task rows given (all of them, or those changed since the run's version), and the
        counters that follow from them."""
        run.execution = stored.execution
        run.version = stored.version
        for record in stored.tasks:
            state = run.tasks.get(record.task_name)
            if state is not None:
                state.record = record
        run.next_seq = 1 + max((s.record.finish_seq or 0 for s in run.tasks.values()), default=0)
        run.open_tasks = sum(1 for s in run.tasks.values() if s.record.status not in TERMINAL)
        for state in run.tasks.values():
            state.remaining = sum(
                1 for d in set(state.definition.dependencies) if run.tasks[d].record.status not in TERMINAL
            )

    async def start_claimed(self, work: ClaimedWork, known: Mapping[str, int]) -> int:
        """BY_TASK: execute tasks claimed from the store, one slot already taken for each.

        `known` are the run versions the claim was made with (`work.run` holds only what
        changed since, for those). Returns how many were started; the caller gives back the
        slots of the others.
        """
        run = self._runs.get(work.execution_id)
        if run is None:
            whole = work.run if work.execution_id not in known else None
            stored = whole or await self.store.get_run(work.execution_id)  # forgotten meanwhile
            workflow = None if stored is None else self.registry.get_workflow(stored.execution.workflow_name)
            if stored is None or workflow is None:
                return 0  # the claims lapse with their lease and are taken over
            run = self._runs.get(work.execution_id)
            if run is None:
                run = self._new_run(stored.execution, workflow)
                self._load(run, stored)
                self._runs[run.id] = run
        started = 0
        async with run.lock:
            if work.run is not None and work.run.version > run.version:
                self._load(run, work.run)
            for record in work.tasks:
                state = run.tasks.get(record.task_name)
                if state is None:
                    log.error("cloaca: claimed task '%s' is not in workflow '%s' as registered here",
                              record.task_name, run.execution.workflow_name)
                    continue
                state.record = record
                self._start_body(run, state)
                started += 1
        return started

    async def _keep_leases(self) -> None:
        interval = self.settings.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                lease_until = time.time() + self.settings.lease_seconds
                if self.claims is not None:
                    await self.claim_store.renew_task_leases(self.owner, list(self._active_tasks), lease_until)
                    continue
                await self.store.renew_leases(self.owner, lease_until)
                await self.observe_ended()
                if self.settings.enable_recovery:
                    await self.recover()
            except Exception as exc:
                log.error("cloaca: lease renewal or recovery failed: %s", exc)

    def active_run(self, execution_id: str) -> Optional[Run]:
        """The run as this runner executes it, if it alone writes it (BY_RUN)."""
        return self._runs.get(execution_id) if self.claims is None else None

    def claimable_names(self) -> dict[SlotPool, list[str]]:
        """BY_TASK: the tasks of the registered workflows, by the slots their bodies take."""
        names: dict[SlotPool, list[str]] = {self.async_slots: [], self.slots: []}
        for workflow_name in self.registry.workflow_names():
            workflow = self.registry.get_workflow(workflow_name)
            for task_name, definition in (workflow.tasks.items() if workflow else ()):
                names[self.pool_of(definition)].append(task_name)
        return names

    def cached_versions(self) -> dict[str, int]:
        return {run_id: run.version for run_id, run in self._runs.items()}


@dataclass(frozen=True)
class Attempt:
    """How one execution of a task body ended."""

    ok: bool
    output: str = ""
    """The output context (JSON) when `ok`."""
    error: str = ""
    transient: bool = False
    """A failure that retry conditions treat as transient (a timeout)."""
    trace: Optional[str] = None
    """The formatted traceback of the exception, when there was one (its last 64 KB)."""
    exc: Optional[BaseException] = field(default=None, compare=False)

    @staticmethod
    def failed(error: str, transient: bool = False, trace: Optional[str] = None,
               exc: Optional[BaseException] = None) -> Attempt:
        if exc is not None and trace is None:
            trace = _traceback(exc)
        return Attempt(False, "", error, transient, trace, exc)


def _traceback(exc: Optional[BaseException] = None) -> str:
    """An exception (by default the one being handled), formatted from the first frame of
    the user's code (the engine's and the libraries' frames that called it are left out),
    bounded to its last `TRACEBACK_LIMIT` characters."""
    if exc is None:
        exc = sys.exc_info()[1]
    assert exc is not None
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None and _is_machinery(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    return text if len(text) <= TRACEBACK_LIMIT else "...\n" + text[-TRACEBACK_LIMIT:]


_MACHINERY = tuple(
    os.path.dirname(module.__file__ or "") + os.sep for module in (anyio, asyncio, concurrent.futures)
) + (os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,)
"""Where the frames that call a task body come from: anyio, asyncio, cloaca itself."""


def _is_machinery(filename: str) -> bool:
    return filename.startswith(_MACHINERY)


def _context(text: str) -> Context:
    """A fresh Context of JSON text (parsed only when a callback will see it)."""
    return Context._from_trusted(json.loads(text))


def _copy(record: TaskRecord) -> TaskRecord:
    return TaskRecord(**record.__dict__)


def _failed_copy(record: TaskRecord, error: str, now: float) -> TaskRecord:
    failed = _copy(record)
    failed.status, failed.error_message, failed.completed_at = "Failed", error, now
    return failed


def _later(a: TaskRecord, b: TaskRecord) -> bool:
    return ((a.finish_seq or 0), a.task_name) > ((b.finish_seq or 0), b.task_name)


def _log_write_error(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("cloaca: could not record a task start: %s", future.exception())
