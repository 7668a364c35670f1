"""Polling triggers (SPEC A3, Part B §3.7, §6) and task callbacks (§4.6), live against real runners.

Triggers are process-global: every running `DefaultRunner` polls every registered trigger.
So each test registers triggers under unique names through the `triggers` fixture, which
removes them at teardown, uses short poll intervals, and refuses to run while a runner that
this file did not start is alive (it would poll these triggers too and skew every count).

No test asserts a duration. Tests wait for conditions (`wait_until`, generous timeouts);
the only fixed sleeps are observation windows in which something must NOT happen (a
disabled trigger not polled), whose length only changes how likely a regression is caught.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
import uuid
from datetime import datetime
from typing import Any, Callable, Optional

import pytest

import cloaca
from cloaca import Context, DefaultRunner, DefaultRunnerConfig, TriggerResult
from cloaca._registry import REGISTRY
from cloaca._runner import _LIVE_RUNNERS
from support import MODES, poll_until as wait_until_sync, wait_until

SCHEDULE_KEYS = {
    "id", "trigger_name", "workflow_name", "poll_interval_ms", "allow_concurrent", "enabled",
    "last_poll_at", "created_at", "updated_at",
}
HISTORY_KEYS = {
    "id", "schedule_id", "context_hash", "workflow_execution_id", "started_at", "completed_at",
    "created_at",
}
WAIT_SECONDS = 20.0


# ====================================================================== helpers
def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def expected_hash(data: dict[str, Any]) -> str:
    """SPEC A3: first 16 hex digits of SHA-256 of canonical JSON (sorted keys, compact)."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def ts(text: str) -> datetime:
    """An RFC 3339 timestamp of the API, which must carry its UTC offset."""
    value = datetime.fromisoformat(text)
    assert value.utcoffset() is not None, text
    return value


class Probe:
    """Counts the calls of a trigger function and the threads they ran on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.polls = 0
        self.threads: set[int] = set()

    def hit(self) -> None:
        with self._lock:
            self.polls += 1
            self.threads.add(threading.get_ident())


class Triggers:
    """Hands out unique trigger names and forgets those triggers at teardown."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def name(self, prefix: str) -> str:
        return self.track(unique(prefix))

    def track(self, name: str) -> str:
        self.names.append(name)
        return name


def recording_workflow(prefix: str) -> tuple[str, list[dict[str, Any]]]:
    """A one-task workflow whose task records the context it received; (name, records)."""
    name = unique(prefix)
    received: list[dict[str, Any]] = []
    with cloaca.WorkflowBuilder(name):

        @cloaca.task(id="record")
        async def record(context: Context) -> Context:
            received.append(context.to_dict())
            return context

    return name, received


def holding_workflow(prefix: str, gate: asyncio.Event) -> tuple[str, list[dict[str, Any]]]:
    """A one-task workflow whose task records its context, then waits for `gate`."""
    name = unique(prefix)
    started: list[dict[str, Any]] = []
    with cloaca.WorkflowBuilder(name):

        @cloaca.task(id="hold")
        async def hold(context: Context) -> Context:
            started.append(context.to_dict())
            await gate.wait()
            return context

    return name, started


async def skip_always() -> TriggerResult:
    return TriggerResult.skip()


def other_live_runners() -> list[DefaultRunner]:
    return [
        r for r in list(_LIVE_RUNNERS)
        if r._state in ("starting", "running") and r._bridge.loop is not None and not r._bridge.loop.is_closed()
    ]




# ====================================================================== fixtures
@pytest.fixture
def triggers():
    registry = Triggers()
    yield registry
    for name in registry.names:
        REGISTRY.remove_trigger(name)


@pytest.fixture
def make_runner(tmp_path):
    """`make_runner(db="x.db", **config)`: a runner on a SQLite file of this test.

    Made inside a running loop it starts on `async with` (bound to the test's loop); made in
    sync code it starts at once in its own thread.
    """
    others = other_live_runners()
    if others:
        pytest.fail(
            f"{len(others)} DefaultRunner(s) started elsewhere are still running; they would poll "
            "this file's triggers too (triggers are process-wide). Shut them down first."
        )

    def make(db: str = "triggers.db", **config: Any) -> DefaultRunner:
        config.setdefault("shutdown_grace_seconds", 2.0)
        return DefaultRunner.with_config(f"sqlite:///{tmp_path}/{db}", DefaultRunnerConfig(**config))

    return make


@pytest.fixture(params=sorted(MODES))
def mode(request) -> str:
    return request.param


# ====================================================================== TriggerResult
def test_skip_result():
    result = TriggerResult.skip()
    assert result.is_skip_result() is True
    assert result.is_fire_result() is False
    assert repr(result) == "TriggerResult.Skip"
    assert result.context is None
    assert TriggerResult.skip() is result  # made once: polling allocates no result


def test_fire_result_without_context():
    for result in (TriggerResult.fire(), TriggerResult.fire(None)):
        assert result.is_fire_result() is True
        assert result.is_skip_result() is False
        assert repr(result) == "TriggerResult.Fire(None)"
        assert result.context is None


