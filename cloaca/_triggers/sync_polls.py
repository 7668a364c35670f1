"""Sync trigger polls kept on schedule by worker threads, without the event loop.

Handing each sync poll from the loop to a thread and back (a future, two thread wake-ups, the
loop's self-pipe) costs ~100 µs of CPU: 1,000 triggers polled every 100 ms took a whole core
and, on a busy machine, fell tens of milliseconds behind. Here the threads keep the schedule
themselves: a heap of due times, one thread (the leader) sleeping until the next one and
calling the function there; the loop hears only of fires.

A slow call must not hold the others up: a second thread (the watcher) looks every `stall`
seconds, and when the leader has been in one call that long while other polls are due, it
becomes the leader itself; a new watcher is started if no idle thread is left. So threads are
added only while calls are slow, and at most `max_polls` calls run at once. The watcher also
reports calls that outlive the poll timeout (their outcome is then dropped); such a call no
longer counts against `max_polls` (its thread runs on until it returns), so polls that hang
for good cannot stop every other trigger.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .failures import FailureLog

log = logging.getLogger("cloaca.trigger")

STALL_SECONDS = 0.01
"""How long the leader may be in one call while other polls are due before another thread
takes over the schedule."""


@dataclass(eq=False)
class PollEntry:
    """One trigger's place in the schedule; `call` runs in a poll thread, `done` gets its
    outcome unless the call timed out."""

    name: str
    interval: float
    call: Callable[[], Any]
    done: Callable[[Any], None]
    lateness: Optional[list[float]] = None
    active: bool = True

    def cancel(self) -> None:
        self.active = False  # dropped from the heap when next due


@dataclass(eq=False)
class _Call:
    entry: PollEntry
    started: float
    timed_out: bool = False


class _Worker:
    """A poll thread's identity in the scheduler's bookkeeping."""


class SyncPollScheduler:
    """Polls sync triggers on their schedule in at most `max_polls` concurrent worker
    threads (plus one watching), each call bounded by `timeout` seconds."""

    def __init__(self, max_polls: int, timeout: float, failures: Optional[FailureLog] = None,
                 stall: float = STALL_SECONDS) -> None:
        self.max_polls = max_polls
        self.failures = failures or FailureLog()
        self.timeout = timeout
        self.stall = stall
        self.polls = 0
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, PollEntry]] = []
        self._order = itertools.count()
        self._running: dict[_Worker, _Call] = {}
        self._threads = 0
        self._idle = 0  # followers waiting to be woken
        self._leader: Optional[_Worker] = None
        self._watcher: Optional[_Worker] = None
        self._stopped = False

    def add(self, entry: PollEntry) -> None:
        """Schedule `entry`'s first poll one interval from now."""
        with self._cond:
            if self._stopped:
                return
            due = time.monotonic() + entry.interval
            heapq.heappush(self._heap, (due, next(self._order), entry))
            if self._threads == 0:
                self._spawn()
                self._spawn()
            elif self._heap[0][2] is entry:
                self._cond.notify_all()  # the leader sleeps until a later time

    def stop(self) -> None:
        """No more polls start; calls running now finish in their threads (daemons)."""
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify_all()

    # ------------------------------------------------------------------ the threads
    def _spawn(self) -> None:
        thread = threading.Thread(target=self._work, args=(_Worker(),),
                                  name="cloaca-trigger-poll", daemon=True)
        self._threads += 1
        thread.start()

    def _work(self, me: _Worker) -> None:
        with self._cond:
            try:
                while not self._stopped:
                    if self._leader is None:
                        self._leader = me
                    if self._leader is me:
                        self._lead(me)
                    else:
                        self._follow(me)
            finally:
                self._threads -= 1
                if self._leader is me:
                    self._leader = None
                if self._watcher is me:
                    self._watcher = None

    def _lead(self, me: _Worker) -> None:
        """Run the next due poll, or sleep until it is due (lock held)."""
        now = time.monotonic()
        if not self._heap or self._heap[0][0] > now:
            self._cond.wait(self._heap[0][0] - now if self._heap else None)
            return
        due, _, entry = heapq.heappop(self._heap)
        if not entry.active:
            return
        call = self._running[me] = _Call(entry, now)
        self._cond.release()
        try:
            if entry.lateness is not None:
                entry.lateness.append(now - due)
            outcome = self._call(entry)
        finally:
            self._cond.acquire()
            del self._running[me]
        self.polls += 1
        ended = time.monotonic()
        # The watcher flags overdue calls while they run; a call that overran unseen (every
        # thread busy, or a starved watcher) is flagged here, so its late outcome is dropped.
        overran = not call.timed_out and ended - call.started > self.timeout
        call.timed_out = call.timed_out or overran
        due += entry.interval
        if due <= ended:
            due = ended + entry.interval  # a call that overran: skip the missed ticks
        if entry.active and not self._stopped:
            heapq.heappush(self._heap, (due, next(self._order), entry))
            if self._leader is not me and self._heap[0][2] is entry:
                self._cond.notify_all()  # due before the time the leader sleeps until
        if overran:
            self._cond.release()  # the log's handlers may be slow: not while holding the lock
            try:
                self.failures.failed(entry.name, f"poll timed out after {self.timeout:g}s")
            finally:
                self._cond.acquire()
        if call.timed_out or self._stopped:
            return
        self._cond.release()
        try:
            entry.done(outcome)
        except Exception as exc:  # pragma: no cover - `done` only hands over to the loop
            log.error("cloaca: trigger '%s': %s", entry.name, exc)
        finally:
            self._cond.acquire()

    def _follow(self, me: _Worker) -> None:
        """Watch the leader, or wait to be needed (lock held)."""
        if self._watcher is None:
            self._watcher = me
        if self._watcher is not me:
            self._idle += 1
            try:
                self._cond.wait()
            finally:
                self._idle -= 1
            return
        self._cond.wait(self.stall)
        now = time.monotonic()
        overdue = [c for c in self._running.values()
                   if not c.timed_out and now - c.started > self.timeout]
        if overdue:
            for call in overdue:
                call.timed_out = True
            self._cond.release()  # the log's handlers may be slow: not while holding the lock
            try:
                for call in overdue:
                    self.failures.failed(call.entry.name, f"poll timed out after {self.timeout:g}s")
            finally:
                self._cond.acquire()
            now = time.monotonic()
        leading = self._running.get(self._leader) if self._leader is not None else None
        if (leading is not None and now - leading.started >= self.stall
                and self._heap and self._heap[0][0] <= now
                and sum(not c.timed_out for c in self._running.values()) < self.max_polls):
            self._leader, self._watcher = me, None
            if self._idle == 0:
                self._spawn()  # the next watcher
            else:
                self._cond.notify()  # an idle follower becomes the watcher

    def _call(self, entry: PollEntry) -> Any:
        try:
            return entry.call()
        except BaseException as exc:  # never lose a poll thread to user code
            self.failures.failed(entry.name, f"raised {type(exc).__name__}: {exc}", exc)
            return None
