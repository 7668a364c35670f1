"""The Store protocol: everything the engine persists, behind one abstract class.

Every method is a coroutine that returns once its effect is committed (or, for reads,
once the rows are read). Backends group concurrent writes into shared transactions as
they see fit; callers never see partial effects of one call.

Times are POSIX timestamps (float seconds, UTC); contexts are JSON text.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping, Optional, Sequence


class WorkSharing(enum.Enum):
    """How the runners sharing one database divide the work of runs between them."""

    BY_RUN = "by_run"
    """A run's tasks all execute in the runner that holds the run's lease; a dead runner's
    runs are taken over whole."""
    BY_TASK = "by_task"
    """Any runner claims any ready task of any run; a dead runner's tasks are taken over one
    by one. Each scheduling step is written against the run's `version` (compare-and-set)."""


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
    trace_context: Optional[str] = None
    """The W3C trace context (JSON) the run's spans continue, when tracing is on."""


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
    attempt_base: int = 0
    """Attempts made before the run was last retried: the retry policy counts from here."""
    traceback: Optional[str] = None
    """The formatted traceback of the last failed attempt (bounded), else None."""


@dataclass
class StoredRun:
    """A run with all its task rows, as read back from the store."""

    execution: ExecutionRecord
    tasks: list[TaskRecord] = field(default_factory=list)
    version: int = 0
    """Bumped by every scheduling step written compare-and-set (`ClaimStore.commit_step`),
    by take-overs, cancels and retries; what a step written with `save_progress` leaves as is."""


@dataclass
class ClaimedWork:
    """Tasks of one run claimed by a runner (their rows as claimed: Running, attempt counted)."""

    execution_id: str
    tasks: list[TaskRecord]
    run: Optional[StoredRun]
    """The run as read after the claim: None when the claimer knows its current version;
    for a run in `known_versions`, only the task rows changed after the known version;
    otherwise every row."""


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
    outcome: Optional[str] = None
    """None while open or when its run ended; "skipped", "failed" or "abandoned" otherwise."""
    error: Optional[str] = None
    attempts: int = 0


@dataclass
class CronScheduleRecord:
    id: str
    workflow_name: str
    instance_name: Optional[str]
    cron_expression: str
    timezone: str
    enabled: bool
    catchup_policy: str
    params: Optional[str]
    next_run_at: float
    last_run_at: Optional[float]
    created_at: float
    updated_at: float


@dataclass
class CronStats:
    total_executions: int
    successful_executions: int
    lost_executions: int


@dataclass(frozen=True)
class CronSlotClaim:
    """A schedule's due slots, claimed together with the advance of its `next_run_at`."""

    schedule_id: str
    expected_next_run_at: float
    new_next_run_at: float
    launch: Sequence[float]
    skipped: Sequence[float]


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


@dataclass
class FiringRecord:
    """One fire of a reactor: the snapshot of its cache (JSON object text)."""

    id: str
    tenant_id: str
    reactor_name: str
    payload: str
    fired_at: float


@dataclass
class SubscriptionRecord:
    """A workflow subscribed to a reactor's firings; the watermark is (fired_at, firing id)."""

    id: str
    reactor_name: str
    workflow_name: str
    tenant_id: str
    enabled: bool
    last_seen_fired_at: Optional[float]
    last_seen_firing_id: Optional[str]
    created_at: float
    updated_at: float
    predicate_expression: Optional[str]
    predicate_degraded: bool = False
    predicate_error_count: int = 0
    last_predicate_error: Optional[str] = None
    last_predicate_error_at: Optional[float] = None
    predicate_error_firing_id: Optional[str] = None


class RunLost(Exception):
    """A runner wrote to a run that another runner has taken over (its lease had expired)."""

    def __init__(self, execution_id: str) -> None:
        super().__init__(f"run {execution_id} is no longer held by this runner (taken over after its lease expired)")
        self.execution_id = execution_id


class RunEnded(RunLost):
    """A runner wrote to a run that has ended meanwhile (it was cancelled)."""

    def __init__(self, execution_id: str, status: str) -> None:
        Exception.__init__(self, f"run {execution_id} has ended ({status}) meanwhile")
        self.execution_id = execution_id
        self.status = status


def check_held(execution_id: str, owner: str, found: Optional[tuple[Any, Any]]) -> None:
    """Raise unless the run whose stored (owner, status) is `found` (None: no such run) is
    unfinished and held by `owner`: `RunEnded` if it has ended, else `RunLost`."""
    if found is not None and found[1] not in ("Pending", "Running"):
        raise RunEnded(execution_id, found[1])
    if found is None or found[0] != owner:
        raise RunLost(execution_id)


