"""`DefaultRunnerConfig`: the runner's tuning knobs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

_U32_MAX = 2**32 - 1
_U64_MAX = 2**64 - 1
_I32_MIN, _I32_MAX = -(2**31), 2**31 - 1

_Check = Callable[[str, Any], Any]


def _invalid(name: str, requirement: str, value: Any) -> ValueError:
    return ValueError(f"Invalid configuration: {name} must be {requirement}, got {value!r}")


def _wrong_type(name: str, expected: str, value: Any) -> TypeError:
    return TypeError(
        f"DefaultRunnerConfig.{name} must be {expected}, got {type(value).__name__}"
    )


def _integer(low: int, high: int) -> _Check:
    """A check accepting ints (not bools) in [low, high]."""
    if high in (_U32_MAX, _U64_MAX, _I32_MAX):
        requirement = f">= {low}"
    else:
        requirement = f"between {low} and {high}"

    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _wrong_type(name, "an int", value)
        if not low <= value <= high:
            raise _invalid(name, requirement, value)
        return int(value)

    return check


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _wrong_type(name, "a bool", value)
    return value


def _positive_seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _wrong_type(name, "a number", value)
    if not (math.isfinite(value) and value > 0):
        raise _invalid(name, "a finite number > 0", value)
    return float(value)


@dataclass(frozen=True)
class _Field:
    name: str
    default: Any
    check: _Check
    doc: str
    nullable: bool = False  # the setter accepts None (and stores it)
    upstream: bool = True  # one of the 14 fields of upstream's to_dict()


_FIELDS = (
    _Field("max_concurrent_tasks", 4, _integer(1, _U64_MAX), "Sync task bodies running at once (threads)."),
    _Field("scheduler_poll_interval_ms", 100, _integer(10, _U64_MAX), "Scheduler tick (ms)."),
    _Field("task_timeout_seconds", 300, _integer(0, _U64_MAX), "Per-attempt timeout (s)."),
    _Field(
        "workflow_timeout_seconds", 3600, _integer(0, _U64_MAX),
        "How long execute() waits before raising (s); None means no timeout.", nullable=True,
    ),
    _Field("db_pool_size", 10, _integer(1, _U32_MAX), "Connection pool size."),
    _Field("enable_recovery", True, _flag, "Resume runs whose owner stopped heart-beating."),
    _Field("enable_cron_scheduling", True, _flag, "Enable the cron scheduler and the cron API."),
    _Field("cron_poll_interval_seconds", 30, _integer(0, _U64_MAX), "Cron back-stop tick (s)."),
    _Field(
        "cron_max_catchup_executions", 100, _integer(0, 1000),
        "Cap on catch-up executions of a 'run_all' schedule.",
    ),
    _Field("cron_enable_recovery", True, _flag, "Run cron recovery."),
    _Field(
        "cron_recovery_interval_seconds", 300, _integer(0, _U64_MAX), "Cron recovery period (s)."
    ),
    _Field(
        "cron_lost_threshold_minutes", 10, _integer(_I32_MIN, _I32_MAX),
        "Age (min) at which an open schedule execution counts as lost.",
    ),
    _Field(
        "cron_max_recovery_age_seconds", 86400, _integer(0, _U64_MAX),
        "Lost executions older than this (s) are abandoned.",
    ),
    _Field(
        "cron_max_recovery_attempts", 3, _integer(0, _U64_MAX),
        "Re-fire attempts per lost execution.",
    ),
    _Field(
        "lease_seconds", 5.0, _positive_seconds,
        "Length of a run's ownership lease (s); it is renewed every lease/3.", upstream=False,
    ),
    _Field(
        "shutdown_grace_seconds", 10.0, _positive_seconds,
        "How long shutdown waits for running tasks (s).", upstream=False,
    ),
    _Field(
        "trigger_poll_timeout_seconds", 30.0, _positive_seconds,
        "Timeout of one trigger poll (s).", upstream=False,
    ),
    _Field(
        "max_concurrent_async_tasks", 1000, _integer(1, _U64_MAX),
        "`async def` task bodies running at once.", upstream=False,
    ),
    _Field(
        "max_concurrent_trigger_polls", 64, _integer(1, _U64_MAX),
        "Bound on sync trigger calls running at once (each holds a poll thread while it runs); "
        "sync triggers keep their schedule with at least polls per second x seconds per call.",
        upstream=False,
    ),
    _Field(
        "enable_reactors", True, _flag,
        "Run registered reactors and accumulators on the runner's loop.", upstream=False,
    ),
    _Field(
        "reactor_poll_interval_seconds", 1.0, _positive_seconds,
        "How often reactor subscriptions look for new firings (s).", upstream=False,
    ),
    _Field(
        "enable_cron_firing", True, _flag,
        "Fire due cron slots in this runner; False keeps the cron API only (tools such as "
        "the CLI and the dashboard, which must not take slots from the workers).",
        upstream=False,
    ),
    _Field(
        "max_reactor_tenants", 1000, _integer(1, _U64_MAX),
        "How many tenants' reactors may be live at once (each tenant has its own copy of "
        "every reactor and accumulator); a push for one more tenant is refused.",
        upstream=False,
    ),
    _Field(
        "create_database", True, _flag,
        "Create the SQLite database file when it does not exist; False: a missing file is an "
        "error naming it, and nothing is created (tools that only read, such as the CLI's "
        "list and show). PostgreSQL databases are never created.",
        upstream=False,
    ),
)


class DefaultRunnerConfig:
    """Runner tuning knobs; every argument left None takes the engine default."""

    __slots__ = ("_values",)

    # Each field is a read/write property, installed below from _FIELDS.
    max_concurrent_tasks: int
    scheduler_poll_interval_ms: int
    task_timeout_seconds: int
    workflow_timeout_seconds: Optional[int]
    db_pool_size: int
    enable_recovery: bool
    enable_cron_scheduling: bool
    cron_poll_interval_seconds: int
    cron_max_catchup_executions: int
    cron_enable_recovery: bool
    cron_recovery_interval_seconds: int
    cron_lost_threshold_minutes: int
    cron_max_recovery_age_seconds: int
    cron_max_recovery_attempts: int
    lease_seconds: float
    shutdown_grace_seconds: float
    trigger_poll_timeout_seconds: float
    max_concurrent_trigger_polls: int
    max_concurrent_async_tasks: int
    enable_reactors: bool
    reactor_poll_interval_seconds: float
    enable_cron_firing: bool
    max_reactor_tenants: int
    create_database: bool

    def __init__(
        self,
        max_concurrent_tasks: Optional[int] = None,
        scheduler_poll_interval_ms: Optional[int] = None,
        task_timeout_seconds: Optional[int] = None,
        workflow_timeout_seconds: Optional[int] = None,
        db_pool_size: Optional[int] = None,
        enable_recovery: Optional[bool] = None,
        enable_cron_scheduling: Optional[bool] = None,
        cron_poll_interval_seconds: Optional[int] = None,
        cron_max_catchup_executions: Optional[int] = None,
        cron_enable_recovery: Optional[bool] = None,
        cron_recovery_interval_seconds: Optional[int] = None,
        cron_lost_threshold_minutes: Optional[int] = None,
        cron_max_recovery_age_seconds: Optional[int] = None,
        cron_max_recovery_attempts: Optional[int] = None,
        *,
        lease_seconds: Optional[float] = None,
        shutdown_grace_seconds: Optional[float] = None,
        trigger_poll_timeout_seconds: Optional[float] = None,
        max_concurrent_trigger_polls: Optional[int] = None,
        max_concurrent_async_tasks: Optional[int] = None,
        enable_reactors: Optional[bool] = None,
        reactor_poll_interval_seconds: Optional[float] = None,
        enable_cron_firing: Optional[bool] = None,
        max_reactor_tenants: Optional[int] = None,
        create_database: Optional[bool] = None,
    ) -> None:
        arguments = locals()  # exactly the parameters (plus self), read by field name
        self._values: dict[str, Any] = {
            field.name: field.default
            if arguments[field.name] is None
            else field.check(field.name, arguments[field.name])
            for field in _FIELDS
        }

    @staticmethod
    def default() -> DefaultRunnerConfig:
        """A config with every field at its default."""
        return DefaultRunnerConfig()

    def to_dict(self) -> dict[str, Any]:
        """The 14 upstream fields by name (the project's extra fields are not included)."""
        return {field.name: self._values[field.name] for field in _FIELDS if field.upstream}

    def __repr__(self) -> str:
        values = self._values
        return (
            f"DefaultRunnerConfig(max_concurrent_tasks={values['max_concurrent_tasks']}, "
            f"enable_cron_scheduling={'true' if values['enable_cron_scheduling'] else 'false'}, "
            f"db_pool_size={values['db_pool_size']})"
        )


def _field_property(field: _Field) -> property:
    def get(config: DefaultRunnerConfig) -> Any:
        return config._values[field.name]

    def set_(config: DefaultRunnerConfig, value: Any) -> None:
        if value is None and field.nullable:
            config._values[field.name] = None
        else:
            config._values[field.name] = field.check(field.name, value)

    return property(get, set_, doc=field.doc)


for _field in _FIELDS:
    setattr(DefaultRunnerConfig, _field.name, _field_property(_field))
del _field


def operator_config(shutdown_grace_seconds: float = 1.0) -> DefaultRunnerConfig:
    """The config of a process that inspects and operates runs but is no worker (a CLI
    command, the dashboard): it resumes nothing, fires no cron slot and runs no reactor."""
    return DefaultRunnerConfig(
        enable_recovery=False, enable_cron_firing=False, enable_reactors=False,
        shutdown_grace_seconds=shutdown_grace_seconds,
    )
