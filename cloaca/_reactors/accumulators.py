"""Live accumulators (GRAPHS.md C9.3, C13.2–C13.4): what turns events into boundaries.

- passthrough / stream: each pushed event, through `f(event)`;
- polling: `f()` every interval (its last output checkpointed); pushed events pass through;
- batch: events buffered (persisted), flushed as a list through `f(events)` on size, on
  each interval tick and at shutdown;
- state: a window of the last `capacity` values (persisted), emitted through `f(window)`
  on every write unless capacity is 0.

A body's `None` suppresses the boundary; a body's exception or a non-JSON result is
logged and drops it. Coroutine bodies are awaited, plain ones run in worker threads.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from typing import Any, Awaitable, Callable, Optional

import anyio
import anyio.to_thread

from .._cancelling import cancel_and_wait
from .._context import NotJsonError, json_copy
from .._store import Store
from .definitions import (
    BATCH,
    PASSTHROUGH,
    POLLING,
    STATE,
    AccumulatorDefinition,
    parse_duration,
)

log = logging.getLogger("cloaca")

PASSTHROUGH_CAPACITY = 64
OTHER_CAPACITY = 1024
DEFAULT_POLL_SECONDS = 5.0
_STOP = object()

Deliver = Callable[[str, Any], Awaitable[None]]
"""Hand a boundary (accumulator name, JSON value) to the reactor."""


class LiveAccumulator:
    """A passthrough or stream accumulator: pushed events go through a bounded queue."""

    def __init__(self, definition: AccumulatorDefinition, tenant: str, store: Store,
                 deliver: Deliver, limiter: anyio.CapacityLimiter) -> None:
        self.definition = definition
        self.tenant = tenant
        self._store = store
        self._deliver = deliver
        self._limiter = limiter
        capacity = PASSTHROUGH_CAPACITY if definition.kind == PASSTHROUGH else OTHER_CAPACITY
        self._queue: asyncio.Queue[Any] = asyncio.Queue(capacity)
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def name(self) -> str:
        return self.definition.name

    async def start(self) -> None:
        self._spawn(self._forward())

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(coroutine))  # type: ignore[arg-type]

    async def push(self, event: Any) -> None:
        """Accept a JSON event (waits while the queue is full)."""
        await self._queue.put(event)

    async def _forward(self) -> None:
        while True:
            event = await self._queue.get()
            if event is _STOP:
                return
            await self._emit(event, self.definition.function)

    async def stop(self) -> None:
        """Emit what was accepted, then stop."""
        await self._queue.put(_STOP)
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def abort(self) -> None:
        """Cancel its tasks (what a batch or state accumulator holds stays persisted)."""
        await cancel_and_wait(self._tasks, f"aborting accumulator '{self.name}'")

    async def _emit(self, value: Any, body: Optional[Callable[..., Any]]) -> None:
        """Deliver `body(value)` (or `value` itself without a body) as a boundary."""
        if body is not None:
            try:
                value = await call_body(body, (value,), self._limiter)
            except Exception as exc:
                log.error("cloaca: accumulator '%s' raised %s: %s; boundary dropped",
                          self.name, type(exc).__name__, exc)
                return
            if value is None:
                return
        try:
            boundary = json_copy(value)
        except NotJsonError as exc:
            log.warning("cloaca: accumulator '%s' produced a non-JSON value (%s); dropped",
                        self.name, exc.reason)
            return
        await self._deliver(self.name, boundary)

    async def _load(self, kind: str) -> Any:
        saved = await self._store.load_accumulator_state(self.tenant, self.name, kind)
        return None if saved is None else json.loads(saved)

    async def _save(self, kind: str, data: Any) -> None:
        await self._store.save_accumulator_state(self.tenant, self.name, kind, json.dumps(data), time.time())


class PollingAccumulator(LiveAccumulator):
    """Calls its function every interval; re-emits its last output at start."""

    async def start(self) -> None:
        await super().start()
        self._spawn(self._poll_forever())

    async def _forward(self) -> None:
        while True:
            event = await self._queue.get()
            if event is _STOP:
                return
            await self._emit(event, None)  # pushed values pass as they are

    async def stop(self) -> None:
        for task in self._tasks[1:]:
            task.cancel()
        await super().stop()

    async def _poll_forever(self) -> None:
        interval = parse_duration(self.definition.config.get("interval", "")) or DEFAULT_POLL_SECONDS
        saved = await self._load("checkpoint")
        if saved is not None:
            await self._deliver(self.name, saved["last"])
        loop = asyncio.get_running_loop()
        due = loop.time() + interval
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            await self._poll_once()
            due += interval
            if due <= loop.time():  # missed ticks collapse into one, now
                due = loop.time()

    async def _poll_once(self) -> None:
        function = self.definition.function
        assert function is not None
        try:
            value = await call_body(function, (), self._limiter)
            if value is None:
                return
            boundary = json_copy(value)
        except Exception as exc:
            log.error("cloaca: polling accumulator '%s' failed: %s: %s", self.name, type(exc).__name__, exc)
            return
        await self._save("checkpoint", {"last": boundary})
        await self._deliver(self.name, boundary)


class BatchAccumulator(LiveAccumulator):
    """Buffers events (persisted) and flushes them as a list."""

    async def start(self) -> None:
        self._lock = asyncio.Lock()
        self._buffer: list[Any] = list(await self._load("checkpoint") or [])
        size = self.definition.config.get("max_buffer_size")
        self._max = int(size) if size is not None else None
        self._interval = parse_duration(self.definition.config.get("flush_interval", ""))
        if self._interval:
            self._spawn(self._tick_forever(self._interval))

    async def push(self, event: Any) -> None:
        async with self._lock:
            self._buffer.append(event)
            if self._max is not None and len(self._buffer) >= self._max:
                await self._flush_locked()
            else:
                await self._save("checkpoint", self._buffer)

    async def _tick_forever(self, interval: float) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + interval
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            async with self._lock:
                await self._flush_locked()
            due += interval

    async def _flush_locked(self) -> None:
        if not self._buffer:
            return
        events, self._buffer = self._buffer, []
        await self._save("checkpoint", [])
        await self._emit(events, self.definition.function)

    async def stop(self) -> None:
        """Cancel the timer and flush what is buffered."""
        await cancel_and_wait(self._tasks, f"stopping accumulator '{self.name}'")
        async with self._lock:
            await self._flush_locked()


class StateAccumulator(LiveAccumulator):
    """Keeps a window of values (persisted); emits it on every write unless capacity is 0."""

    async def start(self) -> None:
        self._lock = asyncio.Lock()
        capacity = self.definition.capacity
        self._capacity = capacity if capacity is not None else int(self.definition.config["capacity"])
        self._window: list[Any] = list(await self._load("window") or [])
        if self._window and self._capacity != 0:
            await self._emit(list(self._window), self.definition.function)

    async def push(self, event: Any) -> None:
        async with self._lock:
            self._window.append(event)
            if self._capacity > 0:
                del self._window[: max(0, len(self._window) - self._capacity)]
            await self._save("window", self._window)
            if self._capacity != 0:
                await self._emit(list(self._window), self.definition.function)

    async def stop(self) -> None:
        pass


def live_accumulator(definition: AccumulatorDefinition, tenant: str, store: Store, deliver: Deliver,
                     limiter: anyio.CapacityLimiter) -> LiveAccumulator:
    """The live accumulator of a definition's kind (stream is push-fed like passthrough)."""
    kind = {POLLING: PollingAccumulator, BATCH: BatchAccumulator, STATE: StateAccumulator}.get(
        definition.kind, LiveAccumulator
    )
    return kind(definition, tenant, store, deliver, limiter)


async def call_body(function: Callable[..., Any], args: tuple[Any, ...], limiter: anyio.CapacityLimiter) -> Any:
    """`function(*args)`: awaited if a coroutine function, in a worker thread otherwise."""
    if inspect.iscoroutinefunction(function):
        return await function(*args)
    result = await anyio.to_thread.run_sync(function, *args, limiter=limiter)
    if inspect.isawaitable(result):
        result = await result
    return result
