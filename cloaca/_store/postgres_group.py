"""Group commit for the PostgreSQL store: writes of runs that callers make at the same time
go out together, as one statement (one round trip, one transaction, one WAL flush).

A call queues its write and waits. Up to `groups_in_flight` groups are written at once,
each on a pooled connection of its own; a group takes every write that queued while the
previous ones were in flight (up to `max_group`), so a lone call is written at once and
a crowd of calls shares round trips. Each call keeps its own outcome: a step's
compare-and-set result is its own. When a group's statement fails, nothing of it was
written (one statement is atomic): if the connection was lost, every call of the group
gets that error (the write may or may not have committed, as for any lost reply);
otherwise each write is made again on its own, so that only the call at fault fails.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

import asyncpg

from . import postgres_queries as q
from .base import ExecutionRecord, TaskRecord

DEFAULT_GROUPS_IN_FLIGHT = 3
DEFAULT_MAX_GROUP = 200
"""Groups of at most 200, three in flight: the runs whose group came back go on (their
tasks run, their next writes queue) while the next groups are on the server. Measured
with 500 one-task runs in flight: ahead of (2, 500), (2, 200), (3, 128) and (4, 128)."""

Executor = Union[asyncpg.Pool, asyncpg.Connection]


@dataclass(eq=False)
class NewRun:
    """A run to insert with its task rows (create_execution without a fire)."""

    execution: ExecutionRecord
    tasks: Sequence[TaskRecord]
    owner: str
    lease_until: float
    link_fire_id: Optional[str]


@dataclass(eq=False)
class Step:
    """A scheduling step of a run, written if the run's version is still `version`."""

    execution_id: str
    version: int
    owner: str
    lease_until: float
    tasks: Sequence[TaskRecord]
    finished: Optional[ExecutionRecord]


Write = Union[NewRun, Step]


def _claimable(task: TaskRecord) -> bool:
    """A row that any runner may claim at once (its writing is announced as new work)."""
    return task.status == "Ready" and task.not_before is None


@dataclass
class _Params:
    """The parameters of the group's statement (q.WRITE_STATEMENTS), filled write by write."""

    runs: list[list[Any]] = field(default_factory=lambda: [[] for _ in range(13)])
    run_tasks: list[list[Any]] = field(default_factory=lambda: [[] for _ in range(14)])
    new_work: bool = False
    steps: list[list[Any]] = field(default_factory=lambda: [[] for _ in range(8)])
    step_tasks: list[list[Any]] = field(default_factory=lambda: [[] for _ in range(15)])

    def add(self, write: Write) -> None:
        if isinstance(write, NewRun):
            e = write.execution
            row = (e.id, e.workflow_name, e.workflow_version, e.status, e.input_context, e.started_at,
                   e.final_context, e.error_message, e.completed_at, e.trace_context,
                   write.owner, write.lease_until, write.link_fire_id)
            _append(self.runs, row)
            for t in write.tasks:
                _append(self.run_tasks, _task_row(t, write.owner, write.lease_until))
            self.new_work = self.new_work or any(_claimable(t) for t in write.tasks)
            return
        f = write.finished
        end = (None, None, None, None) if f is None else (
            f.status, f.final_context, f.error_message, f.completed_at
        )
        _append(self.steps, (write.execution_id, write.version, write.owner, *end,
                             any(_claimable(t) for t in write.tasks)))
        n = len(self.steps[0])
        for t in write.tasks:
            _append(self.step_tasks, (n, *_task_row(t, write.owner, write.lease_until)))

    def statement(self, channel: str) -> tuple[str, tuple[Any, ...]]:
        """The statement for the writes added (new runs, steps or both), and its arguments."""
        new_runs, steps = bool(self.runs[0]), bool(self.steps[0])
        arguments: list[Any] = []
        if new_runs:
            arguments += [*self.runs, *self.run_tasks, self.new_work]
        if steps:
            arguments += [*self.steps, *self.step_tasks]
        return q.WRITE_STATEMENTS[(new_runs, steps)], (*arguments, channel)


