"""Running user callbacks in isolation: an exception is returned, never propagated, and a
callback that hangs is abandoned after a timeout."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Callable, Optional, Sequence

import anyio
import anyio.to_thread

from .deadline import deadline


async def run_callback(
    callback: Callable[..., Any], args: Sequence[Any], limiter: anyio.CapacityLimiter,
    timeout: float,
) -> Optional[BaseException]:
    """Call `callback(*args)`: awaited if async, in a worker thread if sync; what it raised
    (for the caller to report), else None. A callback still running after `timeout`
    seconds is abandoned (a sync one's thread runs on, outside the limiter) and reported
    as a TimeoutError."""
    try:
        async with deadline(timeout):
            if inspect.iscoroutinefunction(callback):
                await callback(*args)
            else:
                result = await anyio.to_thread.run_sync(
                    callback, *args, limiter=limiter, abandon_on_cancel=True
                )
                if inspect.isawaitable(result):
                    await result
    except TimeoutError:
        return TimeoutError(f"the callback did not return within {timeout:g}s; it was abandoned")
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        return exc
    return None
