"""Live reactors per tenant (GRAPHS.md C9.1, C11.4, C13): each tenant has its own reactor
state, fed by its own events, firing under its name and dispatching its own subscriptions;
on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from support import recording_workflow, wait_until
from test_reactor_runtime import Recorder, declare, fires, names, state

import cloaca


async def firings(runner: cloaca.DefaultRunner, reactor: type, tenant: str) -> list[dict[str, Any]]:
    """The snapshots of `tenant`'s recorded firings of `reactor`, oldest first."""
    rows = await runner._store.firings_after(tenant, reactor.NAME, None, 100)
    return [json.loads(row.payload) for row in rows]


# ------------------------------------------------------------------ isolation
@pytest.mark.asyncio
async def test_two_tenants_pushing_to_one_reactor_are_isolated(make_runner) -> None:
    a, b = names("a", "b")
    reactor = declare("when_all", a, b)
    graph = Recorder(reactor, [a, b])
    async with make_runner() as runner:
        await runner.apush_event(a, "acme-a", tenant="acme")
        await runner.apush_event(b, "globex-b", tenant="globex")
        await asyncio.sleep(0.1)
        assert graph.calls == []  # one source each: neither tenant's when_all holds
        await runner.apush_event(b, "acme-b", tenant="acme")
        await graph.wait(1)
        assert graph.calls == [("acme-a", "acme-b")]
        assert await firings(runner, reactor, "acme") == [{a: "acme-a", b: "acme-b"}]
        assert await firings(runner, reactor, "globex") == []
        assert await firings(runner, reactor, "public") == []
        await runner.apush_event(a, "globex-a", tenant="globex")
        await graph.wait(2)
        assert graph.calls[1] == ("globex-a", "globex-b")  # not acme's values
        assert await firings(runner, reactor, "globex") == [{a: "globex-a", b: "globex-b"}]
        assert await fires(runner, reactor) == 0  # public's copy
        for tenant in ("acme", "globex"):
            (row,) = await runner.alist_reactors(tenant=tenant)
            assert row["fires"] == 1


@pytest.mark.asyncio
async def test_pause_and_manual_fires_are_per_tenant(make_runner) -> None:
    (src,) = names("src")
    reactor = declare("when_any", src)
    graph = Recorder(reactor, [src])
    async with make_runner() as runner:
        await runner.apause_reactor(reactor, tenant="acme")
        await runner.apush_event(src, "for acme", tenant="acme")
        await runner.apush_event(src, "for public")
        await graph.wait(1)
        await asyncio.sleep(0.05)
        assert graph.calls == [("for public",)]  # acme is paused, public is not
        assert await runner.afire_reactor(reactor, tenant="acme") is False
        await runner.aresume_reactor(reactor, tenant="acme")
        await graph.wait(2)
        assert graph.calls[1] == ("for acme",)
        assert await runner.afire_reactor(reactor, {src: "manual"}, tenant="globex") is True
        assert await firings(runner, reactor, "globex") == [{src: "manual"}]
        assert await firings(runner, reactor, "public") == [{src: "for public"}]
        assert await firings(runner, reactor, "acme") == [{src: "for acme"}]


@pytest.mark.asyncio
async def test_concurrent_first_pushes_make_one_live_tenant(make_runner) -> None:
    window = state(-1)
    reactor = declare("when_any", window)
    graph = Recorder(reactor, [window])
    async with make_runner() as runner:
        await asyncio.gather(*(runner.apush_event(window, n, tenant="burst") for n in range(20)))
        await wait_until(lambda: any(len(call[0]) == 20 for call in graph.calls), "the full window")
        saved = await runner._store.load_accumulator_state("burst", window, "window")
        assert sorted(json.loads(saved)) == list(range(20))
        assert await runner._store.load_accumulator_state("public", window, "window") is None


# ------------------------------------------------------------------ subscriptions
@pytest.mark.asyncio
async def test_a_tenants_firing_dispatches_only_its_subscriptions(make_runner, wf_name) -> None:
    (src,) = names("src")
    reactor = declare("when_any", src)
    workflows = {tenant: wf_name(tenant) for tenant in ("public", "acme", "globex")}
    seen = {tenant: recording_workflow(name) for tenant, name in workflows.items()}
    async with make_runner() as runner:
        for tenant, name in workflows.items():
            await runner.asubscribe_workflow_to_reactor(reactor, name, tenant)
        await runner.apush_event(src, {"who": "acme"}, tenant="acme")
        await wait_until(lambda: firings(runner, reactor, "acme"), "acme's firing")
        await runner.apoll_reactor_subscriptions_once()  # (the fire may have woken a pass already)
        await wait_until(lambda: seen["acme"], "acme's run")
        assert await runner.apoll_reactor_subscriptions_once() == 0
        await asyncio.sleep(0.1)
        assert seen["public"] == [] and seen["globex"] == []
        (context,) = seen["acme"]
        assert context[src] == {"who": "acme"} and context["reactor_name"] == reactor.NAME