def test_fire_result_snapshots_the_context_and_hands_out_copies():
    data = {"order_id": 7, "tags": ["a", "b"], "meta": {"source": "s3"}}
    context = Context(data)
    result = TriggerResult.fire(context)
    assert repr(result) == f"TriggerResult.Fire({Context(data)!r})"
    assert repr(result).startswith("TriggerResult.Fire(Context(") and '"order_id"' in repr(result)

    context.set("order_id", 8)  # changing the caller's context afterwards changes nothing
    copy = result.context
    assert isinstance(copy, Context)
    assert copy.to_dict() == data
    copy.set("order_id", 9)  # nor does changing a copy handed out
    assert result.context.to_dict() == data
    assert result.context is not result.context
    with pytest.raises(AttributeError):
        result.context = Context({})  # read-only


@pytest.mark.parametrize("bad", [{"order_id": 7}, "order_id", 7])
def test_fire_rejects_anything_but_a_context(bad):
    with pytest.raises(TypeError):
        TriggerResult.fire(bad)


def test_trigger_result_has_no_public_constructor():
    with pytest.raises(TypeError):
        TriggerResult()
    with pytest.raises(TypeError):
        TriggerResult(True, Context({}))


# ====================================================================== @trigger
def test_decorator_returns_the_function_unchanged_and_callable(triggers):
    name = triggers.name("unchanged")

    def poll() -> TriggerResult:
        return TriggerResult.fire(Context({"direct": True}))

    decorated = cloaca.trigger(workflow="some_wf", name=name, poll_interval="1s")(poll)
    assert decorated is poll
    assert decorated().is_fire_result()
    assert decorated().context.get("direct") is True

    definition = REGISTRY.get_trigger(name)
    assert definition.function is poll
    assert (definition.workflow, definition.poll_interval_ms, definition.allow_concurrent) == (
        "some_wf", 1000, False,
    )


def test_name_defaults_to_the_function_name_and_interval_to_30s(triggers):
    def trigger_named_after_its_function_probe() -> bool:
        return False

    triggers.track("trigger_named_after_its_function_probe")
    cloaca.trigger(workflow="some_wf")(trigger_named_after_its_function_probe)
    definition = REGISTRY.get_trigger("trigger_named_after_its_function_probe")
    assert definition is not None
    assert definition.poll_interval_ms == 30_000


def test_on_is_an_alias_of_workflow(triggers):
    via_on, via_both = triggers.name("via_on"), triggers.name("via_both")
    cloaca.trigger(on="wf_a", name=via_on)(skip_always)
    cloaca.trigger(on="wf_b", workflow="wf_b", name=via_both)(skip_always)
    assert REGISTRY.get_trigger(via_on).workflow == "wf_a"
    assert REGISTRY.get_trigger(via_both).workflow == "wf_b"


def test_on_and_workflow_naming_different_workflows_is_a_value_error(triggers):
    name = triggers.name("conflicting")
    with pytest.raises(ValueError):
        cloaca.trigger(workflow="wf_a", on="wf_b", name=name)(skip_always)
    assert REGISTRY.get_trigger(name) is None


@pytest.mark.parametrize(
    "text, milliseconds",
    [("10ms", 10), ("100ms", 100), ("1s", 1_000), ("5m", 300_000), ("2h", 7_200_000), (" 5s ", 5_000)],
)
def test_poll_interval_grammar_accepts(triggers, text, milliseconds):
    name = triggers.name("interval_ok")
    cloaca.trigger(workflow="some_wf", name=name, poll_interval=text)(skip_always)
    assert REGISTRY.get_trigger(name).poll_interval_ms == milliseconds


@pytest.mark.parametrize(
    "text", ["5 parsecs", "", "-1s", "10", "ms", "1.5s", "1d", "5S", "5 s", "1h30m", "s5", "0s", "9ms"]
)
def test_poll_interval_grammar_rejects_naming_the_value(triggers, text):
    name = triggers.name("interval_bad")
    with pytest.raises(ValueError) as caught:
        cloaca.trigger(workflow="some_wf", name=name, poll_interval=text)(skip_always)
    assert f"'{text}'" in str(caught.value)
    assert "poll_interval" in str(caught.value)
    assert REGISTRY.get_trigger(name) is None


def test_cron_and_poll_interval_together_is_a_value_error(triggers):
    name = triggers.name("cron_and_interval")
    with pytest.raises(ValueError, match=r"cannot set both 'cron' and 'poll_interval'"):
        cloaca.trigger(workflow="some_wf", name=name, cron="0 * * * *", poll_interval="5s")(skip_always)
    assert REGISTRY.get_trigger(name) is None


def test_cron_without_a_workflow_is_a_value_error(triggers):
    name = triggers.name("cron_without_wf")
    with pytest.raises(ValueError):
        cloaca.trigger(name=name, cron="0 * * * *")(skip_always)
    assert REGISTRY.get_trigger(name) is None


# ====================================================================== firing
@pytest.mark.asyncio
async def test_a_fire_runs_the_workflow_with_its_context_plus_trigger_name_and_time(
    triggers, make_runner
):
    workflow, received = recording_workflow("fired_wf")
    name = triggers.name("fires_context")
    payload = {"order_id": 7, "nested": {"b": [1, 2], "a": None}, "label": "x"}
    fired: list[int] = []

    @cloaca.trigger(workflow=workflow, name=name, poll_interval="50ms")
    def poll() -> TriggerResult:
        if fired:
            return TriggerResult.skip()
        fired.append(1)
        return TriggerResult.fire(Context(payload))

    before = time.time()
    async with make_runner() as runner:
        await wait_until(lambda: received, "the fired run's task")
        history = await wait_until(
            lambda: _completed_history(runner, name, 1), "the fire's record to be completed"
        )
        after = time.time()
        result = await runner.aget_execution(history[0]["workflow_execution_id"])

    assert len(received) == 1
    got = received[0]
    assert set(got) == set(payload) | {"trigger_name", "triggered_at"}
    assert {k: got[k] for k in payload} == payload
    assert got["trigger_name"] == name
    assert before - 1 <= ts(got["triggered_at"]).timestamp() <= after + 1
    assert history[0]["context_hash"] == expected_hash(payload)  # hashed before the keys were added
    assert result is not None and result.status == "Completed"
    assert result.workflow_name == workflow
    assert result.final_context.get("trigger_name") == name


