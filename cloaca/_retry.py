"""Retry policy value objects (`RetryPolicy`, its builder, backoff strategies, retry conditions)
and the mapping of `@cloaca.task(retry_*=...)` kwargs onto a policy."""

from __future__ import annotations

import json
import math
import random
from decimal import Decimal
from typing import Any, Optional, Sequence, TypeVar

_TRANSIENT_KEYWORDS = ("timeout", "connection", "network", "temporary", "unavailable")


# --------------------------------------------------------------------------------------
# Validation and formatting helpers


def _non_negative_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{what} must be >= 0, got {value}")
    return int(value)


def _non_negative_number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{what} must be a finite number >= 0, got {value!r}")
    return number


def _checked_bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{what} must be a bool, got {type(value).__name__}")
    return value


def _format_number(number: float) -> str:
    """`number` the way upstream prints an f64: `1`, `0.25`, never an exponent."""
    if number.is_integer():
        return str(int(number))
    return format(Decimal(repr(number)), "f")


# --------------------------------------------------------------------------------------
# Immutable value objects without a public constructor


_V = TypeVar("_V", bound="_ValueObject")


def _restore(cls: type[_V], fields: dict[str, Any]) -> _V:
    return cls._create(**fields)


class _ValueObject:
    """Base of immutable value objects that only static factories may create."""

    __slots__: tuple[str, ...] = ()
    _factories = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(
            f"{type(self).__name__} cannot be instantiated directly; use {self._factories}"
        )

    @classmethod
    def _create(cls: type[_V], **fields: Any) -> _V:
        instance = object.__new__(cls)
        for field, value in fields.items():
            object.__setattr__(instance, field, value)
        return instance

    def _fields(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _ValueObject) or type(other) is not type(self):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash((type(self), self._fields()))

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (type(self), dict(zip(self.__slots__, self._fields()))))


class BackoffStrategy(_ValueObject):
    """How the delay grows between attempts: fixed, linear or exponential."""

    __slots__ = ("_kind", "_base", "_multiplier")
    _kind: str
    _base: float  # Exponential only
    _multiplier: float  # Linear and Exponential only
    _factories = "BackoffStrategy.fixed(), .linear(multiplier) or .exponential(base, multiplier)"

    @staticmethod
    def fixed() -> BackoffStrategy:
        """The same delay before every retry."""
        return BackoffStrategy._create(_kind="Fixed", _base=None, _multiplier=None)

    @staticmethod
    def linear(multiplier: float) -> BackoffStrategy:
        """Delay `initial × attempt × multiplier`."""
        checked = _non_negative_number(multiplier, "BackoffStrategy.linear multiplier")
        return BackoffStrategy._create(_kind="Linear", _base=None, _multiplier=checked)

    @staticmethod
    def exponential(base: float, multiplier: Optional[float] = None) -> BackoffStrategy:
        """Delay `initial × multiplier × base^(attempt-1)`; `multiplier` defaults to 1."""
        return BackoffStrategy._create(
            _kind="Exponential",
            _base=_non_negative_number(base, "BackoffStrategy.exponential base"),
            _multiplier=_non_negative_number(
                1.0 if multiplier is None else multiplier,
                "BackoffStrategy.exponential multiplier",
            ),
        )

    def _delay(self, initial: float, attempt: int) -> float:
        """Uncapped delay in seconds after failed attempt `attempt`."""
        if self._kind == "Fixed":
            return initial
        if self._kind == "Linear":
            return initial * attempt * self._multiplier
        try:
            growth = self._base ** max(attempt - 1, 0)
        except OverflowError:
            return math.inf
        return initial * self._multiplier * growth

    def __repr__(self) -> str:
        if self._kind == "Fixed":
            return "BackoffStrategy.Fixed"
        if self._kind == "Linear":
            return f"BackoffStrategy.Linear(multiplier={_format_number(self._multiplier)})"
        return (
            f"BackoffStrategy.Exponential(base={_format_number(self._base)}, "
            f"multiplier={_format_number(self._multiplier)})"
        )