# ------------------------------------------------------------------ default tenant
@pytest.mark.asyncio
async def test_the_default_tenant_is_public(make_runner) -> None:
    (src,) = names("src")
    reactor = declare("when_any", src)
    graph = Recorder(reactor, [src])
    async with make_runner() as runner:
        assert [r["name"] for r in await runner.alist_reactors()] == [reactor.NAME]  # live at start
        assert await runner.alist_reactors() == await runner.alist_reactors(tenant="public")
        assert await runner.alist_reactors(tenant="acme") == []  # not used yet
        await runner.apush_event(src, 1)
        await runner.apush_event(src, 2, tenant="public")
        await wait_until(lambda: (2,) in graph.calls, "the fire with the second event")
        assert await firings(runner, reactor, "public") in ([{src: 1}, {src: 2}], [{src: 2}])
        assert await runner.afire_reactor(reactor) is True
        assert await fires(runner, reactor) == len(await firings(runner, reactor, "public"))
        assert list(runner._reactors.tenants) == ["public"]
    async with make_runner() as runner:
        saved = json.loads(await runner._store.load_reactor_state("public", reactor.NAME))
        assert saved == {"cache": {src: 2}, "dirty": {src: False}}


# ------------------------------------------------------------------ bad tenants, the bound
@pytest.mark.asyncio
@pytest.mark.parametrize(("tenant", "error", "text"), [
    ("", ValueError, "tenant must be a non-empty str, got ''"),
    (7, TypeError, "tenant must be a non-empty str, got int 7"),
])
async def test_a_bad_tenant_is_a_clear_error(make_runner, tenant: Any, error: type, text: str) -> None:
    (src,) = names("src")
    reactor = declare("when_any", src)
    async with make_runner() as runner:
        calls = [
            lambda: runner.apush_event(src, 1, tenant=tenant),
            lambda: runner.afire_reactor(reactor, tenant=tenant),
            lambda: runner.apause_reactor(reactor, tenant=tenant),
            lambda: runner.aresume_reactor(reactor, tenant=tenant),
            lambda: runner.alist_reactors(tenant=tenant),
        ]
        for call in calls:
            with pytest.raises(error) as caught:
                await call()
            assert text in str(caught.value)
        with pytest.raises(ValueError, match=f"Failed to subscribe workflow to reactor: {text}"):
            await runner.asubscribe_workflow_to_reactor(reactor, "wf", tenant)
        assert list(runner._reactors.tenants) == ["public"]


@pytest.mark.asyncio
async def test_unknown_names_make_no_tenant_live(make_runner) -> None:
    (src,) = names("src")
    declare("when_any", src)
    async with make_runner() as runner:
        with pytest.raises(ValueError, match="unknown accumulator 'nobody_listens'"):
            await runner.apush_event("nobody_listens", 1, tenant="acme")
        with pytest.raises(ValueError, match="unknown reactor 'no_such_reactor'"):
            await runner.afire_reactor("no_such_reactor", tenant="acme")
        with pytest.raises(ValueError, match="unknown reactor 'no_such_reactor'"):
            await runner.apause_reactor("no_such_reactor", tenant="acme")
        assert list(runner._reactors.tenants) == ["public"]


@pytest.mark.asyncio
async def test_live_tenants_are_bounded(make_runner) -> None:
    (src,) = names("src")
    reactor = declare("when_any", src)
    graph = Recorder(reactor, [src])
    async with make_runner(max_reactor_tenants=2) as runner:
        await runner.apush_event(src, "a", tenant="acme")
        with pytest.raises(ValueError, match=r"push_event: tenant 'globex' refused.*max_reactor_tenants=2"):
            await runner.apush_event(src, "g", tenant="globex")
        with pytest.raises(ValueError, match=r"fire_reactor: tenant 'globex' refused.*max_reactor_tenants=2"):
            await runner.afire_reactor(reactor, tenant="globex")
        await runner.apush_event(src, "a2", tenant="acme")  # live tenants go on
        await runner.apush_event(src, "p")
        await wait_until(lambda: {("a2",), ("p",)} <= set(graph.calls), "acme's and public's fires")
        assert sorted(runner._reactors.tenants) == ["acme", "public"]
    # tenants with stored state come back at start even past the bound
    async with make_runner(max_reactor_tenants=1) as runner:
        assert sorted(runner._reactors.tenants) == ["acme", "public"]
        with pytest.raises(ValueError, match="tenant 'globex'"):
            await runner.apush_event(src, "g", tenant="globex")


