"""Retry policies and the @task retry kwarg mapping: SPEC §4.5 and A6."""

from __future__ import annotations

import copy
import pickle

import pytest

from cloaca import _retry as retry_module
from cloaca._retry import BackoffStrategy
from cloaca._retry import RetryCondition
from cloaca._retry import RetryPolicy
from cloaca._retry import RetryPolicyBuilder
from cloaca._retry import policy_from_task_kwargs


def no_jitter(**fields: object) -> RetryPolicy:
    builder = RetryPolicy.builder().with_jitter(False)
    for name, value in fields.items():
        builder = getattr(builder, name)(value)
    return builder.build()


def kwargs_policy(**kwargs: object) -> RetryPolicy:
    names = (
        "retry",
        "retry_attempts",
        "retry_backoff",
        "retry_delay_ms",
        "retry_max_delay_ms",
        "retry_condition",
        "retry_jitter",
    )
    return policy_from_task_kwargs(*(kwargs.get(name) for name in names))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# no public constructors, immutability


@pytest.mark.parametrize("cls", [RetryPolicy, RetryPolicyBuilder, BackoffStrategy, RetryCondition])
def test_classes_cannot_be_instantiated_directly(cls: type) -> None:
    with pytest.raises(TypeError, match="cannot be instantiated directly"):
        cls()


def test_retry_policy_is_immutable() -> None:
    policy = RetryPolicy.default()
    with pytest.raises(AttributeError, match="immutable"):
        policy._max_attempts = 10  # type: ignore[misc]
    with pytest.raises(AttributeError):
        policy.max_attempts = 10  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        del policy._jitter
    assert policy.max_attempts == 3


def test_value_objects_compare_by_value_and_survive_copy_and_pickle() -> None:
    policy = (
        RetryPolicy.builder()
        .max_attempts(7)
        .retry_condition(RetryCondition.error_pattern(["x"]))
        .build()
    )
    assert (
        policy
        == RetryPolicy.builder()
        .max_attempts(7)
        .retry_condition(RetryCondition.error_pattern(["x"]))
        .build()
    )
    assert policy != RetryPolicy.default()
    assert hash(BackoffStrategy.linear(2)) == hash(BackoffStrategy.linear(2.0))
    assert pickle.loads(pickle.dumps(policy)) == policy
    assert copy.deepcopy(policy) == policy


# --------------------------------------------------------------------------------------
# default policy


def test_default_policy_values() -> None:
    policy = RetryPolicy.default()
    assert policy.max_attempts == 3
    assert policy.initial_delay == 1.0
    assert policy.max_delay == 60.0
    assert policy.with_jitter is True
    assert policy._backoff == BackoffStrategy.exponential(2.0, 1.0)
    assert policy._condition == RetryCondition.all_errors()
    assert (
        repr(policy) == "RetryPolicy(max_attempts=3, initial_delay=1s, max_delay=60s, jitter=true)"
    )


def test_builder_unset_fields_take_defaults() -> None:
    assert RetryPolicy.builder().build() == RetryPolicy.default()


# --------------------------------------------------------------------------------------
# builder


def test_builder_chain_getters_and_repr() -> None:
    policy = (
        RetryPolicy.builder()
        .max_attempts(5)
        .initial_delay(0.25)
        .max_delay(10.0)
        .backoff_strategy(BackoffStrategy.linear(1.5))
        .retry_condition(RetryCondition.transient_only())
        .with_jitter(True)
        .build()
    )
    assert policy.max_attempts == 5
    assert policy.initial_delay == 0.25
    assert policy.max_delay == 10.0
    assert policy.with_jitter is True
    assert (
        repr(policy)
        == "RetryPolicy(max_attempts=5, initial_delay=0.25s, max_delay=10s, jitter=true)"
    )


def test_builder_is_immutable_fluent() -> None:
    base = RetryPolicy.builder()
    five = base.max_attempts(5)
    assert five is not base
    assert base.build().max_attempts == 3
    assert five.build().max_attempts == 5
    assert five.with_jitter(False).build().with_jitter is False
    assert five.build().with_jitter is True