class RetryCondition(_ValueObject):
    """Which errors are retried: none, transient ones, all, or those matching patterns."""

    __slots__ = ("_kind", "_patterns")
    _kind: str
    _patterns: tuple[str, ...]
    _factories = (
        "RetryCondition.never(), .transient_only(), .all_errors() or .error_pattern(patterns)"
    )

    @staticmethod
    def never() -> RetryCondition:
        """Never retry."""
        return RetryCondition._create(_kind="Never", _patterns=())

    @staticmethod
    def transient_only() -> RetryCondition:
        """Retry only transient errors (timeouts, connection/network trouble, ...)."""
        return RetryCondition._create(_kind="TransientOnly", _patterns=())

    @staticmethod
    def all_errors() -> RetryCondition:
        """Retry every error."""
        return RetryCondition._create(_kind="AllErrors", _patterns=())

    @staticmethod
    def error_pattern(patterns: Sequence[str]) -> RetryCondition:
        """Retry errors whose message contains one of `patterns` (case-insensitive)."""
        if isinstance(patterns, str) or not isinstance(patterns, (list, tuple)):
            raise TypeError(
                f"RetryCondition.error_pattern expects a list of str, got {type(patterns).__name__}"
            )
        for pattern in patterns:
            if not isinstance(pattern, str):
                raise TypeError(
                    "RetryCondition.error_pattern patterns must be str, "
                    f"got {type(pattern).__name__}"
                )
        return RetryCondition._create(_kind="ErrorPattern", _patterns=tuple(patterns))

    def _matches(self, error_message: str, is_transient: bool) -> bool:
        """Whether an error with this message (and transient classification) may be retried."""
        if self._kind == "AllErrors":
            return True
        if self._kind == "Never":
            return False
        message = error_message.lower()
        if self._kind == "TransientOnly":
            return is_transient or any(word in message for word in _TRANSIENT_KEYWORDS)
        return any(pattern.lower() in message for pattern in self._patterns)

    def __repr__(self) -> str:
        if self._kind == "ErrorPattern":
            quoted = ", ".join(json.dumps(p, ensure_ascii=False) for p in self._patterns)
            return f"RetryCondition.ErrorPattern(patterns=[{quoted}])"
        return f"RetryCondition.{self._kind}"


class RetryPolicy(_ValueObject):
    """How often a failing task runs and how long it waits between attempts."""

    __slots__ = (
        "_max_attempts", "_backoff", "_initial_delay", "_max_delay", "_jitter", "_condition",
    )
    _max_attempts: int
    _backoff: BackoffStrategy
    _initial_delay: float
    _max_delay: float
    _jitter: bool
    _condition: RetryCondition
    _factories = "RetryPolicy.builder() or RetryPolicy.default()"

    @staticmethod
    def default() -> RetryPolicy:
        """3 attempts, exponential backoff (base 2) from 1 s capped at 60 s, jitter, all errors."""
        return _DEFAULT_POLICY

    @staticmethod
    def builder() -> RetryPolicyBuilder:
        """A builder starting from the default policy."""
        return RetryPolicyBuilder._create(_policy=_DEFAULT_POLICY)

    @property
    def max_attempts(self) -> int:
        """Total number of executions (0 and 1 both mean a single run)."""
        return self._max_attempts

    @property
    def initial_delay(self) -> float:
        """Base delay in seconds."""
        return self._initial_delay

    @property
    def max_delay(self) -> float:
        """Cap on the delay in seconds (applied before jitter)."""
        return self._max_delay

    @property
    def with_jitter(self) -> bool:
        """Whether delays are multiplied by a random factor in [0.75, 1.25]."""
        return self._jitter

    def calculate_delay(self, attempt: int) -> float:
        """Seconds to wait before retrying after failed attempt `attempt` (jitter included)."""
        attempt = _non_negative_int(attempt, "attempt")
        delay = min(self._backoff._delay(self._initial_delay, attempt), self._max_delay)
        if self._jitter:
            delay *= random.uniform(0.75, 1.25)
        return delay

    def should_retry(self, attempt: int, error_type: str) -> bool:
        """Whether attempt number `attempt` leaves room for another one (`error_type` unused)."""
        return attempt < self._max_attempts

    def _should_retry_error(self, attempt: int, error_message: str, is_transient: bool) -> bool:
        """Whether failed attempt `attempt` with this error is followed by a retry."""
        return attempt < self._max_attempts and self._condition._matches(
            error_message, is_transient
        )

    def _replace(self, **changes: Any) -> RetryPolicy:
        fields = dict(zip(self.__slots__, self._fields()))
        fields.update(changes)
        return RetryPolicy._create(**fields)

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(max_attempts={self._max_attempts}, "
            f"initial_delay={_format_number(self._initial_delay)}s, "
            f"max_delay={_format_number(self._max_delay)}s, "
            f"jitter={'true' if self._jitter else 'false'})"
        )


