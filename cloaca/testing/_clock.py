"""`FakeClock`: the time a runner's cron scheduler sees, moved by the test instead of waiting."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Callable, Optional, Union

Moment = Union[datetime, float, int]


class FakeClock:
    """A clock that stands still until the test moves it; give it to a runner as its cron clock.

    Moving it (`advance`, `set`) wakes the cron schedulers of the runners using it, which then
    fire every slot that became due, as if that much time had passed. It drives cron only:
    polling triggers, retries and timeouts keep real time.
    """

    def __init__(self, start: Optional[Moment] = None) -> None:
        self._lock = threading.Lock()
        self._now = time.time() if start is None else _posix(start)
        self._listeners: list[Callable[[], None]] = []

    def __call__(self) -> float:
        """The current POSIX time of this clock."""
        with self._lock:
            return self._now

    @property
    def now(self) -> datetime:
        """The current time of this clock, as an aware UTC datetime."""
        return datetime.fromtimestamp(self(), timezone.utc)

    def advance(self, seconds: Union[float, timedelta]) -> None:
        """Move forward by `seconds` (a number or a timedelta); the slots now due fire."""
        amount = seconds.total_seconds() if isinstance(seconds, timedelta) else seconds
        if isinstance(amount, bool) or not isinstance(amount, (int, float)):
            raise TypeError(f"FakeClock.advance() takes seconds or a timedelta, got {seconds!r}")
        if amount < 0:
            raise ValueError(f"FakeClock.advance({amount!r}): cannot go back; use set() for that")
        with self._lock:
            self._now += amount
        self._notify()

    def set(self, moment: Moment) -> None:
        """Jump to `moment` (an aware datetime or a POSIX time); the slots now due fire."""
        value = _posix(moment)
        with self._lock:
            self._now = value
        self._notify()

    def add_jump_listener(self, callback: Callable[[], None]) -> None:
        """Have `callback()` called after every move (runners' cron schedulers listen)."""
        with self._lock:
            self._listeners.append(callback)

    def remove_jump_listener(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if callback in self._listeners:
                self._listeners.remove(callback)

    def _notify(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for callback in listeners:
            callback()

    def __repr__(self) -> str:
        return f"FakeClock({self.now.isoformat()})"


def _posix(moment: Moment) -> float:
    if isinstance(moment, datetime):
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(
                f"FakeClock: {moment!r} has no timezone; give an aware datetime "
                "(for example datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc))"
            )
        return moment.timestamp()
    if isinstance(moment, bool) or not isinstance(moment, (int, float)):
        raise TypeError(f"FakeClock: expected an aware datetime or a POSIX time, got {moment!r}")
    return float(moment)
