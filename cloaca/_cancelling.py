"""Stopping the loop's own tasks: cancel them and wait for them to end, never for ever.

A task may go on after being cancelled: a user's `async def` body that catches
`CancelledError` and loops, or a bug of ours. A stop waits `STOP_SECONDS` for them, then logs
them as an error and goes on without them, so a runner's shutdown always returns.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Iterable

log = logging.getLogger("cloaca")

STOP_SECONDS = 10.0
"""How long a stop waits for the tasks it cancelled before it goes on without them."""


async def cancel_and_wait(tasks: Iterable["asyncio.Future[Any]"], what: str) -> None:
    """Cancel `tasks` and wait until they end, up to `STOP_SECONDS`; those still running then
    are logged as an error naming `what` and left running."""
    tasks = list(tasks)
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    done, pending = await asyncio.wait(tasks, timeout=STOP_SECONDS)
    for task in done:
        if not task.cancelled():
            task.exception()  # retrieved: how they ended is theirs to report, not the stop's
    if pending:
        log.error(
            "cloaca: %s: %d task(s) still running %gs after being cancelled (code that catches "
            "CancelledError and goes on?), left running: %s",
            what, len(pending), STOP_SECONDS, ", ".join(_describe(t) for t in pending),
        )


def _describe(task: "asyncio.Future[Any]") -> str:
    if not isinstance(task, asyncio.Task):
        return repr(task)
    coro = task.get_coro()
    return f"{task.get_name()} ({getattr(coro, '__qualname__', type(coro).__name__)})"
