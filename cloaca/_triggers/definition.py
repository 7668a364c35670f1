"""Triggers: the `TriggerDefinition` of a polling (or cron) trigger that fires a workflow, what a
poll returns (`TriggerResult`), and poll intervals.

`@cloaca.trigger` (which makes definitions and registers them) is in `cloaca/_declare.py`.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .._context import Context
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