def test_repr_of_jitter_false_and_fractional_delays() -> None:
    policy = no_jitter(initial_delay=1.5, max_delay=0.001, max_attempts=0)
    assert (
        repr(policy)
        == "RetryPolicy(max_attempts=0, initial_delay=1.5s, max_delay=0.001s, jitter=false)"
    )
    tiny = no_jitter(initial_delay=1e-7)
    assert "initial_delay=0.0000001s" in repr(tiny)


@pytest.mark.parametrize(
    ("method", "value", "error"),
    [
        ("max_attempts", -1, ValueError),
        ("max_attempts", 2.0, TypeError),
        ("max_attempts", True, TypeError),
        ("initial_delay", -0.5, ValueError),
        ("initial_delay", float("inf"), ValueError),
        ("initial_delay", float("nan"), ValueError),
        ("initial_delay", "1", TypeError),
        ("max_delay", -1, ValueError),
        ("with_jitter", 1, TypeError),
        ("backoff_strategy", "fixed", TypeError),
        ("retry_condition", "all", TypeError),
    ],
)
def test_builder_validates_arguments(method: str, value: object, error: type) -> None:
    with pytest.raises(error):
        getattr(RetryPolicy.builder(), method)(value)


def test_builder_accepts_int_seconds() -> None:
    assert RetryPolicy.builder().initial_delay(2).build().initial_delay == 2.0


# --------------------------------------------------------------------------------------
# backoff strategies and retry conditions


def test_backoff_reprs() -> None:
    assert repr(BackoffStrategy.fixed()) == "BackoffStrategy.Fixed"
    assert repr(BackoffStrategy.linear(1.5)) == "BackoffStrategy.Linear(multiplier=1.5)"
    assert (
        repr(BackoffStrategy.exponential(2.0))
        == "BackoffStrategy.Exponential(base=2, multiplier=1)"
    )
    assert (
        repr(BackoffStrategy.exponential(3, 0.5))
        == "BackoffStrategy.Exponential(base=3, multiplier=0.5)"
    )


def test_backoff_validation() -> None:
    with pytest.raises(ValueError):
        BackoffStrategy.linear(-1)
    with pytest.raises(TypeError):
        BackoffStrategy.exponential("2")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        BackoffStrategy.exponential(2, float("nan"))


def test_condition_reprs() -> None:
    assert repr(RetryCondition.never()) == "RetryCondition.Never"
    assert repr(RetryCondition.transient_only()) == "RetryCondition.TransientOnly"
    assert repr(RetryCondition.all_errors()) == "RetryCondition.AllErrors"
    assert repr(RetryCondition.error_pattern(["timeout", "503"])) == (
        'RetryCondition.ErrorPattern(patterns=["timeout", "503"])'
    )


@pytest.mark.parametrize("patterns", ["timeout", [1], None, {"a"}])
def test_error_pattern_requires_list_of_str(patterns: object) -> None:
    with pytest.raises(TypeError):
        RetryCondition.error_pattern(patterns)  # type: ignore[arg-type]


def test_error_pattern_accepts_tuple_and_copies() -> None:
    patterns = ["a"]
    condition = RetryCondition.error_pattern(patterns)
    patterns.append("b")
    assert repr(condition) == 'RetryCondition.ErrorPattern(patterns=["a"])'
    assert RetryCondition.error_pattern(("a",)) == condition


# --------------------------------------------------------------------------------------
# calculate_delay


@pytest.mark.parametrize(
    ("backoff", "expected"),
    [
        (BackoffStrategy.fixed(), [0.5, 0.5, 0.5, 0.5]),
        (BackoffStrategy.linear(1.0), [0.5, 1.0, 1.5, 2.0]),
        (BackoffStrategy.linear(2.0), [1.0, 2.0, 3.0, 4.0]),
        (BackoffStrategy.exponential(2.0), [0.5, 1.0, 2.0, 4.0]),
        (BackoffStrategy.exponential(3.0, 2.0), [1.0, 3.0, 9.0, 27.0]),
    ],
)
def test_calculate_delay_per_strategy(backoff: BackoffStrategy, expected: list[float]) -> None:
    policy = no_jitter(initial_delay=0.5, max_delay=100.0, backoff_strategy=backoff)
    assert [policy.calculate_delay(n) for n in (1, 2, 3, 4)] == pytest.approx(expected)


