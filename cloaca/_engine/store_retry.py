"""Store writes that must not be lost to a dropped database connection.

A write that failed because the database could not be reached (`Store.unavailable`) is
tried again, through the store's fresh connections, until it goes through: the work it
records has been done and must not stall its run. Any other error is raised at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Optional, TypeVar

from .._store.base import Store

log = logging.getLogger("cloaca")

T = TypeVar("T")

FIRST_DELAY_SECONDS = 0.05
MAX_DELAY_SECONDS = 2.0


class StoreRetryStopped(Exception):
    """The runner stopped while a write was waiting for the database to come back."""


async def until_stored(
    store: Store, what: str, attempt: Callable[[], Awaitable[T]], stopping: Callable[[], bool],
    failed: Optional[Exception] = None,
) -> T:
    """`await attempt()` until it returns; retried, with backoff, while the store is
    unreachable. `what` names the write in the log. StoreRetryStopped (from the last
    error) if the runner stops meanwhile. `failed`: the caller's own first try (made
    without this wrapper, on the hot path) failed with it: pause, then go on trying."""
    delay = FIRST_DELAY_SECONDS
    failures = 0
    while True:
        if failed is None:
            try:
                result = await attempt()
            except Exception as exc:
                failed = exc
            else:
                if failures:
                    log.info("cloaca: wrote %s to %s after %d failed attempt(s)", what,
                             store.description, failures)
                return result
        exc, failed = failed, None
        if not store.unavailable(exc) and not (failures and stopping()):
            raise exc  # (once retrying, an error because the runner closed the store stops it)
        failures += 1
        if failures == 1 or failures % 10 == 0:
            log.warning("cloaca: could not write %s to %s (attempt %d, retrying): %s",
                        what, store.description, failures, exc)
        if not stopping():
            await asyncio.sleep(delay)
            delay = min(2 * delay, MAX_DELAY_SECONDS)
        if stopping():  # checked after the pause too: the store may be closed by now
            raise StoreRetryStopped(f"could not write {what} to {store.description}: {exc}") from exc