RETRYABLE = ("Failed", "Cancelled")


def reopened_status(owner: Optional[str], work_sharing: WorkSharing) -> str:
    """The status of a run reopened for a retry (see `RunStore.reset_for_retry`): Running
    under its owner when work is shared by run, else Pending until its first step."""
    return "Running" if owner is not None and work_sharing is WorkSharing.BY_RUN else "Pending"


def check_retryable(execution_id: str, status: str) -> None:
    """ValueError unless a run of this status may be retried."""
    if status not in RETRYABLE:
        raise ValueError(
            f"cannot retry execution {execution_id}: it is {status}; only Failed or Cancelled "
            "runs can be retried"
        )


def runs_written(tasks: Sequence[TaskRecord], finished: Optional[ExecutionRecord]) -> set[str]:
    """The ids of the runs that a `save_progress` call writes to."""
    ids = {t.execution_id for t in tasks}
    if finished is not None:
        ids.add(finished.id)
    return ids


def nothing_to_claim(workflow_names: Sequence[str], limit: int, task_names: Optional[Sequence[str]]) -> bool:
    """A `ClaimStore.claim_tasks` call that can claim nothing (no workflow, no room, no task)."""
    return not workflow_names or limit <= 0 or (task_names is not None and not task_names)


def history_filters(
    workflow_name: Optional[str], status: Optional[str]
) -> tuple[tuple[bool, bool], list[str]]:
    """(which of the two `list_executions` filters are given, their values in that order):
    the key of the store's statement for that filter, and its leading parameters."""
    return (workflow_name is not None, status is not None), [
        f for f in (workflow_name, status) if f is not None
    ]


@dataclass(frozen=True)
class Notice:
    """A hint pushed by a `BY_TASK` store: new claimable work, or the end of a run."""

    work: bool = False
    ended_run: Optional[str] = None


StepFunction = Callable[[StoredRun], Optional[tuple[Sequence[TaskRecord], Optional[ExecutionRecord]]]]
"""Computes a step from the stored run: (task rows to write, the run's end or None), or None."""

class StoreBase(abc.ABC):
    """What every store protocol shares: where the data lives, how runners share its work,
    opening and closing."""

    description: str = "store"
    """Where the data lives (a file path, or host and database), for messages."""

    work_sharing: WorkSharing = WorkSharing.BY_RUN
    """How runners on this store share work; a `BY_TASK` store is also a `ClaimStore`."""

    runs_created_at_once: int = 256
    """How many new runs a runner has being inserted at once (later submissions wait their
    turn): enough to fill the store's group commit, few enough that runs submitted together
    end one after the other rather than all at the end (bench_inflight.py)."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and bring the schema up to date; RuntimeError naming the database on failure."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections (idempotent)."""

    def unavailable(self, exc: BaseException) -> bool:
        """`exc` says the database could not be reached (a connection dropped, refused, or
        timed out), so the same call may succeed later on a fresh connection."""
        return False