class RetryPolicyBuilder(_ValueObject):
    """Immutable fluent builder of a `RetryPolicy`: every setter returns a new builder."""

    __slots__ = ("_policy",)
    _policy: RetryPolicy
    _factories = "RetryPolicy.builder()"

    def _with(self, **changes: Any) -> RetryPolicyBuilder:
        return RetryPolicyBuilder._create(_policy=self._policy._replace(**changes))

    def max_attempts(self, max_attempts: int) -> RetryPolicyBuilder:
        """Total number of executions."""
        return self._with(_max_attempts=_non_negative_int(max_attempts, "max_attempts"))

    def initial_delay(self, seconds: float) -> RetryPolicyBuilder:
        """Base delay in seconds."""
        return self._with(_initial_delay=_non_negative_number(seconds, "initial_delay"))

    def max_delay(self, seconds: float) -> RetryPolicyBuilder:
        """Cap on the delay in seconds."""
        return self._with(_max_delay=_non_negative_number(seconds, "max_delay"))

    def backoff_strategy(self, strategy: BackoffStrategy) -> RetryPolicyBuilder:
        """How the delay grows between attempts."""
        if not isinstance(strategy, BackoffStrategy):
            raise TypeError(
                f"backoff_strategy expects a BackoffStrategy, got {type(strategy).__name__}"
            )
        return self._with(_backoff=strategy)

    def retry_condition(self, condition: RetryCondition) -> RetryPolicyBuilder:
        """Which errors are retried."""
        if not isinstance(condition, RetryCondition):
            raise TypeError(
                f"retry_condition expects a RetryCondition, got {type(condition).__name__}"
            )
        return self._with(_condition=condition)

    def with_jitter(self, jitter: bool) -> RetryPolicyBuilder:
        """Whether delays get ±25 % random jitter."""
        return self._with(_jitter=_checked_bool(jitter, "with_jitter"))

    def build(self) -> RetryPolicy:
        """The policy; fields never set keep the default policy's values."""
        return self._policy

    def __repr__(self) -> str:
        return f"RetryPolicyBuilder({self._policy!r})"


_DEFAULT_POLICY: RetryPolicy = RetryPolicy._create(
    _max_attempts=3,
    _backoff=BackoffStrategy.exponential(2.0, 1.0),
    _initial_delay=1.0,
    _max_delay=60.0,
    _jitter=True,
    _condition=RetryCondition.all_errors(),
)


# --------------------------------------------------------------------------------------
# @cloaca.task(retry_*=...) kwargs

_BACKOFFS = {
    "fixed": BackoffStrategy.fixed,
    "linear": lambda: BackoffStrategy.linear(1.0),
    "exponential": lambda: BackoffStrategy.exponential(2.0, 1.0),
}
_CONDITIONS = {
    "never": RetryCondition.never,
    "transient": RetryCondition.transient_only,
    "all": RetryCondition.all_errors,
}


def _task_int(name: str, value: Optional[int], default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"@cloaca.task({name}=...) must be an int >= 0, got {value!r}")
    return int(value)


def _task_choice(name: str, value: Optional[str], choices: dict[str, Any], default: str) -> Any:
    if value is None:
        return choices[default]()
    if not isinstance(value, str):
        raise TypeError(f"@cloaca.task({name}=...) must be a str, got {type(value).__name__}")
    factory = choices.get(value.lower())
    if factory is None:
        valid = ", ".join(repr(choice) for choice in choices)
        raise ValueError(f"@cloaca.task({name}={value!r}): unknown value; valid values: {valid}")
    return factory()


def _task_jitter(value: Optional[bool]) -> bool:
    return True if value is None else _checked_bool(value, "@cloaca.task(retry_jitter=...)")


def policy_from_task_kwargs(
    retry: Optional[RetryPolicy],
    retry_attempts: Optional[int],
    retry_backoff: Optional[str],
    retry_delay_ms: Optional[int],
    retry_max_delay_ms: Optional[int],
    retry_condition: Optional[str],
    retry_jitter: Optional[bool],
) -> RetryPolicy:
    """The policy described by `@cloaca.task`'s `retry=` or `retry_*` kwargs (None = unset)."""
    retry_kwargs = {
        "retry_attempts": retry_attempts,
        "retry_backoff": retry_backoff,
        "retry_delay_ms": retry_delay_ms,
        "retry_max_delay_ms": retry_max_delay_ms,
        "retry_condition": retry_condition,
        "retry_jitter": retry_jitter,
    }
    if retry is not None:
        given = [name for name, value in retry_kwargs.items() if value is not None]
        if given:
            raise ValueError(
                f"@cloaca.task(): retry= conflicts with {', '.join(given)}; pass either a "
                "RetryPolicy via retry= or the retry_* kwargs, not both"
            )
        if not isinstance(retry, RetryPolicy):
            raise TypeError(
                f"@cloaca.task(retry=...) must be a cloaca.RetryPolicy, got {type(retry).__name__}"
            )
        return retry
    return RetryPolicy._create(
        _max_attempts=_task_int("retry_attempts", retry_attempts, 3),
        _backoff=_task_choice("retry_backoff", retry_backoff, _BACKOFFS, "exponential"),
        _initial_delay=_task_int("retry_delay_ms", retry_delay_ms, 1000) / 1000,
        _max_delay=_task_int("retry_max_delay_ms", retry_max_delay_ms, 60000) / 1000,
        _jitter=_task_jitter(retry_jitter),
        _condition=_task_choice("retry_condition", retry_condition, _CONDITIONS, "all"),
    )
