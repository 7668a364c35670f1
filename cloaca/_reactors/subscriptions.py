"""Reactor subscriptions: firings dispatch subscribed workflows (GRAPHS.md C11.4, C13.6).

The firing rows are the source of truth. Each subscription keeps a watermark, the
(fired_at, id) of the last firing it dealt with; a pass reads what is newer, oldest first,
and advances the watermark after each firing dispatched or filtered out. A crash between a
dispatch and its watermark write dispatches that firing again (at least once).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Awaitable, Callable, Optional

from .._cancelling import cancel_and_wait
from .._engine.deadline import deadline
from .._result import rfc3339
from .._store import Store
from .._store.base import FiringRecord, SubscriptionRecord
from .predicates import PredicateError, evaluate

log = logging.getLogger("cloaca")

FIRINGS_PER_PASS = 100
PREDICATE_ERROR_BOUND = 5
"""Consecutive errors on one firing after which the subscription is marked degraded and
moves past it."""
FIRING_RETENTION_SECONDS = 7 * 86400.0
PASS_LEASE_SECONDS = 30.0
"""How long a pass may hold subscriptions before another runner may take them."""
PRUNE_EVERY_SECONDS = 3600.0

Dispatch = Callable[[str, str], Awaitable[Any]]
"""Start workflow `name` with input context JSON (fire-and-forget)."""


def workflow_input(firing: FiringRecord) -> dict[str, Any]:
    """The context a firing starts a subscribed workflow with: its snapshot's sources plus
    `reactor_name`, `reactor_firing_id`, `reactor_fired_at`."""
    data: dict[str, Any] = json.loads(firing.payload)
    data["reactor_name"] = firing.reactor_name
    data["reactor_firing_id"] = firing.id
    data["reactor_fired_at"] = rfc3339(firing.fired_at)
    return data


class SubscriptionPoller:
    """Walks the enabled subscriptions every `interval` seconds (sooner when woken).

    A pass holds the subscriptions it walks under a lease and gives them back at its end,
    so runners sharing a database never dispatch one subscription's firings at once; those
    held by a runner that died during a pass are taken over when its lease expires.
    """

    def __init__(self, store: Store, dispatch: Dispatch, interval: float, owner: str,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._owner = owner
        self.lease_seconds = PASS_LEASE_SECONDS
        self._dispatch = dispatch
        self._interval = interval
        self._clock = clock
        self._wake = asyncio.Event()
        self._task: Optional[asyncio.Task[None]] = None
        self._pass_lock = asyncio.Lock()
        self._last_prune = 0.0
        self._idle = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task], "stopping the reactor subscription poller")
            self._task = None

    def wake(self) -> None:
        """Look for new firings now (a reactor just fired); skipped while the last pass found
        no subscription (the next periodic pass looks again)."""
        if not self._idle:
            self._wake.set()

    def subscriptions_changed(self) -> None:
        """A subscription was made here: let fires wake the poller again."""
        self._idle = False

    async def _run(self) -> None:
        while True:
            # deadline (asyncio.timeout), not wait_for: on Python 3.11 wait_for drops a cancel
            # that arrives in the turn the wake does, and `stop` would wait for ever.
            try:
                async with deadline(self._interval):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.poll_once()
                await self._prune()
            except Exception as exc:
                log.error("cloaca: reactor subscription pass failed: %s", exc)

    async def _prune(self) -> None:
        now = self._clock()
        if now - self._last_prune >= PRUNE_EVERY_SECONDS:
            self._last_prune = now
            await self._store.prune_firings(now - FIRING_RETENTION_SECONDS)

    async def poll_once(self) -> int:
        """One pass over every enabled subscription; how many workflows it dispatched."""
        async with self._pass_lock:
            now = self._clock()
            held = await self._store.claim_subscriptions(self._owner, now, now + self.lease_seconds)
            self._idle = not held
            if not held:
                return 0
            try:
                return await self._walk(held)
            finally:
                await asyncio.shield(self._release())

    async def _walk(self, held: list[SubscriptionRecord]) -> int:
        dispatched = 0
        for subscription in held:
            try:
                dispatched += await self._poll(subscription)
            except Exception as exc:  # one subscription's trouble does not stop the others
                log.error("cloaca: reactor subscription %s (%s -> %s) failed: %s",
                          subscription.id, subscription.reactor_name,
                          subscription.workflow_name, exc)
        return dispatched

    async def _release(self) -> None:
        try:
            await self._store.release_subscriptions(self._owner)
        except Exception as exc:  # they are free again when the lease expires
            log.warning("cloaca: could not release reactor subscriptions: %s", exc)

    async def _poll(self, sub: SubscriptionRecord) -> int:
        after = None
        if sub.last_seen_fired_at is not None:
            after = (sub.last_seen_fired_at, sub.last_seen_firing_id or "")
        firings = await self._store.firings_after(
            sub.tenant_id, sub.reactor_name, after, FIRINGS_PER_PASS
        )
        dispatched = 0
        for firing in firings:
            data = workflow_input(firing)
            if sub.predicate_expression is not None and not await self._passes(sub, firing, data):
                if sub.last_seen_firing_id != firing.id:  # held on an error
                    break
                continue
            try:
                await self._dispatch(sub.workflow_name, json.dumps(data))
            except Exception as exc:
                log.error("cloaca: reactor subscription %s could not start workflow '%s' (retried "
                          "next pass): %s", sub.id, sub.workflow_name, exc)
                break
            dispatched += 1
            await self._advance(sub, firing)
        return dispatched

    async def _passes(self, sub: SubscriptionRecord, firing: FiringRecord, data: dict[str, Any]) -> bool:
        """Whether the predicate admits the firing. A false one, or the bounded-th error on
        it, moves the watermark past it; an earlier error holds it there."""
        payload = {k: v for k, v in data.items()
                   if k not in ("reactor_name", "reactor_firing_id", "reactor_fired_at")}
        assert sub.predicate_expression is not None
        try:
            admitted = evaluate(sub.predicate_expression, payload, sub.reactor_name, sub.tenant_id)
        except PredicateError as exc:
            now = self._clock()
            same = sub.predicate_error_firing_id == firing.id
            sub.predicate_error_count = sub.predicate_error_count + 1 if same else 1
            sub.predicate_error_firing_id = firing.id
            sub.last_predicate_error = str(exc)
            sub.last_predicate_error_at = now
            log.warning("cloaca: predicate of reactor subscription %s failed on firing %s (%d): %s",
                        sub.id, firing.id, sub.predicate_error_count, exc)
            if sub.predicate_error_count >= PREDICATE_ERROR_BOUND:
                sub.predicate_degraded = True
                await self._advance(sub, firing)
            else:
                sub.updated_at = now
                await self._store.save_subscription_progress(sub)
            return False
        if sub.predicate_error_count or sub.predicate_degraded:
            sub.predicate_error_count = 0
            sub.predicate_degraded = False
        if not admitted:
            await self._advance(sub, firing)
        return admitted

    async def _advance(self, sub: SubscriptionRecord, firing: FiringRecord) -> None:
        sub.last_seen_fired_at = firing.fired_at
        sub.last_seen_firing_id = firing.id
        sub.updated_at = self._clock()
        await self._store.save_subscription_progress(sub)
