"""A broken trigger is logged without a flood (SPEC A11, issue 12): its first failure with
the traceback, then one short line per failure, until it recovers — which is logged too."""

from __future__ import annotations

import logging
import threading

import pytest

import cloaca
from cloaca import DefaultRunner, TriggerResult
from cloaca.testing import isolated_registry

from support import poll_until

FAILURES = 4


def _flaky(kind: str, polls: list[int], recovered: threading.Event):
    """Fails FAILURES polls in a row, then skips (a healthy poll)."""

    def check() -> TriggerResult:
        polls.append(1)
        if len(polls) <= FAILURES:
            raise ConnectionError(f"queue unreachable (poll {len(polls)})")
        recovered.set()
        return TriggerResult.skip()

    if kind == "sync":
        return check

    async def acheck() -> TriggerResult:
        return check()

    return acheck


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_failing_trigger_logs_one_traceback_then_short_lines_then_its_recovery(kind, caplog):
    polls: list[int] = []
    recovered = threading.Event()
    name = f"flaky_{kind}_trigger"
    caplog.set_level(logging.INFO, logger="cloaca.trigger")
    with isolated_registry():
        cloaca.trigger(workflow="not_run", name=name, poll_interval="20ms")(_flaky(kind, polls, recovered))
        with DefaultRunner(":memory:"):
            assert recovered.wait(20)
            poll_until(lambda: any("recovered" in r.getMessage() for r in caplog.records
                                   if getattr(r, "trigger_name", None) == name),
                       "the recovery to be logged", 10)
    records = [r for r in caplog.records if getattr(r, "trigger_name", None) == name]
    errors = [r for r in records if r.levelno == logging.ERROR]
    assert len(errors) == FAILURES
    first, *rest = errors
    assert first.exc_info is not None and first.exc_info[0] is ConnectionError
    assert "queue unreachable (poll 1)" in first.getMessage()
    assert all(r.exc_info is None for r in rest)  # no flood of tracebacks
    assert [r.consecutive_failures for r in errors] == list(range(1, FAILURES + 1))
    assert f"{FAILURES} failed polls in a row" in rest[-1].getMessage()
    [recovery] = [r for r in records if r.levelno == logging.INFO]
    assert f"recovered after {FAILURES} failed polls" in recovery.getMessage()
    assert recovery.name == "cloaca.trigger"


def test_garbage_returned_by_a_trigger_counts_as_a_failed_poll(caplog):
    name = "garbage_trigger"
    calls: list[int] = []

    def garbage() -> object:
        calls.append(1)
        return {"not": "a TriggerResult"}

    caplog.set_level(logging.INFO, logger="cloaca.trigger")
    with isolated_registry():
        cloaca.trigger(workflow="not_run", name=name, poll_interval="20ms")(garbage)
        with DefaultRunner(":memory:"):
            poll_until(lambda: len(calls) >= 3, "three polls", 20)
    errors = [r for r in caplog.records if getattr(r, "trigger_name", None) == name]
    assert errors and "returned dict; expected a cloaca.TriggerResult or a bool" in errors[0].getMessage()
    assert errors[0].exc_info is None