@pytest.mark.asyncio
async def test_reserved_keys_in_a_fired_context_are_overwritten(triggers, make_runner):
    workflow, received = recording_workflow("reserved_wf")
    name = triggers.name("reserved_keys")
    payload = {"trigger_name": "spoofed", "triggered_at": "yesterday", "n": 1}
    fired: list[int] = []

    @cloaca.trigger(workflow=workflow, name=name, poll_interval="50ms")
    async def poll() -> TriggerResult:
        if fired:
            return TriggerResult.skip()
        fired.append(1)
        return TriggerResult.fire(Context(payload))

    async with make_runner() as runner:
        await wait_until(lambda: received, "the fired run's task")
        history = await wait_until(lambda: _completed_history(runner, name, 1), "the fire's record")
    assert received[0]["trigger_name"] == name
    ts(received[0]["triggered_at"])
    assert received[0]["n"] == 1
    assert history[0]["context_hash"] == expected_hash(payload)


@pytest.mark.asyncio
async def test_true_and_false_returns_act_as_fire_and_skip(triggers, make_runner):
    workflow, received = recording_workflow("bool_wf")
    returns_true, fire_no_ctx, returns_false = (
        triggers.name("returns_true"), triggers.name("fire_no_ctx"), triggers.name("returns_false"),
    )
    once = {returns_true: [], fire_no_ctx: []}
    false_probe = Probe()

    @cloaca.trigger(workflow=workflow, name=returns_true, poll_interval="50ms")
    def poll_true() -> bool:
        first = not once[returns_true]
        once[returns_true].append(1)
        return first

    @cloaca.trigger(workflow=workflow, name=fire_no_ctx, poll_interval="50ms")
    async def poll_fire() -> TriggerResult:
        first = not once[fire_no_ctx]
        once[fire_no_ctx].append(1)
        return TriggerResult.fire() if first else TriggerResult.skip()

    @cloaca.trigger(workflow=workflow, name=returns_false, poll_interval="50ms")
    def poll_false() -> bool:
        false_probe.hit()
        return False

    async with make_runner() as runner:
        await wait_until(lambda: len(received) >= 2, "the runs of the True and fire() triggers")
        for name in (returns_true, fire_no_ctx):
            history = await wait_until(lambda: _completed_history(runner, name, 1), f"{name}'s record")
            assert [h["context_hash"] for h in history] == ["fire_no_context"]
        polls = false_probe.polls
        await wait_until(lambda: false_probe.polls >= polls + 5, "more polls of the False trigger")
        assert await runner.aget_trigger_execution_history(returns_false) == []
        assert len(received) == 2

    assert sorted(r["trigger_name"] for r in received) == sorted([returns_true, fire_no_ctx])
    assert all(set(r) == {"trigger_name", "triggered_at"} for r in received)


async def _completed_history(runner: DefaultRunner, name: str, count: int) -> Optional[list[dict]]:
    """The trigger's history once it has `count` entries, all completed; else None."""
    history = await runner.aget_trigger_execution_history(name)
    if len(history) >= count and all(h["completed_at"] is not None for h in history):
        return history
    return None


# ====================================================================== timing of polls
@pytest.mark.asyncio
async def test_the_first_poll_comes_one_interval_after_start_not_at_start(triggers, make_runner):
    name = triggers.name("first_poll")
    polled_at: list[float] = []

    @cloaca.trigger(workflow=unique("never_fired"), name=name, poll_interval="1s")
    async def poll() -> TriggerResult:
        polled_at.append(asyncio.get_running_loop().time())
        return TriggerResult.skip()

    loop = asyncio.get_running_loop()
    before_start = loop.time()
    async with make_runner():
        assert polled_at == []  # right after start: not polled yet
        await wait_until(lambda: polled_at, "the first poll")
    # Causality, not speed: the first poll cannot come before one interval has passed
    # (a poll at start would be ~0 s after `before_start`).
    assert polled_at[0] - before_start >= 1.0 - 0.01


@pytest.mark.parametrize("bound", [True, False], ids=["bound-to-test-loop", "own-thread"])
def test_async_triggers_run_on_the_runners_loop_and_sync_ones_in_other_threads(
    triggers, make_runner, bound
):
    sync_probe, async_probe = Probe(), Probe()

    @cloaca.trigger(workflow=unique("unused"), name=triggers.name("sync_thread"), poll_interval="50ms")
    def poll_sync() -> TriggerResult:
        sync_probe.hit()
        return TriggerResult.skip()

    @cloaca.trigger(workflow=unique("unused"), name=triggers.name("async_thread"), poll_interval="50ms")
    async def poll_async() -> TriggerResult:
        async_probe.hit()
        return TriggerResult.skip()

    def enough() -> bool:
        return sync_probe.polls >= 3 and async_probe.polls >= 3

    if bound:
        async def main() -> int:
            async with make_runner():
                await wait_until(enough, "polls of both triggers")
            return threading.get_ident()

        loop_thread = asyncio.run(main())
    else:
        with make_runner() as runner:
            wait_until_sync(enough, "polls of both triggers")
            assert runner._bridge.owns_thread
            loop_thread = runner._bridge.loop_thread_id
    assert async_probe.threads == {loop_thread}
    assert loop_thread not in sync_probe.threads