def test_calculate_delay_is_capped_at_max_delay() -> None:
    policy = no_jitter(initial_delay=1.0, max_delay=5.0)
    assert policy.calculate_delay(3) == 4.0
    assert policy.calculate_delay(4) == 5.0
    assert policy.calculate_delay(10_000) == 5.0  # no OverflowError for huge powers


def test_calculate_delay_attempt_zero_does_not_go_below_initial_for_exponential() -> None:
    assert no_jitter(initial_delay=1.0).calculate_delay(0) == 1.0


def test_calculate_delay_jitter_stays_within_quarter_after_cap() -> None:
    policy = RetryPolicy.builder().initial_delay(1.0).max_delay(2.0).build()
    samples = [policy.calculate_delay(5) for _ in range(300)]  # uncapped 16 s, capped 2 s
    assert all(1.5 <= s <= 2.5 for s in samples)
    assert len(set(samples)) > 1


def test_calculate_delay_uses_uniform_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[float, float]] = []

    def fake_uniform(low: float, high: float) -> float:
        calls.append((low, high))
        return 1.25

    monkeypatch.setattr(retry_module.random, "uniform", fake_uniform)
    assert RetryPolicy.default().calculate_delay(2) == 2.5
    assert calls == [(0.75, 1.25)]


def test_calculate_delay_grows_with_default_policy_shape() -> None:
    policy = (
        RetryPolicy.builder()
        .max_attempts(5)
        .initial_delay(0.25)
        .max_delay(10)
        .with_jitter(False)
        .build()
    )
    delays = [policy.calculate_delay(n) for n in (1, 2, 3)]
    assert delays == sorted(delays) and delays[0] < delays[2]


def test_calculate_delay_rejects_negative_attempt() -> None:
    with pytest.raises(ValueError):
        RetryPolicy.default().calculate_delay(-1)


# --------------------------------------------------------------------------------------
# should_retry and the internal error check


def test_should_retry_is_attempt_below_max() -> None:
    policy = no_jitter(max_attempts=3)
    assert policy.should_retry(1, "ValueError")
    assert policy.should_retry(2, "anything")
    assert not policy.should_retry(3, "ValueError")
    assert not no_jitter(max_attempts=0).should_retry(1, "x")
    assert not no_jitter(max_attempts=1).should_retry(1, "x")


@pytest.mark.parametrize(
    ("condition", "message", "transient", "expected"),
    [
        (RetryCondition.all_errors(), "anything", False, True),
        (RetryCondition.never(), "connection refused", True, False),
        (RetryCondition.transient_only(), "ValueError: bad input", False, False),
        (RetryCondition.transient_only(), "ValueError: bad input", True, True),
        (RetryCondition.transient_only(), "Connection refused", False, True),
        (RetryCondition.transient_only(), "read TIMEOUT", False, True),
        (RetryCondition.transient_only(), "network down", False, True),
        (RetryCondition.transient_only(), "Temporary failure", False, True),
        (RetryCondition.transient_only(), "service unavailable", False, True),
        (RetryCondition.error_pattern(["Rate Limit", "503"]), "hit rate limit", False, True),
        (RetryCondition.error_pattern(["Rate Limit", "503"]), "HTTP 503", False, True),
        (RetryCondition.error_pattern(["Rate Limit"]), "connection refused", True, False),
        (RetryCondition.error_pattern([]), "anything", False, False),
    ],
)
def test_should_retry_error_conditions(
    condition: RetryCondition, message: str, transient: bool, expected: bool
) -> None:
    policy = no_jitter(max_attempts=3, retry_condition=condition)
    assert policy._should_retry_error(1, message, transient) is expected


def test_should_retry_error_respects_attempt_count() -> None:
    policy = no_jitter(max_attempts=2)
    assert policy._should_retry_error(1, "boom", False)
    assert not policy._should_retry_error(2, "boom", False)


# --------------------------------------------------------------------------------------
# @task kwargs mapping


def test_no_kwargs_gives_default_policy() -> None:
    assert kwargs_policy() == RetryPolicy.default()