class RunStore(StoreBase):
    """Runs and their tasks: creating them, writing their steps (owned whole, `BY_RUN`),
    leases, cancel and retry, reading them back."""

    # The two writes of every run: awaitables, so that a store may hand back the future of
    # its group commit directly (a coroutine frame less per write) or be a coroutine.
    @abc.abstractmethod
    def create_execution(
        self,
        execution: ExecutionRecord,
        tasks: Sequence[TaskRecord],
        owner: str,
        lease_until: float,
        fire: Optional[FireRequest] = None,
        link_fire_id: Optional[str] = None,
    ) -> Awaitable[bool]:
        """Insert a run owned by `owner` with its task rows, and the trigger fire that launched it.

        Returns False, writing nothing, when `fire.deduplicate` and the trigger already has an
        open fire with the same context hash. `link_fire_id` names an existing (cron) fire to
        link to the new run.
        """

    @abc.abstractmethod
    def save_progress(
        self, tasks: Sequence[TaskRecord], finished: Optional[ExecutionRecord] = None,
        owner: Optional[str] = None,
    ) -> Awaitable[None]:
        """Write task rows; with `finished`, also close that run and the fires linked to it.

        With `owner`, RunLost (writing nothing) unless `owner` still holds every run written:
        a runner whose lease expired while it stalled cannot overwrite the runner that took
        its run over.
        """

    @abc.abstractmethod
    async def claim_orphans(
        self, owner: str, now: float, lease_until: float, workflow_names: Sequence[str]
    ) -> list[StoredRun]:
        """Take over unfinished runs of these workflows whose lease expired (or that have none);
        a Pending one becomes Running."""

    @abc.abstractmethod
    async def renew_leases(self, owner: str, lease_until: float) -> None:
        """Extend the lease of every unfinished run owned by `owner`."""

    @abc.abstractmethod
    async def release_leases(self, owner: str) -> None:
        """Give up `owner`'s unfinished runs (and, `BY_TASK`, its running tasks, back to Ready)
        so that another runner may take them over at once."""

    @abc.abstractmethod
    async def cancel_execution(self, execution_id: str, now: float) -> Optional[bool]:
        """End a run "Cancelled" with its unfinished tasks; None for an unknown run, False
        (writing nothing) for a run that has already ended.

        Later steps of whoever executes the run are refused, as for a run taken over."""

    @abc.abstractmethod
    async def reset_for_retry(
        self, execution_id: str, owner: Optional[str], now: float, lease_until: Optional[float]
    ) -> Optional[StoredRun]:
        """Reopen a Failed or Cancelled run under `owner` until `lease_until`: its Failed,
        Skipped and Cancelled tasks go back to NotStarted (attempts kept, counted afresh from
        `attempt_base`).

        Work shared by run, the run is reopened "Running" (if its owner's lease lapses,
        `claim_orphans` takes it over). Shared by task, it is reopened "Pending", held by
        `owner`, and its first step (`ClaimStore.commit_step`) makes it Running; if the lease
        ends first (its owner died), `ClaimStore.claim_pending_runs` gives it to another
        runner. With `owner` None the run is reopened "Pending", held by nobody, for whichever
        runner has its workflow to start (`claim_orphans`, `ClaimStore.claim_pending_runs`).

        None for an unknown run; ValueError naming the status for a run that is not Failed
        or Cancelled. Returns the reopened run."""

    @abc.abstractmethod
    async def ended_runs(self, execution_ids: Sequence[str]) -> list[str]:
        """Those of these runs that have ended or do not exist."""

    @abc.abstractmethod
    async def get_run(self, execution_id: str) -> Optional[StoredRun]:
        """A run and its tasks, or None."""

    @abc.abstractmethod
    async def list_executions(
        self, workflow_name: Optional[str], status: Optional[str], limit: int, offset: int
    ) -> list[ExecutionRecord]:
        """Runs, newest first."""

    @abc.abstractmethod
    async def count_executions(self, workflow_name: Optional[str]) -> dict[str, int]:
        """The number of runs of each status (of one workflow, or of all); absent statuses omitted."""


class ScheduleStore(StoreBase):
    """Trigger schedules, cron schedules, and their fires."""

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

    @abc.abstractmethod
    async def create_cron_schedule(self, record: CronScheduleRecord) -> bool:
        """Insert a schedule; False if its (workflow_name, instance_name) is already taken."""

    @abc.abstractmethod
    async def upsert_cron_instance(self, record: CronScheduleRecord) -> CronScheduleRecord:
        """Create the named instance, or update its expression, timezone and params (keeps
        `enabled`; recomputed `next_run_at` only if the expression or timezone changed)."""

    @abc.abstractmethod
    async def get_cron_schedule(self, schedule_id: str) -> Optional[CronScheduleRecord]:
        ...

    @abc.abstractmethod
    async def list_cron_schedules(
        self, enabled_only: bool, limit: int, offset: int
    ) -> list[CronScheduleRecord]:
        """Newest first."""

    @abc.abstractmethod
    async def update_cron_schedule(
        self, schedule_id: str, cron_expression: str, timezone: str, next_run_at: float, now: float
    ) -> bool:
        """False if the schedule does not exist."""

    @abc.abstractmethod
    async def set_cron_enabled(self, schedule_id: str, enabled: bool, now: float) -> None:
        """Unknown ids are ignored; `next_run_at` is left as it is."""

    @abc.abstractmethod
    async def delete_cron_schedule(self, schedule_id: str) -> None:
        """Unknown ids are ignored; the schedule's history goes with it."""

    @abc.abstractmethod
    async def due_cron_schedules(self, now: float) -> list[CronScheduleRecord]:
        """Enabled schedules whose `next_run_at` is at or before `now`."""

    @abc.abstractmethod
    async def next_cron_run_at(self) -> Optional[float]:
        """The earliest `next_run_at` of an enabled schedule."""

    @abc.abstractmethod
    async def claim_cron_slots(self, claim: CronSlotClaim, now: float) -> Optional[list[tuple[str, float]]]:
        """Atomically advance the schedule from `expected_next_run_at` and record its slots.

        Launch slots are recorded open and returned as (fire id, slot); skipped ones are
        recorded closed with outcome "skipped". None if the schedule moved on meanwhile
        (another runner claimed these slots) or is gone or disabled.
        """

    @abc.abstractmethod
    async def close_schedule_fire(
        self, fire_id: str, now: float, outcome: str, error: Optional[str]
    ) -> None:
        """Close a fire that launched no run, saying why."""

    @abc.abstractmethod
    async def cron_history(
        self, schedule_id: str, limit: int, offset: int
    ) -> list[ScheduleExecutionRecord]:
        """A schedule's fires (including skipped slots), newest slot first."""

    @abc.abstractmethod
    async def schedule_stats(self, since: float, lost_before: float) -> CronStats:
        """Counts over every schedule fire (cron and trigger) claimed at or after `since`,
        except slots skipped by a catch-up policy (recorded for history, never executions)."""

    @abc.abstractmethod
    async def lost_cron_fires(
        self, lost_before: float, oldest: float, max_attempts: int, now: float
    ) -> list[tuple[ScheduleExecutionRecord, CronScheduleRecord]]:
        """Open cron fires claimed before `lost_before` with no run (a lost hand-off).

        Those claimed before `oldest` or already tried `max_attempts` times are closed as
        "abandoned"; the others get one more attempt counted and are returned to re-fire.
        Fires whose run has ended are closed.
        """