# ====================================================================== dedup (A3)
@pytest.mark.asyncio
async def test_dedup_drops_identical_fires_while_the_run_is_in_flight_and_releases_after(
    triggers, make_runner
):
    gate = asyncio.Event()
    workflow, started = holding_workflow("dedup_wf", gate)
    name = triggers.name("dedup")
    payload = {"b": 1, "a": {"y": [1, 2], "x": "z"}}
    probe, stop = Probe(), threading.Event()

    @cloaca.trigger(workflow=workflow, name=name, poll_interval="50ms")  # allow_concurrent=False
    def poll() -> TriggerResult:
        probe.hit()
        return TriggerResult.skip() if stop.is_set() else TriggerResult.fire(Context(payload))

    async with make_runner() as runner:
        try:
            await wait_until(lambda: started, "the first run")
            polls = probe.polls
            await wait_until(lambda: probe.polls >= polls + 10, "ten more identical fires")
            assert len(started) == 1  # every one of them was dropped
            history = await runner.aget_trigger_execution_history(name)
            assert len(history) == 1
            assert history[0]["completed_at"] is None  # the run is in flight
            assert history[0]["context_hash"] == expected_hash(payload)

            gate.set()  # the run ends: the same context fires again
            await wait_until(lambda: len(started) >= 2, "the identical fire after the run ended")
        finally:
            stop.set()
            gate.set()
        history = await wait_until(
            lambda: _completed_history(runner, name, 2), "every fire's record to be completed"
        )

    assert {h["context_hash"] for h in history} == {expected_hash(payload)}
    oldest_first = history[::-1]
    for earlier, later in zip(oldest_first, oldest_first[1:]):
        # never two identical runs at once: each started after the previous one ended
        assert ts(earlier["completed_at"]) <= ts(later["started_at"])


@pytest.mark.asyncio
async def test_allow_concurrent_runs_identical_fires_side_by_side(triggers, make_runner):
    gate = asyncio.Event()
    workflow, started = holding_workflow("concurrent_wf", gate)
    name = triggers.name("concurrent")
    payload = {"queue": "orders", "depth": 150}
    stop = threading.Event()

    @cloaca.trigger(workflow=workflow, name=name, poll_interval="50ms", allow_concurrent=True)
    def poll() -> TriggerResult:
        return TriggerResult.skip() if stop.is_set() else TriggerResult.fire(Context(payload))

    async with make_runner() as runner:
        try:
            await wait_until(lambda: len(started) >= 3, "three identical runs in flight at once")
            history = await runner.aget_trigger_execution_history(name)
            in_flight = [h for h in history if h["completed_at"] is None]
            assert len(in_flight) >= 3
            assert {h["context_hash"] for h in history} == {expected_hash(payload)}
        finally:
            stop.set()
            gate.set()
        await wait_until(lambda: _completed_history(runner, name, 3), "every run to end")


# ====================================================================== management API (§3.7)
@pytest.mark.asyncio
async def test_schedule_dicts_have_exactly_the_spec_keys(triggers, make_runner, mode):
    workflow = unique("keys_wf")
    idle, busy = triggers.name("idle"), triggers.name("busy")
    cloaca.trigger(workflow=workflow, name=idle, poll_interval="1h")(skip_always)
    cloaca.trigger(workflow=workflow, name=busy, poll_interval="50ms", allow_concurrent=True)(skip_always)

    async with make_runner() as runner:
        api = MODES[mode](runner)
        schedule = await api.get_trigger_schedule(idle)  # exists as soon as the runner started
        assert set(schedule) == SCHEDULE_KEYS
        assert isinstance(schedule["id"], str) and str(uuid.UUID(schedule["id"])) == schedule["id"]
        assert schedule["trigger_name"] == idle
        assert schedule["workflow_name"] == workflow
        assert schedule["poll_interval_ms"] == 3_600_000 and type(schedule["poll_interval_ms"]) is int
        assert schedule["allow_concurrent"] is False
        assert schedule["enabled"] is True
        assert schedule["last_poll_at"] is None
        assert ts(schedule["created_at"]) <= ts(schedule["updated_at"])

        other = await api.get_trigger_schedule(busy)
        assert (other["poll_interval_ms"], other["allow_concurrent"]) == (50, True)

        async def polled() -> Optional[dict]:
            s = await api.get_trigger_schedule(busy)
            return s if s["last_poll_at"] is not None else None

        ts((await wait_until(polled, "last_poll_at of a polled trigger"))["last_poll_at"])

        listed = await api.list_trigger_schedules()
        assert {idle, busy} <= {s["trigger_name"] for s in listed}
        assert all(set(s) == SCHEDULE_KEYS for s in listed)

        missing = unique("missing")
        assert await api.get_trigger_schedule(missing) is None
        assert await api.get_trigger_execution_history(missing) == []
        assert await api.set_trigger_enabled(missing, False) is None  # silently succeeds
        assert await api.get_trigger_schedule(missing) is None


