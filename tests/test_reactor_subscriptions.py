"""Reactor subscriptions: subscribe/unsubscribe/list, the `when` predicate, dispatch from
firing rows (GRAPHS.md C11; ports of upstream's reactor_subscriptions and reactor_predicate
tests), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from typing import Any, AsyncIterator, Optional

import pytest
import pytest_asyncio

import cloaca
from cloaca._ids import time_ordered_id
from cloaca._reactors.predicates import compile_predicate
from cloaca._result import rfc3339
from cloaca._store.base import FiringRecord

from conftest import unique_name
from support import recording_workflow, wait_until


@pytest_asyncio.fixture
async def runner(make_runner) -> AsyncIterator[cloaca.DefaultRunner]:
    """A started runner (SQLite, PostgreSQL) whose subscription poller only runs when a test
    asks it to."""
    async with make_runner() as r:
        yield r


async def fire(runner: cloaca.DefaultRunner, reactor: str, payload: dict[str, Any],
               tenant: str = "public", fired_at: Optional[float] = None) -> FiringRecord:
    """Insert a firing row, as a reactor's fire does."""
    firing = FiringRecord(time_ordered_id(), tenant, reactor, json.dumps(payload),
                          time.time() if fired_at is None else fired_at)
    await runner._store.insert_firing(firing)
    return firing


async def subscription(runner: cloaca.DefaultRunner, tenant: Optional[str] = None) -> dict[str, Any]:
    (row,) = await runner.alist_reactor_subscriptions(tenant)
    return row


# ------------------------------------------------------------------ subscribe / list / unsubscribe
@pytest.mark.asyncio
async def test_subscribe_is_idempotent_and_lists_every_key(runner) -> None:
    first = await runner.asubscribe_workflow_to_reactor("prices", "wf")
    assert str(uuid.UUID(first)) == first
    assert await runner.asubscribe_workflow_to_reactor("prices", "wf", "public") == first
    row = await subscription(runner)
    assert set(row) == {
        "id", "reactor_name", "workflow_name", "tenant_id", "enabled", "last_seen_fired_at",
        "created_at", "updated_at", "predicate_expression", "predicate_degraded",
        "predicate_error_count", "last_predicate_error", "last_predicate_error_at",
        "predicate_error_firing_id",
    }
    assert (row["id"], row["reactor_name"], row["workflow_name"], row["tenant_id"]) == (
        first, "prices", "wf", "public")
    assert row["enabled"] is True and row["last_seen_fired_at"] is None
    assert row["predicate_degraded"] is False and row["predicate_error_count"] == 0
    assert row["created_at"].endswith("+00:00")


@pytest.mark.asyncio
async def test_subscribe_persists_predicate_and_upserts_on_re_subscribe(runner) -> None:
    sid = await runner.asubscribe_workflow_to_reactor("r", "wf", when="payload.x > 1")
    assert (await subscription(runner))["predicate_expression"] == "payload.x > 1"
    assert await runner.asubscribe_workflow_to_reactor("r", "wf", when="payload.x > 2") == sid
    assert (await subscription(runner))["predicate_expression"] == "payload.x > 2"
    await runner.asubscribe_workflow_to_reactor("r", "wf")
    assert (await subscription(runner))["predicate_expression"] is None


@pytest.mark.asyncio
async def test_unsubscribe_and_tenants(runner) -> None:
    await runner.asubscribe_workflow_to_reactor("r", "wf")
    await runner.asubscribe_workflow_to_reactor("r", "wf", "acme")
    assert [r["tenant_id"] for r in await runner.alist_reactor_subscriptions("acme")] == ["acme"]
    assert await runner.aunsubscribe_workflow_from_reactor("r", "wf") is True
    assert await runner.aunsubscribe_workflow_from_reactor("r", "wf") is False
    assert await runner.alist_reactor_subscriptions() == []
    assert len(await runner.alist_reactor_subscriptions("acme")) == 1


@pytest.mark.asyncio
async def test_subscribe_accepts_a_reactor_class(runner) -> None:
    @cloaca.reactor(name=unique_name("reactor"), accumulators=["a"])
    class R:
        pass

    await runner.asubscribe_workflow_to_reactor(R, "wf")
    assert (await subscription(runner))["reactor_name"] == R.NAME


@pytest.mark.asyncio
@pytest.mark.parametrize("bad", ["payload.x >", "tennant == 'acme'",
                                 "payload.items.exists(i, i > 0) && i > 1"])
async def test_subscribe_rejects_invalid_cel_predicate(runner, bad: str) -> None:
    with pytest.raises(ValueError, match="^Failed to subscribe workflow to reactor: Invalid predicate expression"):
        await runner.asubscribe_workflow_to_reactor("r", "wf", when=bad)
    assert await runner.alist_reactor_subscriptions() == []  # nothing written