class ReactorStore(StoreBase):
    """Reactor firings, subscriptions, and the durable state of reactors and accumulators."""

    @abc.abstractmethod
    async def upsert_subscription(
        self, new_id: str, reactor_name: str, workflow_name: str, tenant_id: str,
        predicate: Optional[str], now: float,
    ) -> str:
        """Create the (reactor, workflow, tenant) subscription with id `new_id`, or replace
        the predicate of the existing one (keeping its id, flag and watermark); its id."""

    @abc.abstractmethod
    async def delete_subscription(self, reactor_name: str, workflow_name: str, tenant_id: str) -> bool:
        """Delete a subscription; whether one existed."""

    @abc.abstractmethod
    async def list_subscriptions(self, tenant_id: Optional[str]) -> list[SubscriptionRecord]:
        """Enabled subscriptions of a tenant (None: of every tenant), oldest first."""

    @abc.abstractmethod
    async def claim_subscriptions(self, owner: str, now: float, lease_until: float) -> list[SubscriptionRecord]:
        """The enabled subscriptions `owner` holds until `lease_until`: those it held and
        those nobody holds (or whose holder's lease expired before `now`), oldest first.
        Runners sharing a database thus never dispatch one subscription's firings at once."""

    @abc.abstractmethod
    async def release_subscriptions(self, owner: str) -> None:
        """Give up the subscriptions `owner` holds (at shutdown)."""

    @abc.abstractmethod
    async def save_subscription_progress(self, record: SubscriptionRecord) -> None:
        """Write a subscription's watermark and predicate-error fields."""

    @abc.abstractmethod
    async def insert_firing(self, firing: FiringRecord) -> None:
        """Record a reactor's fire."""

    @abc.abstractmethod
    async def firings_after(
        self, tenant_id: str, reactor_name: str, after: Optional[tuple[float, str]], limit: int
    ) -> list[FiringRecord]:
        """A reactor's firings strictly after the watermark `after` (all if None), oldest first."""

    @abc.abstractmethod
    async def prune_firings(self, before: float) -> int:
        """Delete firings older than `before`; how many."""

    @abc.abstractmethod
    async def save_reactor_state(self, tenant_id: str, reactor_name: str, state: str, now: float) -> None:
        """Store a reactor's cache and dirty flags (JSON text)."""

    @abc.abstractmethod
    async def load_reactor_state(self, tenant_id: str, reactor_name: str) -> Optional[str]:
        """A reactor's stored cache and dirty flags, if any."""

    @abc.abstractmethod
    async def save_accumulator_state(
        self, tenant_id: str, accumulator_name: str, kind: str, data: str, now: float
    ) -> None:
        """Store an accumulator's durable state (JSON text): a polling checkpoint or a batch
        buffer (kind "checkpoint"), or a state window (kind "window")."""

    @abc.abstractmethod
    async def load_accumulator_state(self, tenant_id: str, accumulator_name: str, kind: str) -> Optional[str]:
        """An accumulator's stored state of that kind, if any."""

    @abc.abstractmethod
    async def reactor_tenants(self) -> list[str]:
        """Every tenant with stored reactor or accumulator state, sorted."""


