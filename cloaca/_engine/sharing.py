"""How runners on one database share its work: the engine's one seam for it.

The engine schedules (which tasks a step makes runnable, attempts, retries, a run's end);
a `Sharing` decides who executes what and how a step is written. A store says which one
it takes (`WorkSharing`):

- `by_run.RunSharing` (BY_RUN): the runner holding a run's lease executes all of it.
- `by_task.TaskSharing` (BY_TASK): any runner claims any ready task; each step is written
  compare-and-set on the run's version.
"""

from __future__ import annotations

import abc
from typing import Any, Optional, Protocol

from .._registry import Registry
from .._store.base import ExecutionRecord, Store, StoredRun, TaskRecord
from .._task import TaskDefinition
from .._workflow import Workflow
from .run_state import Run, Step, TaskState
from .settings import EngineSettings
from .slots import SlotPool


class Engine(Protocol):
    """What a sharing uses of the engine it serves (`executor.Engine`)."""

    store: Store
    registry: Registry
    settings: EngineSettings
    owner: str
    runs: dict[str, Run]
    active_tasks: set[tuple[str, str]]
    stopping: bool
    slots: SlotPool
    async_slots: SlotPool

    def pool_of(self, definition: TaskDefinition) -> SlotPool: ...
    def new_run(self, execution: ExecutionRecord, workflow: Workflow) -> Run: ...
    async def resume(self, stored: StoredRun, now: float) -> None: ...
    def mark_running(self, record: TaskRecord, now: float) -> None: ...
    def start_body(self, run: Run, state: TaskState, held: bool = True) -> None: ...
    def outcome_step(self, run: Run, state: TaskState, outcome: TaskRecord) -> tuple[Step, Optional[ExecutionRecord]]: ...
    def abandon(self, step: Step) -> None: ...
    def finished(self, run: Run, stored: StoredRun, ended_here: bool = False) -> None: ...
    def forget(self, run: Run) -> None: ...
    def spawn(self, coro: Any, background: bool = False) -> None: ...
    async def observe_ended(self, execution_ids: Optional[list[str]] = None) -> None: ...


class Sharing(abc.ABC):
    """One way of sharing a database's work between runners, for one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @abc.abstractmethod
    async def start(self) -> None:
        """Take the work that is waiting (resume orphaned runs, claim ready tasks)."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Take no more work."""

    @abc.abstractmethod
    def queue(self, run: Run, states: list[TaskState]) -> None:
        """A committed step made these tasks Ready, beyond the free slots."""

    @abc.abstractmethod
    def slot_freed(self) -> None:
        """A slot may be free: hand it to waiting work."""

    @abc.abstractmethod
    def retry_due(self, run: Run, state: TaskState) -> None:
        """The task's retry delay is over (it is Ready)."""

    @abc.abstractmethod
    def interrupted(self, state: TaskState, step: Step) -> None:
        """A run read back from the store (resumed, retried) has this task Ready or Running."""

    @abc.abstractmethod
    async def commit(self, run: Run, state: TaskState, outcome: TaskRecord) -> Optional[Step]:
        """Adopt an attempt's outcome and write the step it causes; the step once written,
        None if the task is no longer this runner's (its result is dropped)."""

    @abc.abstractmethod
    async def write_restart(self, run: Run, step: Step) -> None:
        """Write the first step of a run read back from the store (RunLost if refused)."""

    @abc.abstractmethod
    async def write_end(self, run: Run, finished: ExecutionRecord) -> None:
        """Write the end of a run whose last step did not end it (every task skipped)."""

    @abc.abstractmethod
    def write_failed(self, run: Run, exc: Exception) -> None:
        """A step of the run could not be written (`exc`, not RunEnded)."""

    @abc.abstractmethod
    def attempt_over(self, run: Run) -> None:
        """An attempt of the run ended in this runner."""

    @abc.abstractmethod
    async def keep_leases(self, lease_until: float) -> None:
        """Extend this runner's leases; look after other runners' expired ones."""

    @abc.abstractmethod
    def sole_writer_of(self, execution_id: str) -> Optional[Run]:
        """The run, if this runner executes it and it alone writes it (memory is current)."""