def _names(schedules: list[dict]) -> list[str]:
    return [s["trigger_name"] for s in schedules]


@pytest.mark.asyncio
async def test_list_filters_orders_and_paginates(triggers, make_runner, mode):
    workflow = unique("paging_wf")
    names = [triggers.name(f"page{i:03d}") for i in range(101)]
    for name in names:  # registered (so upserted at start) oldest to newest
        cloaca.trigger(workflow=workflow, name=name, poll_interval="1h")(skip_always)
    mine = set(names)

    async with make_runner() as runner:
        api = MODES[mode](runner)
        everything = _names(await api.list_trigger_schedules(limit=10_000))
        assert [n for n in everything if n in mine] == names[::-1]  # newest first

        assert _names(await api.list_trigger_schedules()) == everything[:100]  # limit 100
        assert _names(await api.list_trigger_schedules(None, None, None)) == everything[:100]
        assert _names(await api.list_trigger_schedules(enabled_only=False)) == everything[:100]
        assert _names(await api.list_trigger_schedules(offset=100, limit=10_000)) == everything[100:]
        assert _names(await api.list_trigger_schedules(limit=3, offset=2)) == everything[2:5]
        assert await api.list_trigger_schedules(limit=0) == []

        disabled = set(names[::2])
        for name in disabled:
            await api.set_trigger_enabled(name, False)
        enabled = _names(await api.list_trigger_schedules(enabled_only=True, limit=10_000))
        assert not disabled & set(enabled)
        assert [n for n in enabled if n in mine] == [n for n in names if n not in disabled]  # oldest first
        # SPEC A6: enabled_only honours limit and offset (upstream ignored them).
        assert _names(await api.list_trigger_schedules(enabled_only=True, limit=2, offset=3)) == enabled[3:5]
        assert _names(await api.list_trigger_schedules(True, 1, 0)) == enabled[:1]
        assert all(s["enabled"] for s in await api.list_trigger_schedules(enabled_only=True))
        flags = {s["trigger_name"]: s["enabled"] for s in await api.list_trigger_schedules(limit=10_000)}
        assert {n for n in names if not flags[n]} == disabled


@pytest.mark.asyncio
async def test_history_is_newest_first_and_links_real_executions(triggers, make_runner, mode):
    workflow, received = recording_workflow("history_wf")
    name = triggers.name("history")
    polls = [0]

    @cloaca.trigger(workflow=workflow, name=name, poll_interval="50ms")
    def poll() -> TriggerResult:
        polls[0] += 1
        if polls[0] <= 3:
            return TriggerResult.fire(Context({"n": polls[0]}))
        return TriggerResult.skip()

    async with make_runner() as runner:
        api = MODES[mode](runner)
        await wait_until(lambda: _completed_history(runner, name, 3), "three completed fires")
        history = await api.get_trigger_execution_history(name)
        schedule = await api.get_trigger_schedule(name)

        assert [h["context_hash"] for h in history] == [expected_hash({"n": n}) for n in (3, 2, 1)]
        for n, entry in zip((3, 2, 1), history):
            assert set(entry) == HISTORY_KEYS
            assert entry["schedule_id"] == schedule["id"]
            assert isinstance(entry["id"], str)
            assert ts(entry["started_at"]) <= ts(entry["completed_at"])
            ts(entry["created_at"])
            result = await api.get_execution(entry["workflow_execution_id"])
            assert result is not None, entry
            assert result.status == "Completed"
            assert result.final_context.get("n") == n
            assert result.final_context.get("trigger_name") == name
        started = [ts(h["started_at"]) for h in history]
        assert started == sorted(started, reverse=True)

        assert await api.get_trigger_execution_history(name, None, None) == history
        page = await api.get_trigger_execution_history(name, limit=1, offset=1)
        assert [h["id"] for h in page] == [history[1]["id"]]
        assert await api.get_trigger_execution_history(name, offset=3) == []
    assert sorted(r["n"] for r in received) == [1, 2, 3]


@pytest.mark.asyncio
async def test_disabling_stops_polls_and_enabling_resumes_them(triggers, make_runner, mode):
    name = triggers.name("toggle")
    probe = Probe()

    @cloaca.trigger(workflow=unique("unused"), name=name, poll_interval="50ms")
    async def poll() -> TriggerResult:
        probe.hit()
        return TriggerResult.skip()

    async with make_runner() as runner:
        api = MODES[mode](runner)
        await wait_until(lambda: probe.polls >= 3, "the first polls")

        await api.set_trigger_enabled(name, False)
        stopped_at = probe.polls
        await asyncio.sleep(0.5)  # ten intervals in which it must not be polled
        assert probe.polls <= stopped_at + 1
        assert (await api.get_trigger_schedule(name))["enabled"] is False
        assert name not in _names(await api.list_trigger_schedules(enabled_only=True, limit=10_000))

        await api.set_trigger_enabled(name, True)
        resumed_at = probe.polls
        await wait_until(lambda: probe.polls >= resumed_at + 3, "polls to resume")
        assert (await api.get_trigger_schedule(name))["enabled"] is True