def test_subscribe_rejects_predicate_with_unbound_variable() -> None:
    with pytest.raises(ValueError, match="tennant.*payload, reactor, tenant"):
        compile_predicate("payload.x > 1 && tennant == 'acme'")


@pytest.mark.parametrize("ok", [
    "payload.x > 1 && tenant == 'acme'", "payload.items.exists(i, i.price > 100)",
    "size(payload.items) > 0", "has(payload.price)", "payload.name.startsWith('acme')", "1 > 0",
    "[1, 2].exists(n, n == 2) && {'a': 1}.a == 1", "reactor == 'prices'",
])
def test_lint_accepts_bound_identifiers_functions_and_literals(ok: str) -> None:
    compile_predicate(ok)


def test_sync_subscription_methods(tmp_path) -> None:
    with cloaca.DefaultRunner(f"sqlite:///{tmp_path}/sync.db") as runner:
        sid = runner.subscribe_workflow_to_reactor("r", "wf", when="payload.v == 1")
        assert [r["id"] for r in runner.list_reactor_subscriptions()] == [sid]
        assert runner.poll_reactor_subscriptions_once() == 0
        with pytest.raises(ValueError, match="Failed to subscribe workflow to reactor"):
            runner.subscribe_workflow_to_reactor("", "wf")
        assert runner.unsubscribe_workflow_from_reactor("r", "wf") is True


# ------------------------------------------------------------------ dispatch
@pytest.mark.asyncio
async def test_firing_round_trip_and_watermark_advance(runner, wf_name) -> None:
    name = wf_name()
    seen = recording_workflow(name)
    await runner.asubscribe_workflow_to_reactor("prices", name)
    firing = await fire(runner, "prices", {"feed": {"bid": 1.5}, "book": [1, 2]})
    assert await runner.apoll_reactor_subscriptions_once() == 1
    await wait_until(lambda: seen, "the subscribed workflow to run")
    assert seen[0] == {
        "feed": {"bid": 1.5}, "book": [1, 2], "reactor_name": "prices",
        "reactor_firing_id": firing.id, "reactor_fired_at": rfc3339(firing.fired_at),
    }
    assert (await subscription(runner))["last_seen_fired_at"] == rfc3339(firing.fired_at)
    assert await runner.apoll_reactor_subscriptions_once() == 0  # nothing new


@pytest.mark.asyncio
async def test_new_subscription_replays_retained_firings_oldest_first(runner, wf_name) -> None:
    name = wf_name()
    seen = recording_workflow(name)
    now = time.time()
    for i in range(3):
        await fire(runner, "r", {"n": i}, fired_at=now - 10 + i)
    await runner.asubscribe_workflow_to_reactor("r", name)
    assert await runner.apoll_reactor_subscriptions_once() == 3
    await wait_until(lambda: len(seen) == 3, "three runs")
    assert sorted(s["n"] for s in seen) == [0, 1, 2]


@pytest.mark.asyncio
async def test_equal_timestamps_are_not_skipped(runner, wf_name) -> None:
    name = wf_name()
    seen = recording_workflow(name)
    await runner.asubscribe_workflow_to_reactor("r", name)
    at = time.time()
    await fire(runner, "r", {"n": 1}, fired_at=at)
    assert await runner.apoll_reactor_subscriptions_once() == 1
    await fire(runner, "r", {"n": 2}, fired_at=at)  # same instant, later id
    assert await runner.apoll_reactor_subscriptions_once() == 1
    await wait_until(lambda: len(seen) == 2, "both firings dispatched")


@pytest.mark.asyncio
async def test_fan_out_two_subscriptions_independent(runner, wf_name) -> None:
    a, b = wf_name("a"), wf_name("b")
    seen_a, seen_b = recording_workflow(a), recording_workflow(b)
    await runner.asubscribe_workflow_to_reactor("r", a)
    await fire(runner, "r", {"n": 1})
    assert await runner.apoll_reactor_subscriptions_once() == 1
    await runner.asubscribe_workflow_to_reactor("r", b)  # replays the retained firing
    await fire(runner, "r", {"n": 2})
    assert await runner.apoll_reactor_subscriptions_once() == 3
    await wait_until(lambda: len(seen_a) == 2 and len(seen_b) == 2, "fan-out")


