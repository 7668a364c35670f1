"""A live reactor (GRAPHS.md C9.1, C13.4): a cache fed by boundaries, fired by its criteria.

One task drains the reactor's inbox. It applies every boundary waiting (so a burst that
arrived during a fire coalesces into one evaluation, with the latest values), then fires if
the criteria hold: record the firing, run the bound graphs concurrently, persist the state.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Callable, Optional

import anyio

from .._cancelling import cancel_and_wait
from .._context import json_copy
from .._graphs.builder import get_graph
from .._graphs.execution import arun_graph
from .._ids import time_ordered_id
from .._result import rfc3339
from .._store import Store
from .._store.base import FiringRecord
from .definitions import ReactorDefinition

log = logging.getLogger("cloaca")

INBOX_CAPACITY = 256
_EVALUATE = object()
"""An inbox item that only asks for the criteria to be evaluated (after a resume)."""
_STOP = object()


class LiveReactor:
    """A reactor running on the runner's loop."""

    def __init__(self, definition: ReactorDefinition, tenant: str, store: Store,
                 limiter: anyio.CapacityLimiter, on_fired: Callable[[], None]) -> None:
        self.definition = definition
        self.tenant = tenant
        self.graphs: list[str] = []
        self.cache: dict[str, Any] = {}
        self.dirty = dict.fromkeys(definition.accumulators, False)
        self.paused = False
        self.fires = 0
        self.last_fire_at: Optional[float] = None
        self.last_error: Optional[str] = None
        self.inbox: asyncio.Queue[Any] = asyncio.Queue(INBOX_CAPACITY)
        self._store = store
        self._limiter = limiter
        self._on_fired = on_fired
        self._fire_lock = asyncio.Lock()
        self._task: Optional[asyncio.Task[None]] = None

    @property
    def name(self) -> str:
        return self.definition.name

    # ------------------------------------------------------------------ lifecycle
    async def restore(self) -> None:
        """Take back the cache and dirty flags saved by the last fire or shutdown."""
        saved = await self._store.load_reactor_state(self.tenant, self.name)
        if saved is None:
            return
        state = json.loads(saved)
        self.cache = dict(state.get("cache", {}))
        for source, flag in state.get("dirty", {}).items():
            if source in self.dirty:
                self.dirty[source] = bool(flag)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._consume())

    async def stop(self) -> None:
        """Finish the boundaries already queued and any fire in flight, then save the state."""
        if self._task is not None:
            await self.inbox.put(_STOP)
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._save()

    async def abort(self) -> None:
        """Cancel whatever is still running, then save the state."""
        if self._task is not None:
            await cancel_and_wait([self._task], f"aborting reactor '{self.name}'")
            self._task = None
        await self._save()

    # ------------------------------------------------------------------ boundaries
    async def deliver(self, source: str, value: Any) -> None:
        """A boundary from accumulator `source` (waits while the inbox is full)."""
        await self.inbox.put((source, value))

    def evaluate_soon(self) -> None:
        try:
            self.inbox.put_nowait(_EVALUATE)
        except asyncio.QueueFull:
            pass  # boundaries are queued: their evaluation comes anyway

    async def _consume(self) -> None:
        while True:
            item = await self.inbox.get()
            stopping = self._apply(item)
            while not stopping and not self.inbox.empty():
                stopping = self._apply(self.inbox.get_nowait())
            if self._criteria_hold():
                await self.fire()
            if stopping:
                return

    def _apply(self, item: Any) -> bool:
        if item is _STOP:
            return True
        if item is not _EVALUATE:
            source, value = item
            self.cache[source] = value
            self.dirty[source] = True
        return False

    def _criteria_hold(self) -> bool:
        if self.paused:
            return False
        if self.definition.mode == "when_all":
            return all(self.dirty.values())
        return any(self.dirty.values())

    # ------------------------------------------------------------------ firing
    async def fire(self, inputs: Optional[dict[str, Any]] = None) -> bool:
        """Fire now (one fire at a time); `inputs` replace the whole cache first. False if paused."""
        async with self._fire_lock:
            if self.paused:
                return False
            if inputs is not None:
                self.cache = dict(inputs)
            snapshot = json_copy(self.cache)
            for source in self.dirty:
                self.dirty[source] = False
            now = time.time()
            await self._record_firing(snapshot, now)
            await self._run_graphs(snapshot)
            self.fires += 1
            self.last_fire_at = now
            await self._save()
            return True

    async def _record_firing(self, snapshot: dict[str, Any], now: float) -> None:
        firing = FiringRecord(time_ordered_id(), self.tenant, self.name, json.dumps(snapshot), now)
        try:
            await self._store.insert_firing(firing)
        except Exception as exc:
            self._error(f"could not record the firing: {exc}")
            return
        self._on_fired()

    async def _run_graphs(self, snapshot: dict[str, Any]) -> None:
        # Looked up again at each fire: a graph rebuilt under its name runs as rebuilt (and
        # no longer here if it was rebuilt for another reactor).
        graphs = [graph for graph in map(get_graph, self.graphs)
                  if graph is not None and graph.reactor is not None and graph.reactor.name == self.name]
        outcomes = await asyncio.gather(
            *(arun_graph(graph, snapshot, None, self._limiter) for graph in graphs),
            return_exceptions=True,
        )
        for name, outcome in zip((graph.name for graph in graphs), outcomes):
            if isinstance(outcome, asyncio.CancelledError):
                raise outcome
            if isinstance(outcome, BaseException):
                self._error(f"graph '{name}' failed: {outcome}")

    def _error(self, message: str) -> None:
        self.last_error = message
        log.error("cloaca: reactor '%s': %s", self.name, message)

    async def _save(self) -> None:
        state = json.dumps({"cache": self.cache, "dirty": self.dirty})
        try:
            await self._store.save_reactor_state(self.tenant, self.name, state, time.time())
        except Exception as exc:
            self._error(f"could not save its state: {exc}")

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mode": self.definition.mode,
            "accumulators": list(self.definition.accumulators),
            "graphs": list(self.graphs),
            "paused": self.paused,
            "fires": self.fires,
            "last_fire_at": rfc3339(self.last_fire_at),
            "last_error": self.last_error,
        }
