"""Admission: a bound on the runs being created at once; later submissions wait in line.

Unbounded, every run submitted in a burst would be built and queued for insert before the
first one ended: its objects would live long enough to reach the oldest GC generation, and
runs would all end together at the end of the burst. Bounded, runs submitted together are
created, and end, in the order they came.

A submission waiting in line is a callable, not a waiting task: when a place frees, the next
one begins at once, in the callback that freed it (no loop turn, no future to wake).
"""

from __future__ import annotations

from collections import deque
from typing import Callable

Begin = Callable[[], bool]
"""Begins a submission that was given a place: True if it took the place (to give it back
with `leave` once its run is created, or could not be), False if it did not (its caller
has gone meanwhile, or it was refused at once): the next in line then takes it."""


class Admission:
    """First come, first admitted, at most `size` at once."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._line: deque[Begin] = deque()

    def enter(self, begin: Begin) -> None:
        """Begin now if there is a free place and nobody is waiting, else wait in line."""
        if self._free > 0 and not self._line:
            self._free -= 1
            if not begin():
                self.leave()
        else:
            self._line.append(begin)

    def leave(self) -> None:
        """Give a place back: the longest waiter whose caller is still there begins in it."""
        while self._line:
            if self._line.popleft()():
                return
        self._free += 1

    @property
    def free(self) -> int:
        """Places free now."""
        return self._free

    @property
    def waiting(self) -> int:
        """Submissions waiting in line (some of whose callers may have gone)."""
        return len(self._line)
