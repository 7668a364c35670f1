"""The threads that schedule and call sync trigger polls (cloaca/_triggers/sync_polls.py)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

import pytest

from cloaca._triggers.sync_polls import PollEntry, SyncPollScheduler
from support import poll_until


class Counter:
    """Calls of one poll function, thread-safe; `block` makes each call wait for `release`."""

    def __init__(self, outcome: Any = "ok", block: bool = False) -> None:
        self.calls = 0
        self.running = 0
        self.most = 0
        self.outcome = outcome
        self.block = block
        self.release = threading.Event()
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        with self._lock:
            self.calls += 1
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            if self.block:
                self.release.wait(10)
            return self.outcome
        finally:
            with self._lock:
                self.running -= 1


@pytest.fixture
def scheduler():
    made: list[SyncPollScheduler] = []

    def make(max_polls: int = 64, timeout: float = 30.0, **options: Any) -> SyncPollScheduler:
        made.append(SyncPollScheduler(max_polls, timeout, **options))
        return made[-1]

    yield make
    for s in made:
        s.stop()


def entry(name: str, call: Callable[[], Any], interval: float = 0.01,
          done: Callable[[Any], None] = lambda outcome: None) -> PollEntry:
    return PollEntry(name, interval, call, done)


def test_each_entry_is_polled_every_interval_and_its_outcome_handed_over(scheduler):
    s = scheduler()
    counter, outcomes = Counter(outcome="fired"), []
    lateness: list[float] = []
    e = PollEntry("t", 0.02, counter, outcomes.append, lateness)
    started = time.monotonic()
    s.add(e)
    poll_until(lambda: counter.calls >= 10, "ten polls")
    elapsed = time.monotonic() - started
    assert elapsed >= 10 * 0.02 * 0.99  # never early: the first poll one interval after add
    assert outcomes[:10] == ["fired"] * 10
    assert s.polls >= 10 and len(lateness) >= 10 and min(lateness) >= 0


def test_a_cancelled_entry_is_not_polled_again(scheduler):
    s = scheduler()
    counter = Counter()
    e = entry("t", counter)
    s.add(e)
    poll_until(lambda: counter.calls >= 2, "two polls")
    e.cancel()
    time.sleep(0.05)  # a poll may be under way as it is cancelled
    calls = counter.calls
    time.sleep(0.1)
    assert counter.calls == calls


def test_a_slow_call_does_not_hold_up_the_other_triggers(scheduler):
    s = scheduler()
    slow, quick = Counter(block=True), Counter()
    s.add(entry("slow", slow, interval=0.005))
    poll_until(lambda: slow.running == 1, "the slow call to start")
    s.add(entry("quick", quick))
    try:
        poll_until(lambda: quick.calls >= 10, "the quick trigger to be polled while the slow one blocks")
        assert slow.running == 1 and slow.calls == 1  # never called again while its call runs
    finally:
        slow.release.set()
    poll_until(lambda: slow.calls >= 2, "the slow trigger to be polled again once its call returned")


def test_no_more_than_max_polls_calls_run_at_once(scheduler):
    s = scheduler(max_polls=2)
    blocked = [Counter(block=True) for _ in range(4)]
    quick = Counter()
    for i, counter in enumerate(blocked):
        s.add(entry(f"b{i}", counter, interval=0.005))
    s.add(entry("quick", quick))
    try:
        poll_until(lambda: sum(c.running for c in blocked) == 2, "two calls to block")
        time.sleep(0.2)  # plenty of stall checks: no third thread may call
        assert sum(c.running for c in blocked) == 2
        calls = quick.calls
        time.sleep(0.05)
        assert quick.calls == calls  # both slots taken: the schedule waits
    finally:
        for counter in blocked:
            counter.release.set()
    poll_until(lambda: quick.calls > calls, "polls to resume once calls return")


def test_short_calls_too_many_for_one_thread_are_spread_over_helpers_up_to_max_polls(scheduler):
    """No call lasts `stall` (the leader is never stuck), but together the calls need several
    threads: helpers are called in as the schedule falls behind, never more than `max_polls`
    calls at once."""
    s = scheduler(max_polls=3, stall=0.05, behind=0.002)
    shared = Counter()

    def short() -> str:
        with shared._lock:
            shared.calls += 1
            shared.running += 1
            shared.most = max(shared.most, shared.running)
        try:
            time.sleep(0.004)  # 20 triggers every 10 ms: 8 threads' worth of calls
            return "ok"
        finally:
            with shared._lock:
                shared.running -= 1

    for i in range(20):
        s.add(entry(f"short{i}", short, interval=0.01))
    poll_until(lambda: shared.most >= 3, "calls to overlap")
    calls = shared.calls
    poll_until(lambda: shared.calls >= calls + 100, "more polls")
    assert shared.most == 3


def test_a_call_outliving_the_timeout_is_logged_and_its_outcome_dropped(scheduler, caplog):
    caplog.set_level(logging.ERROR, logger="cloaca")
    s = scheduler(timeout=0.05)
    hung, outcomes = Counter(outcome="late", block=True), []
    s.add(entry("hung_trigger", hung, done=outcomes.append))
    poll_until(lambda: any("hung_trigger" in r.getMessage() and "timed out after 0.05s" in r.getMessage()
                           for r in caplog.records), "the timeout to be logged")
    hung.release.set()
    hung.block = False
    hung.outcome = "on time"
    poll_until(lambda: "on time" in outcomes, "a later call to hand its outcome over")
    assert "late" not in outcomes


def test_a_call_that_overran_unseen_by_the_watcher_still_has_its_outcome_dropped(scheduler, caplog):
    """The watcher looks every `stall` seconds; one too slow to see a call overrun (here: it
    sleeps 60 s) must not let the late outcome through."""
    caplog.set_level(logging.ERROR, logger="cloaca")
    s = scheduler(timeout=0.05, stall=60.0)
    calls: list[int] = []
    first_may_return = threading.Event()
    outcomes: list[int] = []

    def slow() -> int:
        calls.append(1)
        number = len(calls)
        if number == 1:
            first_may_return.wait(10)
        return number

    s.add(entry("slow_trigger", slow, done=outcomes.append))
    poll_until(lambda: len(calls) == 1, "the first call")
    time.sleep(0.2)  # well past the timeout, while the watcher sleeps
    first_may_return.set()
    poll_until(lambda: len(outcomes) >= 2, "later calls' outcomes")
    assert 1 not in outcomes  # the first call's outcome came too late
    assert any("slow_trigger" in r.getMessage() and "timed out after 0.05s" in r.getMessage()
               for r in caplog.records)


def test_a_call_raising_anything_keeps_its_thread_and_its_schedule(scheduler, caplog):
    caplog.set_level(logging.ERROR, logger="cloaca")
    s = scheduler()
    calls = []

    def exits() -> None:
        calls.append(1)
        raise SystemExit("not the process")

    s.add(entry("exits", exits))
    poll_until(lambda: len(calls) >= 3, "the trigger to be polled again after raising")
    assert any("SystemExit" in r.getMessage() for r in caplog.records)


def test_stop_ends_the_polls_and_a_call_under_way_hands_nothing_over(scheduler):
    s = scheduler()
    blocked, outcomes = Counter(block=True), []
    s.add(entry("b", blocked, done=outcomes.append))
    poll_until(lambda: blocked.running == 1, "the call to start")
    s.stop()
    blocked.release.set()
    poll_until(lambda: blocked.running == 0, "the call to return")
    time.sleep(0.05)
    assert outcomes == [] and blocked.calls == 1
    poll_until(lambda: s._threads == 0, "the poll threads to end")
