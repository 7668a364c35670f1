"""A per-await deadline: `async with deadline(seconds):` raises TimeoutError when it passes.

On Python 3.11+ this is `asyncio.timeout` (about half the cost of an anyio cancel scope,
which matters at thousands of trigger polls per second); on 3.10 it is `anyio.fail_after`.
"""

from __future__ import annotations

import asyncio
import sys
from contextlib import asynccontextmanager
from typing import AsyncContextManager, AsyncIterator

import anyio


@asynccontextmanager
async def _anyio_deadline(seconds: float) -> AsyncIterator[None]:
    with anyio.fail_after(seconds):
        yield


def deadline(seconds: float) -> AsyncContextManager[None]:
    """Cancel the enclosed awaits after `seconds`, raising TimeoutError."""
    if sys.version_info >= (3, 11):
        return asyncio.timeout(seconds)
    return _anyio_deadline(seconds)
