"""Work shared by task (`WorkSharing.BY_TASK`): any runner claims any ready task of any run
(`claims.TaskClaims`), and each scheduling step is written compare-and-set on the run's
version, computed again from the stored run when another runner wrote first.

Tasks beyond the free slots are left Ready in the store for whoever is free; leases are
per task, and a task whose lease expired is taken over by the next claim.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Mapping, Optional

from .._store.base import (
    ClaimedWork,
    ClaimStore,
    ExecutionRecord,
    RunLost,
    StoredRun,
    TaskRecord,
)
from .claims import TaskClaims
from .run_state import UNFINISHED_RUN, Run, Step, TaskState, copy_record
from .sharing import Engine, Sharing
from .slots import SlotPool
from .store_retry import until_stored

log = logging.getLogger("cloaca.run")

PENDING_BATCH = 64
"""Pending runs claimed at most per look (the others at the next one)."""

UNKNOWN_VERSION = -1
"""A run's version after a write that may or may not have been committed; the next step
or claim of the run reads all of its rows again (its memory may hold changes that were
never stored)."""


class _Outcome:
    """An attempt's outcome waiting to be written with its run's next step."""

    __slots__ = ("state", "outcome", "step", "error", "done")

    def __init__(self, state: TaskState, outcome: TaskRecord) -> None:
        self.state = state
        self.outcome = outcome
        self.step: Optional[Step] = None
        self.error: Optional[BaseException] = None
        self.done = False


class TaskSharing(Sharing):
    """Tasks claimed one by one by whichever runner is free."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        store = engine.store
        if not isinstance(store, ClaimStore):
            raise TypeError(f"{type(store).__name__} shares work by task but is no ClaimStore")
        self.store: ClaimStore = store
        self.claims = TaskClaims(self, store, engine.settings.poll_interval_seconds)
        self._claimable: tuple[int, dict[SlotPool, tuple[str, ...]]] = (-1, {})
        """`claimable_names()` and the registry's workflows generation it was made from."""

    async def start(self) -> None:
        await self.claims.start()
        if self.engine.settings.enable_recovery:
            await self.start_pending()

    async def stop(self) -> None:
        await self.claims.stop()

    def queue(self, run: Run, states: list[TaskState]) -> None:
        # Left Ready in the store, for any runner to claim; here, as soon as a slot is free
        # (one may have freed while the step was being written).
        self.claims.wake()

    def slot_freed(self) -> None:
        self.claims.slot_freed()

    def retry_due(self, run: Run, state: TaskState) -> None:
        self.claims.wake()  # the task is Ready in the store: whoever is free claims it

    def interrupted(self, state: TaskState, step: Step) -> None:
        pass  # Ready tasks are claimed, Running ones taken over once their lease expires

    def attempt_over(self, run: Run) -> None:
        if not run.watched and run.active == 0:
            self.engine.forget(run)  # nobody here waits for it: its rows are read again when claimed

    def write_failed(self, run: Run, exc: Exception) -> None:
        # The task's lease is no longer renewed: a runner takes it over when it expires.
        log.error("cloaca: could not persist a step of run %s (its task will be retried "
                  "when its lease expires): %s", run.id, exc)

    async def keep_leases(self, lease_until: float) -> None:
        engine = self.engine
        await self.store.renew_task_leases(engine.owner, list(engine.active_tasks), lease_until)
        if engine.settings.enable_recovery:
            await self.start_pending()

    async def start_pending(self) -> None:
        """Start the Pending runs of the workflows registered here: runs retried by a
        runner that does not have their workflow."""
        engine = self.engine
        now = time.time()
        for stored in await self.store.claim_pending_runs(
            engine.owner, now, now + engine.settings.lease_seconds, engine.registry.workflow_names(),
            PENDING_BATCH,
        ):
            try:
                await engine.resume(stored, now)
            except RunLost:  # cancelled, or started by another runner, meanwhile
                await engine.let_go(stored.execution.id)

    def sole_writer_of(self, execution_id: str) -> Optional[Run]:
        return None  # another runner may write any step of it

    # ------------------------------------------------------------------ claims
    async def start_claimed(self, work: ClaimedWork, known: Mapping[str, int]) -> None:
        """Execute tasks claimed from the store, each in a free slot, or once one frees up
        (the slots were not taken for the claim: this runner's own steps may have taken
        them meanwhile).

        `known` are the run versions the claim was made with (`work.run` holds only what
        changed since, for those).
        """
        engine = self.engine
        run = engine.runs.get(work.execution_id)
        if run is None:
            whole = work.run if work.execution_id not in known else None
            stored = whole or await engine.store.get_run(work.execution_id)  # forgotten meanwhile
            workflow = None if stored is None else engine.registry.get_workflow(stored.execution.workflow_name)
            if stored is None or workflow is None:
                return  # the claims lapse with their lease and are taken over
            run = engine.runs.get(work.execution_id)
            if run is None:
                run = engine.new_run(stored.execution, workflow)
                run.load(stored)
                engine.runs[run.id] = run
        async with run.lock:
            if work.run is not None and work.run.version > run.version:
                run.load(work.run)
            for record in work.tasks:
                state = run.tasks.get(record.task_name)
                if state is None:
                    log.error("cloaca: claimed task '%s' is not in workflow '%s' as registered here",
                              record.task_name, run.execution.workflow_name)
                    continue
                state.record = record
                engine.start_body(run, state, held=engine.pool_of(state.definition).try_acquire())

    def claimable_names(self) -> dict[SlotPool, tuple[str, ...]]:
        """The tasks of the registered workflows, by the slots their bodies take (made again
        only when the registered workflows change)."""
        generation = self.engine.registry.workflows_generation()
        if self._claimable[0] != generation:
            self._claimable = (generation, self._names_by_pool())
        return self._claimable[1]

    def _names_by_pool(self) -> dict[SlotPool, tuple[str, ...]]:
        engine = self.engine
        names: dict[SlotPool, list[str]] = {engine.async_slots: [], engine.slots: []}
        for workflow_name in engine.registry.workflow_names():
            workflow = engine.registry.get_workflow(workflow_name)
            for task_name, definition in (workflow.tasks.items() if workflow else ()):
                names[engine.pool_of(definition)].append(task_name)
        return {pool: tuple(task_names) for pool, task_names in names.items()}

    def cached_versions(self) -> dict[str, int]:
        return {run_id: run.version for run_id, run in self.engine.runs.items()}

    # ------------------------------------------------------------------ writes
    def _lease_until(self) -> float:
        return time.time() + self.engine.settings.lease_seconds

    async def write_restart(self, run: Run, step: Step) -> None:
        if not await self.store.commit_step(run.id, run.version, self.engine.owner, self._lease_until(), step.changed):
            raise RunLost(run.id)
        run.version += 1

    async def write_end(self, run: Run, finished: ExecutionRecord) -> None:
        engine = self.engine
        if await until_stored(
            engine.store, f"the end of run {run.id}",
            lambda: self.store.commit_step(run.id, run.version, engine.owner, finished.completed_at or time.time(),
                                           [], finished),
            lambda: engine.stopping,
        ):
            run.version += 1

    async def commit(self, run: Run, state: TaskState, outcome: TaskRecord) -> Optional[Step]:
        """Write the step against the run's version; if another runner wrote first, compute
        it again under the run's row lock. None if the task is no longer ours.

        Outcomes of one run that arrive while a step of it is being written wait, and are
        then written together, as one step (one round trip for all of them)."""
        mine = _Outcome(state, outcome)
        if not run.lock.locked() and not run.commit_queue:  # nothing to write it with
            async with run.lock:
                await self._commit_batch(run, [mine], mine)
        else:
            if run.commit_queue is None:
                run.commit_queue = []
            run.commit_queue.append(mine)
            async with run.lock:
                if not mine.done:  # else written meanwhile, with those of another attempt
                    batch, run.commit_queue = run.commit_queue, []
                    await self._commit_batch(run, batch, mine)
        if mine.error is not None:
            raise mine.error
        return mine.step

    async def _commit_batch(self, run: Run, batch: list[_Outcome], mine: _Outcome) -> None:
        """Write the outcomes of `batch` (the run's lock held); each gets its step or error,
        `mine` the step that the others' are part of."""
        try:
            await self._commit_together(run, batch, mine)
        except Exception as exc:
            for entry in batch:
                if not entry.done:
                    entry.error = exc
        except BaseException:  # cancelled (the runner stops): the others stop too
            run.version = UNKNOWN_VERSION  # whether it was written is unknown
            for entry in batch:
                if not entry.done:
                    entry.error = asyncio.CancelledError()
            raise
        finally:
            for entry in batch:
                entry.done = True

    async def _commit_together(self, run: Run, batch: list[_Outcome], mine: _Outcome) -> None:
        """The outcomes of `batch` as one step, applied in order as single ones would be;
        `mine` gets the step (it starts what the step unblocked, and ends the run if it
        ended), the others an empty one. If the write is refused or fails, each is written
        on its own."""
        engine = self.engine
        step, finished = engine.outcome_step(run, batch[0].state, batch[0].outcome)
        for entry in batch[1:]:
            one, ended = engine.outcome_step(run, entry.state, entry.outcome)
            step.now = max(step.now, one.now)
            step.changed += one.changed
            step.to_start += one.to_start
            step.to_queue += one.to_queue
            finished = ended or finished
        try:
            committed = await self.store.commit_step(
                run.id, run.version, engine.owner, self._lease_until(), step.changed, finished,
            )
        except Exception as exc:
            engine.abandon(step)
            started = [copy_record(s.record) for s in step.to_start]
            for entry in batch:  # the first finds the step stored if it was, and starts these
                await self._settle_alone(entry, self._write_again(run, entry.state, entry.outcome, exc, started))
                started = []
            return
        if committed:
            run.version += 1
            for entry in batch:
                entry.step = step if entry is mine else Step(step.now)
            return
        engine.abandon(step)
        undone = [r.task_name for r in step.changed]
        for entry in batch:
            await self._settle_alone(entry, self._commit_alone(run, entry.state, entry.outcome, undone))

    async def _commit_alone(
        self, run: Run, state: TaskState, outcome: TaskRecord, undone: list[str]
    ) -> Optional[Step]:
        try:
            return await self._commit_locked(run, state, outcome, undone)
        except Exception as exc:
            return await self._write_again(run, state, outcome, exc, [])

    @staticmethod
    async def _settle_alone(entry: _Outcome, writing: Awaitable[Optional[Step]]) -> None:
        try:
            entry.step = await writing
        except Exception as exc:
            entry.error = exc
        entry.done = True

    async def _write_again(
        self, run: Run, state: TaskState, outcome: TaskRecord, exc: Exception, started: list[TaskRecord]
    ) -> Optional[Step]:
        """A write of the run's step failed, after the step was applied in memory: forget
        what memory holds of the run and, if the store was unreachable, write the step
        again until it goes through. `started`: the tasks the failed write started."""
        run.version = UNKNOWN_VERSION
        engine = self.engine
        if not engine.store.unavailable(exc):
            raise exc
        return await until_stored(
            engine.store, f"a step of run {run.id}",
            lambda: self._commit_reloaded(run, state, outcome, started), lambda: engine.stopping,
        )

    async def _commit_reloaded(
        self, run: Run, state: TaskState, outcome: TaskRecord, started: list[TaskRecord]
    ) -> Optional[Step]:
        """`_commit_locked` from all of the run's stored rows, after a write that may have
        been lost or committed with its reply lost (then the tasks it `started` are
        executed here, as they would have been, and a run it ended is finished)."""
        engine = self.engine
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
                        and engine.pool_of(mine.definition).try_acquire()):
                    engine.start_body(run, mine)  # else its lease lapses and it is taken over
            if run.execution.status not in UNFINISHED_RUN:
                engine.finished(run, run.snapshot())
        return step

    async def _commit_locked(
        self, run: Run, state: TaskState, outcome: TaskRecord, undone: list[str]
    ) -> Optional[Step]:
        """Recompute the step from what others changed (and the rows of `undone`, which the
        refused step changed in memory only) while the run's row is locked. `compute` may
        be called more than once (a store that cannot hold the lock while it runs computes
        again when its write is refused): only the last step computed is kept."""
        engine = self.engine
        computed: list[Step] = []

        def compute(stored: StoredRun) -> Optional[tuple[list[TaskRecord], Optional[ExecutionRecord]]]:
            for step in computed:
                engine.abandon(step)
            computed.clear()
            run.load(stored)
            if state.record.attempt == outcome.attempt and state.record.status == outcome.status:
                log.info("cloaca: the result of task '%s' of run %s was written before the "
                         "connection dropped", outcome.task_name, run.id)
                return None
            if stored.execution.status not in UNFINISHED_RUN:
                log.warning("cloaca: run %s ended elsewhere; dropping the result of task '%s'",
                            run.id, outcome.task_name)
                return None
            if state.record.status != "Running" or state.record.attempt != outcome.attempt:
                log.warning("cloaca: task '%s' of run %s was taken over by another runner (its "
                            "lease expired); dropping this attempt's result", outcome.task_name, run.id)
                return None
            step, finished = engine.outcome_step(run, state, outcome)
            computed.append(step)
            return step.changed, finished

        try:
            committed = await self.store.commit_step_locked(
                run.id, run.version, undone, engine.owner, self._lease_until(), compute,
            )
        except Exception:
            for step in computed:
                engine.abandon(step)
            raise
        if not committed:
            for step in computed:
                engine.abandon(step)
            return None
        run.version += 1
        return computed[-1]
