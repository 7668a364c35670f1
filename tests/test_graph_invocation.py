"""`@cloaca.task(invokes=..., post_invocation=...)` (GRAPHS.md C8; upstream scenario 32)."""

from __future__ import annotations

import threading
from typing import Any, Callable

import pytest

import cloaca

from conftest import unique_name
from shared_runner import module_runner  # noqa: F401 - the module's `runner`


def trigger_less(topology: dict, *functions: Callable[..., Any]) -> cloaca.ComputationGraphBuilder:
    builder = cloaca.ComputationGraphBuilder(unique_name("graph"), graph=topology)
    with builder:
        for function in functions:
            cloaca.node(function)
    return builder


def scorer() -> cloaca.ComputationGraphBuilder:
    def score(ctx):
        return {"score": ctx.get("base") + 1}

    return trigger_less({"score": {}}, score)


def router() -> cloaca.ComputationGraphBuilder:
    def classify(ctx):
        return ("hit", {"value": ctx.get("base")}) if ctx.get("base") > 10 else ("miss", {})

    def hit(v):
        return {"hit_value": v["value"]}

    def miss(v):
        return {"missed": True}

    return trigger_less({"classify": {"routes": {"hit": "hit", "miss": "miss"}}, "hit": {}, "miss": {}},
                        classify, hit, miss)


def run_workflow(runner: cloaca.DefaultRunner, name: str, define: Callable[[], None],
                 data: dict[str, Any]) -> cloaca.WorkflowResult:
    with cloaca.WorkflowBuilder(name):
        define()
    return runner.execute(name, cloaca.Context(data))


# ------------------------------------------------------------------ execution
def test_single_terminal_routes_into_context(runner, wf_name) -> None:
    graph = scorer()

    def define() -> None:
        @cloaca.task(id="prepare", invokes=graph)
        def prepare(ctx):
            ctx.set("base", 98)
            return ctx

    result = run_workflow(runner, wf_name(), define, {})
    assert result.status == "Completed"
    assert result.final_context["score"] == {"score": 99}
    assert result.final_context["base"] == 98


def test_multiple_terminals_route_under_their_names(runner, wf_name) -> None:
    graph = router()

    def define() -> None:
        @cloaca.task(id="t", invokes=graph)
        def t(ctx):
            return None  # the input context goes to the graph unchanged

    result = run_workflow(runner, wf_name(), define, {"base": 42})
    assert result.status == "Completed"
    assert result.final_context["hit"] == {"hit_value": 42}
    assert "miss" not in result.final_context


def test_several_terminals_write_several_keys_and_overwrite(runner, wf_name) -> None:
    def left(ctx):
        return "L"

    def right(ctx):
        return "R"

    graph = trigger_less({"left": {}, "right": {}}, left, right)

    def define() -> None:
        @cloaca.task(id="t", invokes=graph)
        def t(ctx):
            ctx.set("left", "overwritten")
            return ctx

    result = run_workflow(runner, wf_name(), define, {})
    assert (result.final_context["left"], result.final_context["right"]) == ("L", "R")


def test_node_mutations_of_the_context_are_discarded(runner, wf_name) -> None:
    def root(ctx):
        ctx.set("leak", True)
        return "out"

    graph = trigger_less({"root": {}}, root)

    def define() -> None:
        @cloaca.task(id="t", invokes=graph)
        def t(ctx):
            return ctx

    result = run_workflow(runner, wf_name(), define, {})
    assert result.final_context["root"] == "out"
    assert "leak" not in result.final_context


def test_post_invocation_can_mutate_context(runner, wf_name) -> None:
    def emit(ctx):
        return {"emitted": 1}

    graph = trigger_less({"emit": {}}, emit)
    seen: list[Any] = []

    def hook(ctx):
        seen.append(ctx.get("emit"))
        ctx.set("post_ran", True)
        return ctx

    def define() -> None:
        @cloaca.task(id="t", invokes=graph, post_invocation=hook)
        def t(ctx):
            return ctx

    result = run_workflow(runner, wf_name(), define, {})
    assert seen == [{"emitted": 1}]
    assert result.final_context["post_ran"] is True
    assert result.final_context["emit"] == {"emitted": 1}


def test_post_invocation_edits_without_returning_are_lost(runner, wf_name) -> None:
    graph = scorer()

    def hook(ctx):
        ctx.set("lost", True)
        return {"also": "ignored"}

    def define() -> None:
        @cloaca.task(id="t", invokes=graph, post_invocation=hook)
        def t(ctx):
            return ctx

    result = run_workflow(runner, wf_name(), define, {"base": 1})
    assert result.status == "Completed"
    assert "lost" not in result.final_context and "also" not in result.final_context
    assert result.final_context["score"] == {"score": 2}


