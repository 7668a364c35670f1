"""Work shared by task (`WorkSharing.BY_TASK`): claiming ready tasks of any run, and
noticing the end of runs started here that other runners finished.

One asyncio task per runner. It claims while slots are free and there may be work: after
a notice of new work pushed by the store (LISTEN/NOTIFY on PostgreSQL), when a step of
this runner left tasks Ready for want of a slot, when a slot frees up, when a retry delay
ends, and on a fallback timer that also takes over tasks whose lease expired and checks
the runs this runner waits for. The timer is the scheduler tick when the store cannot push
notices, and at most `MAX_FALLBACK_SECONDS` when it can.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Mapping, Optional, Protocol

from .._cancelling import cancel_and_wait
from .._store.base import ClaimedWork, ClaimStore, Notice, NoticeStore
from .deadline import deadline
from .sharing import Engine
from .slots import SlotPool

log = logging.getLogger("cloaca")

MAX_FALLBACK_SECONDS = 1.0
MAX_CLAIM_BATCH = 64


class Claimer(Protocol):
    """What the claims loop serves (`by_task.TaskSharing`)."""

    engine: Engine

    def claimable_names(self) -> dict[SlotPool, tuple[str, ...]]: ...
    def cached_versions(self) -> dict[str, int]: ...
    async def start_claimed(self, work: ClaimedWork, known: Mapping[str, int]) -> None: ...


class TaskClaims:
    """Claims tasks for one engine and watches the runs it started."""

    def __init__(self, sharing: Claimer, store: ClaimStore, poll_interval: float) -> None:
        self.sharing = sharing
        self.engine = sharing.engine
        self.store = store
        self.poll_interval = poll_interval
        self.fallback = poll_interval
        self.listening = False
        self._wake = asyncio.Event()
        self._maybe_work = True
        self._ended: set[str] = set()
        self._task: Optional[asyncio.Task[None]] = None

    async def start(self) -> None:
        """Listen for notices if the store can push them; claim what is ready now."""
        store = self.store
        self.listening = isinstance(store, NoticeStore) and await store.listen(self._on_notice)
        self.fallback = max(self.poll_interval, MAX_FALLBACK_SECONDS) if self.listening else self.poll_interval
        await self._claim_while_free(take_over=self.engine.settings.enable_recovery)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task], "stopping the claims of shared tasks")
            self._task = None

    def wake(self) -> None:
        """There may be claimable work (a slot freed, a retry is due, a notice came)."""
        self._maybe_work = True
        self._wake.set()

    def slot_freed(self) -> None:
        """Claim again if work was left unclaimed for want of a slot."""
        if self._maybe_work:
            self._wake.set()

    def _on_notice(self, notice: Notice) -> None:
        if notice.ended_run is not None:
            self._ended.add(notice.ended_run)
            self._wake.set()
        if notice.work:
            self.wake()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_take_over = loop.time() + self.fallback
        take_over_pending = False
        while True:
            timed_out = False
            try:
                async with deadline(self.fallback):
                    await self._wake.wait()
            except TimeoutError:
                timed_out = True
            self._wake.clear()
            # Expired leases are looked for every `fallback` seconds even when notices keep
            # waking this loop: a steady stream of new work must not starve a dead runner's tasks.
            # It stays pending until a pass had a free slot of every kind to look with.
            if timed_out or loop.time() >= next_take_over:
                take_over_pending = self.engine.settings.enable_recovery
                next_take_over = loop.time() + self.fallback
            try:
                if timed_out or self._ended:
                    await self._observe_ended(check_all=timed_out)
                if take_over_pending:
                    take_over_pending = not await self._claim_while_free(take_over=True)
                elif self._maybe_work:
                    await self._claim_while_free(take_over=False)
            except Exception as exc:
                log.error("cloaca: claiming work from %s failed: %s", self.engine.store.description, exc)

    async def _claim_while_free(self, take_over: bool) -> bool:
        """Claim, for each kind of slot (threads, async), batches while slots of that kind are
        free and the store keeps handing out full batches; whether every kind had a free
        slot to claim with."""
        self._maybe_work = False
        looked = True
        for pool, names in self.sharing.claimable_names().items():
            looked = await self._claim_for(pool, names, take_over) and looked
        return looked

    async def _claim_for(self, pool: SlotPool, task_names: tuple[str, ...], take_over: bool) -> bool:
        """Claim batches of as many tasks as `pool` has free slots, while the store hands out
        full ones; whether there was a free slot to claim with.

        The slots are not taken while the claim is on its way: this runner's own steps may
        take them meanwhile (their tasks then start here, rather than being left Ready for
        every runner to be woken for, and to claim). A claimed task that finds no free slot
        when the claim comes back waits here for one (`Claimer.start_claimed`)."""
        engine = self.engine
        looked = False
        while not engine.stopping and task_names:
            limit = min(MAX_CLAIM_BATCH, pool.available)
            if limit == 0:
                self._maybe_work = True  # look again when a slot frees up
                return looked
            looked = True
            now = time.time()
            known = self.sharing.cached_versions()
            work = await self.store.claim_tasks(
                engine.owner, now, now + engine.settings.lease_seconds,
                engine.registry.workflow_names(), limit, take_over, known, task_names,
            )
            for item in work:
                await self.sharing.start_claimed(item, known)
            if sum(len(w.tasks) for w in work) < limit:
                return True
        return True

    async def _observe_ended(self, check_all: bool) -> None:
        """Stop, here, the runs that another runner ended (or that were cancelled)."""
        ended, self._ended = self._ended, set()
        try:
            if check_all:
                await self.engine.observe_ended()
            elif ended:
                await self.engine.observe_ended(list(ended))
        except BaseException:
            self._ended |= ended  # a notice not acted on (the store failed) is kept
            raise
