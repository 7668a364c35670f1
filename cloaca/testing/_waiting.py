"""Waiting, in a test, for the runs that a trigger or a cron schedule started."""

from __future__ import annotations

import asyncio
from typing import Any, Optional

from .._runner import DefaultRunner
from ._blocking import run_blocking

_POLL_SECONDS = 0.02


def wait_for_executions(runner: DefaultRunner, workflow_name: Optional[str] = None, *,
                        count: int = 1, status: Optional[str] = None,
                        timeout: float = 10.0) -> list[dict[str, Any]]:
    """Wait until `runner` lists at least `count` runs of `workflow_name` (any workflow if
    None) with `status` (any if None); return the newest `count` of them, newest first.

    `TimeoutError` after `timeout` seconds, saying what was awaited and what was there.
    """
    return run_blocking("wait_for_executions", await_for_executions, runner, workflow_name,
                        count=count, status=status, timeout=timeout)


async def await_for_executions(runner: DefaultRunner, workflow_name: Optional[str] = None, *,
                               count: int = 1, status: Optional[str] = None,
                               timeout: float = 10.0) -> list[dict[str, Any]]:
    """Async twin of `wait_for_executions`."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive int, got {count!r}")
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout
    while True:
        found = await runner.alist_executions(workflow_name, status, limit=count)
        if len(found) >= count:
            return found
        if loop.time() >= give_up:
            raise TimeoutError(
                f"waited {timeout:g}s for {count} run(s) of workflow "
                f"{workflow_name or '(any)'!s} with status {status or '(any)'}; "
                f"found {len(found)}: {[(r['workflow_name'], r['status']) for r in found]}"
            )
        await asyncio.sleep(_POLL_SECONDS)
