"""The Store protocol: everything the engine persists, behind one abstract class.

Every method is a coroutine that returns once its effect is committed (or, for reads,
once the rows are read). Backends group concurrent writes into shared transactions as
they see fit; callers never see partial effects of one call.

Times are POSIX timestamps (float seconds, UTC); contexts are JSON text.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Optional, Sequence


@dataclass
class ExecutionRecord:
    """One workflow execution (a run)."""

    id: str
    workflow_name: str
    workflow_version: str
    status: str
    input_context: str
    started_at: float
    final_context: Optional[str] = None
    error_message: Optional[str] = None
    completed_at: Optional[float] = None


@dataclass
class TaskRecord:
    """The state of one task of a run (one row per task; `attempt` counts executions)."""

    execution_id: str
    task_name: str
    status: str
    attempt: int = 0
    not_before: Optional[float] = None
    started_at: Optional[float] = None
    completed_at: Optional[float] = None
    output_context: Optional[str] = None
    error_message: Optional[str] = None
    finish_seq: Optional[int] = None


@dataclass
class StoredRun:
    """A run with all its task rows, as read back from the store."""

    execution: ExecutionRecord
    tasks: list[TaskRecord] = field(default_factory=list)


@dataclass
class TriggerScheduleRecord:
    id: str
    trigger_name: str
    workflow_name: str
    poll_interval_ms: int
    allow_concurrent: bool
    enabled: bool
    last_poll_at: Optional[float]
    created_at: float
    updated_at: float


@dataclass
class ScheduleExecutionRecord:
    """One fire of a trigger or a cron schedule, linked to the run it launched."""

    id: str
    schedule_id: str
    kind: str
    context_hash: Optional[str]
    scheduled_time: Optional[float]
    claimed_at: float
    workflow_execution_id: Optional[str]
    completed_at: Optional[float]
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class FireRequest:
    """The trigger fire that launches a run; with `deduplicate`, refused while an identical one is open."""

    trigger_name: str
    context_hash: str
    deduplicate: bool


@dataclass
class OpenFire:
    """A trigger fire whose run has not ended: the dedup key it holds."""

    fire_id: str
    trigger_name: str
    context_hash: str
    workflow_execution_id: Optional[str]


class Store(abc.ABC):
    """Persistence for runs, tasks, trigger schedules and fires."""

    description: str = "store"
    """Where the data lives (a file path, or host and database), for messages."""

    # lifecycle ----------------------------------------------------------------------
    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and bring the schema up to date; RuntimeError naming the database on failure."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections (idempotent)."""

    # runs ---------------------------------------------------------------------------
    @abc.abstractmethod
    async def create_execution(
        self,
        execution: ExecutionRecord,
        tasks: Sequence[TaskRecord],
        owner: str,
        lease_until: float,
        fire: Optional[FireRequest] = None,
    ) -> bool:
        """Insert a run owned by `owner` with its task rows, and the trigger fire that launched it.

        Returns False, writing nothing, when `fire.deduplicate` and the trigger already has an
        open fire with the same context hash.
        """

    @abc.abstractmethod
    async def save_progress(
        self, tasks: Sequence[TaskRecord], finished: Optional[ExecutionRecord] = None
    ) -> None:
        """Write task rows; with `finished`, also close that run and the fires linked to it."""

    @abc.abstractmethod
    async def claim_orphans(
        self, owner: str, now: float, lease_until: float, workflow_names: Sequence[str]
    ) -> list[StoredRun]:
        """Take over unfinished runs of these workflows whose lease expired (or that have none)."""

    @abc.abstractmethod
    async def renew_leases(self, owner: str, lease_until: float) -> None:
        """Extend the lease of every unfinished run owned by `owner`."""

    @abc.abstractmethod
    async def release_leases(self, owner: str) -> None:
        """Give up `owner`'s unfinished runs so that another runner may resume them at once."""

    @abc.abstractmethod
    async def get_run(self, execution_id: str) -> Optional[StoredRun]:
        """A run and its tasks, or None."""

    @abc.abstractmethod
    async def list_executions(
        self, workflow_name: Optional[str], status: Optional[str], limit: int, offset: int
    ) -> list[ExecutionRecord]:
        """Runs, newest first."""

    # triggers -----------------------------------------------------------------------
    @abc.abstractmethod
    async def upsert_trigger_schedule(
        self, trigger_name: str, workflow_name: str, poll_interval_ms: int,
        allow_concurrent: bool, now: float,
    ) -> TriggerScheduleRecord:
        """Create or update a trigger's schedule; an existing row keeps its `enabled` flag."""

    @abc.abstractmethod
    async def list_trigger_schedules(
        self, enabled_only: bool, limit: int, offset: int
    ) -> list[TriggerScheduleRecord]:
        """Enabled only: oldest first; otherwise newest first."""

    @abc.abstractmethod
    async def get_trigger_schedule(self, trigger_name: str) -> Optional[TriggerScheduleRecord]:
        ...

    @abc.abstractmethod
    async def set_trigger_enabled(self, trigger_name: str, enabled: bool, now: float) -> None:
        """Unknown names are ignored."""

    @abc.abstractmethod
    async def record_trigger_polls(self, polls: Sequence[tuple[str, float]]) -> None:
        """Set `last_poll_at` for each (trigger name, time)."""

    @abc.abstractmethod
    async def record_unlaunched_fire(self, trigger_name: str, context_hash: str, now: float) -> None:
        """Record, already closed, a fire that could not launch a run (e.g. unknown workflow)."""

    @abc.abstractmethod
    async def open_trigger_fires(self, now: float) -> list[OpenFire]:
        """Close fires whose run has ended or vanished; return those still in flight."""

    @abc.abstractmethod
    async def trigger_history(
        self, trigger_name: str, limit: int, offset: int
    ) -> list[ScheduleExecutionRecord]:
        """A trigger's fires, newest first; [] for an unknown trigger."""
