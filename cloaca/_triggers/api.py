"""The trigger half of `DefaultRunner` (SPEC §3.7): sync methods and their `a`-prefixed twins."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional

from .._paging import page
from .._result import rfc3339
from .._store.base import ScheduleExecutionRecord, TriggerScheduleRecord

if TYPE_CHECKING:
    from .._store import Store
    from .poller import TriggerPoller


class TriggerAPI:
    """Mixed into DefaultRunner; relies on its `_call`, `_acall`, `_store` and `_poller`."""

    _store: Store
    _poller: Optional[TriggerPoller]
    _call: Callable[..., Any]
    _acall: Callable[..., Awaitable[Any]]

    def list_trigger_schedules(self, enabled_only: Optional[bool] = None, limit: Optional[int] = None,
                               offset: Optional[int] = None) -> list[dict[str, Any]]:
        """Trigger schedules: enabled only (oldest first), or all (newest first); paginated."""
        return self._call("list_trigger_schedules", self._list_triggers, enabled_only, limit, offset)

    async def alist_trigger_schedules(self, enabled_only: Optional[bool] = None,
                                      limit: Optional[int] = None,
                                      offset: Optional[int] = None) -> list[dict[str, Any]]:
        return await self._acall("alist_trigger_schedules", self._list_triggers, enabled_only,
                                 limit, offset)

    async def _list_triggers(self, enabled_only: Optional[bool], limit: Optional[int],
                             offset: Optional[int]) -> list[dict[str, Any]]:
        limit, offset = page(limit, offset)
        records = await self._store.list_trigger_schedules(bool(enabled_only), limit, offset)
        return [self._trigger_dict(r) for r in records]

    def get_trigger_schedule(self, trigger_name: str) -> Optional[dict[str, Any]]:
        """A trigger's schedule, or None if unknown."""
        return self._call("get_trigger_schedule", self._get_trigger, trigger_name)

    async def aget_trigger_schedule(self, trigger_name: str) -> Optional[dict[str, Any]]:
        return await self._acall("aget_trigger_schedule", self._get_trigger, trigger_name)

    async def _get_trigger(self, trigger_name: str) -> Optional[dict[str, Any]]:
        record = await self._store.get_trigger_schedule(_name(trigger_name))
        return None if record is None else self._trigger_dict(record)

    def set_trigger_enabled(self, trigger_name: str, enabled: bool) -> None:
        """Stop (False) or resume (True) polling a trigger, in every runner; survives restarts."""
        self._call("set_trigger_enabled", self._set_trigger_enabled, trigger_name, enabled)

    async def aset_trigger_enabled(self, trigger_name: str, enabled: bool) -> None:
        await self._acall("aset_trigger_enabled", self._set_trigger_enabled, trigger_name, enabled)

    async def _set_trigger_enabled(self, trigger_name: str, enabled: bool) -> None:
        if not isinstance(enabled, bool):
            raise TypeError(f"enabled must be a bool, got {type(enabled).__name__}")
        await self._store.set_trigger_enabled(_name(trigger_name), enabled, time.time())
        assert self._poller is not None
        self._poller.set_enabled(trigger_name, enabled)

    def get_trigger_execution_history(self, trigger_name: str, limit: Optional[int] = None,
                                      offset: Optional[int] = None) -> list[dict[str, Any]]:
        """A trigger's fires, newest first ([] for an unknown trigger)."""
        return self._call("get_trigger_execution_history", self._trigger_history, trigger_name,
                          limit, offset)

    async def aget_trigger_execution_history(self, trigger_name: str, limit: Optional[int] = None,
                                             offset: Optional[int] = None) -> list[dict[str, Any]]:
        return await self._acall("aget_trigger_execution_history", self._trigger_history,
                                 trigger_name, limit, offset)

    async def _trigger_history(self, trigger_name: str, limit: Optional[int],
                               offset: Optional[int]) -> list[dict[str, Any]]:
        limit, offset = page(limit, offset)
        records = await self._store.trigger_history(_name(trigger_name), limit, offset)
        return [_fire_dict(r) for r in records]

    def _trigger_dict(self, r: TriggerScheduleRecord) -> dict[str, Any]:
        assert self._poller is not None
        polled = self._poller.last_poll(r.trigger_name)
        last_poll = max(filter(None, (r.last_poll_at, polled)), default=None)
        return {
            "id": r.id, "trigger_name": r.trigger_name, "workflow_name": r.workflow_name,
            "poll_interval_ms": r.poll_interval_ms, "allow_concurrent": r.allow_concurrent,
            "enabled": r.enabled, "last_poll_at": rfc3339(last_poll),
            "created_at": rfc3339(r.created_at), "updated_at": rfc3339(r.updated_at),
        }


def _name(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"trigger_name must be a str, got {type(value).__name__}")
    return value


def _fire_dict(r: ScheduleExecutionRecord) -> dict[str, Any]:
    return {
        "id": r.id, "schedule_id": r.schedule_id, "context_hash": r.context_hash,
        "workflow_execution_id": r.workflow_execution_id, "started_at": rfc3339(r.claimed_at),
        "completed_at": rfc3339(r.completed_at), "created_at": rfc3339(r.created_at),
    }
