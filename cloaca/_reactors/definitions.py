"""`@cloaca.reactor` and the accumulator decorators: declarations kept in process-wide registries.

Registration only; the runner's live runtime (`cloaca._reactors.runtime`) reads these
registries when it loads reactors. The last registration under a name wins.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type)

MODES = ("when_any", "when_all")
PASSTHROUGH = "passthrough"
STREAM = "stream"
POLLING = "polling"
BATCH = "batch"
STATE = "state"


@dataclass(frozen=True)
class AccumulatorDefinition:
    """A decorated accumulator function: its kind and its configuration (values as strings)."""

    name: str
    kind: str
    config: dict[str, str]
    function: Optional[Callable[..., Any]]
    capacity: Optional[int] = None


@dataclass(frozen=True)
class ReactorDefinition:
    """A `@cloaca.reactor` class: the accumulators it listens to and when it fires."""

    name: str
    accumulators: tuple[str, ...]
    mode: str
    cls: Optional[type] = field(default=None, compare=False)


_lock = threading.Lock()
_accumulators: dict[str, AccumulatorDefinition] = {}
_reactors: dict[str, ReactorDefinition] = {}


def get_accumulator(name: str) -> AccumulatorDefinition:
    """The accumulator registered under `name`; an undecorated name is a passthrough."""
    with _lock:
        found = _accumulators.get(name)
    return found or AccumulatorDefinition(name, PASSTHROUGH, {}, None)


def registered_reactors() -> list[ReactorDefinition]:
    """Every registered reactor, in registration order."""
    with _lock:
        return list(_reactors.values())


def get_reactor(name: str) -> Optional[ReactorDefinition]:
    with _lock:
        return _reactors.get(name)


def _register_accumulator(definition: AccumulatorDefinition) -> None:
    with _lock:
        _accumulators[definition.name] = definition


# ---------------------------------------------------------------------------- reactor
def reactor(*, name: str, accumulators: Sequence[str], mode: str = "when_any") -> Callable[[C], C]:
    """Declare a reactor class: it fires its graphs when its accumulators deliver (`mode`)."""
    if not isinstance(name, str):
        raise TypeError(f"@cloaca.reactor: 'name' must be a str, got {type(name).__name__}")
    if not name:
        raise ValueError("@cloaca.reactor: 'name' cannot be empty")
    listed = _accumulator_names(accumulators)
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(
            f"@cloaca.reactor(name={name!r}): unknown mode {mode!r}; expected 'when_any' or 'when_all'"
        )
    definition_args = (name, tuple(listed), mode)

    def decorate(target: C) -> C:
        if not isinstance(target, type):
            raise TypeError(
                f"@cloaca.reactor(name={name!r}) must be applied to a class, got {type(target).__name__}"
            )
        target.NAME = name  # type: ignore[attr-defined]
        target.ACCUMULATORS = list(listed)  # type: ignore[attr-defined]
        target.REACTION_MODE = mode  # type: ignore[attr-defined]
        with _lock:
            _reactors[name] = ReactorDefinition(*definition_args, cls=target)
        return target

    return decorate


def _accumulator_names(accumulators: Any) -> list[str]:
    if isinstance(accumulators, (str, bytes)) or not isinstance(accumulators, Sequence):
        raise TypeError(
            "@cloaca.reactor: 'accumulators' must be a list of accumulator names (str), "
            f"got {type(accumulators).__name__}"
        )
    listed = list(accumulators)
    if not listed:
        raise ValueError("@cloaca.reactor: 'accumulators' cannot be empty")
    seen: set[str] = set()
    for item in listed:
        if not isinstance(item, str):
            raise TypeError(
                f"@cloaca.reactor: accumulator names must be str, got {type(item).__name__}"
            )
        if item in seen:
            raise ValueError(f"@cloaca.reactor: accumulator {item!r} is listed more than once")
        seen.add(item)
    return listed


# ---------------------------------------------------------------------------- accumulators
def _check_str(decorator: str, option: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"@cloaca.{decorator}({option}=...) must be a str, got {type(value).__name__}")
    return value


def _check_int(decorator: str, option: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"@cloaca.{decorator}({option}=...) must be an int, got {type(value).__name__}")
    return value


def _registrar(kind: str, config: dict[str, str], capacity: Optional[int] = None) -> Callable[[F], F]:
    def register(function: F) -> F:
        if not callable(function):
            raise TypeError(f"{kind} accumulator decorator must be applied to a function")
        _register_accumulator(
            AccumulatorDefinition(function.__name__, kind, dict(config), function, capacity)
        )
        return function

    return register


def passthrough_accumulator(function: F) -> F:
    """Declare a passthrough accumulator: each pushed event becomes a boundary (`f(event)`)."""
    return _registrar(PASSTHROUGH, {})(function)


def stream_accumulator(*, type: str, topic: str, group: Optional[str] = None) -> Callable[[F], F]:
    """Declare a stream accumulator (push-fed in the embedded runner; type/topic/group are metadata)."""
    config = {
        "type": _check_str("stream_accumulator", "type", type),
        "topic": _check_str("stream_accumulator", "topic", topic),
    }
    if group is not None:
        config["group"] = _check_str("stream_accumulator", "group", group)
    return _registrar(STREAM, config)


def polling_accumulator(*, interval: str) -> Callable[[F], F]:
    """Declare a polling accumulator: `f()` is called every `interval` (e.g. "5s", "250ms")."""
    return _registrar(POLLING, {"interval": _check_str("polling_accumulator", "interval", interval)})


def batch_accumulator(*, flush_interval: str, max_buffer_size: Optional[int] = None) -> Callable[[F], F]:
    """Declare a batch accumulator: events are buffered and flushed as a list."""
    config = {"flush_interval": _check_str("batch_accumulator", "flush_interval", flush_interval)}
    if max_buffer_size is not None:
        size = _check_int("batch_accumulator", "max_buffer_size", max_buffer_size)
        if size < 0:
            raise OverflowError(
                f"@cloaca.batch_accumulator(max_buffer_size=...) must not be negative, got {size}"
            )
        config["max_buffer_size"] = str(size)
    return _registrar(BATCH, config)


def state_accumulator(*, capacity: int) -> Callable[[F], F]:
    """Declare a state accumulator: a window of the last `capacity` values (<0 unbounded, 0 sink)."""
    size = _check_int("state_accumulator", "capacity", capacity)
    return _registrar(STATE, {"capacity": str(size)}, size)


# ---------------------------------------------------------------------------- durations
_DURATION = re.compile(r"^(\d+)(ms|s|m|h)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> Optional[float]:
    """Seconds of a duration string `<int>ms|s|m|h` (whitespace ignored); None if unparsable."""
    match = _DURATION.match(text.strip())
    if match is None:
        return None
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
