"""A user's suite: cloaca_runner and cloaca_registry in sync and async tests, and the leak
that cloaca_registry prevents. Run by test_testing_plugin.py as `test_fixtures.py` in a
directory of its own; its tests depend on running in file order (pytest's default)."""

import asyncio
import threading
import time
from collections import Counter

import pytest
import pytest_asyncio

import cloaca

with cloaca.WorkflowBuilder("greet"):

    @cloaca.task(id="hello")
    async def hello(ctx):
        ctx.set("loop", id(asyncio.get_running_loop()))
        ctx.set("thread", threading.get_ident())
        ctx.set("greeting", f"hello {ctx.get('name')}")
        return ctx


RUNNERS = []
POLLS = Counter()


@pytest.fixture(scope="module")
def shared_runner():
    """A runner of the user's own, alive across tests (cloaca_registry must reach it)."""
    with cloaca.DefaultRunner(":memory:") as runner:
        yield runner


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_async_runner():
    """A runner of the user's own on the module's event loop, alive across tests."""
    async with cloaca.DefaultRunner(":memory:") as runner:
        yield runner


# ---------------------------------------------------------------- cloaca_runner
def test_a_sync_test_gets_a_runner_on_a_thread_of_its_own(cloaca_runner):
    result = cloaca_runner.execute("greet", cloaca.Context({"name": "sync"}))
    assert result.status == "Completed"
    assert result.final_context.get("greeting") == "hello sync"
    assert result.final_context.get("thread") != threading.get_ident()
    RUNNERS.append(cloaca_runner)


def test_the_sync_tests_runner_was_shut_down_after_it():
    with pytest.raises(ValueError, match="shut down"):
        RUNNERS[0].list_executions()


@pytest.mark.asyncio
async def test_an_async_test_gets_a_runner_on_its_own_event_loop(cloaca_runner):
    result = await cloaca_runner.aexecute("greet", cloaca.Context({"name": "async"}))
    assert result.final_context.get("greeting") == "hello async"
    assert result.final_context.get("loop") == id(asyncio.get_running_loop())
    assert result.final_context.get("thread") == threading.get_ident()
    RUNNERS.append(cloaca_runner)


def test_the_async_tests_runner_was_shut_down_after_it():
    with pytest.raises(ValueError, match="shut down"):
        RUNNERS[1].list_executions()


@pytest.mark.asyncio(loop_scope="module")
async def test_a_test_on_a_module_wide_loop_gets_a_runner_on_that_loop(cloaca_runner):
    result = await cloaca_runner.aexecute("greet", cloaca.Context({"name": "module"}))
    assert result.final_context.get("loop") == id(asyncio.get_running_loop())


# ---------------------------------------------------------------- the leak
def declare(workflow, trigger_name):
    """A workflow of one task, and a trigger that never fires it."""
    with cloaca.WorkflowBuilder(workflow):

        @cloaca.task(id="step")
        def step(ctx):
            return ctx

    @cloaca.trigger(name=trigger_name, workflow=workflow, poll_interval="1h")
    def never():
        return False


def test_declares_a_workflow_and_a_trigger_without_the_fixture():
    declare("leaky", "leaky_trigger")


def test_without_the_fixture_they_leaked_into_the_next_test(cloaca_runner):
    assert cloaca_runner.execute("leaky", cloaca.Context()).status == "Completed"
    assert cloaca_runner.get_trigger_schedule("leaky_trigger") is not None


def test_declares_a_workflow_and_a_trigger_with_the_fixture(cloaca_registry):
    declare("contained", "contained_trigger")
    assert cloaca_registry.get_workflow("contained") is not None
    assert cloaca_registry.get_trigger("contained_trigger") is not None


def test_with_the_fixture_they_are_gone_after_the_test(cloaca_runner, cloaca_registry):
    assert cloaca_registry.get_workflow("contained") is None
    with pytest.raises(ValueError, match="Workflow not found in registry: contained"):
        cloaca_runner.execute("contained", cloaca.Context())
    assert cloaca_runner.get_trigger_schedule("contained_trigger") is None
    assert cloaca_registry.get_workflow("greet") is not None  # declared at import: stays


@pytest.mark.asyncio
async def test_an_async_test_declares_with_the_fixture(cloaca_registry):
    with cloaca.WorkflowBuilder("contained_async"):

        @cloaca.task(id="step")
        async def step(ctx):
            return ctx

    assert cloaca_registry.get_workflow("contained_async") is not None


def test_what_the_async_test_declared_is_gone(cloaca_registry):
    assert cloaca_registry.get_workflow("contained_async") is None


# ---------------------------------------------------------------- a runner that outlives a test
def test_a_trigger_declared_with_the_fixture_is_polled_by_a_live_runner(shared_runner, cloaca_registry):
    @cloaca.trigger(name="pinger", workflow="greet", poll_interval="50ms")
    async def pinger():
        POLLS["pinger"] += 1
        return False

    give_up = time.monotonic() + 20
    while POLLS["pinger"] < 2:
        assert time.monotonic() < give_up, "the live runner never polled the new trigger"
        time.sleep(0.02)


def test_the_live_runner_stopped_polling_it_after_that_test(shared_runner):
    time.sleep(0.1)
    polled = POLLS["pinger"]
    time.sleep(0.5)
    assert POLLS["pinger"] == polled


@pytest.mark.asyncio(loop_scope="module")
async def test_triggers_declared_with_the_fixture_reach_a_runner_on_the_module_loop(
    shared_async_runner, cloaca_registry
):
    @cloaca.trigger(name="module_pinger", workflow="greet", poll_interval="50ms")
    async def module_pinger():
        POLLS["module_pinger"] += 1
        return False

    @cloaca.trigger(name="module_nightly", workflow="greet", cron="0 3 * * *")
    def module_nightly():
        return False

    while POLLS["module_pinger"] < 2:
        await asyncio.sleep(0.02)
    assert len(await shared_async_runner.alist_cron_schedules()) == 1


@pytest.mark.asyncio(loop_scope="module")
async def test_that_runner_forgot_them_after_the_test(shared_async_runner):
    # cloaca_registry was torn down while the module's loop was not running: the removal
    # is applied as soon as it runs again
    await asyncio.sleep(0.1)
    polled = POLLS["module_pinger"]
    await asyncio.sleep(0.5)
    assert POLLS["module_pinger"] == polled
    assert await shared_async_runner.alist_cron_schedules() == []
