"""The cron half of `DefaultRunner` (SPEC §3.6): sync methods and their `a`-prefixed twins."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional, TypeVar, Union

from .._context import Context
from .._paging import page
from .._result import rfc3339
from .._store.base import CronScheduleRecord, ScheduleExecutionRecord
from .scheduler import (
    CatchupPolicy,
    CronScheduler,
    new_schedule,
    next_slot,
    parse_expression,
)

if TYPE_CHECKING:
    from .._store import Store

T = TypeVar("T")
Policy = Union[str, CatchupPolicy]

LOST_AFTER_SECONDS = 600.0
"""Stats count an unlinked fire as lost once it is this old (SPEC §3.6)."""


class CronAPI:
    """Mixed into DefaultRunner; relies on its `_call`, `_acall`, `_store` and `_cron`."""

    _store: Store
    _cron: Optional[CronScheduler]
    _call: Callable[..., Any]
    _acall: Callable[..., Awaitable[Any]]

    # -------------------------------------------------------------- register
    def register_cron_workflow(self, workflow_name: str, cron_expression: str, timezone: str = "UTC",
                               catchup_policy: Policy = CatchupPolicy.SKIP) -> str:
        """Run `workflow_name` on a cron schedule; returns the new schedule's id."""
        return self._call("register_cron_workflow", self._register, workflow_name, cron_expression,
                          timezone, catchup_policy)

    async def aregister_cron_workflow(self, workflow_name: str, cron_expression: str,
                                      timezone: str = "UTC",
                                      catchup_policy: Policy = CatchupPolicy.SKIP) -> str:
        return await self._acall("aregister_cron_workflow", self._register, workflow_name,
                                 cron_expression, timezone, catchup_policy)

    async def _register(self, workflow_name: str, cron_expression: str, timezone: str,
                        catchup_policy: Policy) -> str:
        prefix = "Failed to register cron workflow"
        record = self._new_record(prefix, workflow_name, cron_expression, timezone, catchup_policy)
        await self._store.create_cron_schedule(record)
        self._scheduler().rearm()
        return record.id

    def register_workflow_instance(self, workflow_name: str, instance_name: str, cron_expression: str,
                                   timezone: str, params: Context,
                                   catchup_policy: Policy = CatchupPolicy.SKIP) -> str:
        """A named schedule of `workflow_name` whose runs get `params` as context keys."""
        return self._call("register_workflow_instance", self._register_instance, workflow_name,
                          instance_name, cron_expression, timezone, params, catchup_policy)

    async def aregister_workflow_instance(self, workflow_name: str, instance_name: str,
                                          cron_expression: str, timezone: str, params: Context,
                                          catchup_policy: Policy = CatchupPolicy.SKIP) -> str:
        return await self._acall("aregister_workflow_instance", self._register_instance,
                                 workflow_name, instance_name, cron_expression, timezone, params,
                                 catchup_policy)

    async def _register_instance(self, workflow_name: str, instance_name: str, cron_expression: str,
                                 timezone: str, params: Context, catchup_policy: Policy) -> str:
        prefix = "Failed to register workflow instance"
        if not isinstance(instance_name, str) or not instance_name:
            raise ValueError(f"{prefix}: instance_name must be a non-empty string")
        if not isinstance(params, Context):
            raise TypeError(f"{prefix}: params must be a cloaca.Context, got {type(params).__name__}")
        record = self._new_record(prefix, workflow_name, cron_expression, timezone, catchup_policy,
                                  instance_name=instance_name,
                                  params=json.dumps(params._data_view()))
        if not await self._store.create_cron_schedule(record):
            raise ValueError(
                f"{prefix}: workflow '{workflow_name}' already has an instance named '{instance_name}'"
            )
        self._scheduler().rearm()
        return record.id

    def _new_record(self, prefix: str, workflow_name: str, cron_expression: str, timezone: str,
                    catchup_policy: Policy, **extra: Any) -> CronScheduleRecord:
        self._scheduler()
        if not isinstance(workflow_name, str) or not workflow_name:
            raise ValueError(f"{prefix}: workflow_name must be a non-empty string")
        try:
            expression = parse_expression(cron_expression, timezone)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{prefix}: Invalid cron expression or timezone: {exc}") from None
        try:
            policy = CatchupPolicy.parse(catchup_policy)
        except ValueError as exc:
            raise ValueError(f"{prefix}: {exc}") from None
        return new_schedule(workflow_name, expression, self._scheduler().clock(), policy=policy, **extra)

    # -------------------------------------------------------------- read
    def list_cron_schedules(self, enabled_only: Optional[bool] = None, limit: Optional[int] = None,
                            offset: Optional[int] = None) -> list[dict[str, Any]]:
        """Cron schedules, newest first (defaults: all, 100, 0)."""
        return self._call("list_cron_schedules", self._list, enabled_only, limit, offset)

    async def alist_cron_schedules(self, enabled_only: Optional[bool] = None,
                                   limit: Optional[int] = None,
                                   offset: Optional[int] = None) -> list[dict[str, Any]]:
        return await self._acall("alist_cron_schedules", self._list, enabled_only, limit, offset)

    async def _list(self, enabled_only: Optional[bool], limit: Optional[int],
                    offset: Optional[int]) -> list[dict[str, Any]]:
        self._scheduler()
        limit, offset = page(limit, offset)
        records = await self._store.list_cron_schedules(bool(enabled_only), limit, offset)
        return [_schedule_dict(r) for r in records]

    def get_cron_schedule(self, schedule_id: str) -> dict[str, Any]:
        """One schedule; ValueError if the id is malformed or unknown."""
        return self._call("get_cron_schedule", self._get, schedule_id)

    async def aget_cron_schedule(self, schedule_id: str) -> dict[str, Any]:
        return await self._acall("aget_cron_schedule", self._get, schedule_id)

    async def _get(self, schedule_id: str) -> dict[str, Any]:
        prefix = "Failed to get cron schedule"
        record = await self._store.get_cron_schedule(self._schedule_id(prefix, schedule_id))
        if record is None:
            raise ValueError(f"{prefix}: no cron schedule with id {schedule_id}")
        return _schedule_dict(record)

    # -------------------------------------------------------------- change
    def update_cron_schedule(self, schedule_id: str, cron_expression: str, timezone: str) -> None:
        """Change a schedule's expression and timezone; its next run is recomputed from now."""
        self._call("update_cron_schedule", self._update, schedule_id, cron_expression, timezone)

    async def aupdate_cron_schedule(self, schedule_id: str, cron_expression: str, timezone: str) -> None:
        await self._acall("aupdate_cron_schedule", self._update, schedule_id, cron_expression, timezone)

    async def _update(self, schedule_id: str, cron_expression: str, timezone: str) -> None:
        prefix = "Failed to update cron schedule"
        schedule_id = self._schedule_id(prefix, schedule_id)
        try:
            expression = parse_expression(cron_expression, timezone)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{prefix}: Invalid cron expression or timezone: {exc}") from None
        now = self._scheduler().clock()
        found = await self._store.update_cron_schedule(
            schedule_id, expression.expression, expression.timezone, next_slot(expression, now), now
        )
        if not found:
            raise ValueError(f"{prefix}: no cron schedule with id {schedule_id}")
        self._scheduler().rearm()

    def set_cron_schedule_enabled(self, schedule_id: str, enabled: bool) -> None:
        """Pause or resume a schedule (unknown ids are ignored)."""
        self._call("set_cron_schedule_enabled", self._set_enabled, schedule_id, enabled)

    async def aset_cron_schedule_enabled(self, schedule_id: str, enabled: bool) -> None:
        await self._acall("aset_cron_schedule_enabled", self._set_enabled, schedule_id, enabled)

    async def _set_enabled(self, schedule_id: str, enabled: bool) -> None:
        prefix = "Failed to set cron schedule enabled"
        if not isinstance(enabled, bool):
            raise TypeError(f"{prefix}: enabled must be a bool, got {type(enabled).__name__}")
        schedule_id = self._schedule_id(prefix, schedule_id)
        await self._store.set_cron_enabled(schedule_id, enabled, self._scheduler().clock())
        self._scheduler().rearm()

    def delete_cron_schedule(self, schedule_id: str) -> None:
        """Delete a schedule and its history (unknown ids are ignored)."""
        self._call("delete_cron_schedule", self._delete, schedule_id)

    async def adelete_cron_schedule(self, schedule_id: str) -> None:
        await self._acall("adelete_cron_schedule", self._delete, schedule_id)

    async def _delete(self, schedule_id: str) -> None:
        schedule_id = self._schedule_id("Failed to delete cron schedule", schedule_id)
        await self._store.delete_cron_schedule(schedule_id)
        self._scheduler().rearm()

    # -------------------------------------------------------------- history
    def get_cron_execution_history(self, schedule_id: str, limit: Optional[int] = None,
                                   offset: Optional[int] = None) -> list[dict[str, Any]]:
        """A schedule's fires, newest first, skipped slots included (defaults 100, 0)."""
        return self._call("get_cron_execution_history", self._history, schedule_id, limit, offset)

    async def aget_cron_execution_history(self, schedule_id: str, limit: Optional[int] = None,
                                          offset: Optional[int] = None) -> list[dict[str, Any]]:
        return await self._acall("aget_cron_execution_history", self._history, schedule_id,
                                 limit, offset)

    async def _history(self, schedule_id: str, limit: Optional[int],
                       offset: Optional[int]) -> list[dict[str, Any]]:
        schedule_id = self._schedule_id("Failed to get cron execution history", schedule_id)
        limit, offset = page(limit, offset)
        return [_fire_dict(r) for r in await self._store.cron_history(schedule_id, limit, offset)]

    def get_cron_execution_stats(self, since: Union[str, datetime]) -> dict[str, Any]:
        """Counts of schedule fires (cron and trigger) since a moment: an aware `datetime`, or
        RFC 3339 text with an offset."""
        return self._call("get_cron_execution_stats", self._stats, since)

    async def aget_cron_execution_stats(self, since: Union[str, datetime]) -> dict[str, Any]:
        return await self._acall("aget_cron_execution_stats", self._stats, since)

    async def _stats(self, since: Union[str, datetime]) -> dict[str, Any]:
        prefix = "Failed to get cron execution stats"
        self._scheduler()
        moment = _parse_rfc3339(prefix, since)
        stats = await self._store.schedule_stats(
            moment, self._scheduler().clock() - LOST_AFTER_SECONDS
        )
        total = stats.total_executions
        return {
            "total_executions": total,
            "successful_executions": stats.successful_executions,
            "lost_executions": stats.lost_executions,
            "success_rate": (100.0 * stats.successful_executions / total) if total else 0.0,
        }

    # -------------------------------------------------------------- helpers
    def _scheduler(self) -> CronScheduler:
        if self._cron is None:
            raise ValueError(
                "Cron scheduling not enabled: this runner was configured with "
                "enable_cron_scheduling=False"
            )
        return self._cron

    def _schedule_id(self, prefix: str, schedule_id: Any) -> str:
        self._scheduler()
        try:
            return str(uuid.UUID(schedule_id))
        except (ValueError, TypeError, AttributeError):
            raise ValueError(f"{prefix}: Invalid schedule ID: {schedule_id!r}") from None