@pytest.mark.asyncio
async def test_a_disable_survives_a_restart(triggers, make_runner, mode):
    name = triggers.name("stays_disabled")
    probe = Probe()

    @cloaca.trigger(workflow=unique("unused"), name=name, poll_interval="50ms")
    async def poll() -> TriggerResult:
        probe.hit()
        return TriggerResult.skip()

    async with make_runner("restart.db") as first:
        await wait_until(lambda: probe.polls >= 2, "polls by the first runner")
        await MODES[mode](first).set_trigger_enabled(name, False)
    polls = probe.polls

    async with make_runner("restart.db") as second:
        api = MODES[mode](second)
        assert (await api.get_trigger_schedule(name))["enabled"] is False
        await asyncio.sleep(1.5)  # 30 intervals, and longer than the poller's store sync
        assert probe.polls == polls
        assert name not in _names(await api.list_trigger_schedules(enabled_only=True, limit=10_000))

        await api.set_trigger_enabled(name, True)
        await wait_until(lambda: probe.polls > polls, "polls after re-enabling")


# ====================================================================== late registration
def test_a_trigger_registered_after_start_has_its_row_at_once_and_polls(triggers, make_runner):
    workflow, received = recording_workflow("late_wf")
    name = triggers.name("late")
    with make_runner() as runner:  # started in its own thread; this thread is not its loop's
        assert runner.get_trigger_schedule(name) is None

        @cloaca.trigger(workflow=workflow, name=name, poll_interval="50ms")
        def late() -> TriggerResult:
            return TriggerResult.fire(Context({"late": True})) if not received else TriggerResult.skip()

        schedule = runner.get_trigger_schedule(name)  # no waiting: the decorator returned
        assert schedule is not None and schedule["poll_interval_ms"] == 50
        wait_until_sync(lambda: received, "a fire of the late trigger")
    assert received[0]["late"] is True and received[0]["trigger_name"] == name


@pytest.mark.asyncio
async def test_a_trigger_registered_after_start_on_the_runners_loop_is_picked_up(triggers, make_runner):
    workflow, received = recording_workflow("late_loop_wf")
    on_loop, off_loop = triggers.name("late_on_loop"), triggers.name("late_off_loop")

    async with make_runner() as runner:
        # Declared from another thread: the row exists when the decorator returns.
        def declare() -> None:
            cloaca.trigger(workflow=workflow, name=off_loop, poll_interval="50ms")(_fire_once(off_loop))

        await asyncio.to_thread(declare)
        assert await runner.aget_trigger_schedule(off_loop) is not None

        # Declared on the runner's own loop thread, which the decorator cannot block: the
        # schedule follows shortly.
        cloaca.trigger(workflow=workflow, name=on_loop, poll_interval="50ms")(_fire_once(on_loop))
        await wait_until(lambda: runner.aget_trigger_schedule(on_loop), "the schedule row")
        await wait_until(lambda: len(received) >= 2, "a fire of each late trigger")
    assert sorted(r["trigger_name"] for r in received) == sorted([on_loop, off_loop])


def _fire_once(tag: str) -> Callable[[], TriggerResult]:
    fired: list[int] = []

    async def poll() -> TriggerResult:
        if fired:
            return TriggerResult.skip()
        fired.append(1)
        return TriggerResult.fire(Context({"tag": tag}))

    return poll


# ====================================================================== broken triggers
@pytest.mark.asyncio
async def test_broken_triggers_are_logged_keep_being_polled_and_leave_the_runner_healthy(
    triggers, make_runner, caplog
):
    caplog.set_level(logging.ERROR, logger="cloaca")
    workflow, received = recording_workflow("healthy_wf")
    missing_workflow = unique("no_such_workflow")
    release = threading.Event()
    kinds = ("raises", "hangs_sync", "hangs_async", "returns_42", "async_raises", "missing_wf", "healthy")
    names = {kind: triggers.name(kind) for kind in kinds}
    probes = {kind: Probe() for kind in kinds}
    healthy_fires = [0]

    @cloaca.trigger(workflow=workflow, name=names["raises"], poll_interval="50ms")
    def raises() -> TriggerResult:
        probes["raises"].hit()
        raise RuntimeError("sensor offline")

    @cloaca.trigger(workflow=workflow, name=names["hangs_sync"], poll_interval="50ms")
    def hangs_sync() -> TriggerResult:
        probes["hangs_sync"].hit()
        # Each call outlives the 0.3 s poll timeout; the next poll comes once it returns
        # (a sync trigger is never called again while its abandoned call still runs).
        if release.wait(0.8):  # released as the test ends: a call that may not have overrun
            return TriggerResult.skip()
        return TriggerResult.fire(Context({"late": "sync"}))  # too late: must be ignored

    @cloaca.trigger(workflow=workflow, name=names["hangs_async"], poll_interval="50ms")
    async def hangs_async() -> TriggerResult:
        probes["hangs_async"].hit()
        await asyncio.sleep(WAIT_SECONDS)
        return TriggerResult.fire(Context({"late": "async"}))

    @cloaca.trigger(workflow=workflow, name=names["returns_42"], poll_interval="50ms")
    def returns_42() -> int:
        probes["returns_42"].hit()
        return 42

    @cloaca.trigger(workflow=workflow, name=names["async_raises"], poll_interval="50ms")
    async def async_raises() -> TriggerResult:
        probes["async_raises"].hit()
        raise KeyError("no such queue")

    @cloaca.trigger(workflow=missing_workflow, name=names["missing_wf"], poll_interval="50ms")
    def missing_wf() -> TriggerResult:
        probes["missing_wf"].hit()
        return TriggerResult.fire(Context({"x": 1}))

    @cloaca.trigger(workflow=workflow, name=names["healthy"], poll_interval="50ms")
    async def healthy() -> TriggerResult:
        probes["healthy"].hit()
        healthy_fires[0] += 1
        return TriggerResult.fire(Context({"healthy": healthy_fires[0]}))

    def logged(kind: str) -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.name.startswith("cloaca") and r.levelno >= logging.ERROR and names[kind] in r.getMessage()]

    async with make_runner(trigger_poll_timeout_seconds=0.3) as runner:
        try:
            broken = [k for k in kinds if k != "healthy"]
            await wait_until(lambda: all(probes[k].polls >= 2 and logged(k) for k in broken),
                             "every broken trigger to be polled twice and logged")
            counts = {k: probes[k].polls for k in kinds}
            runs = len(received)
            await wait_until(lambda: all(probes[k].polls > counts[k] + 1 for k in kinds),
                             "every trigger to keep being polled")
            await wait_until(lambda: len(received) > runs + 2, "the healthy trigger to keep firing")

            result = await runner.aexecute(workflow, Context({"manual": True}))
            assert result.status == "Completed"
            result = await asyncio.to_thread(runner.execute, workflow, Context({"manual": "sync"}))
            assert result.status == "Completed"
        finally:
            release.set()

    assert any("sensor offline" in m for m in logged("raises"))
    assert any("no such queue" in m for m in logged("async_raises"))
    assert any("timed out" in m for m in logged("hangs_sync"))
    assert any("timed out" in m for m in logged("hangs_async"))
    assert any("int" in m for m in logged("returns_42"))
    assert any(missing_workflow in m for m in logged("missing_wf"))
    assert not [r for r in received if "late" in r]  # a timed-out poll's result is dropped
    assert not logged("healthy")


