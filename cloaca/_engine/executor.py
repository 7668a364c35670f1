"""The async core: runs workflow executions as DAGs, persisting every state change.

A run lives in memory only while this runner executes it; the store holds the truth. Each
step (a task finished, so its dependents became ready, maybe the run ended) is written in
one store call, awaited before anything that depends on it starts.

Who executes what, and how a step is written, is the engine's `Sharing` (sharing.py), which
the store's `WorkSharing` picks: by run (by_run.py) or by task (by_task.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import json
import logging
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Awaitable, Callable, Mapping, Optional

import anyio
import anyio.to_thread

from .._cancelling import cancel_and_wait
from .._context import Context
from .._graphs.invocation import invoke_after_body
from .._ids import time_ordered_id
from .._registry import Registry
from .._rules import evaluate_rule
from .._secrets import SecretResolver
from .._store.base import (
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
from .admission import Admission
from .by_run import RunSharing
from .by_task import TaskSharing
from .callbacks import run_callback
from .deadline import Deadlines, cancelled_from_outside
from .merge import merge_contexts
from .observe import Observer, spans_on
from .run_state import TERMINAL, Run, Step, TaskState, copy_record
from .settings import EngineSettings
from .sharing import Sharing
from .slots import SlotPool, TaskSlot
from .store_retry import StoreRetryStopped, until_stored

log = logging.getLogger("cloaca.run")

RUN_STATUSES = ("Pending", "Running", "Completed", "Failed", "Cancelled")
RULES_NOT_SATISFIED = "Trigger rules not satisfied"
TRACEBACK_LIMIT = 64 * 1024
"""Characters of a failed attempt's traceback that are kept (its end, where the error is)."""
SHARING: dict[WorkSharing, type[Sharing]] = {WorkSharing.BY_RUN: RunSharing, WorkSharing.BY_TASK: TaskSharing}
"""The sharing each store's `WorkSharing` names."""
NO_VARS = contextvars.Context()
"""What the engine's own done-callbacks run in: they read no context variable, and passing
one spares a copy of the current context per callback."""
DEADLINE_RESOLUTION = 0.05
"""Seconds by which a task's or a wait's timeout may pass before it is enforced."""


