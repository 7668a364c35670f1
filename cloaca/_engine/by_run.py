"""Work shared by run (`WorkSharing.BY_RUN`): the runner holding a run's lease executes
all of its tasks.

Tasks beyond the free slots wait in a local queue; their switch to Running is written
without waiting (a resumed run's Ready and Running tasks are both run again). Leases are
per run, renewed together; a run whose owner's lease expired is taken over whole.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any, Optional

from .._store.base import ExecutionRecord, RunLost, TaskRecord
from .run_state import TERMINAL, UNFINISHED_RUN, Run, Step, TaskState, copy_record
from .sharing import Engine, Sharing
from .slots import SlotPool

log = logging.getLogger("cloaca.run")


class RunSharing(Sharing):
    """A run executed whole by the runner that holds its lease."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self._queues: dict[SlotPool, deque[tuple[Run, TaskState]]] = {
            engine.slots: deque(), engine.async_slots: deque(),
        }

    async def start(self) -> None:
        if self.engine.settings.enable_recovery:
            await self.recover()

    async def stop(self) -> None:
        for queue in self._queues.values():
            queue.clear()

    # ------------------------------------------------------------------ the local queue
    def queue(self, run: Run, states: list[TaskState]) -> None:
        for state in states:
            self._queues[self.engine.pool_of(state.definition)].append((run, state))
        self.slot_freed()

    def slot_freed(self) -> None:
        """Hand free slots to queued tasks (their switch to Running is written lazily)."""
        engine = self.engine
        for pool, queue in self._queues.items():
            while queue and not engine.stopping and pool.try_acquire():
                run, state = queue.popleft()
                if run.id not in engine.runs or run.stopped:
                    pool.release()
                    continue
                engine.mark_running(state.record, time.time())
                state.pending_write = self._write_soon(state.record)
                engine.start_body(run, state)

    def _write_soon(self, record: TaskRecord) -> asyncio.Future[Any]:
        future = asyncio.ensure_future(
            self.engine.store.save_progress([copy_record(record)], None, self.engine.owner)
        )
        future.add_done_callback(_log_write_error)
        return future

    def retry_due(self, run: Run, state: TaskState) -> None:
        if run.id in self.engine.runs and not self.engine.stopping:
            self.queue(run, [state])

    def interrupted(self, state: TaskState, step: Step) -> None:
        state.record.status = "Ready"
        step.to_queue.append(state)

    # ------------------------------------------------------------------ writes
    async def commit(self, run: Run, state: TaskState, outcome: TaskRecord) -> Optional[Step]:
        step, finished = self.engine.outcome_step(run, state, outcome)
        try:
            if state.pending_write is not None:
                await asyncio.shield(state.pending_write)
                state.pending_write = None
            await self.engine.store.save_progress(step.changed, finished, self.engine.owner)
        except Exception:
            self.engine.abandon(step)
            raise
        return step

    async def write_restart(self, run: Run, step: Step) -> None:
        await self.engine.store.save_progress(step.changed, None, self.engine.owner)

    async def write_end(self, run: Run, finished: ExecutionRecord) -> None:
        await self.engine.store.save_progress([], finished, self.engine.owner)

    def write_failed(self, run: Run, exc: Exception) -> None:
        if isinstance(exc, RunLost):
            self._lost(run)
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
        self.engine.spawn(self._record_unwritable(run, f"could not persist progress: {exc}"), background=True)

    async def _record_unwritable(self, run: Run, error: str) -> None:
        """Store the run as Failed (its unfinished tasks too) once the store takes writes
        again (e.g. a full disk was given room). Until then it stays among the engine's
        runs, under this runner's lease, so that nobody resumes it meanwhile."""
        engine = self.engine
        interval = engine.settings.lease_seconds / 3
        while engine.runs.get(run.id) is run:
            now = time.time()
            tasks = [_failed_copy(s.record, error, now) for s in run.tasks.values()
                     if s.record.status not in TERMINAL]
            execution = ExecutionRecord(**run.execution.__dict__)
            execution.status, execution.error_message, execution.completed_at = "Failed", error, now
            try:
                await engine.store.save_progress(tasks, execution, engine.owner)
            except RunLost:
                break  # ended or taken over elsewhere meanwhile (RunEnded is a RunLost)
            except Exception:
                await asyncio.sleep(interval)
                continue
            log.info("cloaca: run %s stored as Failed: %s", run.id, error)
            break
        engine.forget(run)

    def _lost(self, run: Run) -> None:
        """Another runner took the run over while this one stalled past its lease."""
        engine = self.engine
        if engine.runs.get(run.id) is not run:
            return  # already known
        engine.forget(run)
        log.warning("cloaca: run %s was taken over by another runner while this one stalled past "
                    "its lease; this runner's late results are dropped", run.id)
        engine.spawn(self._await_end_elsewhere(run), background=True)

    async def _await_end_elsewhere(self, run: Run) -> None:
        """Tell the run's waiters and listeners how it ends, in whichever runner ends it."""
        engine = self.engine
        while True:
            await asyncio.sleep(engine.settings.lease_seconds / 3)
            try:
                stored = await engine.store.get_run(run.id)
            except Exception as exc:
                log.warning("cloaca: could not read run %s: %s", run.id, exc)
                continue
            if stored is None or stored.execution.status not in UNFINISHED_RUN:
                engine.finished(run, stored or run.snapshot())
                return

    def attempt_over(self, run: Run) -> None:
        pass  # the run stays until it ends: this runner executes all of it

    # ------------------------------------------------------------------ leases
    async def keep_leases(self, lease_until: float) -> None:
        engine = self.engine
        await engine.store.renew_leases(engine.owner, lease_until)
        await engine.observe_ended()
        if engine.settings.enable_recovery:
            await self.recover()

    async def recover(self) -> None:
        """Take over unfinished runs of registered workflows whose owner's lease expired."""
        engine = self.engine
        now = time.time()
        stored = await engine.store.claim_orphans(
            engine.owner, now, now + engine.settings.lease_seconds, engine.registry.workflow_names()
        )
        for run in stored:
            await engine.resume(run, now)

    def sole_writer_of(self, execution_id: str) -> Optional[Run]:
        return self.engine.runs.get(execution_id)


def _failed_copy(record: TaskRecord, error: str, now: float) -> TaskRecord:
    failed = copy_record(record)
    failed.status, failed.error_message, failed.completed_at = "Failed", error, now
    return failed


def _log_write_error(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("cloaca: could not record a task start: %s", future.exception())