def test_retry_kwargs_map_onto_policy() -> None:
    policy = kwargs_policy(
        retry_attempts=5,
        retry_backoff="linear",
        retry_delay_ms=250,
        retry_max_delay_ms=2000,
        retry_condition="transient",
        retry_jitter=False,
    )
    assert policy.max_attempts == 5
    assert policy.initial_delay == 0.25
    assert policy.max_delay == 2.0
    assert policy.with_jitter is False
    assert policy._backoff == BackoffStrategy.linear(1.0)
    assert policy._condition == RetryCondition.transient_only()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("fixed", BackoffStrategy.fixed()),
        ("linear", BackoffStrategy.linear(1.0)),
        ("exponential", BackoffStrategy.exponential(2.0, 1.0)),
        ("Linear", BackoffStrategy.linear(1.0)),
    ],
)
def test_backoff_names(name: str, expected: BackoffStrategy) -> None:
    assert kwargs_policy(retry_backoff=name)._backoff == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("never", RetryCondition.never()),
        ("transient", RetryCondition.transient_only()),
        ("all", RetryCondition.all_errors()),
        ("NEVER", RetryCondition.never()),
    ],
)
def test_condition_names(name: str, expected: RetryCondition) -> None:
    assert kwargs_policy(retry_condition=name)._condition == expected


def test_unknown_backoff_raises_naming_value_and_valid_ones() -> None:
    with pytest.raises(ValueError) as info:
        kwargs_policy(retry_backoff="quadratic")
    message = str(info.value)
    assert "retry_backoff" in message and "'quadratic'" in message
    assert "'fixed', 'linear', 'exponential'" in message


def test_unknown_condition_raises_naming_value_and_valid_ones() -> None:
    with pytest.raises(ValueError) as info:
        kwargs_policy(retry_condition="sometimes")
    message = str(info.value)
    assert "retry_condition" in message and "'sometimes'" in message
    assert "'never', 'transient', 'all'" in message


def test_non_str_backoff_or_condition_is_type_error() -> None:
    with pytest.raises(TypeError, match="retry_backoff"):
        kwargs_policy(retry_backoff=1)
    with pytest.raises(TypeError, match="retry_condition"):
        kwargs_policy(retry_condition=["all"])


@pytest.mark.parametrize("name", ["retry_attempts", "retry_delay_ms", "retry_max_delay_ms"])
@pytest.mark.parametrize("value", [-1, 1.5, "3", True])
def test_integer_kwargs_reject_negative_and_non_int(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=name):
        kwargs_policy(**{name: value})


def test_retry_attempts_zero_means_single_run() -> None:
    policy = kwargs_policy(retry_attempts=0)
    assert policy.max_attempts == 0
    assert not policy._should_retry_error(1, "boom", False)


def test_retry_attempts_is_total_executions() -> None:
    policy = kwargs_policy(retry_attempts=3, retry_condition="transient")
    attempts = [
        n for n in range(1, 10) if policy._should_retry_error(n, "connection refused", False)
    ]
    assert attempts == [1, 2]  # retries after attempts 1 and 2: three runs in total


def test_retry_jitter_must_be_bool() -> None:
    with pytest.raises(TypeError, match="retry_jitter"):
        kwargs_policy(retry_jitter=1)


def test_retry_policy_object_is_used_as_is() -> None:
    policy = RetryPolicy.builder().max_attempts(9).build()
    assert kwargs_policy(retry=policy) is policy


def test_retry_must_be_a_retry_policy() -> None:
    with pytest.raises(TypeError, match="RetryPolicy"):
        kwargs_policy(retry={"max_attempts": 3})


def test_mixing_retry_and_retry_kwargs_names_them_and_says_not_both() -> None:
    with pytest.raises(ValueError) as info:
        kwargs_policy(retry=RetryPolicy.default(), retry_attempts=3)
    message = str(info.value)
    assert "retry_attempts" in message
    assert "not both" in message
    assert "retry_backoff" not in message


def test_mixing_lists_every_conflicting_kwarg() -> None:
    with pytest.raises(ValueError) as info:
        kwargs_policy(retry=RetryPolicy.default(), retry_backoff="fixed", retry_jitter=False)
    message = str(info.value)
    assert "retry_backoff, retry_jitter" in message and "not both" in message


def test_conflict_is_reported_before_retry_type_check() -> None:
    with pytest.raises(ValueError, match="not both"):
        kwargs_policy(retry="not a policy", retry_delay_ms=5)