@pytest.mark.asyncio
async def test_tenant_isolation_on_poll(runner, wf_name) -> None:
    name = wf_name()
    seen = recording_workflow(name)
    await runner.asubscribe_workflow_to_reactor("r", name, "acme")
    await fire(runner, "r", {"who": "public"})
    await fire(runner, "r", {"who": "acme"}, tenant="acme")
    assert await runner.apoll_reactor_subscriptions_once() == 1
    await wait_until(lambda: seen, "the acme run")
    assert [s["who"] for s in seen] == ["acme"]


@pytest.mark.asyncio
async def test_dispatch_failure_holds_the_watermark_and_retries(runner, wf_name) -> None:
    name = wf_name()
    await runner.asubscribe_workflow_to_reactor("r", name)  # the workflow does not exist yet
    await fire(runner, "r", {"n": 1})
    assert await runner.apoll_reactor_subscriptions_once() == 0
    assert (await subscription(runner))["last_seen_fired_at"] is None
    seen = recording_workflow(name)
    assert await runner.apoll_reactor_subscriptions_once() == 1
    await wait_until(lambda: seen, "the run once the workflow exists")


@pytest.mark.asyncio
async def test_at_least_once_on_crash_simulates_redelivery(runner, wf_name) -> None:
    name = wf_name()
    seen = recording_workflow(name)
    await runner.asubscribe_workflow_to_reactor("r", name)
    await fire(runner, "r", {"n": 1})
    assert await runner.apoll_reactor_subscriptions_once() == 1
    # A crash after the dispatch but before the watermark write: the watermark is back.
    (record,) = await runner._store.list_subscriptions("public")
    record.last_seen_fired_at = record.last_seen_firing_id = None
    await runner._store.save_subscription_progress(record)
    assert await runner.apoll_reactor_subscriptions_once() == 1
    await wait_until(lambda: len(seen) == 2, "the redelivered firing")


@pytest.mark.asyncio
async def test_ttl_prune_removes_old_firings_and_documents_gotcha(runner, wf_name) -> None:
    name = wf_name()
    seen = recording_workflow(name)
    await fire(runner, "r", {"old": True}, fired_at=time.time() - 8 * 86400)
    assert await runner._store.prune_firings(time.time() - 7 * 86400) == 1
    await runner.asubscribe_workflow_to_reactor("r", name)
    assert await runner.apoll_reactor_subscriptions_once() == 0  # pruned before it was seen
    assert seen == []


# ------------------------------------------------------------------ predicates
@pytest.mark.asyncio
async def test_predicate_filters_dispatch_and_advances_watermark_for_skips(runner, wf_name) -> None:
    name = wf_name()
    seen = recording_workflow(name)
    await runner.asubscribe_workflow_to_reactor(
        "r", name, when="payload.feed.price > 100 && tenant == 'public' && reactor == 'r'")
    await fire(runner, "r", {"feed": {"price": 99.5}})
    skipped = await fire(runner, "r", {"feed": {"price": 50}})
    assert await runner.apoll_reactor_subscriptions_once() == 0
    assert (await subscription(runner))["last_seen_fired_at"] == rfc3339(skipped.fired_at)
    await fire(runner, "r", {"feed": {"price": 150.25}})  # a double against an int literal
    assert await runner.apoll_reactor_subscriptions_once() == 1
    await wait_until(lambda: seen, "the admitted firing's run")
    assert seen[0]["feed"] == {"price": 150.25}


@pytest.mark.asyncio
async def test_predicate_error_holds_watermark_and_counts(runner, wf_name) -> None:
    name = wf_name()
    recording_workflow(name)
    await runner.asubscribe_workflow_to_reactor("r", name, when="payload.missing > 1")
    failing = await fire(runner, "r", {"present": 1})
    await fire(runner, "r", {"missing": 5})
    for count in (1, 2):
        assert await runner.apoll_reactor_subscriptions_once() == 0
        row = await subscription(runner)
        assert row["predicate_error_count"] == count
        assert row["predicate_error_firing_id"] == failing.id
        assert row["last_seen_fired_at"] is None  # held: the later firing waits too
        assert "missing" in row["last_predicate_error"] and row["last_predicate_error_at"]


@pytest.mark.asyncio
async def test_predicate_non_bool_result_is_an_error(runner, wf_name) -> None:
    name = wf_name()
    recording_workflow(name)
    await runner.asubscribe_workflow_to_reactor("r", name, when="payload.n")
    await fire(runner, "r", {"n": 1})
    assert await runner.apoll_reactor_subscriptions_once() == 0
    assert "expected a bool" in (await subscription(runner))["last_predicate_error"]


