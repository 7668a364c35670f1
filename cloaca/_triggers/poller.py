"""Polling triggers: async ones are one asyncio task per trigger, sleeping its interval
between polls (on one timer shared by all of them, `SharedTimer`); sync ones are scheduled
and called by a few worker threads (`_sync_polls`), so that a poll costs no trip through the
loop. Each poll is bounded by a timeout. A fire launches its run in the background so that a
slow run never delays any poll.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Optional

from .._cancelling import cancel_and_wait
from .._context import context_hash
from .._engine.deadline import Deadlines, cancelled_from_outside
from .._engine.executor import Engine
from .._engine.run_state import Run
from .._registry import Registry
from .._result import rfc3339
from .._store.base import FireRequest, Store
from .dedup import InflightFires
from .definition import TriggerDefinition, TriggerResult
from .failures import FailureLog
from .shared_timer import SharedTimer
from .sync_polls import PollEntry, SyncPollScheduler

log = logging.getLogger("cloaca.trigger")

NO_CONTEXT_HASH = "fire_no_context"
_POLL_FAILED = object()
MIN_INTERVAL_SECONDS = 0.001
SYNC_SECONDS = 1.0
"""How often poll times are written and enable flags re-read from the store."""


class TriggerPoller:
    """Keeps every enabled trigger of the registry polling on the engine's loop."""

    def __init__(
        self, engine: Engine, store: Store, registry: Registry,
        poll_timeout: float, max_concurrent_sync_polls: int,
    ) -> None:
        self.engine = engine
        self.store = store
        self.registry = registry
        self.poll_timeout = poll_timeout
        self._deadlines = Deadlines(resolution=min(1.0, poll_timeout / 10))
        self.inflight = InflightFires()
        self.failures = FailureLog()
        self._sync_polls = SyncPollScheduler(max_concurrent_sync_polls, poll_timeout, self.failures)
        self._pollers: dict[str, asyncio.Task[None]] = {}
        self._sync_entries: dict[str, PollEntry] = {}
        self._enabled: dict[str, bool] = {}
        # The newest poll of each trigger, and what the store was last told: time.monotonic()
        # readings (an asyncio loop's clock). Poll threads write `_polled` too: it is never
        # replaced, only read by one C call (`list(....items())`).
        self._polled: dict[str, float] = {}
        self._written: dict[str, float] = {}
        self._enable_changes = 0
        self._launches: set[asyncio.Task[None]] = set()
        self._sync_task: Optional[asyncio.Task[None]] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._timer: Optional[SharedTimer] = None
        self._open_fires: dict[Optional[str], tuple[str, str]] = {}
        self._async_polls = 0
        self.lateness: Optional[list[float]] = None  # benchmarks switch this on

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Upsert every trigger's schedule and start polling; call before the engine recovers.

        The dedup set is rebuilt from the store's open fires as the engine resumes their runs:
        a key is held in memory only while this runner executes the run that holds it, and
        the store refuses duplicates of runs executed elsewhere.
        """
        self._loop = asyncio.get_running_loop()
        self._timer = SharedTimer(self._loop)
        fires = await self.store.open_trigger_fires(time.time())
        self._open_fires = {f.workflow_execution_id: (f.trigger_name, f.context_hash) for f in fires}
        self.engine.resumed_listeners.append(self._hold_key_of_resumed)
        for definition in self.registry.triggers():
            await self.add(definition)
        self._sync_task = self._loop.create_task(self._sync_with_store())

    @property
    def polls(self) -> int:
        """Polls made so far (benchmarks read it)."""
        return self._async_polls + self._sync_polls.polls

    async def stop(self) -> None:
        self._sync_polls.stop()
        tasks = list(self._pollers.values()) + list(self._launches)
        if self._sync_task is not None:
            tasks.append(self._sync_task)
        await cancel_and_wait(tasks, "stopping the trigger poller")
        self._pollers.clear()
        if self._timer is not None:
            self._timer.close()
        await self._flush_polls()

    def _hold_key_of_resumed(self, run: Run) -> None:
        key = self._open_fires.pop(run.id, None)
        if key is not None and self.inflight.hold(key):
            run.on_finish.append(lambda _run: self.inflight.release(key))

    # ------------------------------------------------------------------ registration
    async def apply_declaration(self, name: str, definition: Optional[TriggerDefinition]) -> None:
        """A trigger declared (or re-declared) after the start, or removed (None)."""
        if definition is None:
            await self.remove(name)
        else:
            await self.add(definition)

    async def add(self, definition: TriggerDefinition) -> None:
        """Upsert the trigger's schedule and (re)start its poller."""
        if definition.workflow is None or definition.cron is not None:
            await self.remove(definition.name)  # no longer polled if it was before
            return  # recorded by the registry only; cron-form triggers are cron schedules
        record = await self.store.upsert_trigger_schedule(
            definition.name, definition.workflow, definition.poll_interval_ms,
            definition.allow_concurrent, time.time(),
        )
        self._enabled[definition.name] = record.enabled
        previous = self._pollers.pop(definition.name, None)
        if previous is not None:
            previous.cancel()
        previous_entry = self._sync_entries.pop(definition.name, None)
        if previous_entry is not None:
            previous_entry.cancel()
        assert self._loop is not None
        if definition.is_async:
            self._pollers[definition.name] = self._loop.create_task(self._poll_forever(definition))
        else:
            entry = PollEntry(
                definition.name, _interval(definition), lambda: self._poll_sync(definition),
                lambda result: self._fired_in_thread(definition, result), self.lateness,
            )
            self._sync_entries[definition.name] = entry
            self._sync_polls.add(entry)

    async def remove(self, trigger_name: str) -> None:
        """Stop polling a trigger that is no longer declared (its schedule row stays)."""
        poller = self._pollers.pop(trigger_name, None)
        if poller is not None:
            poller.cancel()
        self._enabled.pop(trigger_name, None)

    def set_enabled(self, trigger_name: str, enabled: bool) -> None:
        """Apply an enable flag at once in this runner (the store keeps it for the others)."""
        if trigger_name in self._enabled:
            self._enabled[trigger_name] = enabled
            self._enable_changes += 1

    def last_poll(self, trigger_name: str) -> Optional[float]:
        """The newest poll time of this runner (the store may not have it yet)."""
        polled = self._polled.get(trigger_name)
        return None if polled is None else _wall(polled)

    # ------------------------------------------------------------------ polling
    async def _poll_forever(self, definition: TriggerDefinition) -> None:
        """An async trigger's poller. Inline, with no helper coroutine per poll: thousands
        of polls a second pay for each level."""
        loop = asyncio.get_running_loop()
        task: Any = asyncio.current_task()
        assert self._timer is not None
        clock, wait_until = loop.time, self._timer.wait_until
        interval = _interval(definition)
        due = clock() + interval  # the first poll comes one full interval after start
        name, function, timeout = definition.name, definition.function, self.poll_timeout
        lateness, deadlines, enabled = self.lateness, self._deadlines, self._enabled
        failures, polled = self.failures, self._polled
        while True:
            await wait_until(due)
            now = clock()
            if lateness is not None:
                lateness.append(now - due)
            due += interval
            if due <= now:
                due = now + interval  # a poll that overran: skip the missed ticks
            if not enabled.get(name, True):
                continue
            key = deadlines.arm(task, timeout, now)
            try:
                try:
                    outcome = await function()
                finally:
                    timed_out = deadlines.disarm(task, key)
            except asyncio.CancelledError:
                if cancelled_from_outside():
                    raise
                outcome = _POLL_FAILED
                if not timed_out:
                    failures.failed(name, "raised CancelledError")
            except Exception as exc:
                outcome = _POLL_FAILED
                if not timed_out:
                    failures.failed(name, f"raised {type(exc).__name__}: {exc}", exc)
            if timed_out:  # its outcome, even one that ignored the cancellation, is dropped
                outcome = _POLL_FAILED
                failures.failed(name, f"poll timed out after {timeout:g}s")
            self._async_polls += 1
            polled[name] = now
            if outcome is not _POLL_FAILED:
                result = self._result(definition, outcome)
                if result is not None and result._fire:
                    self._launch(definition, result._fired_data())

    def _poll_sync(self, definition: TriggerDefinition) -> Optional[TriggerResult]:
        """Call a sync trigger once, in a poll thread (never again before it returns); any
        failure is logged and counts as no fire."""
        if not self._enabled.get(definition.name, True):
            return None
        try:
            outcome = definition.function()
        except Exception as exc:
            self.failures.failed(definition.name, f"raised {type(exc).__name__}: {exc}", exc)
            return None
        finally:
            self._polled[definition.name] = time.monotonic()
        return self._result(definition, outcome)

    def _result(self, definition: TriggerDefinition, outcome: Any) -> Optional[TriggerResult]:
        """A trigger's return value as a fire (or None); a bad one is a failed poll."""
        if isinstance(outcome, TriggerResult):
            result: Optional[TriggerResult] = outcome
        elif isinstance(outcome, bool):
            result = TriggerResult.fire() if outcome else None
        else:
            self.failures.failed(definition.name, f"returned {type(outcome).__name__}; expected a "
                                 "cloaca.TriggerResult or a bool")
            return None
        self.failures.succeeded(definition.name)
        return result

    def _fired_in_thread(self, definition: TriggerDefinition, result: Optional[TriggerResult]) -> None:
        """A sync poll's outcome, in its poll thread: a fire is launched on the loop."""
        if result is None or not result._fire or self._loop is None:
            return
        try:
            self._loop.call_soon_threadsafe(self._launch, definition, result._fired_data())
        except RuntimeError:
            pass  # the loop is closed: the runner has shut down

    # ------------------------------------------------------------------ firing
    def _launch(self, definition: TriggerDefinition, data: Optional[dict[str, Any]]) -> None:
        fired_hash = NO_CONTEXT_HASH if data is None else context_hash(data)
        key = (definition.name, fired_hash)
        deduplicate = not definition.allow_concurrent
        if deduplicate and not self.inflight.hold(key):
            return  # an identical run is in flight
        task = asyncio.get_running_loop().create_task(
            self._start_run(definition, dict(data or {}), fired_hash, key if deduplicate else None)
        )
        self._launches.add(task)
        task.add_done_callback(self._launches.discard)

    async def _start_run(
        self, definition: TriggerDefinition, data: dict[str, Any], fired_hash: str,
        key: Optional[tuple[str, str]],
    ) -> None:
        assert definition.workflow is not None
        now = time.time()
        data["trigger_name"] = definition.name
        data["triggered_at"] = rfc3339(now)
        fire = FireRequest(definition.name, fired_hash, key is not None)
        try:
            run = await self.engine.submit(definition.workflow, json.dumps(data), fire)
        except Exception as exc:
            if key is not None:
                self.inflight.release(key)
            log.error(
                "cloaca: trigger '%s' fired workflow '%s', which could not start: %s",
                definition.name, definition.workflow, exc,
            )
            await self._record_unlaunched(definition.name, fired_hash, now)
            return
        if key is None:
            return
        if run is None:
            self.inflight.release(key)  # another runner holds it; the store will tell again
        else:
            run.on_finish.append(lambda _run: self.inflight.release(key))

    async def _record_unlaunched(self, trigger_name: str, fired_hash: str, now: float) -> None:
        try:
            await self.store.record_unlaunched_fire(trigger_name, fired_hash, now)
        except Exception as exc:
            log.error("cloaca: could not record the failed fire of trigger '%s': %s", trigger_name, exc)

    # ------------------------------------------------------------------ store sync
    async def _sync_with_store(self) -> None:
        while True:
            await asyncio.sleep(SYNC_SECONDS)
            try:
                await self._flush_polls()
                await self._refresh_enabled()
            except Exception as exc:
                log.error("cloaca: trigger state sync failed: %s", exc)

    async def _flush_polls(self) -> None:
        """Write the poll times that the store has not been told yet."""
        written = self._written
        changed = [(name, t) for name, t in list(self._polled.items()) if written.get(name) != t]
        if changed:
            to_wall = time.time() - time.monotonic()
            await self.store.record_trigger_polls([(name, t + to_wall) for name, t in changed])
            written.update(changed)

    async def _refresh_enabled(self) -> None:
        changes = self._enable_changes
        records = await self.store.list_trigger_schedules(False, 1_000_000, 0)
        if changes != self._enable_changes:
            return  # a local change raced this read: the next sync sees it in the store
        for record in records:
            if record.trigger_name in self._enabled:
                self._enabled[record.trigger_name] = record.enabled


def _interval(definition: TriggerDefinition) -> float:
    return max(definition.poll_interval_ms / 1000, MIN_INTERVAL_SECONDS)


def _wall(monotonic: float) -> float:
    """A `time.monotonic()` reading as POSIX time."""
    return monotonic + time.time() - time.monotonic()
