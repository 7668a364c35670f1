"""The runner's live reactors (GRAPHS.md C13): loading them from the registries, event
ingress, manual fires, pause/resume, and shutdown in order.

Every tenant has its own copy of every loaded reactor and accumulator (caches, flags,
buffers, windows, polling loops), stored under its name: tenant A's events never reach
tenant B's reactors. Tenant "public" is live from the start, and so is every tenant with
stored state; any other tenant from its first push, fire or pause.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Iterable, Optional

import anyio

from .._graphs.builder import registered_graphs
from .._namespace import DEFAULT_TENANT
from .._store import Store
from .accumulators import LiveAccumulator, live_accumulator
from .definitions import ReactorDefinition, get_accumulator, registered_reactors
from .reactor import LiveReactor

log = logging.getLogger("cloaca")


class ReactorRuntime:
    """The loaded reactors and their accumulators of one tenant, live on the runner's loop."""

    def __init__(self, store: Store, limiter: anyio.CapacityLimiter, on_fired: Callable[[], None],
                 tenant: str) -> None:
        self._store = store
        self._limiter = limiter
        self._on_fired = on_fired
        self.tenant = tenant
        self.reactors: dict[str, LiveReactor] = {}
        self.accumulators: dict[str, LiveAccumulator] = {}
        self._accepting = True

    async def load(self, definitions: Iterable[ReactorDefinition]) -> None:
        """Start the reactors of `definitions` not running yet; bind new graphs to all."""
        for definition in definitions:
            if definition.name in self.reactors:
                continue
            reactor = LiveReactor(definition, self.tenant, self._store, self._limiter, self._on_fired)
            await reactor.restore()
            self.reactors[definition.name] = reactor
            self._bind(reactor)
            reactor.start()
            for source in definition.accumulators:
                await self._start_accumulator(source, reactor)
        for reactor in self.reactors.values():
            self._bind(reactor)

    def _bind(self, reactor: LiveReactor) -> None:
        for graph in registered_graphs():
            if graph.reactor is not None and graph.reactor.name == reactor.name and graph.name not in reactor.graphs:
                reactor.graphs.append(graph.name)

    async def _start_accumulator(self, source: str, reactor: LiveReactor) -> None:
        accumulator = live_accumulator(get_accumulator(source), self.tenant, self._store,
                                       reactor.deliver, self._limiter)
        self.accumulators[source] = accumulator
        await accumulator.start()

    # ------------------------------------------------------------------ operations
    async def push(self, accumulator: str, event: Any) -> None:
        """Hand a JSON event to an accumulator; returns once it is accepted."""
        if not self._accepting:
            raise ValueError("push_event: the runner is shutting down")
        await self.accumulators[accumulator].push(event)

    async def fire(self, name: str, inputs: Optional[dict[str, Any]]) -> bool:
        return await self.reactors[name].fire(inputs)

    def set_paused(self, name: str, paused: bool) -> None:
        reactor = self.reactors[name]
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
            log.warning("cloaca: reactors of tenant '%s' did not stop within %gs; cancelling them",
                        self.tenant, grace_seconds)
            await self.abort()

    async def abort(self) -> None:
        """Cancel the accumulators' and reactors' tasks (each reactor saves its state)."""
        for accumulator in self.accumulators.values():
            await accumulator.abort()
        for reactor in self.reactors.values():
            await reactor.abort()


