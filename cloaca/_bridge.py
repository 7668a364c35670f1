"""The one crossing between threads and the event loop a runner's engine runs on.

A runner's engine lives on one loop: the runner's own, in a daemon thread behind an anyio
`BlockingPortal` (a runner made in sync code), or the application's (bound by `async with`
or `astart()`). Everything that crosses between that loop and other threads goes through
the runner's `Bridge`:

- the sync facade's blocking calls (`call`), and `a`-twins awaited on another loop (`acall`);
- declarations made on any thread, which the registry announces (`apply`): applied on the
  loop, in order, their errors logged, never raised into the declaring code;
- sync task bodies reaching back to the loop from their worker thread
  (`from_worker_thread`: `TaskHandle.defer_until`, `Context.secret` with an async source).

The engine itself never touches threads. `run_to_completion` is the same crossing for code
with no runner (a sync `DatabaseAdmin` call, a graph executed outside any loop).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Awaitable, Callable, Coroutine, Optional, TypeVar

import anyio
from anyio.from_thread import BlockingPortal

T = TypeVar("T")

log = logging.getLogger("cloaca")

JOIN_SECONDS = 5.0
"""How long stopping waits for the bridge's own thread."""
APPLY_SECONDS = 10.0
"""How long a declaring thread waits for its declaration to be applied on the loop."""


class LoopClosed(ValueError):
    """The loop the bridge crossed to has closed."""


class Bridge:
    """Calls from any thread or loop into one event loop (its own, or a bound one)."""

    def __init__(self, name: str, owner: str) -> None:
        self.name = name
        """The name of the bridge's own thread."""
        self.owner = owner
        """What crosses (for messages): `DefaultRunner`."""
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self._loop_thread: Optional[int] = None
        self._portal: Optional[BlockingPortal] = None
        self._thread: Optional[threading.Thread] = None

    # ------------------------------------------------------------------ which loop
    def bind(self) -> None:
        """Cross into the running loop (an application's)."""
        self.loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    def start_thread(self) -> None:
        """Cross into a loop of the bridge's own, in a daemon thread started now."""
        started = threading.Event()
        failure: list[BaseException] = []

        async def serve() -> None:
            async with BlockingPortal() as portal:
                self._portal = portal
                self.bind()
                started.set()
                await portal.sleep_until_stopped()

        def thread_main() -> None:
            try:
                anyio.run(serve, backend="asyncio")
            except BaseException as exc:  # pragma: no cover - surfaced through `failure`
                failure.append(exc)
                started.set()

        self._thread = threading.Thread(target=thread_main, name=self.name, daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]

    @property
    def owns_thread(self) -> bool:
        return self._thread is not None

    def stop_thread(self) -> None:
        """Stop the bridge's own loop and thread (nothing for a bound loop)."""
        portal, thread = self._portal, self._thread
        if portal is None or thread is None:
            return
        try:
            portal.call(portal.stop)
        except RuntimeError:
            pass  # already stopped
        thread.join(JOIN_SECONDS)
        if thread.is_alive():
            raise ValueError(
                f"Failed to shutdown async runtime: the {self.owner} thread did not stop within "
                f"{JOIN_SECONDS:g}s: a task on its loop still runs (code that catches CancelledError "
                "and goes on?); cloaca logs an error naming such a task of its own before this"
            )

    @property
    def loop_thread_id(self) -> Optional[int]:
        """The id of the thread the loop runs on."""
        return self._loop_thread

    def on_loop_thread(self) -> bool:
        """Whether the caller runs on the loop's thread (a blocking call there would deadlock)."""
        return self._loop_thread == threading.get_ident()

    # ------------------------------------------------------------------ crossings
    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run coroutine function `fn` on the loop and wait for it (from another thread)."""
        # One hop onto the loop, also when the portal runs it: portal.call spawns a task in the
        # portal's task group for each call (294 µs per call against 130 µs measured here).
        # A call still in progress when the loop stops is cancelled by the loop's shutdown.
        return asyncio.run_coroutine_threadsafe(fn(*args), self._require_loop()).result()

    def acall(self, fn: Callable[..., Awaitable[T]], *args: Any) -> Awaitable[T]:
        """Coroutine function `fn` run on the loop, to be awaited from whichever loop the
        caller is on (on the loop itself, its coroutine as it is: no extra frame)."""
        loop = self._require_loop()
        if asyncio.get_running_loop() is loop:
            return fn(*args)
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(fn(*args), loop))

    def apply(self, change: Callable[[], Coroutine[Any, Any, None]], what: str) -> None:
        """Apply a change made on any thread on the loop: at once (scheduled) when called on
        the loop; otherwise wait for it, up to `APPLY_SECONDS`. Errors are logged, naming
        `what`. A loop that is not running now (a test's, between fixtures) applies it when
        it runs again."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        if self.on_loop_thread() or _running_loop() is loop:
            task = loop.create_task(_logged(change, what))
            task.add_done_callback(_retrieve)
            return
        future = asyncio.run_coroutine_threadsafe(_logged(change, what), loop)
        if not loop.is_running():
            return
        try:
            future.result(timeout=APPLY_SECONDS)
        except Exception as exc:  # TimeoutError: the loop is stuck; the change still applies
            log.error("cloaca: could not apply %s within %gs: %s", what, APPLY_SECONDS, exc)

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        loop = self.loop
        if loop is None:
            raise LoopClosed(f"{self.owner}: not started")
        if loop.is_closed():
            raise LoopClosed(f"{self.owner}: the event loop this runner ran on is closed")
        return loop


def from_worker_thread(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """From a worker thread its loop started (a sync task body), run coroutine function `fn`
    on that loop and wait for it; RuntimeError from any other thread."""
    return anyio.from_thread.run(fn, *args)


def run_to_completion(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run coroutine function `fn` from sync code that has no loop, on a loop of its own."""
    return asyncio.run(_awaited(fn, *args))


async def _awaited(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    return await fn(*args)


async def _logged(change: Callable[[], Coroutine[Any, Any, None]], what: str) -> None:
    try:
        await change()
    except Exception as exc:
        log.error("cloaca: could not apply %s: %s", what, exc, exc_info=exc)


def _running_loop() -> Optional[asyncio.AbstractEventLoop]:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _retrieve(task: "asyncio.Task[Any]") -> None:
    if not task.cancelled():
        task.exception()