# ====================================================================== task callbacks (§4.6)
@pytest.mark.asyncio
async def test_callback_errors_are_logged_with_the_task_id_and_never_change_the_outcome(
    make_runner, caplog
):
    workflow = unique("callbacks_wf")
    calls: list[tuple[Any, ...]] = []

    def sync_success(task_id: str, context: Context) -> None:
        calls.append(("success", task_id, context.get("step"), threading.get_ident()))
        raise RuntimeError("sync success callback exploded")

    async def async_success(task_id: str, context: Context) -> None:
        calls.append(("success", task_id, context.get("step"), threading.get_ident()))
        raise RuntimeError("async success callback exploded")

    def sync_failure(task_id: str, error: str, context: Context) -> None:
        calls.append(("failure", task_id, error, context.get("step"), threading.get_ident()))
        raise RuntimeError("sync failure callback exploded")

    async def async_failure(task_id: str, error: str, context: Context) -> None:
        calls.append(("failure", task_id, error, context.get("step"), threading.get_ident()))
        raise RuntimeError("async failure callback exploded")

    with cloaca.WorkflowBuilder(workflow):

        @cloaca.task(id="cb_first", on_success=sync_success)
        def first(context: Context) -> Context:
            context.set("step", 1)
            return context

        @cloaca.task(id="cb_second", dependencies=["cb_first"], on_success=async_success)
        async def second(context: Context) -> Context:
            context.set("step", 2)
            return context

        @cloaca.task(id="cb_third", dependencies=["cb_second"], retry_attempts=1, on_failure=sync_failure)
        def third(context: Context) -> Context:
            context.set("step", 3)
            raise ValueError("third body failed")

        @cloaca.task(id="cb_fourth", dependencies=["cb_second"], retry_attempts=1, on_failure=async_failure)
        async def fourth(context: Context) -> Context:
            raise ValueError("fourth body failed")

    async with make_runner() as runner:
        loop_thread = threading.get_ident()
        result = await runner.aexecute(workflow, Context({"step": 0}))

    statuses = {t["task_name"].rsplit("::", 1)[-1]: t for t in result.task_results}
    assert statuses["cb_first"]["status"] == "Completed"
    assert statuses["cb_second"]["status"] == "Completed"
    assert statuses["cb_third"]["status"] == "Failed"
    assert "third body failed" in statuses["cb_third"]["error_message"]
    assert statuses["cb_fourth"]["status"] == "Failed"
    assert "fourth body failed" in statuses["cb_fourth"]["error_message"]
    assert result.status == "Failed"
    assert result.error_message == "2 task(s) failed, 2 completed, 0 skipped"

    by_task = {c[1]: c for c in calls}
    assert set(by_task) == {"cb_first", "cb_second", "cb_third", "cb_fourth"}  # short ids
    assert by_task["cb_first"][2] == 1 and by_task["cb_second"][2] == 2  # the task's output
    assert by_task["cb_third"][3] == 2  # the task's input: body mutations not visible
    assert "ValueError: third body failed" in by_task["cb_third"][2]
    assert by_task["cb_first"][-1] != loop_thread and by_task["cb_third"][-1] != loop_thread
    assert by_task["cb_second"][-1] == loop_thread and by_task["cb_fourth"][-1] == loop_thread

    for task_id, message in [
        ("cb_first", "sync success callback exploded"),
        ("cb_second", "async success callback exploded"),
        ("cb_third", "sync failure callback exploded"),
        ("cb_fourth", "async failure callback exploded"),
    ]:
        records = [
            r for r in caplog.records
            if r.name == "cloaca.task" and r.levelname == "ERROR" and r.getMessage().endswith(": " + message)
        ]
        assert [r.task_name for r in records] == [task_id], caplog.text


