"""A run as the engine holds it while executing it: a cache of what the store holds."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

from .._store.base import ExecutionRecord, StoredRun, TaskRecord
from .._task import TaskDefinition
from .._workflow import Workflow

TERMINAL = frozenset({"Completed", "Failed", "Skipped", "Cancelled"})
"""Task statuses after which a task never runs again (unless its run is retried)."""
UNFINISHED_RUN = ("Pending", "Running")


@dataclass(eq=False)
class TaskState:
    """One task of a run in memory."""

    definition: TaskDefinition
    record: TaskRecord
    remaining: int
    """Its dependencies that have not ended yet."""
    pending_write: Optional[asyncio.Future[Any]] = None
    """The write of its switch to Running, when it was not awaited (work shared by run)."""
    body: Optional[asyncio.Task[Any]] = None
    """The attempt running here, while its task body executes (cancelled with the run)."""


@dataclass(eq=False)
class Step:
    """What one scheduling step changed; applied (started, queued) only once it is committed."""

    now: float
    changed: list[TaskRecord] = field(default_factory=list)
    to_start: list[TaskState] = field(default_factory=list)
    to_queue: list[TaskState] = field(default_factory=list)


class RunEnd:
    """How a run ended, for whoever waits for it here.

    Each waiter gets a future of its own: a waiter cancelled (a caller that stopped waiting)
    leaves the others, and the run, alone.
    """

    __slots__ = ("_waiters", "_outcome")

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[StoredRun]] = []
        self._outcome: Union[StoredRun, BaseException, None] = None

    def done(self) -> bool:
        return self._outcome is not None

    def wait(self) -> asyncio.Future[StoredRun]:
        """A future of the run as it ended (or of why it could not be run to its end)."""
        waiter: asyncio.Future[StoredRun] = asyncio.get_running_loop().create_future()
        self.add(waiter)
        return waiter

    def add(self, waiter: asyncio.Future[StoredRun]) -> None:
        """Have `waiter` get the run as it ended (or why it could not be run to its end)."""
        if self._outcome is None:
            self._waiters.append(waiter)
        elif not waiter.done():
            _settle(waiter, self._outcome)

    def set_result(self, stored: StoredRun) -> None:
        self._end(stored)

    def set_exception(self, exc: BaseException) -> None:
        self._end(exc)

    def _end(self, outcome: Union[StoredRun, BaseException]) -> None:
        if self._outcome is not None:
            return
        self._outcome = outcome
        for waiter in self._waiters:
            if not waiter.done():
                _settle(waiter, outcome)
        self._waiters.clear()


def _settle(waiter: asyncio.Future[StoredRun], outcome: Union[StoredRun, BaseException]) -> None:
    if isinstance(outcome, BaseException):
        waiter.set_exception(outcome)
    else:
        waiter.set_result(outcome)


@dataclass(eq=False)
class Run:
    """A workflow execution that this runner is executing."""

    execution: ExecutionRecord
    workflow: Workflow
    tasks: dict[str, TaskState]
    done: RunEnd = field(default_factory=RunEnd)
    open_tasks: int = 0
    next_seq: int = 1
    on_finish: list[Callable[[Run], None]] = field(default_factory=list)
    version: int = 0
    watched: bool = False
    """Started here: someone may wait for its end, which another runner may write (work
    shared by task)."""
    active: int = 0
    """Task bodies of this run executing in this runner."""
    _lock: Optional[asyncio.Lock] = None
    commit_queue: Optional[list[Any]] = None
    """Work shared by task: outcomes of attempts waiting to be written with the next step."""
    stopped: bool = False
    """Ended elsewhere (cancelled): its attempts here are abandoned, their results dropped."""
    span: Any = None
    """The run's span in this process (tracing), if this runner started or resumed it."""
    traced: bool = False
    """Spans were on when this runner loaded the run: its attempts get spans."""

    @property
    def id(self) -> str:
        return self.execution.id

    @property
    def lock(self) -> asyncio.Lock:
        """Work shared by task: held while a step is computed and written, and while claimed
        rows land (made on first use: work shared by run never takes it)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def snapshot(self) -> StoredRun:
        return StoredRun(self.execution, [s.record for s in self.tasks.values()])

    def load(self, stored: StoredRun) -> None:
        """Bring the run up to what the store holds: its record and version, the task rows
        given (all of them, or those changed since the run's version), and the counters
        that follow from them."""
        self.execution = stored.execution
        self.version = stored.version
        for record in stored.tasks:
            state = self.tasks.get(record.task_name)
            if state is not None:
                state.record = record
        self.next_seq = 1 + max((s.record.finish_seq or 0 for s in self.tasks.values()), default=0)
        self.open_tasks = sum(1 for s in self.tasks.values() if s.record.status not in TERMINAL)
        for state in self.tasks.values():
            state.remaining = sum(
                1 for d in set(state.definition.dependencies) if self.tasks[d].record.status not in TERMINAL
            )


def copy_record(record: TaskRecord) -> TaskRecord:
    return TaskRecord(**record.__dict__)
