"""Runs submitted together are created a bounded number at a time, in the order they came."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import cloaca
from cloaca import Context
from cloaca._engine.admission import Admission


def one_task_workflow(name: str, order: list[int]) -> None:
    with cloaca.WorkflowBuilder(name):

        @cloaca.task(id="only")
        async def only(context: Context) -> Context:
            order.append(context.get("i"))
            return context


def count_creations(store: Any) -> dict[str, Any]:
    """Wrap the store's insert of runs: how many are under way at once, at most."""
    seen: dict[str, Any] = {"now": 0, "most": 0, "order": []}
    insert = store.create_execution

    async def counted(*args: Any, **kwargs: Any) -> bool:
        seen["order"].append(json.loads(args[0].input_context)["i"])
        seen["now"] += 1
        seen["most"] = max(seen["most"], seen["now"])
        try:
            await asyncio.sleep(0.001)
            return await insert(*args, **kwargs)
        finally:
            seen["now"] -= 1

    store.create_execution = counted
    return seen


@pytest.mark.asyncio
async def test_at_most_the_admitted_number_of_runs_is_created_at_once_in_the_order_they_came(make_runner, wf_name):
    name = wf_name("admitted")
    bodies: list[int] = []
    one_task_workflow(name, bodies)
    async with make_runner(max_concurrent_tasks=1) as runner:
        runner._engine.admission = Admission(3)
        seen = count_creations(runner._store)
        results = await asyncio.gather(*(runner.aexecute(name, Context({"i": i})) for i in range(12)))
    assert [r.status for r in results] == ["Completed"] * 12
    assert seen["most"] == 3
    assert seen["order"] == list(range(12))  # first come, first created
    assert sorted(bodies) == list(range(12))


@pytest.mark.asyncio
async def test_a_caller_cancelled_while_waiting_its_turn_leaves_no_run_and_no_place_taken(make_runner, wf_name):
    name = wf_name("cancelled_waiting")
    bodies: list[int] = []
    one_task_workflow(name, bodies)
    async with make_runner() as runner:
        runner._engine.admission = Admission(1)
        release = asyncio.Event()
        insert = runner._store.create_execution

        async def held(*args: Any, **kwargs: Any) -> bool:
            await release.wait()
            return await insert(*args, **kwargs)

        runner._store.create_execution = held
        first = asyncio.ensure_future(runner.aexecute(name, Context({"i": 1})))
        waiting = asyncio.ensure_future(runner.aexecute(name, Context({"i": 2})))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        release.set()
        assert (await first).status == "Completed"
        runner._store.create_execution = insert
        assert (await runner.aexecute(name, Context({"i": 3}))).status == "Completed"
        listed = await runner.alist_executions(workflow_name=name)
    assert bodies == [1, 3]
    assert len(listed) == 2



@pytest.mark.asyncio
async def test_an_unknown_workflow_is_refused_to_its_caller_at_once(make_runner):
    async with make_runner() as runner:
        with pytest.raises(ValueError, match="Workflow not found in registry: no_such_workflow_here"):
            await runner.aexecute("no_such_workflow_here", Context({}))
        assert runner._engine.admission.free == runner._store.runs_created_at_once  # its place was given back


@pytest.mark.asyncio
async def test_a_caller_gone_before_its_run_failed_to_be_saved_leaves_no_unretrieved_error(
        make_runner, wf_name, caplog):
    import gc
    import logging

    name = wf_name("unsaved")
    one_task_workflow(name, [])
    async with make_runner() as runner:
        inserting = asyncio.Event()

        async def refused(*args: Any, **kwargs: Any) -> bool:
            inserting.set()
            await asyncio.sleep(0.01)
            raise RuntimeError("disk says no")  # not a lost connection: not tried again

        runner._store.create_execution = refused
        caller = asyncio.ensure_future(runner.aexecute(name, Context({"i": 1})))
        await inserting.wait()  # its insert is under way
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        await asyncio.sleep(0.05)  # the insert fails meanwhile
        assert runner._engine.runs == {}
        assert runner._engine.admission.free == runner._store.runs_created_at_once  # its place was given back
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            gc.collect()
            await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="disk says no"):  # a caller that stayed hears why
            await runner.aexecute(name, Context({"i": 2}))
    assert "never retrieved" not in caplog.text


@pytest.mark.asyncio
async def test_task_bodies_see_their_own_caller_s_context_variables_whether_admitted_at_once_or_in_line(
        make_runner, wf_name):
    import contextvars

    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")
    name = wf_name("callers_vars")
    with cloaca.WorkflowBuilder(name):

        @cloaca.task(id="only")
        async def only(context: Context) -> Context:
            context.set("seen", request_id.get())
            return context

    async def caller(i: int) -> str:
        request_id.set(f"request-{i}")
        result = await runner.aexecute(name, Context({"i": i}))
        return json.loads(result.final_context.to_json())["seen"]

    async with make_runner() as runner:
        runner._engine.admission = Admission(2)  # most callers wait in line
        seen = await asyncio.gather(*(caller(i) for i in range(12)))
    assert seen == [f"request-{i}" for i in range(12)]
    assert request_id.get() == "none"  # a body's changes do not reach its caller
