"""The runner's settings that the engine reads."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EngineSettings:
    """The knobs of DefaultRunnerConfig that the executor reads."""

    max_concurrent_tasks: int = 4
    max_concurrent_async_tasks: int = 1000
    task_timeout_seconds: float = 300.0
    lease_seconds: float = 5.0
    enable_recovery: bool = True
    poll_interval_seconds: float = 0.1
    """Work shared by task: how often to look for claimable work when the store cannot push notices."""