def test_async_nodes_and_hook_are_awaited_on_the_loop(runner, wf_name) -> None:
    threads: dict[str, int] = {}

    async def fetch(ctx):
        threads["fetch"] = threading.get_ident()
        return ctx.get("n") * 3

    def finish(v):
        threads["finish"] = threading.get_ident()
        return {"n3": v}

    graph = trigger_less({"fetch": {"next": "finish"}, "finish": {}}, fetch, finish)

    async def hook(ctx):
        threads["hook"] = threading.get_ident()
        ctx.set("hooked", True)
        return ctx

    def define() -> None:
        @cloaca.task(id="t", invokes=graph, post_invocation=hook)
        async def t(ctx):
            threads["body"] = threading.get_ident()
            return ctx

    result = run_workflow(runner, wf_name(), define, {"n": 5})
    assert result.final_context["finish"] == {"n3": 15}
    assert result.final_context["hooked"] is True
    assert threads["fetch"] == threads["body"] == threads["hook"]  # the runner's loop
    assert threads["finish"] != threads["body"]  # a worker thread


def test_graph_node_exception_fails_the_task(runner, wf_name) -> None:
    def broken(ctx):
        raise RuntimeError("graph broke")

    graph = trigger_less({"broken": {}}, broken)
    failures: list[tuple[str, str]] = []
    successes: list[str] = []

    def define() -> None:
        @cloaca.task(id="t", invokes=graph, retry_attempts=0,
                     on_failure=lambda task_id, error, ctx: failures.append((task_id, error)),
                     on_success=lambda task_id, ctx: successes.append(task_id))
        def t(ctx):
            return ctx

    result = run_workflow(runner, wf_name(), define, {})
    assert result.status != "Completed"
    error = result.task_results[0]["error_message"]
    assert error.startswith(f"computation graph '{graph.NAME}' invocation failed: ")
    assert "node 'broken' failed: RuntimeError: graph broke" in error
    assert failures == [("t", error)] and successes == []


def test_post_invocation_exception_fails_the_task(runner, wf_name) -> None:
    graph = scorer()

    def hook(ctx):
        raise KeyError("nope")

    def define() -> None:
        @cloaca.task(id="t", invokes=graph, post_invocation=hook, retry_attempts=0)
        def t(ctx):
            return ctx

    result = run_workflow(runner, wf_name(), define, {"base": 1})
    assert result.status == "Failed"
    assert result.task_results[0]["error_message"].startswith("post_invocation callback failed: KeyError")


def test_on_success_runs_after_the_graph(runner, wf_name) -> None:
    graph = scorer()
    seen: list[Any] = []

    def define() -> None:
        @cloaca.task(id="t", invokes=graph, on_success=lambda task_id, ctx: seen.append(ctx.get("score")))
        def t(ctx):
            return ctx

    run_workflow(runner, wf_name(), define, {"base": 4})
    assert seen == [{"score": 5}]


# ------------------------------------------------------------------ decoration time
def valid_task() -> None:
    """A valid task, so that the workflow whose bad declaration was refused still builds."""
    @cloaca.task(id="valid")
    def valid(ctx):
        return ctx


def test_post_invocation_without_invokes_errors(wf_name) -> None:
    with cloaca.WorkflowBuilder(wf_name()):
        with pytest.raises(ValueError, match="post_invocation"):
            @cloaca.task(id="t", post_invocation=lambda ctx: ctx)
            def t(ctx):
                return ctx
        valid_task()


def test_invokes_unregistered_graph_errors(wf_name) -> None:
    pending = cloaca.ComputationGraphBuilder(unique_name("graph"), graph={"a": {}})
    with cloaca.WorkflowBuilder(wf_name()):
        with pytest.raises(ValueError, match="not registered"):
            @cloaca.task(id="t", invokes=pending)
            def t(ctx):
                return ctx
        valid_task()


def test_invokes_reactor_triggered_graph_errors(wf_name) -> None:
    @cloaca.reactor(name=unique_name("reactor"), accumulators=["feed"])
    class Feed:
        pass

    bound = cloaca.ComputationGraphBuilder(unique_name("graph"), graph={"a": {"inputs": ["feed"]}},
                                           reactor=Feed)
    with bound:
        @cloaca.node
        def a(feed):
            return feed

    with cloaca.WorkflowBuilder(wf_name()):
        with pytest.raises(ValueError, match="reactor-triggered"):
            @cloaca.task(id="t", invokes=bound)
            def t(ctx):
                return ctx
        valid_task()


def test_invokes_without_a_name_errors(wf_name) -> None:
    with cloaca.WorkflowBuilder(wf_name()):
        with pytest.raises(ValueError, match="expected a ComputationGraphBuilder instance"):
            @cloaca.task(id="t", invokes=object())
            def t(ctx):
                return ctx
        valid_task()


def test_invokes_is_checked_after_the_workflow_scope() -> None:
    with pytest.raises(ValueError, match="No workflow context"):
        @cloaca.task(id="t", post_invocation=lambda ctx: ctx)
        def t(ctx):
            return ctx


def test_a_graph_slower_than_the_task_timeout_fails_the_attempt(runner_factory, wf_name) -> None:
    release = threading.Event()

    def slow(ctx):
        release.wait(10)
        return "late"

    graph = trigger_less({"slow": {}}, slow)
    name = wf_name()
    with cloaca.WorkflowBuilder(name):
        @cloaca.task(id="t", invokes=graph, retry_attempts=0)
        def t(ctx):
            return ctx

    try:
        result = runner_factory(task_timeout_seconds=1).execute(name, cloaca.Context())
    finally:
        release.set()
    assert result.status == "Failed"
    assert result.task_results[0]["error_message"] == (
        f"computation graph '{graph.NAME}' invocation timed out after 1s")
