"""The cron management API of DefaultRunner (SPEC §3.6, §7): every method, sync and async.

Most tests run twice: once through the blocking methods (called from a worker thread, the
runner being bound to the test's loop) and once through their `a`-prefixed twins. The
runner's clock is a fake one (`_clock=`), so `next_run_at` values are exact and nothing
fires unless a test moves the clock and calls the scheduler's `fire_due()`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any, Callable
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio

import cloaca
from cloaca import Context, DefaultRunner, DefaultRunnerConfig
from cloaca._store.base import CronSlotClaim
from support import MODES, poll_until

UTC = timezone.utc

SCHEDULE_KEYS = {
    "id", "workflow_name", "cron_expression", "timezone", "enabled", "catchup_policy",
    "next_run_at", "last_run_at", "created_at", "updated_at",
}
HISTORY_KEYS = {
    "id", "schedule_id", "scheduled_time", "claimed_at", "workflow_execution_id",
    "created_at", "updated_at", "outcome", "error",
}
STATS_KEYS = {"total_executions", "successful_executions", "lost_executions", "success_rate"}
RESERVED = ("scheduled_time", "schedule_id", "schedule_timezone", "schedule_expression")

WF = "cronapi_recorded_wf"
MISSING_WF = "cronapi_never_registered_wf"

# 2026-01-05 is a Monday; 12:00:30 UTC is 07:00:30 in New York (EST, UTC-5).
T0 = datetime(2026, 1, 5, 12, 0, 30, tzinfo=UTC).timestamp()

RUNS: dict[str, list[dict[str, Any]]] = defaultdict(list)
"""Input contexts of the runs of WF, keyed by the schedule id in their context."""

with cloaca.WorkflowBuilder(WF) as _builder:

    @cloaca.task(id="record")
    async def _record(context: Context) -> Context:
        RUNS[context.get("schedule_id")].append(context.to_dict())
        return context


def ts(text: str) -> float:
    """POSIX seconds of an RFC 3339 string (the API's timestamps)."""
    return datetime.fromisoformat(text).timestamp()


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def wait_until(predicate: Callable[[], Any], what: str, timeout: float = 15.0) -> None:
    """Poll `predicate` (sync or async) until true; fail naming `what` after `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def fire(runner: DefaultRunner) -> None:
    """Fire what is due at the runner's clock and wait until those launches were handed off."""
    assert runner._cron is not None
    await runner._cron.fire_due()
    while runner._cron._launches:
        await asyncio.gather(*list(runner._cron._launches), return_exceptions=True)




@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest_asyncio.fixture
async def runner(tmp_path, clock):
    async with DefaultRunner(f"sqlite:///{tmp_path}/cron_api.db", _clock=clock) as r:
        yield r


@pytest.fixture(params=sorted(MODES))
def api(request, runner):
    return MODES[request.param](runner)


# ====================================================================== register / get
@pytest.mark.asyncio
async def test_register_returns_uuid_and_get_has_exactly_the_schedule_keys(api):
    sid = await api.register_cron_workflow(WF, "0 12 * * *", "America/New_York")
    assert isinstance(sid, str) and str(uuid.UUID(sid)) == sid

    schedule = await api.get_cron_schedule(sid)
    assert set(schedule) == SCHEDULE_KEYS
    assert schedule["id"] == sid
    assert schedule["workflow_name"] == WF
    assert schedule["cron_expression"] == "0 12 * * *"
    assert schedule["timezone"] == "America/New_York"
    assert schedule["enabled"] is True
    assert schedule["catchup_policy"] == "skip"
    assert schedule["last_run_at"] is None
    # Noon in New York (EST) after 07:00:30 local is 17:00 UTC the same day.
    assert ts(schedule["next_run_at"]) == utc(2026, 1, 5, 17, 0, 0)
    assert ts(schedule["created_at"]) == T0
    assert ts(schedule["updated_at"]) == T0
    for key in ("next_run_at", "created_at", "updated_at"):
        assert datetime.fromisoformat(schedule[key]).utcoffset() is not None


@pytest.mark.asyncio
async def test_register_allows_duplicates_and_unregistered_workflows(api):
    first = await api.register_cron_workflow(MISSING_WF, "0 0 1 1 *", "UTC")
    second = await api.register_cron_workflow(MISSING_WF, "0 0 1 1 *", "UTC")
    assert first != second
    listed = {s["id"] for s in await api.list_cron_schedules()}
    assert listed == {first, second}


@pytest.mark.asyncio
async def test_register_accepts_the_run_all_policy_and_rejects_unknown_ones(api):
    sid = await api.register_cron_workflow(WF, "0 0 1 1 *", "UTC", catchup_policy="run_all")
    assert (await api.get_cron_schedule(sid))["catchup_policy"] == "run_all"
    with pytest.raises(ValueError, match="Failed to register cron workflow"):
        await api.register_cron_workflow(WF, "0 0 1 1 *", "UTC", catchup_policy="sometimes")
    assert [s["id"] for s in await api.list_cron_schedules()] == [sid]


# ====================================================================== list
@pytest.mark.asyncio
async def test_list_defaults_filter_and_paging_newest_first(api, clock):
    ids = []
    for i in range(101):
        clock.now = T0 + i
        ids.append(await api.register_cron_workflow(WF, "0 0 1 1 *", "UTC"))
    newest_first = ids[::-1]

    everything = await api.list_cron_schedules()  # real defaults: all, limit 100, offset 0
    assert [s["id"] for s in everything] == newest_first[:100]
    assert all(set(s) == SCHEDULE_KEYS for s in everything)
    assert [s["id"] for s in await api.list_cron_schedules(None, None, None)] == newest_first[:100]
    assert [s["id"] for s in await api.list_cron_schedules(offset=100)] == newest_first[100:]
    assert [s["id"] for s in await api.list_cron_schedules(limit=1)] == newest_first[:1]
    assert [s["id"] for s in await api.list_cron_schedules(limit=1, offset=1)] == newest_first[1:2]
    assert await api.list_cron_schedules(limit=0) == []

    disabled = set(ids[::2])
    for sid in disabled:
        await api.set_cron_schedule_enabled(sid, False)
    enabled = [s["id"] for s in await api.list_cron_schedules(enabled_only=True)]
    assert enabled == [sid for sid in newest_first if sid not in disabled]
    assert all(s["enabled"] for s in await api.list_cron_schedules(enabled_only=True))
    assert [s["id"] for s in await api.list_cron_schedules(enabled_only=True, limit=1)] == enabled[:1]
    assert len(await api.list_cron_schedules(enabled_only=False)) == 100


# ====================================================================== update / enable / delete
@pytest.mark.asyncio
async def test_update_changes_expression_and_timezone_and_recomputes_next_run_from_now(api, clock):
    sid = await api.register_cron_workflow(WF, "0 0 1 1 *", "UTC")
    before = await api.get_cron_schedule(sid)
    clock.now = T0 + 3600  # 13:00:30 UTC

    assert await api.update_cron_schedule(sid, "30 9 * * *", "Asia/Kathmandu") is None
    after = await api.get_cron_schedule(sid)
    assert after["cron_expression"] == "30 9 * * *"
    assert after["timezone"] == "Asia/Kathmandu"
    # 09:30 in Kathmandu (UTC+5:45) is 03:45 UTC; the next one after 13:00:30 UTC is tomorrow's.
    assert ts(after["next_run_at"]) == utc(2026, 1, 6, 3, 45, 0)
    assert ts(after["updated_at"]) == T0 + 3600
    assert after["created_at"] == before["created_at"]
    assert after["enabled"] is True


@pytest.mark.asyncio
async def test_enable_and_disable(api, clock):
    sid = await api.register_cron_workflow(WF, "0 0 1 1 *", "UTC")
    next_run = (await api.get_cron_schedule(sid))["next_run_at"]

    assert await api.set_cron_schedule_enabled(sid, False) is None
    assert (await api.get_cron_schedule(sid))["enabled"] is False
    assert await api.list_cron_schedules(enabled_only=True) == []
    assert [s["id"] for s in await api.list_cron_schedules()] == [sid]

    clock.now = T0 + 60
    await api.set_cron_schedule_enabled(sid, True)
    schedule = await api.get_cron_schedule(sid)
    assert schedule["enabled"] is True
    assert schedule["next_run_at"] == next_run  # enabling does not recompute it
    assert [s["id"] for s in await api.list_cron_schedules(enabled_only=True)] == [sid]

    # An unknown (well-formed) id is silently accepted.
    await api.set_cron_schedule_enabled(str(uuid.uuid4()), False)


@pytest.mark.asyncio
async def test_delete_removes_and_later_calls_give_the_spec_errors(api):
    keep = await api.register_cron_workflow(WF, "0 0 1 1 *", "UTC")
    sid = await api.register_cron_workflow(WF, "0 0 1 1 *", "UTC")

    assert await api.delete_cron_schedule(sid) is None
    assert [s["id"] for s in await api.list_cron_schedules()] == [keep]
    with pytest.raises(ValueError, match="Failed to get cron schedule"):
        await api.get_cron_schedule(sid)
    with pytest.raises(ValueError, match="Failed to update cron schedule"):
        await api.update_cron_schedule(sid, "0 0 * * *", "UTC")
    assert await api.get_cron_execution_history(sid) == []
    await api.delete_cron_schedule(sid)  # again: silently succeeds
    await api.delete_cron_schedule(str(uuid.uuid4()))
    await api.set_cron_schedule_enabled(sid, True)
    assert [s["id"] for s in await api.list_cron_schedules()] == [keep]


@pytest.mark.asyncio
@pytest.mark.parametrize("bad_id", ["not-a-uuid", "", "1234", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"])
async def test_malformed_schedule_id_is_invalid_schedule_id(api, bad_id):
    calls = [
        ("Failed to get cron schedule", lambda: api.get_cron_schedule(bad_id)),
        ("Failed to update cron schedule", lambda: api.update_cron_schedule(bad_id, "0 0 * * *", "UTC")),
        ("Failed to", lambda: api.set_cron_schedule_enabled(bad_id, True)),
        ("Failed to", lambda: api.delete_cron_schedule(bad_id)),
        ("Failed to", lambda: api.get_cron_execution_history(bad_id)),
    ]
    for prefix, call in calls:
        with pytest.raises(ValueError, match="Invalid schedule ID") as caught:
            await call()
        assert str(caught.value).startswith(prefix)


# ====================================================================== bad input
BAD_INPUT = [
    ("61 * * * *", "UTC", "61 * * * *"),           # minute out of range
    ("0 25 * * *", "UTC", "0 25 * * *"),           # hour out of range
    ("0 0 32 * *", "UTC", "0 0 32 * *"),           # day-of-month out of range
    ("0 0 * 13 *", "UTC", "0 0 * 13 *"),           # month out of range
    ("60 * * * * *", "UTC", "60 * * * * *"),       # second out of range
    ("not a cron", "UTC", "not a cron"),
    ("* * * *", "UTC", "* * * *"),                 # too few fields
    ("* * * * * * *", "UTC", "* * * * * * *"),     # too many fields
    ("*/0 * * * *", "UTC", "*/0 * * * *"),
    ("0 0 30 2 *", "UTC", "0 0 30 2 *"),           # never fires
    ("* * * * *", "Mars/Olympus_Mons", "Mars/Olympus_Mons"),
    ("* * * * *", "EST+99", "EST+99"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize("expression, tz, quoted", BAD_INPUT)
async def test_invalid_expression_or_timezone_is_a_value_error_and_stores_nothing(
    api, expression, tz, quoted
):
    existing = await api.register_cron_workflow(WF, "0 0 1 1 *", "UTC")
    before = await api.list_cron_schedules()

    with pytest.raises(ValueError, match="Failed to register cron workflow") as caught:
        await api.register_cron_workflow(WF, expression, tz)
    assert quoted in str(caught.value)
    with pytest.raises(ValueError, match="Failed to register workflow instance") as caught:
        await api.register_workflow_instance(WF, "bad_instance", expression, tz, Context({"a": 1}))
    assert quoted in str(caught.value)
    with pytest.raises(ValueError, match="Failed to update cron schedule") as caught:
        await api.update_cron_schedule(existing, expression, tz)
    assert quoted in str(caught.value)

    assert await api.list_cron_schedules() == before


# ====================================================================== instances
@pytest.mark.asyncio
async def test_register_workflow_instance_is_unique_per_workflow_and_name(api):
    sid = await api.register_workflow_instance(WF, "eu", "0 0 1 1 *", "UTC", Context({"region": "eu"}))
    assert str(uuid.UUID(sid)) == sid
    with pytest.raises(ValueError, match="Failed to register workflow instance"):
        await api.register_workflow_instance(WF, "eu", "0 6 * * *", "Europe/Paris", Context())
    other = await api.register_workflow_instance(WF, "us", "0 0 1 1 *", "UTC", Context())
    elsewhere = await api.register_workflow_instance(MISSING_WF, "eu", "0 0 1 1 *", "UTC", Context())
    ids = [s["id"] for s in await api.list_cron_schedules()]
    assert sorted(ids) == sorted([sid, other, elsewhere])
    assert (await api.get_cron_schedule(sid))["cron_expression"] == "0 0 1 1 *"


@pytest.mark.asyncio
async def test_instance_params_are_flat_context_keys_and_reserved_keys_win(api, runner, clock):
    params = Context({
        "region": "eu", "batch": {"size": 3, "tags": ["a", "b"]},
        "scheduled_time": "forged", "schedule_id": "forged",
        "schedule_timezone": "forged", "schedule_expression": "forged",
    })
    sid = await api.register_workflow_instance(WF, "params", "15 * * * *", "Europe/Paris", params)
    clock.now = utc(2026, 1, 5, 12, 15, 0)
    await fire(runner)
    await wait_until(lambda: RUNS[sid], "the instance's run")

    (context,) = RUNS[sid]
    assert context["region"] == "eu"
    assert context["batch"] == {"size": 3, "tags": ["a", "b"]}
    assert context["schedule_id"] == sid
    assert context["schedule_timezone"] == "Europe/Paris"
    assert context["schedule_expression"] == "15 * * * *"
    assert ts(context["scheduled_time"]) == utc(2026, 1, 5, 12, 15, 0)
    assert set(context) == {"region", "batch", *RESERVED}


# ====================================================================== history and stats
@pytest.mark.asyncio
async def test_history_has_the_spec_keys_newest_first_with_paging(api, runner, clock):
    sid = await api.register_cron_workflow(WF, "*/10 * * * *", "UTC")
    slots = [utc(2026, 1, 5, 12, 10), utc(2026, 1, 5, 12, 20), utc(2026, 1, 5, 12, 30)]
    for slot in slots:
        clock.now = slot + 1
        await fire(runner)
    await wait_until(lambda: len(RUNS[sid]) == 3, "three runs")

    history = await api.get_cron_execution_history(sid)
    assert [set(row) for row in history] == [HISTORY_KEYS] * 3
    assert [ts(row["scheduled_time"]) for row in history] == slots[::-1]
    assert [ts(row["claimed_at"]) for row in history] == [s + 1 for s in slots[::-1]]
    assert all(row["schedule_id"] == sid for row in history)
    assert all(row["outcome"] == "launched" and row["error"] is None for row in history)
    run_ids = [row["workflow_execution_id"] for row in history]
    assert all(isinstance(r, str) for r in run_ids) and len(set(run_ids)) == 3
    for row in history:
        result = await api.get_execution(row["workflow_execution_id"])
        assert result is not None and result.workflow_name == WF
        assert result.final_context.get("scheduled_time") == row["scheduled_time"]

    async def ids(*args: Any, **kwargs: Any) -> list[str]:
        return [row["id"] for row in await api.get_cron_execution_history(*args, **kwargs)]

    all_ids = [row["id"] for row in history]
    assert await ids(sid, 1) == all_ids[:1]
    assert await ids(sid, limit=1, offset=2) == all_ids[2:]
    assert await ids(sid, None, None) == all_ids
    assert await api.get_cron_execution_history(str(uuid.uuid4())) == []

    schedule = await api.get_cron_schedule(sid)
    assert ts(schedule["last_run_at"]) == slots[-1] + 1
    assert ts(schedule["next_run_at"]) == utc(2026, 1, 5, 12, 40)


@pytest.mark.asyncio
async def test_stats_keys_types_and_percentage(api, runner, clock):
    since = datetime.fromtimestamp(T0, UTC).isoformat()
    empty = await api.get_cron_execution_stats(since)
    assert empty == {"total_executions": 0, "successful_executions": 0, "lost_executions": 0,
                     "success_rate": 0.0}
    assert type(empty["success_rate"]) is float

    ok = await api.register_cron_workflow(WF, "*/5 * * * *", "UTC")
    await api.register_cron_workflow(MISSING_WF, "*/5 * * * *", "UTC")
    lost = await api.register_cron_workflow(WF, "0 0 1 1 *", "UTC")
    clock.now = utc(2026, 1, 5, 12, 5, 0)
    await fire(runner)  # one linked run, one failed launch
    await wait_until(lambda: RUNS[ok], "the run")
    # A slot claimed but never handed off (its process died): lost once 10 minutes old.
    record = await runner._store.get_cron_schedule(lost)
    await runner._store.claim_cron_slots(
        CronSlotClaim(lost, record.next_run_at, record.next_run_at + 86400 * 365, [record.next_run_at], []),
        clock.now,
    )

    stats = await api.get_cron_execution_stats(since)
    assert set(stats) == STATS_KEYS
    assert all(type(stats[k]) is int for k in STATS_KEYS - {"success_rate"})
    assert type(stats["success_rate"]) is float
    assert stats["total_executions"] == 3
    assert stats["successful_executions"] == 1
    assert stats["lost_executions"] == 0
    assert stats["success_rate"] == pytest.approx(100.0 / 3)

    clock.now += 601
    stats = await api.get_cron_execution_stats(since.replace("+00:00", "Z"))
    assert stats["lost_executions"] == 1
    assert stats["success_rate"] == pytest.approx(100.0 / 3)

    later = datetime.fromtimestamp(clock.now, UTC).astimezone().isoformat()
    assert (await api.get_cron_execution_stats(later))["total_executions"] == 0


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "since", ["2025-01-01T00:00:00", "2025-01-01", "yesterday", "", "2025-13-01T00:00:00+00:00"]
)
async def test_stats_need_an_rfc3339_time_with_offset(api, since):
    with pytest.raises(ValueError, match="Invalid datetime format"):
        await api.get_cron_execution_stats(since)


# ====================================================================== failures at fire time
@pytest.mark.asyncio
async def test_unregistered_workflow_records_a_failure_and_keeps_its_schedule(api, runner, clock):
    sid = await api.register_cron_workflow(MISSING_WF, "* * * * *", "UTC")
    for minute in (1, 2):
        clock.now = utc(2026, 1, 5, 12, minute, 0)
        await fire(runner)

    history = await api.get_cron_execution_history(sid)
    assert [ts(row["scheduled_time"]) for row in history] == [utc(2026, 1, 5, 12, 2), utc(2026, 1, 5, 12, 1)]
    for row in history:
        assert row["outcome"] == "failed"
        assert MISSING_WF in row["error"]
        assert row["workflow_execution_id"] is None
    schedule = await api.get_cron_schedule(sid)
    assert schedule["enabled"] is True
    assert ts(schedule["next_run_at"]) == utc(2026, 1, 5, 12, 3)
    assert ts(schedule["last_run_at"]) == utc(2026, 1, 5, 12, 2)
    stats = await api.get_cron_execution_stats("2026-01-01T00:00:00+00:00")
    assert (stats["total_executions"], stats["successful_executions"], stats["lost_executions"]) == (2, 0, 0)


# ====================================================================== cron disabled
CRON_METHODS: list[tuple[str, tuple[Any, ...]]] = [
    ("register_cron_workflow", (WF, "* * * * *", "UTC")),
    ("register_workflow_instance", (WF, "i", "* * * * *", "UTC", Context())),
    ("list_cron_schedules", ()),
    ("get_cron_schedule", (str(uuid.uuid4()),)),
    ("update_cron_schedule", (str(uuid.uuid4()), "* * * * *", "UTC")),
    ("set_cron_schedule_enabled", (str(uuid.uuid4()), True)),
    ("delete_cron_schedule", (str(uuid.uuid4()),)),
    ("get_cron_execution_history", (str(uuid.uuid4()),)),
    ("get_cron_execution_stats", ("2025-01-01T00:00:00+00:00",)),
]


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", sorted(MODES))
async def test_every_cron_method_raises_when_cron_scheduling_is_disabled(tmp_path, mode):
    config = DefaultRunnerConfig(enable_cron_scheduling=False)
    async with DefaultRunner(f"sqlite:///{tmp_path}/nocron.db", _config=config) as runner:
        api = MODES[mode](runner)
        for name, args in CRON_METHODS:
            with pytest.raises(ValueError, match="Cron scheduling not enabled"):
                await getattr(api, name)(*args)
        # Malformed arguments still report the disabled scheduler first.
        with pytest.raises(ValueError, match="Cron scheduling not enabled"):
            await api.get_cron_schedule("not-a-uuid")
        with pytest.raises(ValueError, match="Cron scheduling not enabled"):
            await api.register_cron_workflow(WF, "bad", "UTC")


def test_cron_disabled_on_a_thread_owned_runner(tmp_path):
    config = DefaultRunnerConfig(enable_cron_scheduling=False)
    with DefaultRunner.with_config(f"sqlite:///{tmp_path}/nocron.db", config) as runner:
        for name, args in CRON_METHODS:
            with pytest.raises(ValueError, match="Cron scheduling not enabled"):
                getattr(runner, name)(*args)


def test_a_runner_that_does_not_fire_keeps_the_cron_api_and_leaves_due_slots_to_others(tmp_path):
    url = f"sqlite:///{tmp_path}/tool.db"
    quiet = DefaultRunnerConfig(enable_cron_firing=False)
    with DefaultRunner(url, _config=quiet, _clock=FakeClock(T0)) as setup:
        sid = setup.register_cron_workflow(MISSING_WF, "* * * * *", "UTC")  # due at 12:01 in 2026-01
    with DefaultRunner.with_config(url, quiet) as tool:
        time.sleep(0.5)  # a firing runner claims an overdue slot as soon as it starts
        assert tool.get_cron_execution_history(sid) == []
        assert ts(tool.get_cron_schedule(sid)["next_run_at"]) == utc(2026, 1, 5, 12, 1)
    with DefaultRunner(url) as worker:
        poll_until(lambda: worker.get_cron_execution_history(sid), "a firing runner to claim the slot")


# ====================================================================== the upstream scenario, sync
def test_scenario_27_flow_on_a_thread_owned_runner(tmp_path):
    """Upstream test 27's sequence, with the blocking API on a runner owning its thread."""
    with DefaultRunner(f"sqlite:///{tmp_path}/scenario27.db") as runner:
        sid = runner.register_cron_workflow(WF, "0 0 1 1 *", "UTC")
        assert str(uuid.UUID(sid)) == sid
        schedules = runner.list_cron_schedules(None, None, None)
        assert [s["id"] for s in schedules] == [sid]
        assert set(schedules[0]) == SCHEDULE_KEYS
        schedule = runner.get_cron_schedule(sid)
        assert (schedule["workflow_name"], schedule["cron_expression"], schedule["timezone"]) == (
            WF, "0 0 1 1 *", "UTC")

        runner.update_cron_schedule(sid, "0 12 * * MON-FRI", "America/New_York")
        schedule = runner.get_cron_schedule(sid)
        assert (schedule["cron_expression"], schedule["timezone"]) == ("0 12 * * MON-FRI", "America/New_York")
        next_run = datetime.fromisoformat(schedule["next_run_at"])
        local = next_run.astimezone(ZoneInfo("America/New_York"))
        assert (local.hour, local.minute, local.second) == (12, 0, 0) and local.weekday() < 5

        runner.set_cron_schedule_enabled(sid, False)
        assert runner.get_cron_schedule(sid)["enabled"] is False
        assert runner.list_cron_schedules(True, None, None) == []
        runner.set_cron_schedule_enabled(sid, True)
        assert len(runner.list_cron_schedules(enabled_only=True, limit=1)) == 1

        assert isinstance(runner.get_cron_execution_history(sid, None, None), list)
        stats = runner.get_cron_execution_stats("2025-01-01T00:00:00+00:00")
        assert set(stats) == STATS_KEYS and isinstance(stats["success_rate"], float)

        runner.delete_cron_schedule(sid)
        assert runner.list_cron_schedules() == []
        with pytest.raises(ValueError, match="Failed to get cron schedule"):
            runner.get_cron_schedule(sid)
        with pytest.raises(ValueError, match="Failed to update cron schedule"):
            runner.update_cron_schedule(sid, "0 0 * * *", "UTC")
        with pytest.raises(ValueError, match="Invalid schedule ID"):
            runner.get_cron_schedule("invalid-uuid")
        with pytest.raises(ValueError, match="Invalid datetime format"):
            runner.get_cron_execution_stats(datetime.now().isoformat())
