"""A trigger's failed polls, logged without a flood: the first failure with its traceback,
then one short line per failure, until a poll succeeds again (which is logged too)."""

from __future__ import annotations

import logging
import threading
from typing import Optional

log = logging.getLogger("cloaca.trigger")


class FailureLog:
    """Consecutive failures per trigger name; safe from the loop and from poll threads."""

    def __init__(self) -> None:
        self._failing: dict[str, int] = {}
        self._lock = threading.Lock()

    def failed(self, name: str, problem: str, exc: Optional[BaseException] = None) -> None:
        """A poll of trigger `name` failed: `problem` says how (`raised ValueError: ...`)."""
        with self._lock:
            count = self._failing.get(name, 0) + 1
            self._failing[name] = count
        extra = {"trigger_name": name, "consecutive_failures": count}
        if count == 1:
            log.error("trigger '%s' %s", name, problem, exc_info=exc, extra=extra)
        else:
            log.error("trigger '%s' %s (%d failed polls in a row)", name, problem, count, extra=extra)

    def succeeded(self, name: str) -> None:
        """A poll of trigger `name` succeeded (cheap unless it was failing)."""
        if name not in self._failing:
            return
        with self._lock:
            count = self._failing.pop(name, 0)
        if count:
            log.info("trigger '%s' recovered after %d failed polls", name, count,
                     extra={"trigger_name": name, "consecutive_failures": 0})
