"""The async face of `DefaultRunner` (SPEC A1, A2): binding to the application's loop,
`astart`/`ashutdown`, `aexecute` (also bridged to a sync-mode runner), the deadlock guard."""

from __future__ import annotations

import asyncio
import inspect
import threading

import pytest

import cloaca
from cloaca import Context, DefaultRunner, WorkflowBuilder, WorkflowResult


def loop_probe_workflow(name: str, seen: list) -> None:
    """One async task that records the loop it runs on and doubles `n`."""
    with WorkflowBuilder(name):

        @cloaca.task()
        async def probe(context):
            seen.append(asyncio.get_running_loop())
            await asyncio.sleep(0)
            context.set("doubled", context.get("n") * 2)
            return context


@pytest.mark.asyncio
async def test_async_with_binds_the_runner_to_the_running_loop(db_url, wf_name):
    name = wf_name()
    seen: list = []
    loop_probe_workflow(name, seen)
    async with DefaultRunner(db_url) as runner:
        assert isinstance(runner, DefaultRunner)
        result = await runner.aexecute(name, Context({"n": 21}))
    assert result.status == "Completed", result.error_message
    assert result.final_context.get("doubled") == 42
    assert seen == [asyncio.get_running_loop()]
    with pytest.raises(ValueError):  # left the block: shut down
        await runner.aexecute(name, Context({"n": 1}))


@pytest.mark.asyncio
async def test_astart_then_ashutdown(db_url, wf_name):
    name = wf_name()
    seen: list = []
    loop_probe_workflow(name, seen)
    runner = DefaultRunner(db_url)
    started = await runner.astart()
    assert started is runner
    try:
        result = await runner.aexecute(name, Context({"n": 5}))
        assert result.final_context.get("doubled") == 10
        assert seen == [asyncio.get_running_loop()]
    finally:
        await runner.ashutdown()
    await runner.ashutdown()  # idempotent
    with pytest.raises(ValueError):
        await runner.aexecute(name, Context({"n": 1}))


@pytest.mark.asyncio
async def test_astart_twice_is_a_runtime_error(db_url):
    runner = DefaultRunner(db_url)
    await runner.astart()
    try:
        with pytest.raises(RuntimeError):
            await runner.astart()
    finally:
        await runner.ashutdown()
    with pytest.raises(RuntimeError):  # nor can a shut-down runner be started again
        await runner.astart()


@pytest.mark.asyncio
async def test_two_hundred_concurrent_aexecutes(db_url, wf_name):
    name = wf_name()
    with WorkflowBuilder(name):

        @cloaca.task()
        async def square(context):
            context.set("square", context.get("n") ** 2)
            return context

        @cloaca.task(dependencies=["square"])
        def plus_one(context):
            context.set("result", context.get("square") + 1)
            return context

    async with DefaultRunner(db_url) as runner:
        results = await asyncio.gather(
            *(runner.aexecute(name, Context({"n": n})) for n in range(200))
        )
        listed = await runner.alist_executions(workflow_name=name, limit=1000)
    assert [r.status for r in results] == ["Completed"] * 200
    assert [r.final_context.get("result") for r in results] == [n * n + 1 for n in range(200)]
    assert len({r.execution_id for r in results}) == 200
    assert len(listed) == 200 and {row["status"] for row in listed} == {"Completed"}


@pytest.mark.asyncio
async def test_aexecute_on_a_sync_mode_runner_is_bridged(db_url, wf_name):
    name = wf_name()
    seen: list = []
    loop_probe_workflow(name, seen)
    runner = await asyncio.to_thread(DefaultRunner, db_url)  # owns its loop, in its own thread
    try:
        results = await asyncio.gather(*(runner.aexecute(name, Context({"n": n})) for n in range(5)))
        assert [r.final_context.get("doubled") for r in results] == [0, 2, 4, 6, 8]
        fetched = await runner.aget_execution(results[0].execution_id)
        assert fetched.status == "Completed"
        assert len(await runner.alist_executions(workflow_name=name)) == 5
    finally:
        await runner.ashutdown()
    assert len(seen) == 5
    assert all(loop is seen[0] for loop in seen)
    assert seen[0] is not asyncio.get_running_loop()  # the runner's own loop, not ours