@pytest.mark.asyncio
async def test_predicate_error_dead_letters_at_the_bound_then_recovers(runner, wf_name) -> None:
    name = wf_name()
    seen = recording_workflow(name)
    await runner.asubscribe_workflow_to_reactor("r", name, when="payload.missing > 1")
    failing = await fire(runner, "r", {"present": 1})
    for _ in range(4):
        await runner.apoll_reactor_subscriptions_once()
    assert (await subscription(runner))["predicate_degraded"] is False
    await runner.apoll_reactor_subscriptions_once()  # the 5th error: marked, moved past it
    row = await subscription(runner)
    assert row["predicate_degraded"] is True
    assert row["last_seen_fired_at"] == rfc3339(failing.fired_at)
    await fire(runner, "r", {"missing": 7})
    assert await runner.apoll_reactor_subscriptions_once() == 1
    row = await subscription(runner)
    assert row["predicate_degraded"] is False and row["predicate_error_count"] == 0
    assert row["last_predicate_error"] is not None  # kept as history
    await wait_until(lambda: seen, "the clean firing's run")


@pytest.mark.asyncio
async def test_the_poller_runs_on_its_own(tmp_path, wf_name) -> None:
    name = wf_name()
    seen = recording_workflow(name)
    config = cloaca.DefaultRunnerConfig(reactor_poll_interval_seconds=0.05)
    async with cloaca.DefaultRunner.with_config(f"sqlite:///{tmp_path}/auto.db", config) as runner:
        await runner.asubscribe_workflow_to_reactor("r", name)
        await fire(runner, "r", {"n": 1})
        await wait_until(lambda: seen, "the poller to dispatch without a manual poll")


# ------------------------------------------------------------------ several runners
@pytest.mark.asyncio
async def test_two_runners_never_dispatch_one_firing_twice(make_runner, wf_name) -> None:
    name = wf_name()
    seen = recording_workflow(name)
    async with make_runner() as first, make_runner() as second:
        await first.asubscribe_workflow_to_reactor("r", name)
        for n in range(20):
            await fire(first, "r", {"n": n})
        counts = await asyncio.gather(*(
            r.apoll_reactor_subscriptions_once() for r in (first, second, first, second)
        ))
        assert sum(counts) == 20
        await wait_until(lambda: len(seen) == 20, "twenty runs")
        assert sorted(s["n"] for s in seen) == list(range(20))


@pytest.mark.asyncio
async def test_a_subscription_held_by_a_dead_pass_waits_for_its_lease(runner, wf_name) -> None:
    name = wf_name()
    seen = recording_workflow(name)
    await runner.asubscribe_workflow_to_reactor("r", name)
    await fire(runner, "r", {"n": 1})
    now = time.time()
    assert len(await runner._store.claim_subscriptions("dead-runner", now, now + 30)) == 1
    assert await runner.apoll_reactor_subscriptions_once() == 0  # held by the dead pass
    await runner._store.claim_subscriptions("dead-runner", now, now - 1)  # its lease ran out
    assert await runner.apoll_reactor_subscriptions_once() == 1
    await wait_until(lambda: seen, "the run once the lease expired")


def test_when_without_the_cel_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from cloaca._reactors import predicates

    monkeypatch.setitem(sys.modules, "cel_expr_python", None)  # as if not installed
    monkeypatch.setattr(predicates, "_env", None)
    predicates.compile_predicate.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"Invalid predicate expression: .*cloaca\[cel\]"):
            predicates.compile_predicate("1 > 0")
    finally:
        predicates.compile_predicate.cache_clear()


# ------------------------------------------------------------------ stopping
class _NoSubscriptions:
    """The part of a store a pass with no subscription uses."""

    async def claim_subscriptions(self, owner: str, now: float, until: float) -> list[Any]:
        return []

    async def prune_firings(self, before: float) -> None:
        return None


@pytest.mark.asyncio
async def test_stop_ends_the_pass_loop_when_a_wake_lands_in_the_same_turn() -> None:
    """A reactor firing while the runner shuts down wakes the poller in the very loop turn
    its stop cancels it. The cancel must win: on Python 3.11 `asyncio.wait_for` returned the
    wake and dropped the cancel, and the runner's close waited for the loop for ever."""
    from cloaca._reactors.subscriptions import SubscriptionPoller

    poller = SubscriptionPoller(_NoSubscriptions(), dispatch=None, interval=3600, owner="test")
    poller.start()
    task = poller._task
    await asyncio.sleep(0.01)  # the pass loop waits for a wake
    poller.wake()
    try:
        async with asyncio.timeout(5):
            await poller.stop()
    except TimeoutError:
        while not task.done():  # do not leave it looping past the test
            task.cancel()
            await asyncio.sleep(0)
        pytest.fail("SubscriptionPoller.stop() did not end the pass loop woken in its turn")
    assert task.done()
