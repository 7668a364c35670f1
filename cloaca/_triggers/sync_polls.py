"""Sync trigger polls kept on schedule by worker threads, without the event loop.

Handing each sync poll from the loop to a thread and back (a future, two thread wake-ups, the
loop's self-pipe) costs ~100 µs of CPU: 1,000 triggers polled every 100 ms took a whole core
and, on a busy machine, fell tens of milliseconds behind. Here the threads keep the schedule
themselves: a heap of due times, one thread (the leader) sleeping until the next one and
calling the function there; the loop hears only of fires. Cheap polls thus cost no thread
hand-off at all.

Calls that take time must not hold the others up. A second thread (the watcher) looks every
`stall` seconds. When the leader has been in one call that long while other polls are due,
the watcher becomes the leader itself (a new watcher is started if no idle thread is left).
When the schedule as a whole has fallen `behind` seconds late (many calls, each shorter than
`stall`, that one thread cannot keep up with), a helper is called in: an idle thread, or a
new one. Each thread that takes a poll while the schedule is still that late calls in the
next helper itself, so as many threads call at once as the backlog needs; a helper takes
due polls until none is due, then rests. So threads are added only while calls are slow,
and at most `max_polls` calls run at once. The watcher also reports calls that
outlive the poll timeout (their outcome is then dropped); such a call no longer counts
against `max_polls` (its thread runs on until it returns), so polls that hang for good
cannot stop every other trigger.
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
takes over the schedule; also how often the watcher looks."""
BEHIND_SECONDS = 0.002
"""How late the next poll may be before another thread is called in to help."""
HELPFUL_CALL_SECONDS = 0.0001
"""How long calls must take on average for helpers to be called in: the schedule of cheaper
calls falls behind only when the process lacks CPU, and more threads would only add switches
(the interpreter runs one at a time)."""


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
                 stall: float = STALL_SECONDS, behind: float = BEHIND_SECONDS) -> None:
        self.max_polls = max_polls
        self.failures = failures or FailureLog()
        self.timeout = timeout
        self.stall = stall
        self.behind = behind
        self.polls = 0
        self._call_seconds = 0.0  # how long calls take, a moving average
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # the leader and the watcher wait here
        self._rest = threading.Condition(lock)  # idle threads wait here, to help or to watch
        self._heap: list[tuple[float, int, PollEntry]] = []
        self._order = itertools.count()
        self._running: dict[_Worker, _Call] = {}
        self._threads = 0
        self._starting = 0  # threads started that have not taken the lock yet
        self._idle = 0  # threads waiting on `_rest` that no one has woken yet
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
            self._rest.notify_all()

    # ------------------------------------------------------------------ the threads
    def _spawn(self) -> None:
        thread = threading.Thread(target=self._work, args=(_Worker(),),
                                  name="cloaca-trigger-poll", daemon=True)
        self._threads += 1
        self._starting += 1
        thread.start()

    def _work(self, me: _Worker) -> None:
        with self._cond:
            self._starting -= 1
            try:
                while not self._stopped:
                    if self._leader is None:
                        self._leader = me
                    if self._leader is me:
                        self._lead(me)
                    elif self._watcher is None or self._watcher is me:
                        self._watch(me)
                    elif self._due(time.monotonic()) and self._may_call():
                        self._poll_next(me)  # a helper, while polls are due
                    else:
                        self._idle += 1  # until `_wake_one` (no timeout: woken only so)
                        self._rest.wait()
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
        elif self._may_call():
            self._poll_next(me)
        else:
            self._cond.wait(self.stall)  # every slot taken: until a call returns or times out

    def _poll_next(self, me: _Worker) -> None:
        """Call the next due poll and schedule the one after (lock held, released during
        the call)."""
        due, _, entry = heapq.heappop(self._heap)
        if not entry.active:
            return
        now = time.monotonic()
        if self._heap and self._heap[0][0] <= now - self.behind and self._behind(now):
            self._call_in_a_helper()  # polls are still due, and late
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
        self._call_seconds += (ended - now - self._call_seconds) / 16
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

    def _watch(self, me: _Worker) -> None:
        """Every `stall` seconds: flag overdue calls; take over from a leader stuck in a call,
        or call in a helper when the schedule has fallen behind (lock held)."""
        self._watcher = me
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
        if self._stopped or not self._due(now) or not self._may_call():
            return
        leading = self._running.get(self._leader) if self._leader is not None else None
        if leading is not None and now - leading.started >= self.stall:
            self._leader, self._watcher = me, None
            self._call_in_a_helper()  # the next watcher: a thread without a role takes that one first
        elif self._behind(now):
            self._call_in_a_helper()

    def _call_in_a_helper(self) -> None:
        """Wake an idle thread, or start one unless one is starting already or there are
        enough for `max_polls` calls, a leader and a watcher besides the hung calls (then
        one of them is between calls, and soon free) (lock held)."""
        if self._idle:
            self._wake_one()
        elif not self._starting:
            hung = sum(c.timed_out for c in self._running.values())
            if self._threads - hung < self.max_polls + 2:
                self._spawn()

    def _wake_one(self) -> None:
        self._idle -= 1
        self._rest.notify()

    def _due(self, now: float) -> bool:
        return bool(self._heap) and self._heap[0][0] <= now

    def _behind(self, now: float) -> bool:
        """Whether a poll has waited `behind` seconds past its due time, calls take long
        enough for a helper to help, and another thread may call."""
        return (bool(self._heap) and self._heap[0][0] <= now - self.behind
                and self._call_seconds >= HELPFUL_CALL_SECONDS and self._may_call(1))

    def _may_call(self, more: int = 0) -> bool:
        """Whether `more` + 1 calls may start (calls that timed out do not count)."""
        return (len(self._running) + more < self.max_polls
                or sum(not c.timed_out for c in self._running.values()) + more < self.max_polls)

    def _call(self, entry: PollEntry) -> Any:
        try:
            return entry.call()
        except BaseException as exc:  # never lose a poll thread to user code
            self.failures.failed(entry.name, f"raised {type(exc).__name__}: {exc}", exc)
            return None