def _append(columns: list[list[Any]], row: Sequence[Any]) -> None:
    for column, value in zip(columns, row):
        column.append(value)


def _task_row(t: TaskRecord, owner: str, lease_until: float) -> tuple[Any, ...]:
    """A task row (q.TASK_COLUMNS), claimed by the writer if written Running."""
    running = t.status == "Running"
    return (t.execution_id, t.task_name, t.status, t.attempt, t.not_before, t.started_at,
            t.completed_at, t.output_context, t.error_message, t.finish_seq, t.attempt_base,
            t.traceback, owner if running else None, lease_until if running else None)


async def write_group(executor: Executor, writes: Sequence[Write], channel: str) -> list[Optional[bool]]:
    """Write `writes` in one statement: for each, None (a new run, inserted) or whether the
    step was written (False: its run's version had moved on)."""
    params = _Params()
    for write in writes:
        params.add(write)
    sql, arguments = params.statement(channel)
    row = await executor.fetchrow(sql, *arguments)
    won = set(row[0] or ())
    outcomes: list[Optional[bool]] = []
    step_number = 0
    for write in writes:
        if isinstance(write, Step):
            step_number += 1
            outcomes.append(step_number in won)
        else:
            outcomes.append(None)
    return outcomes


@dataclass(eq=False)
class _Queued:
    write: Write
    future: asyncio.Future[Optional[bool]]


class GroupCommit:
    """Writes the runs' writes of concurrent callers together (see the module's docstring)."""

    def __init__(
        self, pool: Callable[[], asyncpg.Pool], channel: str,
        unavailable: Callable[[BaseException], bool],
        groups_in_flight: int = DEFAULT_GROUPS_IN_FLIGHT, max_group: int = DEFAULT_MAX_GROUP,
    ) -> None:
        self._pool = pool
        self._channel = channel
        self._unavailable = unavailable
        self._groups_in_flight = groups_in_flight
        self._max_group = max_group
        self._queue: list[_Queued] = []
        self._flushing = 0
        self._flushers: set[asyncio.Task[None]] = set()

    async def write(self, write: Write) -> Optional[bool]:
        """Queue `write` and wait until its group is written: None for a new run, whether
        the step was written for a step."""
        loop = asyncio.get_running_loop()
        queued = _Queued(write, loop.create_future())
        self._queue.append(queued)
        if self._flushing < self._groups_in_flight:
            self._flushing += 1
            flusher = loop.create_task(self._flush())
            self._flushers.add(flusher)
            flusher.add_done_callback(self._flushers.discard)
        return await queued.future

    async def _flush(self) -> None:
        # Counted out in the same step as the last look at the queue: a write queued after
        # that look starts a flusher of its own.
        try:
            while self._queue:
                group = [w for w in self._queue[:self._max_group] if not w.future.done()]
                del self._queue[:self._max_group]
                if group:
                    await self._write(group)
        finally:
            self._flushing -= 1

    async def _write(self, group: list[_Queued]) -> None:
        try:
            outcomes = await write_group(self._pool(), [w.write for w in group], self._channel)
        except asyncio.CancelledError:  # the loop is closing
            for queued in group + self._queue:
                queued.future.cancel()
            raise
        except Exception as exc:
            if len(group) > 1 and not self._unavailable(exc):
                await self._write_each(group)
                return
            for queued in group:
                _settle(queued, exc=exc)
            return
        for queued, outcome in zip(group, outcomes):
            _settle(queued, outcome)

    async def _write_each(self, group: list[_Queued]) -> None:
        """After a group's statement failed (and so wrote nothing): each write on its own."""
        for queued in group:
            try:
                [outcome] = await write_group(self._pool(), [queued.write], self._channel)
            except Exception as exc:
                _settle(queued, exc=exc)
            else:
                _settle(queued, outcome)


def _settle(queued: _Queued, outcome: Optional[bool] = None, exc: Optional[BaseException] = None) -> None:
    if queued.future.done():  # the caller was cancelled while its group was written
        return
    if exc is not None:
        queued.future.set_exception(exc)
    else:
        queued.future.set_result(outcome)
