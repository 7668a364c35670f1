"""DefaultRunnerConfig: SPEC §3.2 plus the project's extra fields."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from cloaca._config import DefaultRunnerConfig

UPSTREAM_DEFAULTS = {
    "max_concurrent_tasks": 4,
    "scheduler_poll_interval_ms": 100,
    "task_timeout_seconds": 300,
    "workflow_timeout_seconds": 3600,
    "db_pool_size": 10,
    "enable_recovery": True,
    "enable_cron_scheduling": True,
    "cron_poll_interval_seconds": 30,
    "cron_max_catchup_executions": 100,
    "cron_enable_recovery": True,
    "cron_recovery_interval_seconds": 300,
    "cron_lost_threshold_minutes": 10,
    "cron_max_recovery_age_seconds": 86400,
    "cron_max_recovery_attempts": 3,
}
PROJECT_DEFAULTS = {
    "lease_seconds": 5.0,
    "shutdown_grace_seconds": 10.0,
    "trigger_poll_timeout_seconds": 30.0,
    "max_concurrent_trigger_polls": 64,
    "max_concurrent_async_tasks": 1000,
    "enable_reactors": True,
    "reactor_poll_interval_seconds": 1.0,
    "enable_cron_firing": True,
    "max_reactor_tenants": 1000,
    "create_database": True,
}
BOOL_FIELDS = ["enable_recovery", "enable_cron_scheduling", "cron_enable_recovery", "enable_cron_firing",
               "create_database"]
INT_FIELDS = [name for name, value in UPSTREAM_DEFAULTS.items() if name not in BOOL_FIELDS]
UNSIGNED_FIELDS = [name for name in INT_FIELDS if name != "cron_lost_threshold_minutes"]
POSITIVE_FLOAT_FIELDS = ["lease_seconds", "shutdown_grace_seconds", "trigger_poll_timeout_seconds",
                         "reactor_poll_interval_seconds"]


def test_defaults() -> None:
    config = DefaultRunnerConfig()
    for name, value in {**UPSTREAM_DEFAULTS, **PROJECT_DEFAULTS}.items():
        assert getattr(config, name) == value, name
        assert type(getattr(config, name)) is type(value), name


def test_default_static_method() -> None:
    assert DefaultRunnerConfig.default().to_dict() == UPSTREAM_DEFAULTS
    assert isinstance(inspect.getattr_static(DefaultRunnerConfig, "default"), staticmethod)


def test_positional_order_of_the_14_fields_then_keyword_only_extras() -> None:
    parameters = list(inspect.signature(DefaultRunnerConfig).parameters.values())
    assert [p.name for p in parameters] == [*UPSTREAM_DEFAULTS, *PROJECT_DEFAULTS]
    for parameter in parameters:
        assert parameter.default is None
    kinds = [p.kind for p in parameters]
    assert kinds[:14] == [inspect.Parameter.POSITIONAL_OR_KEYWORD] * 14
    assert kinds[14:] == [inspect.Parameter.KEYWORD_ONLY] * len(PROJECT_DEFAULTS)


def test_positional_arguments_map_to_fields() -> None:
    config = DefaultRunnerConfig(8, 50, 60, 120, 5, False, False, 10, 7, False, 60, -5, 100, 1)
    assert config.to_dict() == {
        "max_concurrent_tasks": 8,
        "scheduler_poll_interval_ms": 50,
        "task_timeout_seconds": 60,
        "workflow_timeout_seconds": 120,
        "db_pool_size": 5,
        "enable_recovery": False,
        "enable_cron_scheduling": False,
        "cron_poll_interval_seconds": 10,
        "cron_max_catchup_executions": 7,
        "cron_enable_recovery": False,
        "cron_recovery_interval_seconds": 60,
        "cron_lost_threshold_minutes": -5,
        "cron_max_recovery_age_seconds": 100,
        "cron_max_recovery_attempts": 1,
    }


def test_extra_fields_are_keyword_only_and_settable() -> None:
    config = DefaultRunnerConfig(
        lease_seconds=2,
        shutdown_grace_seconds=0.5,
        trigger_poll_timeout_seconds=3.5,
        max_concurrent_trigger_polls=8,
    )
    assert config.lease_seconds == 2.0 and type(config.lease_seconds) is float
    assert config.shutdown_grace_seconds == 0.5
    assert config.trigger_poll_timeout_seconds == 3.5
    assert config.max_concurrent_trigger_polls == 8
    with pytest.raises(TypeError):
        DefaultRunnerConfig(*range(1, 16))  # type: ignore[misc]


def test_none_arguments_keep_defaults() -> None:
    config = DefaultRunnerConfig(
        max_concurrent_tasks=None, workflow_timeout_seconds=None, lease_seconds=None
    )
    assert config.max_concurrent_tasks == 4
    assert config.workflow_timeout_seconds == 3600  # quirk: None in the constructor keeps 3600
    assert config.lease_seconds == 5.0


def test_to_dict_has_exactly_the_14_upstream_fields_in_order() -> None:
    assert list(DefaultRunnerConfig().to_dict()) == list(UPSTREAM_DEFAULTS)


def test_to_dict_is_a_snapshot() -> None:
    config = DefaultRunnerConfig()
    snapshot = config.to_dict()
    snapshot["max_concurrent_tasks"] = 99
    assert config.max_concurrent_tasks == 4


def test_repr() -> None:
    assert repr(DefaultRunnerConfig()) == (
        "DefaultRunnerConfig(max_concurrent_tasks=4, enable_cron_scheduling=true, db_pool_size=10)"
    )
    assert repr(
        DefaultRunnerConfig(max_concurrent_tasks=2, db_pool_size=3, enable_cron_scheduling=False)
    ) == (
        "DefaultRunnerConfig(max_concurrent_tasks=2, enable_cron_scheduling=false, db_pool_size=3)"
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_concurrent_tasks", 16),
        ("scheduler_poll_interval_ms", 10),
        ("task_timeout_seconds", 0),
        ("db_pool_size", 1),
        ("enable_recovery", False),
        ("enable_cron_scheduling", False),
        ("cron_max_catchup_executions", 1000),
        ("cron_lost_threshold_minutes", -30),
        ("cron_max_recovery_attempts", 0),
        ("lease_seconds", 1.5),
        ("max_concurrent_trigger_polls", 1),
    ],
)
def test_setters(name: str, value: Any) -> None:
    config = DefaultRunnerConfig()
    setattr(config, name, value)
    assert getattr(config, name) == value
    if name in UPSTREAM_DEFAULTS:
        assert config.to_dict()[name] == value


def test_workflow_timeout_setter_none_removes_the_timeout() -> None:
    config = DefaultRunnerConfig()
    config.workflow_timeout_seconds = None
    assert config.workflow_timeout_seconds is None
    assert config.to_dict()["workflow_timeout_seconds"] is None
    config.workflow_timeout_seconds = 10
    assert config.workflow_timeout_seconds == 10


@pytest.mark.parametrize(
    "name", [n for n in [*UPSTREAM_DEFAULTS, *PROJECT_DEFAULTS] if n != "workflow_timeout_seconds"]
)
def test_setter_none_is_a_type_error_for_other_fields(name: str) -> None:
    config = DefaultRunnerConfig()
    with pytest.raises(TypeError, match=name):
        setattr(config, name, None)


@pytest.mark.parametrize(
    ("name", "value", "requirement"),
    [
        ("max_concurrent_tasks", 0, ">= 1"),
        ("db_pool_size", 0, ">= 1"),
        ("scheduler_poll_interval_ms", 9, ">= 10"),
        ("cron_max_catchup_executions", 1001, "between 0 and 1000"),
        ("max_concurrent_trigger_polls", 0, ">= 1"),
        ("lease_seconds", 0, "a finite number > 0"),
        ("shutdown_grace_seconds", -1.0, "a finite number > 0"),
        ("trigger_poll_timeout_seconds", float("inf"), "a finite number > 0"),
        ("lease_seconds", float("nan"), "a finite number > 0"),
        ("db_pool_size", 2**32, ">= 1"),
    ],
)
def test_invalid_values_raise_value_error(name: str, value: Any, requirement: str) -> None:
    with pytest.raises(ValueError) as info:
        DefaultRunnerConfig(**{name: value})
    message = str(info.value)
    assert message.startswith("Invalid configuration: ")
    assert f"{name} must be {requirement}, got {value!r}" in message


@pytest.mark.parametrize("name", UNSIGNED_FIELDS)
def test_negative_values_for_unsigned_fields_raise_value_error(name: str) -> None:
    with pytest.raises(ValueError, match=f"^Invalid configuration: {name} must be"):
        DefaultRunnerConfig(**{name: -1})


def test_signed_field_accepts_negative_but_checks_32_bit_range() -> None:
    assert DefaultRunnerConfig(
        cron_lost_threshold_minutes=-(2**31)
    ).cron_lost_threshold_minutes == -(2**31)
    with pytest.raises(ValueError, match="^Invalid configuration: cron_lost_threshold_minutes"):
        DefaultRunnerConfig(cron_lost_threshold_minutes=2**31)


def test_values_beyond_64_bits_raise_value_error() -> None:
    with pytest.raises(ValueError, match="^Invalid configuration: task_timeout_seconds"):
        DefaultRunnerConfig(task_timeout_seconds=2**64)


@pytest.mark.parametrize("name", [*INT_FIELDS, "max_concurrent_trigger_polls"])
@pytest.mark.parametrize("value", ["4", 4.0, True])
def test_wrong_types_for_int_fields_raise_type_error_naming_field(name: str, value: Any) -> None:
    with pytest.raises(
        TypeError, match=f"DefaultRunnerConfig.{name} must be an int, got {type(value).__name__}"
    ):
        DefaultRunnerConfig(**{name: value})


@pytest.mark.parametrize("name", BOOL_FIELDS)
@pytest.mark.parametrize("value", [1, "true", 0])
def test_wrong_types_for_bool_fields_raise_type_error_naming_field(name: str, value: Any) -> None:
    with pytest.raises(TypeError, match=f"DefaultRunnerConfig.{name} must be a bool"):
        DefaultRunnerConfig(**{name: value})


@pytest.mark.parametrize("name", POSITIVE_FLOAT_FIELDS)
@pytest.mark.parametrize("value", ["5", True])
def test_wrong_types_for_float_fields_raise_type_error_naming_field(name: str, value: Any) -> None:
    with pytest.raises(TypeError, match=f"DefaultRunnerConfig.{name} must be a number"):
        DefaultRunnerConfig(**{name: value})


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("max_concurrent_tasks", 0, ValueError),
        ("scheduler_poll_interval_ms", 5, ValueError),
        ("cron_max_catchup_executions", 5000, ValueError),
        ("db_pool_size", -3, ValueError),
        ("lease_seconds", 0.0, ValueError),
        ("enable_recovery", "yes", TypeError),
        ("max_concurrent_tasks", "8", TypeError),
    ],
)
def test_setter_validation_raises_and_keeps_old_value(name: str, value: Any, error: type) -> None:
    config = DefaultRunnerConfig()
    before = getattr(config, name)
    with pytest.raises(error) as info:
        setattr(config, name, value)
    if error is ValueError:
        assert str(info.value).startswith("Invalid configuration: ")
    assert getattr(config, name) == before


def test_configs_are_independent() -> None:
    first, second = DefaultRunnerConfig(), DefaultRunnerConfig()
    first.max_concurrent_tasks = 32
    assert second.max_concurrent_tasks == 4


def test_unknown_attributes_cannot_be_set() -> None:
    with pytest.raises(AttributeError):
        DefaultRunnerConfig().pipeline_timeout_seconds = 5  # type: ignore[attr-defined]