class ClaimStore(abc.ABC):
    """Work shared by task (`WorkSharing.BY_TASK`): any runner claims any ready task; each
    scheduling step is written compare-and-set on the run's version."""

    @abc.abstractmethod
    async def claim_tasks(
        self, owner: str, now: float, lease_until: float, workflow_names: Sequence[str],
        limit: int, take_over: bool, known_versions: Mapping[str, int],
        task_names: Optional[Sequence[str]] = None,
    ) -> list[ClaimedWork]:
        """Claim up to `limit` tasks of running runs of these workflows for `owner` (only tasks
        named in `task_names`, when given).

        A task is claimable when it is Ready (and its `not_before` has passed) or, with
        `take_over`, Running under an expired lease. A claimed task becomes Running under
        `owner` until `lease_until`, its attempt counted; a take-over bumps its run's
        version. Two concurrent claimers never get the same task. `known_versions` are the
        versions of runs the claimer holds in memory: what changed since is read back.
        """

    @abc.abstractmethod
    async def claim_pending_runs(
        self, owner: str, now: float, lease_until: float, workflow_names: Sequence[str], limit: int,
    ) -> list[StoredRun]:
        """Take up to `limit` Pending runs of these workflows that no live lease holds (runs
        reopened for whichever runner has their workflow), oldest first, with their versions
        and tasks. They stay Pending, held by `owner` until `lease_until`, until their first
        step is written (`commit_step`); when the lease expires first, another runner takes
        them. Two concurrent claimers never get the same run."""

    @abc.abstractmethod
    async def commit_step(
        self, execution_id: str, version: int, owner: str, lease_until: float,
        tasks: Sequence[TaskRecord], finished: Optional[ExecutionRecord] = None,
    ) -> bool:
        """Write one scheduling step of a run if its version is still `version`, bumping it;
        a Pending run becomes Running.

        Running rows are written as claimed by `owner` until `lease_until`, other rows as
        unclaimed; `finished` also ends the run and closes its fires. False, writing nothing,
        when the version moved on (another runner wrote a step, or took a task over).
        """

    @abc.abstractmethod
    async def commit_step_locked(
        self, execution_id: str, since_version: int, task_names: Sequence[str], owner: str,
        lease_until: float, compute: StepFunction,
    ) -> bool:
        """Write one scheduling step computed from the run as stored now (it cannot lose).

        For when `commit_step` was refused: `compute` gets the run with its current version,
        the task rows that changed after `since_version` (steps, take-overs and releases mark
        the rows they change) and the rows of `task_names`, and returns the task rows to
        write and the run's end if it ended, or None to write nothing. It is called on the
        caller's event loop thread, must be quick and must not block. Rows are written as by
        `commit_step`. False when the run does not exist or `compute` returned None.

        `compute` may be called more than once: PostgreSQL calls it once, with the run's row
        locked; SQLite cannot hold its write lock while the loop computes, so it writes the
        step compare-and-set and, when another writer went first, calls `compute` again
        with the run read anew — that call also gets the rows the previous call returned
        (as stored: what it changed is to be undone). Only the step of the call after which
        True is returned was written; the steps of earlier calls were not.
        """

    @abc.abstractmethod
    async def renew_task_leases(
        self, owner: str, tasks: Sequence[tuple[str, str]], lease_until: float
    ) -> None:
        """Extend `owner`'s claim on these (execution id, task name) tasks still Running."""


class NoticeStore(abc.ABC):
    """A store that pushes notices (new claimable work, ended runs) instead of being polled."""

    @abc.abstractmethod
    async def listen(self, on_notice: Callable[[Notice], None]) -> bool:
        """Push notices of new work and ended runs to `on_notice` (on the calling loop).

        False when it cannot now (callers poll instead). Notices may be lost when a
        connection drops: they are hints, the data is read back from the store.
        """


class Store(RunStore, ScheduleStore, ReactorStore):
    """Everything a backend persists. Both backends are also a `ClaimStore` (work shared by
    task, which PostgreSQL always does and SQLite when asked); PostgreSQL is a `NoticeStore`."""


class TenantError(Exception):
    """Why a tenant could not be created or removed (never a password)."""


class TenantStore(abc.ABC):
    """Tenant administration of a shared database: a schema and a login role per tenant
    (`cloaca.DatabaseAdmin`). Names are checked before they get here."""

    @abc.abstractmethod
    def scrub(self, message: str) -> str:
        """`message` without the database URL's password, in any spelling."""

    @abc.abstractmethod
    async def create(self, schema_name: str, username: str, password: str) -> None:
        """The schema with the store's tables, owned by a new login role with `password`,
        in one transaction; TenantError if any of it fails (then none of it is made)."""

    @abc.abstractmethod
    async def remove(self, schema_name: str, username: str) -> None:
        """Drop the schema with everything in it, what the role owns, and the role;
        TenantError if that fails."""
