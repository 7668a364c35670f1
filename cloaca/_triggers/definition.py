"""`@cloaca.trigger`: polling (or cron) triggers that fire workflows, and `TriggerResult`."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .._context import Context
from .._registry import REGISTRY
from .._sealed import Sealed

DEFAULT_POLL_INTERVAL = "30s"
MIN_POLL_INTERVAL_MS = 10

_DURATION = re.compile(r"\s*(\d+)(ms|s|m|h)\s*", re.ASCII)  # ASCII digits only
MAX_POLL_INTERVAL_MS = 2**63 - 1
"""What the schedule tables hold (a 64-bit integer)."""
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000}


def parse_duration_ms(text: str) -> int:
    """Milliseconds of a duration string such as "100ms", "5s", "1m" or "2h"."""
    if not isinstance(text, str):
        raise ValueError(f"Invalid poll_interval {text!r}: expected a string such as '5s'")
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(
            f"Invalid poll_interval '{text}': expected an unsigned integer followed by "
            "'ms', 's', 'm' or 'h' (for example '100ms', '5s', '1m', '2h')"
        )
    milliseconds = int(match.group(1)) * _UNIT_MS[match.group(2)]
    if milliseconds > MAX_POLL_INTERVAL_MS:
        raise ValueError(
            f"Invalid poll_interval '{text}': the longest poll interval is {MAX_POLL_INTERVAL_MS}ms"
        )
    if milliseconds < MIN_POLL_INTERVAL_MS:
        raise ValueError(
            f"Invalid poll_interval '{text}': the shortest poll interval is "
            f"{MIN_POLL_INTERVAL_MS}ms"
        )
    return milliseconds


class TriggerResult(Sealed):
    """The outcome of one poll: `TriggerResult.skip()` or `TriggerResult.fire(context)`."""

    __slots__ = ("_fire", "_data")
    _how_to_get_one = "use TriggerResult.skip() or TriggerResult.fire(context)"

    @classmethod
    def _create(cls, fire: bool, data: Optional[dict[str, Any]]) -> TriggerResult:
        result = object.__new__(cls)
        result._fire = fire
        result._data = data
        return result

    @staticmethod
    def skip() -> TriggerResult:
        """The condition is not met: keep polling."""
        return _SKIP

    @staticmethod
    def fire(context: Optional[Context] = None) -> TriggerResult:
        """The condition is met: run the workflow with (a snapshot of) `context`."""
        if context is None:
            return _FIRE
        if not isinstance(context, Context):
            raise TypeError(
                f"TriggerResult.fire() expects a cloaca.Context or None, got {type(context).__name__}"
            )
        return TriggerResult._create(True, context.to_dict())

    def is_fire_result(self) -> bool:
        return self._fire

    def is_skip_result(self) -> bool:
        return not self._fire

    @property
    def context(self) -> Optional[Context]:
        """A copy of the fired context, or None (skip, or fire without context)."""
        return None if self._data is None else Context(self._data)

    def _fired_data(self) -> Optional[dict[str, Any]]:
        return self._data

    def __repr__(self) -> str:
        if not self._fire:
            return "TriggerResult.Skip"
        inner = "None" if self._data is None else repr(Context(self._data))
        return f"TriggerResult.Fire({inner})"


# Results without a context are immutable and alike: one of each, made once (a poll is hot).
_SKIP = TriggerResult._create(False, None)
_FIRE = TriggerResult._create(True, None)


@dataclass(frozen=True)
class TriggerDefinition:
    """A registered trigger: what to poll, how often, and which workflow it fires."""

    name: str
    workflow: Optional[str]
    function: Callable[[], Any]
    poll_interval_ms: int
    allow_concurrent: bool
    cron: Optional[str] = None
    timezone: Optional[str] = None
    is_async: bool = field(init=False)

    def __post_init__(self) -> None:
        # Read at every poll: computed once.
        object.__setattr__(self, "is_async", inspect.iscoroutinefunction(self.function))


class TriggerDecorator(Sealed):
    """What `cloaca.trigger(...)` returns; calling it on a function registers the trigger."""

    __slots__ = ("_options",)
    _how_to_get_one = "use cloaca.trigger(...)"

    @classmethod
    def _create(cls, options: dict[str, Any]) -> TriggerDecorator:
        decorator = object.__new__(cls)
        decorator._options = options
        return decorator

    def __call__(self, function: Callable[[], Any]) -> Callable[[], Any]:
        if not callable(function):
            raise TypeError(f"@cloaca.trigger must decorate a function, got {type(function).__name__}")
        options = dict(self._options)
        options["name"] = options["name"] or function.__name__
        REGISTRY.register_trigger(TriggerDefinition(function=function, **options))
        return function

    def __repr__(self) -> str:
        return f"TriggerDecorator(name={self._options['name']!r}, workflow={self._options['workflow']!r})"


def trigger(
    *,
    name: Optional[str] = None,
    on: Optional[str] = None,
    poll_interval: Optional[str] = None,
    cron: Optional[str] = None,
    timezone: Optional[str] = None,
    allow_concurrent: bool = False,
    workflow: Optional[str] = None,
) -> TriggerDecorator:
    """Declare a trigger that polls the decorated function and fires `workflow` (alias `on`)."""
    if workflow is not None and on is not None and workflow != on:
        raise ValueError(
            f"@cloaca.trigger: 'workflow={workflow!r}' and 'on={on!r}' name different workflows; "
            "give one of them"
        )
    target = workflow if workflow is not None else on
    if name is not None and (not isinstance(name, str) or not name):
        raise ValueError(f"@cloaca.trigger: name must be a non-empty string, got {name!r}")
    if not isinstance(allow_concurrent, bool):
        raise TypeError(f"@cloaca.trigger: allow_concurrent must be a bool, got {allow_concurrent!r}")
    if cron is not None:
        cron, timezone = _validate_cron_form(cron, timezone, poll_interval, target)
        interval_ms = parse_duration_ms(DEFAULT_POLL_INTERVAL)
    else:
        interval_ms = parse_duration_ms(poll_interval if poll_interval is not None else DEFAULT_POLL_INTERVAL)
    return TriggerDecorator._create(
        {
            "name": name,
            "workflow": target,
            "poll_interval_ms": interval_ms,
            "allow_concurrent": allow_concurrent,
            "cron": cron,
            "timezone": timezone,
        }
    )


def _validate_cron_form(
    cron: str, timezone: Optional[str], poll_interval: Optional[str], target: Optional[str]
) -> tuple[str, str]:
    from .._cron.expression import CronExpression

    if poll_interval is not None:
        raise ValueError("@cloaca.trigger: cannot set both 'cron' and 'poll_interval'")
    if target is None:
        raise ValueError("@cloaca.trigger: a cron trigger needs the workflow to run ('workflow=' or 'on=')")
    expression = CronExpression.parse(cron, timezone or "UTC")
    return expression.expression, expression.timezone
