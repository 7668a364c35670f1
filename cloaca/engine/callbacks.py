"""Running user callbacks in isolation: an exception is reported, never propagated."""

from __future__ import annotations

import asyncio
import inspect
import sys
import traceback
from typing import Any, Callable, Sequence

import anyio
import anyio.to_thread


async def run_callback(
    callback: Callable[..., Any], args: Sequence[Any], limiter: anyio.CapacityLimiter
) -> None:
    """Call `callback(*args)`: awaited if async, in a worker thread if sync; errors go to stderr.

    `args[0]` is the task id, named in the report.
    """
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
        name = getattr(callback, "__name__", repr(callback))
        print(
            f"cloaca: callback {name} for task '{args[0]}' raised {type(exc).__name__}: {exc}\n"
            + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
            file=sys.stderr,
            end="",
        )
