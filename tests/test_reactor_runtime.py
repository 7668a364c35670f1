"""Live reactors and accumulators in the runner (GRAPHS.md C13; the test set of C13.8), on
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from conftest import unique_name
from support import recording_workflow, wait_until

import cloaca


class Recorder:
    """A graph bound to a reactor whose one node records the inputs of every fire."""

    def __init__(self, reactor: type, inputs: list[str]) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.name = unique_name("graph")
        with cloaca.ComputationGraphBuilder(self.name, graph={"record": {"inputs": inputs}},
                                            reactor=reactor):
            @cloaca.node
            def record(*values):
                self.calls.append(values)
                return {"seen": list(values)}

    async def wait(self, count: int) -> None:
        await wait_until(lambda: len(self.calls) >= count, f"{count} fire(s) of {self.name}")


def names(*prefixes: str) -> list[str]:
    return [unique_name(p) for p in prefixes]


def declare(mode: str, *sources: str) -> type:
    @cloaca.reactor(name=unique_name("reactor"), accumulators=list(sources), mode=mode)
    class R:
        pass

    return R


async def fires(runner: cloaca.DefaultRunner, reactor: type) -> int:
    (row,) = [r for r in await runner.alist_reactors() if r["name"] == reactor.NAME]
    return row["fires"]


# ------------------------------------------------------------------ when_any / when_all
@pytest.mark.asyncio
async def test_when_any_fires_per_event_and_coalesces_a_burst(make_runner) -> None:
    (src,) = names("src")
    reactor = declare("when_any", src)
    graph = Recorder(reactor, [src])
    async with make_runner() as runner:
        await runner.apush_event(src, {"n": 1})
        await graph.wait(1)
        await runner.apush_event(src, {"n": 2})
        await graph.wait(2)
        assert graph.calls == [({"n": 1},), ({"n": 2},)]
        await runner.apause_reactor(reactor)
        for n in range(3, 13):
            await runner.apush_event(src, {"n": n})
        live = runner._reactors.tenants["public"].reactors[reactor.NAME]
        await wait_until(lambda: live.inbox.empty(), "the burst applied")
        assert len(graph.calls) == 2  # paused: accumulates, does not fire
        await runner.aresume_reactor(reactor)
        await graph.wait(3)
        await asyncio.sleep(0.05)
        assert graph.calls[2:] == [({"n": 12},)]  # one fire with the latest value
        assert await fires(runner, reactor) == 3


@pytest.mark.asyncio
async def test_when_all_waits_for_every_source_and_resets(make_runner) -> None:
    a, b = names("a", "b")
    reactor = declare("when_all", a, b)
    graph = Recorder(reactor, [a, b])
    async with make_runner() as runner:
        await runner.apush_event(a, 1)
        await runner.apush_event(a, 2)
        await asyncio.sleep(0.05)
        assert graph.calls == []
        await runner.apush_event(b, "x")
        await graph.wait(1)
        assert graph.calls == [(2, "x")]
        await runner.apush_event(a, 3)  # b delivered before the last fire only: no fire
        await asyncio.sleep(0.05)
        assert len(graph.calls) == 1
        await runner.apush_event(b, "y")
        await graph.wait(2)
        assert graph.calls[1] == (3, "y")


@pytest.mark.asyncio
async def test_stale_sources_stay_in_the_snapshot_and_absent_ones_are_none(make_runner) -> None:
    a, b = names("a", "b")
    reactor = declare("when_any", a, b)
    graph = Recorder(reactor, [a, b])
    async with make_runner() as runner:
        await runner.apush_event(a, "first")
        await graph.wait(1)
        await runner.apush_event(b, "second")
        await graph.wait(2)
        assert graph.calls == [("first", None), ("first", "second")]


# ------------------------------------------------------------------ accumulator bodies
@pytest.mark.asyncio
async def test_passthrough_body_transforms_suppresses_and_drops(make_runner) -> None:
    (src,) = names("body_src")
    threads: list[int] = []

    def transform(event):
        threads.append(threading.get_ident())
        if event == "skip":
            return None
        if event == "boom":
            raise RuntimeError("bad event")
        return {"doubled": event * 2}

    transform.__name__ = src
    cloaca.passthrough_accumulator(transform)
    reactor = declare("when_any", src)
    graph = Recorder(reactor, [src])
    async with make_runner() as runner:
        for event in ["skip", "boom", 21]:
            await runner.apush_event(src, event)
        await graph.wait(1)
        await asyncio.sleep(0.05)
        assert graph.calls == [({"doubled": 42},)]
        assert threading.get_ident() not in threads  # sync bodies run in worker threads


@pytest.mark.asyncio
async def test_async_stream_body_is_awaited_on_the_loop(make_runner) -> None:
    (src,) = names("stream_src")
    loop_threads: list[int] = []

    async def enrich(event):
        loop_threads.append(threading.get_ident())
        return {"event": event, "via": "stream"}

    enrich.__name__ = src
    cloaca.stream_accumulator(type="kafka", topic="ticks")(enrich)
    reactor = declare("when_any", src)
    graph = Recorder(reactor, [src])
    async with make_runner() as runner:
        await runner.apush_event(src, 7)
        await graph.wait(1)
        assert graph.calls == [({"event": 7, "via": "stream"},)]
        assert loop_threads == [threading.get_ident()]


# ------------------------------------------------------------------ batch
def batch(flush_interval: str, max_buffer_size: Any = None) -> str:
    (name,) = names("batch")

    def body(events):
        return events

    body.__name__ = name
    cloaca.batch_accumulator(flush_interval=flush_interval, max_buffer_size=max_buffer_size)(body)
    return name


@pytest.mark.asyncio
async def test_batch_flushes_on_size(make_runner) -> None:
    src = batch("1h", 3)
    graph = Recorder(declare("when_any", src), [src])
    async with make_runner() as runner:
        for n in range(3):
            await runner.apush_event(src, n)
        await graph.wait(1)
        for n in range(3, 7):
            await runner.apush_event(src, n)
        await graph.wait(2)
        await asyncio.sleep(0.05)
        assert graph.calls == [([0, 1, 2],), ([3, 4, 5],)]


@pytest.mark.asyncio
async def test_batch_flushes_on_interval(make_runner) -> None:
    src = batch("100ms")
    graph = Recorder(declare("when_any", src), [src])
    async with make_runner() as runner:
        await runner.apush_event(src, "a")
        await runner.apush_event(src, "b")
        await graph.wait(1)
        assert graph.calls[0] == (["a", "b"],)


@pytest.mark.asyncio
async def test_batch_flushes_on_shutdown(make_runner) -> None:
    src = batch("1h", 100)
    graph = Recorder(declare("when_any", src), [src])
    async with make_runner() as runner:
        await runner.apush_event(src, "only")
        await asyncio.sleep(0.05)
        assert graph.calls == []
    assert graph.calls == [(["only"],)]


# ------------------------------------------------------------------ state
def state(capacity: int) -> str:
    (name,) = names("state")

    def body(window):
        return window

    body.__name__ = name
    cloaca.state_accumulator(capacity=capacity)(body)
    return name


@pytest.mark.asyncio
@pytest.mark.parametrize(("capacity", "expected"), [
    (2, [([1],), ([1, 2],), ([2, 3],)]),
    (-1, [([1],), ([1, 2],), ([1, 2, 3],)]),
])
async def test_state_window_shapes(make_runner, capacity: int, expected: list) -> None:
    src = state(capacity)
    graph = Recorder(declare("when_any", src), [src])
    async with make_runner() as runner:
        for n in (1, 2, 3):
            await runner.apush_event(src, n)
            await graph.wait(len(graph.calls) + 1)
        assert graph.calls == expected


@pytest.mark.asyncio
async def test_state_capacity_zero_is_a_write_only_sink(make_runner) -> None:
    sink = state(0)
    (other,) = names("other")
    reactor = declare("when_any", sink, other)
    graph = Recorder(reactor, [sink, other])
    async with make_runner() as runner:
        await runner.apush_event(sink, 1)
        await asyncio.sleep(0.05)
        assert graph.calls == []
        await runner.apush_event(other, "go")
        await graph.wait(1)
        assert graph.calls == [(None, "go")]


# ------------------------------------------------------------------ polling
@pytest.mark.asyncio
async def test_polling_skips_none_and_exceptions_and_emits_values(make_runner) -> None:
    (src,) = names("poll")
    outcomes: list[Any] = [None, RuntimeError("feed down"), {"price": 1}, {"price": 2}]

    def poll():
        outcome = outcomes.pop(0) if outcomes else None
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    poll.__name__ = src
    cloaca.polling_accumulator(interval="20ms")(poll)
    graph = Recorder(declare("when_any", src), [src])
    async with make_runner():
        await wait_until(lambda: ({"price": 2},) in graph.calls, "the second value polled")
        await asyncio.sleep(0.1)  # later polls return None: no more fires
        # (two values polled during one fire would coalesce into the latest)
        assert graph.calls in ([({"price": 1},), ({"price": 2},)], [({"price": 2},)])


# ------------------------------------------------------------------ restart
@pytest.mark.asyncio
async def test_restart_restores_cache_flags_windows_and_checkpoints(make_runner) -> None:
    a, b = names("a", "b")
    window = state(3)
    (poll,) = names("poll")
    polls = iter([{"tick": 1}])

    def poll_function():
        return next(polls, None)

    poll_function.__name__ = poll
    cloaca.polling_accumulator(interval="10ms")(poll_function)
    all_of = declare("when_all", a, b)
    all_graph = Recorder(all_of, [a, b])
    side = declare("when_any", window, poll)
    side_graph = Recorder(side, [window, poll])
    async with make_runner() as runner:
        await runner.apush_event(a, "kept")  # dirty, not fired
        await runner.apush_event(window, 1)
        await runner.apush_event(window, 2)
        await wait_until(lambda: ([1, 2], {"tick": 1}) in side_graph.calls, "the window and the poll")
    calls_before = len(side_graph.calls)
    async with make_runner() as runner:
        await runner.apush_event(b, "now")  # a's flag survived: when_all fires
        await all_graph.wait(1)
        assert all_graph.calls == [("kept", "now")]
        await side_graph.wait(calls_before + 1)  # the restored window and checkpoint, emitted at start
        assert side_graph.calls[-1] == ([1, 2], {"tick": 1})


# ------------------------------------------------------------------ manual control
@pytest.mark.asyncio
async def test_fire_reactor_pause_list_and_load(make_runner) -> None:
    (src,) = names("src")
    reactor = declare("when_any", src)
    graph = Recorder(reactor, [src])
    async with make_runner() as runner:
        assert await runner.afire_reactor(reactor, {src: {"manual": True}}) is True
        assert graph.calls == [({"manual": True},)]
        await runner.apause_reactor(reactor.NAME)
        assert await runner.afire_reactor(reactor) is False
        (row,) = [r for r in await runner.alist_reactors() if r["name"] == reactor.NAME]
        assert row == {"name": reactor.NAME, "mode": "when_any", "accumulators": [src],
                       "graphs": [graph.name], "paused": True, "fires": 1,
                       "last_fire_at": row["last_fire_at"], "last_error": None}
        assert row["last_fire_at"].endswith("+00:00")
        await runner.aresume_reactor(reactor)
        (late,) = names("late")
        late_reactor = declare("when_any", late)
        late_graph = Recorder(late_reactor, [late])
        loaded = await runner.aload_reactors()
        assert reactor.NAME in loaded and late_reactor.NAME in loaded
        assert await runner.aload_reactors() == loaded  # idempotent
        await runner.apush_event(late, 5)
        await late_graph.wait(1)
        extra = Recorder(reactor, [src])  # a second graph bound to a running reactor
        await runner.aload_reactors()
        await runner.apush_event(src, 9)
        await extra.wait(1)
        await graph.wait(2)


@pytest.mark.asyncio
async def test_graph_failure_is_recorded_and_the_reactor_goes_on(make_runner) -> None:
    (src,) = names("src")
    reactor = declare("when_any", src)
    with cloaca.ComputationGraphBuilder(unique_name("graph"), graph={"explode": {"inputs": [src]}},
                                        reactor=reactor):
        @cloaca.node
        def explode(value):
            if value == "bad":
                raise ValueError("cannot price")
            return value

    graph = Recorder(reactor, [src])
    async with make_runner() as runner:
        await runner.apush_event(src, "bad")
        await graph.wait(1)
        await runner.apush_event(src, "good")
        await graph.wait(2)
        (row,) = [r for r in await runner.alist_reactors() if r["name"] == reactor.NAME]
        assert "node 'explode' failed: ValueError: cannot price" in row["last_error"]
        assert row["fires"] == 2


@pytest.mark.asyncio
async def test_bad_pushes_are_refused(make_runner) -> None:
    (src,) = names("src")
    declare("when_any", src)
    async with make_runner() as runner:
        with pytest.raises(ValueError, match="unknown accumulator 'nobody_listens'"):
            await runner.apush_event("nobody_listens", 1)
        with pytest.raises(TypeError, match="not a JSON value"):
            await runner.apush_event(src, {1, 2})
        with pytest.raises(ValueError, match="unknown reactor"):
            await runner.afire_reactor("no_such_reactor")
        with pytest.raises(RuntimeError, match="apush_event"):
            runner.push_event(src, 1)  # on the loop's thread


@pytest.mark.asyncio
async def test_an_accumulator_feeding_two_reactors_is_refused_at_start(make_runner) -> None:
    (shared,) = names("shared")
    first = declare("when_any", shared)
    second = declare("when_any", shared)
    with pytest.raises(ValueError, match=f"'{shared}'.*'{first.NAME}'.*'{second.NAME}'"):
        async with make_runner():
            pass


@pytest.mark.asyncio
async def test_reactors_disabled(make_runner) -> None:
    async with make_runner(enable_reactors=False) as runner:
        with pytest.raises(ValueError, match="enable_reactors=False"):
            await runner.alist_reactors()


def test_sync_facade(tmp_path) -> None:
    (src,) = names("src")
    reactor = declare("when_any", src)
    graph = Recorder(reactor, [src])
    with cloaca.DefaultRunner(f"sqlite:///{tmp_path}/sync.db") as runner:
        runner.push_event(src, {"sync": 1})
        deadline = 200
        while not graph.calls and deadline:
            threading.Event().wait(0.02)
            deadline -= 1
        assert graph.calls == [({"sync": 1},)]
        assert runner.fire_reactor(reactor) is True
        runner.pause_reactor(reactor)
        runner.resume_reactor(reactor)
        assert reactor.NAME in runner.load_reactors()
        assert [r["fires"] for r in runner.list_reactors() if r["name"] == reactor.NAME] == [2]


# ------------------------------------------------------------------ subscriptions from fires
@pytest.mark.asyncio
async def test_fires_drive_a_subscribed_workflow_with_a_when_filter(make_runner, wf_name) -> None:
    a, b = names("a", "b")
    reactor = declare("when_all", a, b)
    name = wf_name()
    seen = recording_workflow(name)

    async with make_runner(reactor_poll_interval_seconds=0.05) as runner:
        await runner.asubscribe_workflow_to_reactor(reactor, name, when=f"payload.{a}.price > 100")
        await runner.apush_event(a, {"price": 99})
        await runner.apush_event(b, "x")  # fires; filtered out
        await runner.apush_event(a, {"price": 100.5})
        await runner.apush_event(b, "y")  # fires; admitted
        await wait_until(lambda: seen, "the subscribed run, without a manual poll")
        await asyncio.sleep(0.2)
        assert len(seen) == 1
        (context,) = seen
        assert context[a] == {"price": 100.5} and context[b] == "y"
        assert context["reactor_name"] == reactor.NAME
        assert {"reactor_firing_id", "reactor_fired_at"} <= set(context)


@pytest.mark.asyncio
async def test_shutdown_cancels_a_fire_stuck_past_the_grace_period(make_runner) -> None:
    (src,) = names("src")
    reactor = declare("when_any", src)
    started = asyncio.Event()

    with cloaca.ComputationGraphBuilder(unique_name("graph"), graph={"stuck": {"inputs": [src]}},
                                        reactor=reactor):
        @cloaca.node
        async def stuck(value):
            started.set()
            await asyncio.Event().wait()  # never returns

    async with make_runner(shutdown_grace_seconds=0.3) as runner:
        await runner.apush_event(src, "first")
        await asyncio.wait_for(started.wait(), 20)
        await runner.apush_event(src, "queued")
    # the shutdown returned; the state was saved as of the fire that got stuck (the pushed
    # event still queued in the reactor's inbox is lost, as C13.5 allows for passthrough)
    async with make_runner(shutdown_grace_seconds=0.3) as runner:
        saved = json.loads(await runner._store.load_reactor_state("public", reactor.NAME))
        assert saved == {"cache": {src: "first"}, "dirty": {src: False}}
