"""The cron scheduler: one asyncio task sleeping until the earliest `next_run_at`.

Each due schedule is claimed in the store together with the advance of its `next_run_at`
(one transaction, conditional on the value read), so that among several runners on one
database exactly one fires a slot, and a restart never fires a slot twice. Missed slots
follow the schedule's catch-up policy; the ones not run are recorded as "skipped".
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import time
import uuid
from datetime import datetime, timezone
from functools import lru_cache
from typing import Callable, Optional

from .._cancelling import cancel_and_wait
from .._engine.deadline import deadline
from .._engine.executor import Engine
from .._registry import Registry
from .._result import rfc3339
from .._store.base import CronScheduleRecord, CronSlotClaim, Store
from .._triggers.definition import TriggerDefinition
from .expression import CronExpression

log = logging.getLogger("cloaca.cron")

Clock = Callable[[], float]
"""The POSIX time now. A clock that can jump (a test's fake clock) may also offer
`add_jump_listener(callback)` and `remove_jump_listener(callback)`: the runner then wakes the
scheduler (`rearm`, through its bridge) to fire what became due."""

RESERVED_KEYS = frozenset(
    {"scheduled_time", "schedule_id", "schedule_timezone", "schedule_expression",
     "trigger_name", "triggered_at"}
)
MAX_RECORDED_SKIPS = 10_000
"""Skipped slots recorded per claim at most (a schedule every second down for days)."""


class CatchupPolicy(str, enum.Enum):
    """What a schedule does with the slots it missed while no runner was up."""

    SKIP = "skip"
    """One run, for the first missed slot; the others are recorded as skipped."""
    RUN_ALL = "run_all"
    """A run for every missed slot, up to `cron_max_catchup_executions`; the rest skipped."""

    @classmethod
    def parse(cls, value: "str | CatchupPolicy") -> "CatchupPolicy":
        try:
            return cls(value)
        except ValueError:
            valid = ", ".join(repr(p.value) for p in cls)
            raise ValueError(f"Unknown catch-up policy {value!r}: expected one of {valid}") from None


@lru_cache(maxsize=4096)
def parse_expression(expression: str, timezone: str) -> CronExpression:
    """A parsed (cached) expression; ValueError quoting what is wrong."""
    return CronExpression.parse(expression, timezone)


def new_schedule(
    workflow_name: str, expression: CronExpression, now: float, *,
    instance_name: Optional[str] = None, params: Optional[str] = None,
    policy: CatchupPolicy = CatchupPolicy.SKIP,
) -> CronScheduleRecord:
    """A schedule record due at the first slot after `now`."""
    return CronScheduleRecord(
        id=str(uuid.uuid4()), workflow_name=workflow_name, instance_name=instance_name,
        cron_expression=expression.expression, timezone=expression.timezone, enabled=True,
        catchup_policy=policy.value, params=params,
        next_run_at=next_slot(expression, now), last_run_at=None, created_at=now, updated_at=now,
    )


def next_slot(expression: CronExpression, after: float) -> float:
    """The first slot strictly after the POSIX time `after`."""
    return expression.next_after(datetime.fromtimestamp(after, timezone.utc)).timestamp()


def _slots_between(expression: CronExpression, start: float, end: float, limit: int) -> list[float]:
    utc = timezone.utc
    found = expression.slots_between(
        datetime.fromtimestamp(start, utc), datetime.fromtimestamp(end, utc), limit
    )
    return [slot.timestamp() for slot in found]


class CronScheduler:
    """Fires due cron schedules of one store on the engine's loop."""

    def __init__(
        self, engine: Engine, store: Store, registry: Registry, *,
        max_catchup: int, poll_interval: float, recovery: bool, recovery_interval: float,
        lost_threshold: float, max_recovery_age: float, max_recovery_attempts: int,
        clock: Clock = time.time,
    ) -> None:
        self.engine = engine
        self.store = store
        self.registry = registry
        self.clock = clock
        self.max_catchup = max(1, max_catchup)
        self.poll_interval = poll_interval if poll_interval > 0 else 30.0
        self.recovery = recovery
        self.recovery_interval = recovery_interval if recovery_interval > 0 else 300.0
        self.lost_threshold = lost_threshold
        self.max_recovery_age = max_recovery_age
        self.max_recovery_attempts = max_recovery_attempts
        self.lateness: Optional[list[float]] = None  # benchmarks switch this on
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._launches: set[asyncio.Task[None]] = set()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._trigger_schedules: dict[str, str] = {}  # cron-form trigger name -> schedule id

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Turn cron-form triggers into schedules and start the scheduling (and recovery) loops."""
        self._loop = asyncio.get_running_loop()
        for definition in self.registry.triggers():
            await self.add_trigger(definition)
        self._tasks.append(self._loop.create_task(self._schedule_forever()))
        if self.recovery:
            self._tasks.append(self._loop.create_task(self._recover_forever()))

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks + list(self._launches), "stopping the cron scheduler")
        self._tasks.clear()

    def rearm(self) -> None:
        """Re-read the earliest `next_run_at` now (schedules changed)."""
        self._wake.set()

    # ------------------------------------------------------------------ cron-form triggers
    async def apply_declaration(self, name: str, definition: Optional[TriggerDefinition]) -> None:
        """A trigger declared (or re-declared) after the start, or removed (None)."""
        if definition is not None and definition.cron is not None:
            await self.add_trigger(definition)
        elif name in self._trigger_schedules:
            await self.remove_trigger(name)  # removed, or re-declared as a polling trigger

    async def add_trigger(self, definition: TriggerDefinition) -> None:
        """A cron-form trigger is the schedule instance `trigger:<name>` of its workflow."""
        if definition.cron is None or definition.workflow is None:
            return
        expression = parse_expression(definition.cron, definition.timezone or "UTC")
        record = new_schedule(
            definition.workflow, expression, self.clock(), instance_name=f"trigger:{definition.name}"
        )
        stored = await self.store.upsert_cron_instance(record)
        previous = self._trigger_schedules.get(definition.name)
        self._trigger_schedules[definition.name] = stored.id
        if previous is not None and previous != stored.id:
            await self.store.delete_cron_schedule(previous)  # re-declared for another workflow
        self.rearm()

    async def remove_trigger(self, name: str) -> None:
        """A cron-form trigger no longer declared: delete its schedule instance."""
        schedule_id = self._trigger_schedules.pop(name, None)
        if schedule_id is not None:
            await self.store.delete_cron_schedule(schedule_id)

    # ------------------------------------------------------------------ scheduling
    async def _schedule_forever(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.fire_due()
                delay = await self._delay()
            except Exception as exc:
                log.error("cloaca: cron scheduling failed: %s", exc)
                delay = self.poll_interval
            try:
                async with deadline(delay):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _delay(self) -> float:
        earliest = await self.store.next_cron_run_at()
        if earliest is None:
            return self.poll_interval
        return min(max(earliest - self.clock(), 0.0), self.poll_interval)

    async def fire_due(self) -> None:
        """Claim and launch every slot that is due now."""
        now = self.clock()
        due = await self.store.due_cron_schedules(now)
        if self.clock() < now:
            # The clock was set back meanwhile (a test's fake clock): firing by the time it
            # showed before would skip, as missed, every slot up to then. Its jump woke us.
            return
        # Concurrently, so that the store groups the claims of one tick into few transactions.
        await asyncio.gather(*(self._fire_logged(schedule, now) for schedule in due))

    async def _fire_logged(self, schedule: CronScheduleRecord, now: float) -> None:
        try:
            await self._fire(schedule, now)
        except Exception as exc:
            log.error("cloaca: cron schedule %s could not fire: %s", schedule.id, exc)

    async def _fire(self, schedule: CronScheduleRecord, now: float) -> None:
        if self.lateness is not None:
            self.lateness.append(now - schedule.next_run_at)
        expression = parse_expression(schedule.cron_expression, schedule.timezone)
        missed = _slots_between(expression, schedule.next_run_at, now, MAX_RECORDED_SKIPS)
        slots = [schedule.next_run_at] + missed
        if CatchupPolicy.parse(schedule.catchup_policy) is CatchupPolicy.RUN_ALL:
            launch, skipped = slots[: self.max_catchup], slots[self.max_catchup:]
        else:
            launch, skipped = slots[:1], slots[1:]
        claim = CronSlotClaim(
            schedule.id, schedule.next_run_at, next_slot(expression, now), launch, skipped
        )
        claimed = await self.store.claim_cron_slots(claim, now)
        if claimed is None:
            return  # another runner claimed these slots
        if len(missed) >= MAX_RECORDED_SKIPS:
            log.warning("cloaca: cron schedule %s missed more slots than were recorded", schedule.id)
        for fire_id, slot in claimed:
            self._spawn_launch(schedule, fire_id, slot)

    def _spawn_launch(self, schedule: CronScheduleRecord, fire_id: str, slot: float) -> None:
        task = asyncio.get_running_loop().create_task(self._launch(schedule, fire_id, slot))
        self._launches.add(task)
        task.add_done_callback(self._launches.discard)

    async def _launch(self, schedule: CronScheduleRecord, fire_id: str, slot: float) -> None:
        data = {
            k: v for k, v in json.loads(schedule.params or "{}").items() if k not in RESERVED_KEYS
        }
        data.update(
            scheduled_time=rfc3339(slot), schedule_id=schedule.id,
            schedule_timezone=schedule.timezone, schedule_expression=schedule.cron_expression,
        )
        try:
            await self.engine.submit(
                schedule.workflow_name, json.dumps(data), link_fire_id=fire_id,
                attributes={"cloaca.cron_schedule_id": schedule.id},
            )
        except Exception as exc:
            log.error(
                "cloaca: cron schedule %s could not start workflow '%s': %s",
                schedule.id, schedule.workflow_name, exc,
            )
            try:
                await self.store.close_schedule_fire(fire_id, self.clock(), "failed", str(exc))
            except Exception as store_exc:
                log.error("cloaca: could not record the failed cron fire %s: %s", fire_id, store_exc)

    # ------------------------------------------------------------------ recovery
    async def _recover_forever(self) -> None:
        while True:
            await asyncio.sleep(self.recovery_interval)
            try:
                await self.recover_lost()
            except Exception as exc:
                log.error("cloaca: cron recovery failed: %s", exc)

    async def recover_lost(self) -> None:
        """Re-fire slots whose hand-off was lost (claimed, but no run was ever started)."""
        now = self.clock()
        lost = await self.store.lost_cron_fires(
            now - self.lost_threshold, now - self.max_recovery_age, self.max_recovery_attempts, now
        )
        for fire, schedule in lost:
            log.warning("cloaca: re-firing lost cron slot %s of schedule %s", rfc3339(fire.scheduled_time), schedule.id)
            self._spawn_launch(schedule, fire.id, fire.scheduled_time or now)