class LiveReactors:
    """The runner's live reactors: one `ReactorRuntime` per tenant, made on first use.

    Which reactors are loaded is the same for every tenant (`load` adds to all of them).
    At most `max_tenants` tenants are made live by use; tenants restored at start count
    toward the bound but are never refused (their stored state must keep working).
    """

    def __init__(self, store: Store, limiter: anyio.CapacityLimiter, on_fired: Callable[[], None],
                 max_tenants: int) -> None:
        self._store = store
        self._limiter = limiter
        self._on_fired = on_fired
        self._max_tenants = max_tenants
        self.tenants: dict[str, ReactorRuntime] = {}
        self._definitions: dict[str, ReactorDefinition] = {}
        self._owner: dict[str, str] = {}  # accumulator name -> reactor name
        self._lock = asyncio.Lock()  # making tenants, loading reactors, shutting down
        self._accepting = True

    async def start(self) -> None:
        """Load the registered reactors for "public" and for every tenant with stored state.

        ValueError if an accumulator is claimed by two reactors (nothing is started then).
        """
        async with self._lock:
            self._publish(self._new_definitions())
            stored = await self._store.reactor_tenants()
            for tenant in [DEFAULT_TENANT, *(t for t in stored if t != DEFAULT_TENANT)]:
                await self._make(tenant)
            if len(self.tenants) > self._max_tenants:
                log.warning("cloaca: %d tenants have stored reactor state, more than "
                            "max_reactor_tenants=%d; all are live, new ones are refused",
                            len(self.tenants), self._max_tenants)

    async def load(self) -> list[str]:
        """Start the registered reactors not running yet (for every live tenant) and bind
        new graphs; every loaded reactor's name.

        ValueError if an accumulator is claimed by two reactors (nothing new is started then).
        """
        async with self._lock:
            if not self._accepting:
                raise ValueError("load_reactors: the runner is shutting down")
            new = self._new_definitions()
            loaded = [*self._definitions.values(), *new]
            for runtime in self.tenants.values():
                await runtime.load(loaded)
            self._publish(new)  # pushes may name their accumulators once every tenant has them
            return list(self._definitions)

    def _new_definitions(self) -> list[ReactorDefinition]:
        """The registered reactors not loaded yet; ValueError if an accumulator would be
        listed by two reactors."""
        new = [d for d in registered_reactors() if d.name not in self._definitions]
        claimed = dict(self._owner)
        for definition in new:
            for source in definition.accumulators:
                if source in claimed:
                    raise ValueError(
                        f"accumulator '{source}' is listed by reactor '{claimed[source]}' and by "
                        f"reactor '{definition.name}'; an accumulator feeds one reactor"
                    )
                claimed[source] = definition.name
        return new

    def _publish(self, definitions: list[ReactorDefinition]) -> None:
        for definition in definitions:
            self._definitions[definition.name] = definition
            self._owner.update(dict.fromkeys(definition.accumulators, definition.name))

    async def _make(self, tenant: str) -> ReactorRuntime:
        runtime = ReactorRuntime(self._store, self._limiter, self._on_fired, tenant)
        try:
            await runtime.load(self._definitions.values())
        except BaseException:
            await asyncio.shield(runtime.abort())
            raise
        self.tenants[tenant] = runtime
        return runtime

    async def runtime(self, tenant: str, operation: str) -> ReactorRuntime:
        """The live reactors of `tenant`, made now if it has none yet."""
        runtime = self.tenants.get(tenant)
        if runtime is not None:
            return runtime
        async with self._lock:
            if not self._accepting:
                raise ValueError(f"{operation}: the runner is shutting down")
            runtime = self.tenants.get(tenant)
            if runtime is not None:
                return runtime
            if len(self.tenants) >= self._max_tenants:
                raise ValueError(
                    f"{operation}: tenant '{tenant}' refused: reactors already run for "
                    f"{len(self.tenants)} tenants, the bound set by "
                    f"DefaultRunnerConfig(max_reactor_tenants={self._max_tenants})"
                )
            return await self._make(tenant)

    # ------------------------------------------------------------------ operations
    async def push(self, accumulator: str, event: Any, tenant: str) -> None:
        """Hand a JSON event to an accumulator of `tenant`; returns once it is accepted."""
        if not self._accepting:
            raise ValueError("push_event: the runner is shutting down")
        if accumulator not in self._owner:
            raise ValueError(
                f"push_event: unknown accumulator '{accumulator}' (no loaded reactor lists it)"
            )
        await (await self.runtime(tenant, "push_event")).push(accumulator, event)

    async def fire(self, name: str, inputs: Optional[dict[str, Any]], tenant: str) -> bool:
        self._check_reactor(name)
        return await (await self.runtime(tenant, "fire_reactor")).fire(name, inputs)

    async def set_paused(self, name: str, paused: bool, tenant: str) -> None:
        self._check_reactor(name)
        operation = "pause_reactor" if paused else "resume_reactor"
        (await self.runtime(tenant, operation)).set_paused(name, paused)

    def _check_reactor(self, name: str) -> None:
        if name not in self._definitions:
            raise ValueError(f"unknown reactor '{name}' (loaded: {sorted(self._definitions)})")

    def describe(self, tenant: str) -> list[dict[str, Any]]:
        """The live reactors of `tenant` (none if it has not been used)."""
        runtime = self.tenants.get(tenant)
        return [] if runtime is None else runtime.describe()

    async def shutdown(self, grace_seconds: float) -> None:
        """Shut every tenant's reactors down (at once; each within `grace_seconds`)."""
        self._accepting = False
        async with self._lock:  # a tenant being made is finished first
            await asyncio.gather(*(runtime.shutdown(grace_seconds) for runtime in self.tenants.values()))