# ====================================================================== regressions of fixed bugs
@pytest.mark.asyncio
async def test_a_disable_is_not_undone_by_a_concurrent_store_sync(triggers, make_runner):
    name = triggers.name("race")
    probe = Probe()

    @cloaca.trigger(workflow=unique("unused"), name=name, poll_interval="50ms")
    async def poll() -> TriggerResult:
        probe.hit()
        return TriggerResult.skip()

    async with make_runner() as runner:
        store = runner._store
        original = store.list_trigger_schedules
        read, resume = asyncio.Event(), asyncio.Event()

        async def read_then_wait(*args: Any) -> Any:  # holds the periodic sync after its read
            rows = await original(*args)
            read.set()
            await resume.wait()
            return rows

        store.list_trigger_schedules = read_then_wait
        try:
            await wait_until(read.is_set, "the poller's periodic store sync to read the flags")
        finally:
            store.list_trigger_schedules = original
        await runner.aset_trigger_enabled(name, False)  # lands between that read and its use
        resume.set()
        await asyncio.sleep(0.05)
        stopped_at = probe.polls
        await asyncio.sleep(0.5)  # ten intervals
        assert probe.polls <= stopped_at + 1


@pytest.mark.asyncio
async def test_a_hung_sync_trigger_is_not_called_again_while_its_call_still_runs(triggers, make_runner):
    name = triggers.name("hung")
    release = threading.Event()
    lock = threading.Lock()
    state = {"running": 0, "most": 0, "timeouts": 0}

    @cloaca.trigger(workflow=unique("unused"), name=name, poll_interval="50ms")
    def hung() -> TriggerResult:
        with lock:
            state["running"] += 1
            state["most"] = max(state["most"], state["running"])
        release.wait(WAIT_SECONDS)
        with lock:
            state["running"] -= 1
        return TriggerResult.skip()

    class CountTimeouts(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if name in record.getMessage() and "timed out" in record.getMessage():
                state["timeouts"] += 1

    handler = CountTimeouts()
    logging.getLogger("cloaca").addHandler(handler)
    try:
        async with make_runner(trigger_poll_timeout_seconds=0.2) as runner:
            try:
                # Several poll intervals and timeouts go by while the first call hangs.
                await wait_until(lambda: state["timeouts"] >= 1, "the first poll to time out")
                await asyncio.sleep(1.0)
                assert state["most"] == 1
            finally:
                release.set()
    finally:
        logging.getLogger("cloaca").removeHandler(handler)


@pytest.mark.asyncio
async def test_an_async_trigger_raising_cancelled_error_keeps_being_polled(triggers, make_runner, caplog):
    caplog.set_level(logging.ERROR, logger="cloaca")
    name = triggers.name("cancelled")
    probe = Probe()

    @cloaca.trigger(workflow=unique("unused"), name=name, poll_interval="50ms")
    async def cancelled() -> TriggerResult:
        probe.hit()
        future = asyncio.get_running_loop().create_future()
        future.cancel()
        await future  # raises CancelledError inside the trigger
        return TriggerResult.skip()

    async with make_runner():
        await wait_until(lambda: probe.polls >= 1, "the first poll")
        await wait_until(lambda: probe.polls >= 3, "the trigger to keep being polled", timeout=3.0)
    assert any(name in r.getMessage() for r in caplog.records)


# ====================================================================== poll scheduling and poll times
@pytest.mark.asyncio
async def test_async_pollers_sleep_on_one_shared_timer_not_a_loop_timer_each(triggers, make_runner):
    count = 40
    probes = [Probe() for _ in range(count)]
    for probe in probes:
        async def poll(probe: Probe = probe) -> TriggerResult:
            probe.hit()
            return TriggerResult.skip()

        cloaca.trigger(workflow=unique("unused"), name=triggers.name("sleeper"), poll_interval="50ms")(poll)

    async with make_runner():
        await wait_until(lambda: all(p.polls >= 3 for p in probes), "every trigger to poll three times")
        loop: Any = asyncio.get_running_loop()
        timers = [h for h in loop._scheduled if not h.cancelled()]
        assert len(timers) < count // 2  # the runner's own few, and one for all the pollers


@pytest.mark.asyncio
async def test_poll_times_reach_the_store_and_only_new_ones_are_written_again(triggers, make_runner):
    name = triggers.name("written")
    probe = Probe()

    @cloaca.trigger(workflow=unique("unused"), name=name, poll_interval="20ms")
    async def poll() -> TriggerResult:
        probe.hit()
        return TriggerResult.skip()

    async with make_runner() as runner:
        poller, store = runner._poller, runner._store
        assert poller is not None
        await wait_until(lambda: probe.polls >= 2, "two polls")
        await poller._flush_polls()
        stored = (await store.get_trigger_schedule(name)).last_poll_at
        assert stored is not None and abs(stored - poller.last_poll(name)) < 1.0

        await runner.aset_trigger_enabled(name, False)
        await asyncio.sleep(0.05)  # a poll that had started when it was disabled has ended
        await poller._flush_polls()
        written: list[list[str]] = []
        record = store.record_trigger_polls

        async def spy(polls: Any) -> None:
            written.append([n for n, _ in polls])
            await record(polls)

        store.record_trigger_polls = spy  # type: ignore[method-assign]
        polls = probe.polls
        await poller._flush_polls()
        await poller._flush_polls()
        assert probe.polls == polls
        assert not [names for names in written if name in names]  # nothing new: nothing written
