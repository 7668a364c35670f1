"""Running user callbacks in isolation: an exception is returned, never propagated."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Callable, Optional, Sequence

import anyio
import anyio.to_thread


async def run_callback(
    callback: Callable[..., Any], args: Sequence[Any], limiter: anyio.CapacityLimiter
) -> Optional[BaseException]:
    """Call `callback(*args)`: awaited if async, in a worker thread if sync; what it raised
    (for the caller to report), else None."""
    try:
        if inspect.iscoroutinefunction(callback):
            await callback(*args)
        else:
            result = await anyio.to_thread.run_sync(callback, *args, limiter=limiter)
            if inspect.isawaitable(result):
                await result
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        return exc
    return None
