"""The runner's live reactors (GRAPHS.md C13): loading them from the registries, event
ingress, manual fires, pause/resume, and shutdown in order."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Optional

import anyio

from .._graphs.builder import registered_graphs
from .._store import Store
from .accumulators import LiveAccumulator, live_accumulator
from .definitions import get_accumulator, registered_reactors
from .reactor import LiveReactor

log = logging.getLogger("cloaca")

DEFAULT_TENANT = "public"


class ReactorRuntime:
    """Every registered reactor of one tenant, live on the runner's loop."""

    def __init__(self, store: Store, limiter: anyio.CapacityLimiter, on_fired: Callable[[], None],
                 tenant: str = DEFAULT_TENANT) -> None:
        self._store = store
        self._limiter = limiter
        self._on_fired = on_fired
        self.tenant = tenant
        self.reactors: dict[str, LiveReactor] = {}
        self.accumulators: dict[str, LiveAccumulator] = {}
        self._owner: dict[str, str] = {}  # accumulator name -> reactor name
        self._accepting = True

    async def load(self) -> list[str]:
        """Start the registered reactors not running yet and bind new graphs; every loaded name.

        ValueError if an accumulator is claimed by two reactors (nothing new is started then).
        """
        new = [d for d in registered_reactors() if d.name not in self.reactors]
        claimed = dict(self._owner)
        for definition in new:
            for source in definition.accumulators:
                if source in claimed:
                    raise ValueError(
                        f"accumulator '{source}' is listed by reactor '{claimed[source]}' and by "
                        f"reactor '{definition.name}'; an accumulator feeds one reactor"
                    )
                claimed[source] = definition.name
        for definition in new:
            reactor = LiveReactor(definition, self.tenant, self._store, self._limiter, self._on_fired)
            await reactor.restore()
            self.reactors[definition.name] = reactor
            self._bind(reactor)
            reactor.start()
            for source in definition.accumulators:
                await self._start_accumulator(source, reactor)
        for reactor in self.reactors.values():
            self._bind(reactor)
        return list(self.reactors)

    def _bind(self, reactor: LiveReactor) -> None:
        for graph in registered_graphs():
            if graph.reactor is not None and graph.reactor.name == reactor.name and graph.name not in reactor.graphs:
                reactor.graphs.append(graph.name)

    async def _start_accumulator(self, source: str, reactor: LiveReactor) -> None:
        accumulator = live_accumulator(get_accumulator(source), self.tenant, self._store,
                                       reactor.deliver, self._limiter)
        self._owner[source] = reactor.name
        self.accumulators[source] = accumulator
        await accumulator.start()

    # ------------------------------------------------------------------ operations
    async def push(self, accumulator: str, event: Any) -> None:
        """Hand a JSON event to an accumulator; returns once it is accepted."""
        if not self._accepting:
            raise ValueError("push_event: the runner is shutting down")
        live = self.accumulators.get(accumulator)
        if live is None:
            raise ValueError(
                f"push_event: unknown accumulator '{accumulator}' (no loaded reactor lists it)"
            )
        await live.push(event)

    def reactor(self, name: str) -> LiveReactor:
        found = self.reactors.get(name)
        if found is None:
            raise ValueError(f"unknown reactor '{name}' (loaded: {sorted(self.reactors)})")
        return found

    async def fire(self, name: str, inputs: Optional[dict[str, Any]]) -> bool:
        return await self.reactor(name).fire(inputs)

    def set_paused(self, name: str, paused: bool) -> None:
        reactor = self.reactor(name)
        reactor.paused = paused
        if not paused:
            reactor.evaluate_soon()

    def describe(self) -> list[dict[str, Any]]:
        return [reactor.describe() for reactor in self.reactors.values()]

    async def shutdown(self, grace_seconds: float) -> None:
        """Stop accepting events; stop polling; drain batches and queues into the reactors;
        let each reactor finish its queued boundaries and fire; save their state. What is
        still running after `grace_seconds` is cancelled (the state is saved all the same)."""
        self._accepting = False
        try:
            async with asyncio.timeout(grace_seconds):
                for accumulator in self.accumulators.values():
                    await accumulator.stop()
                for reactor in self.reactors.values():
                    await reactor.stop()
        except TimeoutError:
            log.warning("cloaca: reactors did not stop within %gs; cancelling them", grace_seconds)
            for accumulator in self.accumulators.values():
                await accumulator.abort()
            for reactor in self.reactors.values():
                await reactor.abort()