def test_sync_facade_with_a_tenant(tmp_path) -> None:
    (src,) = names("src")
    reactor = declare("when_any", src)
    with cloaca.DefaultRunner(f"sqlite:///{tmp_path}/sync.db") as runner:
        runner.push_event(src, {"sync": 1}, tenant="acme")
        assert runner.fire_reactor(reactor, tenant="acme") is True
        runner.pause_reactor(reactor, tenant="acme")
        assert runner.fire_reactor(reactor, tenant="acme") is False
        runner.resume_reactor(reactor, tenant="acme")
        (row,) = runner.list_reactors(tenant="acme")
        assert row["name"] == reactor.NAME and row["fires"] >= 1
        assert [r["fires"] for r in runner.list_reactors()] == [0]


# ------------------------------------------------------------------ restart, load
@pytest.mark.asyncio
async def test_restart_restores_each_tenants_state_under_its_name(make_runner) -> None:
    a, b = names("a", "b")
    all_of = declare("when_all", a, b)
    window = state(3)
    side = declare("when_any", window)
    side_graph = Recorder(side, [window])
    async with make_runner() as runner:
        await runner.apush_event(a, "acme-a", tenant="acme")  # dirty, not fired
        await runner.apush_event(window, 1, tenant="acme")
        await runner.apush_event(window, 2, tenant="acme")
        await runner.apush_event(window, 9, tenant="globex")
        await wait_until(lambda: ([1, 2],) in side_graph.calls and ([9],) in side_graph.calls,
                         "both windows")
    side_graph.calls.clear()
    async with make_runner() as runner:
        # every tenant with stored state is live again, its window emitted at start
        assert sorted(runner._reactors.tenants) == ["acme", "globex", "public"]
        await wait_until(lambda: len(side_graph.calls) >= 2, "the restored windows")
        assert sorted(side_graph.calls) == [([1, 2],), ([9],)]
        await runner.apush_event(b, "globex-b", tenant="globex")  # globex's a never came
        await runner.apush_event(b, "acme-b", tenant="acme")  # acme's a flag survived
        await wait_until(lambda: firings(runner, all_of, "acme"), "acme's when_all fire")
        await asyncio.sleep(0.05)
        assert await firings(runner, all_of, "acme") == [{a: "acme-a", b: "acme-b"}]
        assert await firings(runner, all_of, "globex") == []
        await runner.apush_event(window, 3, tenant="acme")
        await wait_until(lambda: ([1, 2, 3],) in side_graph.calls, "acme's window grown")


@pytest.mark.asyncio
async def test_load_reactors_reaches_every_live_tenant(make_runner) -> None:
    (src,) = names("src")
    declare("when_any", src)
    async with make_runner() as runner:
        await runner.apush_event(src, 1, tenant="acme")
        (late,) = names("late")
        late_reactor = declare("when_any", late)
        with pytest.raises(ValueError, match=f"unknown accumulator '{late}'"):
            await runner.apush_event(late, 1, tenant="globex")  # not loaded yet
        assert late_reactor.NAME in await runner.aload_reactors()
        late_graph = Recorder(late_reactor, [late])
        await runner.aload_reactors()
        for tenant in ("public", "acme", "globex"):
            await runner.apush_event(late, tenant, tenant=tenant)
        await late_graph.wait(3)
        for tenant in ("public", "acme", "globex"):
            assert await firings(runner, late_reactor, tenant) == [{late: tenant}]


@pytest.mark.asyncio
async def test_the_store_lists_tenants_with_any_stored_reactor_or_accumulator_state(make_runner) -> None:
    async with make_runner(enable_reactors=False) as runner:
        store = runner._store
        assert await store.reactor_tenants() == []
        await store.save_reactor_state("public", "r", '{"cache": {}, "dirty": {}}', 1.0)
        await store.save_reactor_state("acme", "r", '{"cache": {}, "dirty": {}}', 1.0)
        await store.save_reactor_state("acme", "other", '{"cache": {}, "dirty": {}}', 1.0)
        await store.save_accumulator_state("globex", "batch", "checkpoint", "[1]", 1.0)
        await store.save_accumulator_state("initech", "window", "window", "[2]", 1.0)
        assert await store.reactor_tenants() == ["acme", "globex", "initech", "public"]