@pytest.mark.asyncio
async def test_sync_mode_runner_made_in_a_plain_thread(db_url, wf_name):
    name = wf_name()
    seen: list = []
    loop_probe_workflow(name, seen)
    made: list[DefaultRunner] = []
    maker = threading.Thread(target=lambda: made.append(DefaultRunner(db_url)))
    maker.start()
    await asyncio.to_thread(maker.join)
    runner = made[0]
    try:
        result = await runner.aexecute(name, Context({"n": 4}))
        assert result.final_context.get("doubled") == 8
        assert runner.execute(name, Context({"n": 1})).status == "Completed"  # not bound here
    finally:
        await asyncio.to_thread(runner.shutdown)


@pytest.mark.asyncio
async def test_blocking_methods_on_the_bound_loop_raise_naming_the_twin(db_url, wf_name):
    name = wf_name()
    seen: list = []
    loop_probe_workflow(name, seen)
    async with DefaultRunner(db_url) as runner:
        with pytest.raises(RuntimeError, match="aexecute"):
            runner.execute(name, Context({"n": 1}))
        with pytest.raises(RuntimeError, match="alist_executions"):
            runner.list_executions()
        with pytest.raises(RuntimeError, match="aget_execution"):
            runner.get_execution("00000000-0000-0000-0000-000000000000")
        with pytest.raises(RuntimeError, match="ashutdown"):
            runner.shutdown()
        # the runner is unharmed by the refused calls
        assert (await runner.aexecute(name, Context({"n": 3}))).final_context.get("doubled") == 6
    assert seen == [asyncio.get_running_loop()]


@pytest.mark.asyncio
async def test_async_history_twins(db_url, wf_name):
    name = wf_name()
    seen: list = []
    loop_probe_workflow(name, seen)
    async with DefaultRunner(db_url) as runner:
        first = await runner.aexecute(name, Context({"n": 1}))
        second = await runner.aexecute(name, Context({"n": 2}))
        listed = await runner.alist_executions(workflow_name=name)
        paged = await runner.alist_executions(workflow_name=name, limit=1, offset=1)
        fetched = await runner.aget_execution(second.execution_id)
        missing = await runner.aget_execution("00000000-0000-0000-0000-000000000000")
    assert [row["id"] for row in listed] == [second.execution_id, first.execution_id]
    assert [row["id"] for row in paged] == [first.execution_id]
    assert isinstance(fetched, WorkflowResult)
    assert fetched.final_context.to_dict() == {"n": 2, "doubled": 4}
    assert missing is None


@pytest.mark.asyncio
async def test_cancelling_aexecute_never_strands_a_run(db_url, wf_name):
    name = wf_name()
    calls: list[int] = []
    with WorkflowBuilder(name):

        @cloaca.task()
        def body(context):
            calls.append(1)
            return context

    async with DefaultRunner(db_url) as runner:
        waiter = asyncio.create_task(runner.aexecute(name, Context()))
        await asyncio.sleep(0)  # let it start persisting the run
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter

        # Either no run was created, or the run it created finishes (the waiter's
        # cancellation must not cancel the run, as for execute()'s workflow timeout).
        deadline = asyncio.get_running_loop().time() + 3
        while True:
            runs = await runner.alist_executions(workflow_name=name)
            if not runs or runs[0]["status"] not in ("Pending", "Running"):
                break
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.02)
    assert runs == [] or (runs[0]["status"] == "Completed" and calls == [1]), runs


@pytest.mark.asyncio
async def test_async_with_on_a_bad_file_raises_runtime_error_and_keeps_the_file(tmp_path):
    path = tmp_path / "x.db"
    original = b"not a database" * 100
    path.write_bytes(original)
    with pytest.raises(RuntimeError) as info:
        async with DefaultRunner(f"sqlite:///{path}"):
            pass
    assert str(path) in str(info.value)
    assert path.read_bytes() == original


A1_TWINS = [
    "aexecute",
    "alist_executions",
    "aget_execution",
    "alist_trigger_schedules",
    "aget_trigger_schedule",
    "aset_trigger_enabled",
    "aget_trigger_execution_history",
    "ashutdown",
    "astart",
]


@pytest.mark.parametrize("twin", A1_TWINS)
def test_every_async_twin_is_a_coroutine_function(twin):
    method = getattr(DefaultRunner, twin, None)
    assert method is not None, f"DefaultRunner.{twin} is missing"
    assert inspect.iscoroutinefunction(method)
    sync_name = twin[1:]
    if sync_name != "start":
        assert callable(getattr(DefaultRunner, sync_name, None))


def test_async_context_manager_methods_are_coroutine_functions():
    assert inspect.iscoroutinefunction(DefaultRunner.__aenter__)
    assert inspect.iscoroutinefunction(DefaultRunner.__aexit__)