class EngineStopped(Exception):
    """The engine stopped before the run finished."""


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
        self.runs: dict[str, Run] = {}
        """The runs this runner executes now (by id)."""
        self._bodies: set[asyncio.Task[Any]] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._lease_task: Optional[asyncio.Task[None]] = None
        self.stopping = False
        self.resumed_listeners: list[Callable[[Run], None]] = []
        self.active_tasks: set[tuple[str, str]] = set()
        """(run id, task name) of the attempts executing here."""
        self.sharing: Sharing = SHARING[store.work_sharing](self)
        self.deadlines = Deadlines(DEADLINE_RESOLUTION)
        """Of task attempts and of waits for runs."""
        self.admission = Admission(store.runs_created_at_once)
        """Runs being created at once: later submissions wait their turn, so that runs
        submitted together start, and end, in the order they came."""

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Take the work waiting in the store (per the sharing); keep leases."""
        await self.sharing.start()
        self._lease_task = asyncio.get_running_loop().create_task(self._keep_leases())

    async def stop(self, grace_seconds: float) -> None:
        """Stop taking work, let running bodies finish up to the grace period, cancel the rest.

        What did not finish stays resumable: its store rows are left as they are and its
        leases are released so another runner can take it over at once.
        """
        self.stopping = True
        if self._lease_task is not None:
            self._lease_task.cancel()
        await self.sharing.stop()
        if self._bodies:
            await asyncio.wait(set(self._bodies), timeout=grace_seconds)
        await cancel_and_wait(list(self._bodies) + list(self._background),
                              f"stopping the engine after its {grace_seconds:g}s grace period")
        self._bodies.clear()  # (a body cancelled before it began never took itself out)
        for run in list(self.runs.values()):
            run.done.set_exception(
                EngineStopped(
                    f"the runner shut down before workflow '{run.execution.workflow_name}' "
                    f"finished (execution {run.id}); it resumes when a runner starts on "
                    "this database"
                )
            )
        self.runs.clear()
        try:
            await self.store.release_leases(self.owner)
        except Exception as exc:
            log.warning("cloaca: could not release leases on shutdown: %s", exc)

    @property
    def running(self) -> int:
        return len(self.runs)

    # ------------------------------------------------------------------ submission
    async def submit(
        self, workflow_name: str, input_json: str, fire: Optional[FireRequest] = None,
        link_fire_id: Optional[str] = None, trace_parent: Optional[Mapping[str, str]] = None,
        attributes: Optional[Mapping[str, str]] = None,
    ) -> Optional[Run]:
        """Persist and start a run; None if `fire` was refused as a duplicate.

        `trace_parent` is the trace context it was submitted in; `attributes` describe where
        it came from (e.g. its cron schedule), for its span. A caller cancelled meanwhile
        leaves the run going, saved or not yet."""
        created: asyncio.Future[Optional[Run]] = asyncio.get_running_loop().create_future()
        self.admission.enter(partial(self._begin, created, True, contextvars.copy_context(), workflow_name,
                                     input_json, fire, link_fire_id, trace_parent, attributes))
        return await created

    def _begin(
        self, caller: asyncio.Future[Any], to_creation: bool, context: contextvars.Context,
        workflow_name: str, input_json: str, fire: Optional[FireRequest], link_fire_id: Optional[str],
        trace_parent: Optional[Mapping[str, str]], attributes: Optional[Mapping[str, str]],
    ) -> bool:
        """Admitted: make the run and have it inserted, then started (`Admission.Begin`).
        `caller` gets the run once created (None if refused) if `to_creation`, else how the
        run ended; or why it could not be made. Its task bodies start in (a copy of) the
        caller's `context`, wherever this is called from."""
        if caller.done():
            return False  # its caller has gone (cancelled, timed out)
        try:
            run, step = self._prepare(workflow_name, input_json, fire, trace_parent, attributes)
            # Continued in a callback, not in the caller's task: a caller cancelled meanwhile
            # leaves the run going, saved or not yet.
            inserting = asyncio.ensure_future(self._insert(run, fire, link_fire_id))
        except Exception as exc:
            caller.set_exception(exc)
            return False
        created = caller if to_creation else None
        if not to_creation:
            run.done.add(caller)
        inserting.add_done_callback(partial(self._inserted, run, step, fire, link_fire_id, created),
                                    context=context)
        return True

    def _inserted(
        self, run: Run, step: Step, fire: Optional[FireRequest], link_fire_id: Optional[str],
        created: Optional[asyncio.Future[Optional[Run]]], inserting: asyncio.Future[bool],
    ) -> None:
        if not inserting.cancelled() and inserting.exception() is None:
            self._created(run, step, created, inserting.result())
            return
        failed = EngineStopped("the run's insert was cancelled") if inserting.cancelled() else inserting.exception()
        assert failed is not None
        self.spawn(self._insert_again(run, step, fire, link_fire_id, created, failed), background=True)

    async def _insert_again(
        self, run: Run, step: Step, fire: Optional[FireRequest], link_fire_id: Optional[str],
        created: Optional[asyncio.Future[Optional[Run]]], failed: Exception,
    ) -> None:
        try:
            stored = await self._create_again(run, fire, link_fire_id, failed)
        except BaseException as exc:  # (cancelled: the runner stopped while it was retried)
            error = exc if isinstance(exc, Exception) else self._not_known_saved(run, failed)
            run.done.set_exception(error)
            if created is not None and not created.done():
                created.set_exception(error)
            self._created(run, step, created, False)
            if error is not exc:
                raise
            return
        self._created(run, step, created, stored)

    def _created(self, run: Run, step: Step, created: Optional[asyncio.Future[Optional[Run]]],
                 stored: bool) -> None:
        """Once the run's insert is over: start it if it was `stored`, else give back what
        its first step took; then the next submission in line begins."""
        if stored:
            run.watched = True
            self.runs[run.id] = run
        else:
            self.abandon(step)
            self.observe.run_not_created(run.span)
        if created is not None and not created.done():
            created.set_result(run if stored else None)
        if stored and self._apply(run, step):
            self.spawn(self._finish(run, step.now), background=True)
        self.admission.leave()

    def _prepare(
        self, workflow_name: str, input_json: str, fire: Optional[FireRequest],
        trace_parent: Optional[Mapping[str, str]], attributes: Optional[Mapping[str, str]],
    ) -> tuple[Run, Step]:
        """A new run of `workflow_name` and its first step (its roots made eligible)."""
        if self.stopping:
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
        run = self.new_run(execution, workflow)
        if fire is not None:
            attributes = {**(attributes or {}), "cloaca.trigger_name": fire.trigger_name}
        run.span = self.observe.run_started(execution, trace_parent, attributes, run.traced)
        for state in run.tasks.values():
            state.remaining = len(set(state.definition.dependencies))
        step = Step(now)
        for name in workflow.roots:
            self._make_eligible(run, run.tasks[name], step)
        return run, step

    def _insert(self, run: Run, fire: Optional[FireRequest], link_fire_id: Optional[str]) -> Awaitable[bool]:
        """Insert the run (once; `_create_again` when that fails)."""
        return self.store.create_execution(
            run.execution, [s.record for s in run.tasks.values()], self.owner,
            time.time() + self.settings.lease_seconds, fire, link_fire_id,
        )

    async def _create_again(
        self, run: Run, fire: Optional[FireRequest], link_fire_id: Optional[str], failed: Exception,
    ) -> bool:
        """After an insert that failed with `failed`: insert again while the database is
        unreachable, unless an attempt whose reply was lost did insert it."""
        async def again() -> bool:
            return await self.store.get_run(run.id) is not None or await self._insert(run, fire, link_fire_id)

        try:
            return await until_stored(self.store, f"new run {run.id}", again, lambda: self.stopping, failed)
        except StoreRetryStopped as exc:
            raise self._not_known_saved(run, exc.__cause__) from None

    def _not_known_saved(self, run: Run, cause: Optional[BaseException]) -> RuntimeError:
        return RuntimeError(
            f"Workflow execution failed: the runner shut down while {self.store.description} "
            f"was unreachable, before run {run.id} of workflow "
            f"'{run.execution.workflow_name}' was known to be saved ({cause}); if it was, "
            "it resumes when a runner starts on this database"
        )

    def abandon(self, step: Step) -> None:
        """Give back the slots taken by a step that was not committed."""
        for state in step.to_start:
            self.pool_of(state.definition).release()

    def pool_of(self, definition: TaskDefinition) -> SlotPool:
        """The slots that bound this task's bodies: async ones, or threads."""
        return self.async_slots if definition.is_async else self.slots

    def new_run(self, execution: ExecutionRecord, workflow: Workflow) -> Run:
        tasks = {
            name: TaskState(definition, TaskRecord(execution.id, name, "NotStarted"), 0)
            for name, definition in workflow.tasks.items()
        }
        return Run(execution, workflow, tasks, open_tasks=len(tasks), traced=spans_on())

    async def execute(
        self, workflow_name: str, input_json: str, trace_parent: Optional[Mapping[str, str]],
        timeout: Optional[float],
    ) -> StoredRun:
        """Submit a run and wait for its end; ValueError after `timeout` seconds (the run goes
        on). A caller cancelled meanwhile leaves the run going, saved or not yet."""
        ended: asyncio.Future[StoredRun] = asyncio.get_running_loop().create_future()
        try:
            with self.deadlines.limit(timeout):
                self.admission.enter(partial(self._begin, ended, False, contextvars.copy_context(),
                                             workflow_name, input_json, None, None, trace_parent, None))
                return await ended
        except TimeoutError:
            raise ValueError(f"Workflow execution failed: Workflow timeout after {timeout:g}s") from None
        except EngineStopped as exc:
            raise ValueError(f"Workflow execution failed: {exc}") from None

    # ------------------------------------------------------------------ scheduling
    def _make_eligible(self, run: Run, state: TaskState, step: Step) -> None:
        """All dependencies are terminal: skip the task, or start it (now, or when a slot frees)."""
        record = state.record
        step.changed.append(record)
        if not self._rule_holds(run, state):
            record.status = "Skipped"
            record.completed_at = step.now
            record.error_message = RULES_NOT_SATISFIED
            self._task_terminal(run, state, step)
        elif self.pool_of(state.definition).try_acquire():
            self.mark_running(record, step.now)
            step.to_start.append(state)
        else:
            record.status = "Ready"
            step.to_queue.append(state)

    def _rule_holds(self, run: Run, state: TaskState) -> bool:
        rule = state.definition.trigger_rule
        if rule.get("type") == "Always":
            return True
        statuses = {name: s.record.status for name, s in run.tasks.items()}
        try:
            return evaluate_rule(rule, statuses, self._input_data(run, state))
        except Exception as exc:
            log.error("cloaca: trigger rule of task '%s' failed to evaluate: %s", state.definition.id, exc)
            return False

    def _task_terminal(self, run: Run, state: TaskState, step: Step) -> None:
        run.open_tasks -= 1
        for child_name in run.workflow.dependents_of(state.record.task_name):
            child = run.tasks[child_name]
            child.remaining -= 1
            if child.remaining == 0 and child.record.status == "NotStarted":
                self._make_eligible(run, child, step)

    @staticmethod
    def mark_running(record: TaskRecord, now: float) -> None:
        record.status = "Running"
        record.attempt += 1
        record.started_at = now
        record.not_before = None

    async def _after_step(self, run: Run, step: Step) -> None:
        """Once a step is committed: start or queue what became runnable, or finish the run."""
        if self._apply(run, step):
            await self._finish(run, step.now)

    def _apply(self, run: Run, step: Step) -> bool:
        """Start or queue what a committed step made runnable; whether the run is over."""
        for state in step.to_start:
            self.start_body(run, state)
        if step.to_queue:
            self.sharing.queue(run, step.to_queue)
        return run.open_tasks == 0

    def start_body(self, run: Run, state: TaskState, held: bool = True) -> None:
        """Execute a task that is Running under this runner: it holds a slot, or (not `held`)
        waits in line for one first (its lease kept meanwhile)."""
        pool = self.pool_of(state.definition)
        slot = TaskSlot(pool, held=held, on_release=self.sharing.slot_freed)
        # (it leaves `_bodies` itself: a done-callback each would cost a loop turn)
        self._bodies.add(asyncio.get_running_loop().create_task(self._run_task(run, state, slot)))

    def spawn(self, coro: Any, background: bool = False) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        group = self._background if background else self._bodies
        group.add(task)
        task.add_done_callback(group.discard, context=NO_VARS)

    # ------------------------------------------------------------------ one attempt
    async def _run_task(self, run: Run, state: TaskState, slot: TaskSlot) -> None:
        key = (run.id, state.record.task_name)
        run.active += 1
        self.active_tasks.add(key)
        try:
            if slot.held or await self._slot_came(run, slot):
                await self._run_task_steps(run, state, slot)
        except Exception as exc:
            self._persist_failed(run, exc)
        finally:
            run.active -= 1
            self.active_tasks.discard(key)
            self._bodies.discard(asyncio.current_task())
            self.sharing.attempt_over(run)

    async def _slot_came(self, run: Run, slot: TaskSlot) -> bool:
        """Wait in line for the slot; False (and the slot given back) if the attempt is no
        longer to be made once it comes: the runner stops (the task's lease is released
        with the others), or the run ended elsewhere."""
        await slot.acquire()
        if self.stopping or run.stopped:
            slot.close()
            self.sharing.slot_freed()
            return False
        return True

    def _persist_failed(self, run: Run, exc: Exception) -> None:
        if isinstance(exc, RunEnded):
            self.spawn(self.observe_ended([run.id]), background=True)
        else:
            self.sharing.write_failed(run, exc)

    def forget(self, run: Run) -> None:
        """The run is no longer executed here."""
        if self.runs.get(run.id) is run:
            del self.runs[run.id]

    async def let_go(self, execution_id: str) -> None:
        """Stop holding a run whose first step here was refused: it was cancelled, or another
        runner went on with it. Whoever waits for it here learns how it ends from the store."""
        await self.observe_ended([execution_id])
        run = self.runs.get(execution_id)
        if run is not None:
            self.forget(run)
            self.observe.run_let_go(run.span)
            run.span = None

    async def _run_task_steps(self, run: Run, state: TaskState, slot: TaskSlot) -> None:
        definition = state.definition
        input_json = self._input_json(run, state)
        traced = self.observe.attempt_started(run.execution, state.record, run.span, run.traced)
        state.body = asyncio.current_task()
        try:
            if definition.invokes is None:
                attempt = await self._attempt_body(definition, input_json, slot)
            else:
                attempt = await self._attempt_and_invoke(definition, input_json, slot)
        except BaseException:
            self.observe.attempt_abandoned(traced)
            raise
        finally:
            state.body = None
            slot.close()
            self.sharing.slot_freed()
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

    async def _attempt_and_invoke(self, definition: TaskDefinition, input_json: str, slot: TaskSlot) -> Attempt:
        """Run the body once, then the graph it invokes."""
        attempt = await self._attempt_body(definition, input_json, slot)
        if attempt.ok:
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
            with self.deadlines.limit(timeout):
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

    async def _call(self, run: Run, state: TaskState, callback: Callable[..., Any], *args: Any) -> None:
        error = await run_callback(callback, args, self._thread_limiter, self.settings.task_timeout_seconds)
        if error is not None:
            self.observe.callback_failed(run.execution, state.record, callback, error)

    # ------------------------------------------------------------------ outcomes
    def _complete(self, run: Run, state: TaskState, output_json: str) -> Awaitable[bool]:
        outcome = copy_record(state.record)
        outcome.status = "Completed"
        outcome.completed_at = time.time()
        outcome.output_context = output_json
        outcome.error_message = None
        return self._settle(run, state, outcome)

    async def _fail_attempt(self, run: Run, state: TaskState, attempt: Attempt) -> None:
        now = time.time()
        outcome = copy_record(state.record)
        outcome.error_message = attempt.error
        if attempt.trace is not None:
            outcome.traceback = attempt.trace
        policy = state.definition.retry_policy
        tries = outcome.attempt - outcome.attempt_base  # attempts since the run was last retried
        if not self.stopping and policy._should_retry_error(tries, attempt.error, attempt.transient):
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

    def _retry(self, run: Run, state: TaskState) -> None:
        self.sharing.retry_due(run, state)

    def _adopt(self, run: Run, state: TaskState, outcome: TaskRecord) -> None:
        """Make an attempt's outcome the task's record (numbered if the task is over).

        Adopting the same outcome again, after a refused step, only renumbers it.
        """
        state.record = outcome
        if outcome.status in TERMINAL:
            outcome.finish_seq = run.next_seq
            run.next_seq += 1

    def outcome_step(self, run: Run, state: TaskState, outcome: TaskRecord) -> tuple[Step, Optional[ExecutionRecord]]:
        """Adopt an outcome and compute what it changes: unblocked tasks, maybe the run's end."""
        self._adopt(run, state, outcome)
        now = outcome.completed_at or time.time()
        step = Step(now, [state.record])
        finished = None
        if outcome.status in TERMINAL:
            self._task_terminal(run, state, step)
            if run.open_tasks == 0:
                finished = self._finished_record(run, now)
        return step, finished

    async def _settle(self, run: Run, state: TaskState, outcome: TaskRecord) -> bool:
        """Write an attempt's outcome with the step it causes, then go on; False if the task
        was lost to another runner (its result is dropped)."""
        step = await self.sharing.commit(run, state, outcome)
        if step is None:
            return False
        await self._after_step(run, step)
        return True

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
        if run.done.done():
            return  # finished already (steps written together: each of their attempts sees the end)
        if run.execution.completed_at is None:  # e.g. every task was skipped at submission
            await self.sharing.write_end(run, self._finished_record(run, now))
        self.finished(run, run.snapshot(), ended_here=True)

    def finished(self, run: Run, stored: StoredRun, ended_here: bool = False) -> None:
        """The run has ended (here, or in another runner): tell its listeners and waiters."""
        self.forget(run)
        self.observe.run_ended(stored.execution, run.span, counted=ended_here)
        run.span = None
        for listener in run.on_finish:
            listener(run)
        run.done.set_result(stored)

    # ------------------------------------------------------------------ contexts
    def _input_json(self, run: Run, state: TaskState) -> str:
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

    def _input_data(self, run: Run, state: TaskState) -> dict[str, Any]:
        return json.loads(self._input_json(run, state))

    # ------------------------------------------------------------------ recovery
    async def resume(self, stored: StoredRun, now: float) -> None:
        workflow = self.registry.get_workflow(stored.execution.workflow_name)
        if workflow is None or stored.execution.id in self.runs:
            return
        run = self._adopt_run(stored, workflow)
        run.span = self.observe.run_resumed(run.execution, run.traced)
        for listener in self.resumed_listeners:
            listener(run)
        log.info("cloaca: resumed run %s of workflow '%s'", run.id, run.execution.workflow_name)
        await self._restart(run, now)

    def _adopt_run(self, stored: StoredRun, workflow: Workflow) -> Run:
        run = self.new_run(stored.execution, workflow)
        run.load(stored)
        self.runs[run.id] = run
        return run

    async def _restart(self, run: Run, now: float) -> None:
        """Go on with a run read back from the store: its interrupted tasks (as the sharing
        says), and those whose dependencies have ended."""
        step = Step(now)
        for state in run.tasks.values():
            status = state.record.status
            if status in ("Ready", "Running"):
                self.sharing.interrupted(state, step)
            elif status == "NotStarted" and state.remaining == 0:
                self._make_eligible(run, state, step)
        try:
            await self.sharing.write_restart(run, step)
        except Exception:
            self.abandon(step)
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
        if execution_id in self.runs:
            await self.observe_ended([execution_id])
        return cancelled

    async def retry(self, execution_id: str) -> str:
        """Reopen a Failed or Cancelled run and go on with it here; its completed tasks stay.
        A run whose workflow is not registered here is reopened Pending instead, for a
        runner that has it to take over."""
        if self.stopping:
            raise ValueError("retry_execution failed: the runner is shutting down")
        stored = await self.store.get_run(execution_id)
        if stored is None:
            raise ValueError(f"Unknown execution id: {execution_id}")
        workflow = self.registry.get_workflow(stored.execution.workflow_name)
        if workflow is None:
            return await self._reopen_for_others(stored)
        now = time.time()
        reopened = await self.store.reset_for_retry(
            execution_id, self.owner, now, now + self.settings.lease_seconds
        )
        if reopened is None:
            raise ValueError(f"Unknown execution id: {execution_id}")
        if execution_id in self.runs:  # this runner's own recovery took it up meanwhile
            return execution_id
        run = self._adopt_run(reopened, workflow)
        run.watched = True
        run.span = self.observe.run_resumed(run.execution, run.traced)
        log.info("cloaca: retrying run %s of workflow '%s'", run.id, run.execution.workflow_name)
        try:
            await self._restart(run, now)
        except RunLost:  # cancelled meanwhile, or (by task) started by another runner
            await self.let_go(run.id)
        return run.id

    async def _reopen_for_others(self, stored: StoredRun) -> str:
        execution_id, name = stored.execution.id, stored.execution.workflow_name
        if await self.store.reset_for_retry(execution_id, None, time.time(), None) is None:
            raise ValueError(f"Unknown execution id: {execution_id}")
        log.info("cloaca: run %s reopened for a retry; workflow '%s' is not registered here, so "
                 "it waits (Pending) for a runner that has it", execution_id, name)
        return execution_id

    async def result(self, execution_id: str, timeout: Optional[float]) -> StoredRun:
        """The run once it has ended, whichever runner ends it; TimeoutError after `timeout`."""
        async with asyncio.timeout(timeout):
            run = self.runs.get(execution_id)
            if run is not None:
                run.watched = True
                return await run.done.wait()
            delay = 0.01
            while True:
                stored = await self.store.get_run(execution_id)
                if stored is None:
                    raise ValueError(f"Unknown execution id: {execution_id}")
                if stored.execution.status in TERMINAL:
                    return stored
                run = self.runs.get(execution_id)
                if run is not None:  # taken over or claimed here meanwhile
                    run.watched = True
                    return await run.done.wait()
                await asyncio.sleep(delay)
                delay = min(2 * delay, self.settings.lease_seconds / 10)

    async def observe_ended(self, execution_ids: Optional[list[str]] = None) -> None:
        """Stop, here, the runs (of these, or all this runner holds) that ended elsewhere:
        their attempts here are abandoned and their waiters told how they ended."""
        ids = list(self.runs) if execution_ids is None else execution_ids
        if not ids:
            return
        for execution_id in await self.store.ended_runs(ids):
            run = self.runs.get(execution_id)
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

    async def _keep_leases(self) -> None:
        interval = self.settings.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sharing.keep_leases(time.time() + self.settings.lease_seconds)
            except Exception as exc:
                log.error("cloaca: lease renewal or recovery failed: %s", exc)

    def active_run(self, execution_id: str) -> Optional[Run]:
        """The run as this runner executes it, if it alone writes it (memory is current)."""
        return self.sharing.sole_writer_of(execution_id)

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


def _later(a: TaskRecord, b: TaskRecord) -> bool:
    return ((a.finish_seq or 0), a.task_name) > ((b.finish_seq or 0), b.task_name)