def _parse_rfc3339(prefix: str, text: Any) -> float:
    if isinstance(text, datetime):
        if text.tzinfo is None:
            raise ValueError(f"{prefix}: since={text!r} has no time zone (use an aware datetime)")
        return text.timestamp()
    if isinstance(text, str):
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return moment.timestamp()
    raise ValueError(
        f"{prefix}: Invalid datetime format: {text!r} (expected RFC 3339 with a UTC offset, "
        "e.g. '2025-01-01T00:00:00+00:00')"
    )


def _schedule_dict(r: CronScheduleRecord) -> dict[str, Any]:
    return {
        "id": r.id, "workflow_name": r.workflow_name, "cron_expression": r.cron_expression,
        "timezone": r.timezone, "enabled": r.enabled, "catchup_policy": r.catchup_policy,
        "next_run_at": rfc3339(r.next_run_at), "last_run_at": rfc3339(r.last_run_at),
        "created_at": rfc3339(r.created_at), "updated_at": rfc3339(r.updated_at),
    }


def _fire_dict(r: ScheduleExecutionRecord) -> dict[str, Any]:
    return {
        "id": r.id, "schedule_id": r.schedule_id, "scheduled_time": rfc3339(r.scheduled_time),
        "claimed_at": rfc3339(r.claimed_at), "workflow_execution_id": r.workflow_execution_id,
        "created_at": rfc3339(r.created_at), "updated_at": rfc3339(r.updated_at),
        "outcome": r.outcome or ("launched" if r.workflow_execution_id else "pending"),
        "error": r.error,
    }
