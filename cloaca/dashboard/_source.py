"""Where the dashboard's runner comes from: the application's, or one it opens on a URL."""

from __future__ import annotations

import asyncio
from typing import Optional, Union

from .._config import operator_config
from .._runner import DefaultRunner


class RunnerSource:
    """Hands out the runner; a runner opened from a URL is opened on first use and closed by `close`."""

    def __init__(self, runner_or_url: Union[DefaultRunner, str]) -> None:
        if isinstance(runner_or_url, DefaultRunner):
            self._runner: Optional[DefaultRunner] = runner_or_url
            self._url: Optional[str] = None
        elif isinstance(runner_or_url, str):
            if not runner_or_url:
                raise ValueError("create_app: the database URL is empty")
            self._runner, self._url = None, runner_or_url
        else:
            raise TypeError(
                "create_app: expected a cloaca.DefaultRunner or a database URL string, "
                f"got {type(runner_or_url).__name__}"
            )
        self._lock: Optional[asyncio.Lock] = None

    @property
    def owned(self) -> bool:
        """True when the dashboard opens (and closes) the runner itself."""
        return self._url is not None

    async def get(self) -> DefaultRunner:
        """The runner, opened on the running loop if the dashboard owns it and it is not open yet."""
        if self._runner is not None:
            return self._runner
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._runner is None:
                assert self._url is not None
                # inside a running loop: not started yet; an observer, no worker
                config = operator_config()
                config.create_database = False  # a mistyped path is an error, not a new empty file
                runner = DefaultRunner.with_config(self._url, config)
                await runner.astart()
                self._runner = runner
        return self._runner

    async def close(self) -> None:
        """Shut down a runner the dashboard opened (an application's runner is left alone)."""
        if self.owned and self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.ashutdown()
