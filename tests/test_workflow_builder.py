"""Declaring workflows: `@cloaca.task` registration (SPEC §4.2), `WorkflowBuilder` (§2.2),
`Workflow` (§2.3), `register_workflow_constructor` (§2.4) and versioning (§9).

The registry is process-wide, so every workflow here gets a name unique to its test.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import threading

import pytest

import cloaca
from cloaca import Context, TaskHandle, Workflow, WorkflowBuilder, register_workflow_constructor

from shared_runner import module_runner  # noqa: F401 - the module's `runner`


def ns(workflow: str, task_id: str) -> str:
    return f"public::embedded::{workflow}::{task_id}"


def task_names(result) -> set[str]:
    return {r["task_namespace"] for r in result.task_results}


def define_diamond(name: str) -> None:
    """top -> (left, right) -> bottom, registered under `name`."""
    with WorkflowBuilder(name):

        @cloaca.task()
        def top(context):
            return context

        @cloaca.task(dependencies=["top"])
        def left(context):
            return context

        @cloaca.task(dependencies=["top"])
        def right(context):
            return context

        @cloaca.task(dependencies=["left", "right"])
        def bottom(context):
            return context


def build_diamond(name: str, description: str = "", **tags: str) -> Workflow:
    """A Workflow object of the diamond registered under `name` (built, not registered)."""
    builder = WorkflowBuilder(name)
    if description:
        builder.description(description)
    for key, value in tags.items():
        builder.tag(key, value)
    for task_id in ("top", "left", "right", "bottom"):
        builder.add_task(task_id)
    return builder.build()


# ====================================================================== @task (§4.2)
def test_task_outside_a_workflow_scope_is_refused():
    def orphan(context):
        return context

    with pytest.raises(ValueError, match="No workflow context available"):
        cloaca.task()(orphan)


def test_task_on_another_thread_than_the_open_block_is_refused(wf_name):
    errors: list[BaseException] = []

    def declare_elsewhere() -> None:
        try:
            cloaca.task()(lambda context: context)
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            errors.append(exc)

    with WorkflowBuilder(wf_name()):

        @cloaca.task()
        def anchor(context):
            return context

        worker = threading.Thread(target=declare_elsewhere)
        worker.start()
        worker.join()

    assert len(errors) == 1
    assert isinstance(errors[0], ValueError)
    assert "No workflow context available" in str(errors[0])


def test_bare_task_decorator_without_call_is_a_type_error(wf_name):
    with WorkflowBuilder(wf_name()):

        @cloaca.task()
        def anchor(context):
            return context

        with pytest.raises(TypeError):

            @cloaca.task  # not called: upstream raises TypeError
            def bare(context):
                return context


def test_decorated_function_is_returned_unchanged_and_stays_callable(wf_name):
    def double(context):
        context.set("n", context.get("n") * 2)
        return context

    def with_handle(context, handle):
        context.set("handle_was", handle)
        return context

    with WorkflowBuilder(wf_name()):
        decorated = cloaca.task()(double)
        decorated_handle = cloaca.task()(with_handle)

    assert decorated is double
    assert decorated_handle is with_handle
    assert decorated(Context({"n": 21})).get("n") == 42
    assert decorated_handle(Context(), None).get("handle_was", "missing") is None


def test_id_defaults_to_the_function_name_and_can_be_overridden(wf_name):
    name = wf_name()
    with WorkflowBuilder(name):

        @cloaca.task()
        def default_named(context):
            return context

        @cloaca.task(id="explicit_id", dependencies=["default_named"])
        def some_function(context):
            return context

    builder = WorkflowBuilder(name)
    builder.add_task("default_named")
    builder.add_task("explicit_id")
    with pytest.raises(ValueError, match="not found in registry"):
        builder.add_task("some_function")
    assert builder.build().topological_sort() == [ns(name, "default_named"), ns(name, "explicit_id")]


def test_function_references_as_dependencies(wf_name):
    name = wf_name()
    with WorkflowBuilder(name):

        @cloaca.task()
        def extract(context):
            return context

        @cloaca.task()
        def load_config(context):
            return context

        @cloaca.task(dependencies=[extract, "load_config"])
        def combine(context):
            return context

    workflow = build_from(name, "extract", "load_config", "combine")
    assert workflow.get_roots() == [ns(name, "extract"), ns(name, "load_config")]
    assert workflow.topological_sort()[-1] == ns(name, "combine")


def test_function_dependency_uses_the_function_name_not_its_id(wf_name):
    # [QUIRK] kept: a function reference names the function, not the id it was registered under.
    name = wf_name()
    with pytest.raises(ValueError, match="Workflow validation failed") as info:
        with WorkflowBuilder(name):

            @cloaca.task(id="renamed")
            def original_function(context):
                return context

            @cloaca.task(dependencies=[original_function])
            def child(context):
                return context

    assert "original_function" in str(info.value)


@pytest.mark.parametrize("bad", [123, None, 4.5])
def test_dependency_that_is_neither_str_nor_function_is_refused(wf_name, bad):
    with WorkflowBuilder(wf_name()):

        @cloaca.task()
        def anchor(context):
            return context

        with pytest.raises(ValueError, match="Dependency 1 must be either a string or a function"):

            @cloaca.task(dependencies=["anchor", bad])
            def child(context):
                return context


def handle_probe(name: str):
    """A workflow whose tasks record what they received as second argument."""
    seen: dict[str, object] = {}
    with WorkflowBuilder(name):

        @cloaca.task()
        def named_handle(context, handle):
            seen["named_handle"] = handle
            return context

        @cloaca.task()
        def named_task_handle(context, task_handle):
            seen["named_task_handle"] = task_handle
            return context

        @cloaca.task()
        def other_second_param(context, extra="default"):
            seen["other_second_param"] = extra
            return context

        @cloaca.task()
        def handle_as_third(context, extra="default", handle="default"):
            seen["handle_as_third"] = (extra, handle)
            return context

        @cloaca.task()
        def context_only(context):
            seen["context_only"] = True
            return context

    return seen


def test_handle_is_injected_only_when_the_second_parameter_is_named_handle(runner, wf_name):
    name = wf_name()
    seen = handle_probe(name)
    result = runner.execute(name, Context())
    assert result.status == "Completed", result.error_message
    assert isinstance(seen["named_handle"], TaskHandle)
    assert isinstance(seen["named_task_handle"], TaskHandle)
    assert seen["other_second_param"] == "default"
    assert seen["handle_as_third"] == ("default", "default")
    assert seen["context_only"] is True


def test_two_tasks_with_one_id_in_one_block_are_a_value_error(wf_name):
    """SPEC A10 overrides §4.2's silent replacement within one workflow block."""
    name = wf_name()
    with pytest.raises(ValueError, match=f"Duplicate task id 'step' in workflow '{name}'"):
        with WorkflowBuilder(name):

            @cloaca.task(id="step")
            def first_version(context):
                return context

            @cloaca.task(id="step")
            def second_version(context):
                return context


def test_redeclaring_a_workflow_replaces_its_tasks_and_warns(runner, wf_name, caplog):
    name = wf_name()
    for version in (1, 2):
        with WorkflowBuilder(name):

            def make(version: int):
                def step(context):
                    context.set("version", version)
                    return context

                return step

            cloaca.task(id="step")(make(version))
    result = runner.execute(name, Context())
    assert result.status == "Completed"
    assert result.final_context.get("version") == 2
    assert len(result.task_results) == 1
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and name in r.getMessage()]
    assert len(warnings) == 1 and "declared again" in warnings[0].getMessage()


# ====================================================================== WorkflowBuilder (§2.2)
def build_from(name: str, *task_ids: str) -> Workflow:
    builder = WorkflowBuilder(name)
    for task_id in task_ids:
        builder.add_task(task_id)
    return builder.build()


def test_builder_description_and_tag_return_none_and_show_in_the_workflow(wf_name):
    name = wf_name()
    define_diamond(name)
    builder = WorkflowBuilder(name)
    assert builder.description("a diamond") is None
    assert builder.tag("team", "data") is None
    builder.add_task("top")
    workflow = builder.build()
    assert workflow.description == "a diamond"
    assert workflow.name == name


def test_add_task_by_id_and_by_function(wf_name):
    name = wf_name()
    with WorkflowBuilder(name):

        @cloaca.task()
        def first(context):
            return context

        @cloaca.task(dependencies=[first])
        def second(context):
            return context

    builder = WorkflowBuilder(name)
    builder.add_task(first)
    builder.add_task("second")
    assert builder.build().topological_sort() == [ns(name, "first"), ns(name, "second")]


def test_add_task_unknown_id_is_not_found_in_registry(wf_name):
    builder = WorkflowBuilder(wf_name())
    with pytest.raises(ValueError, match="not found in registry"):
        builder.add_task("no_such_task")

    def unregistered_function(context):
        return context

    with pytest.raises(ValueError, match="not found in registry"):
        builder.add_task(unregistered_function)


@pytest.mark.parametrize("bad", [123, 4.5, object()])
def test_add_task_of_something_without_a_name(wf_name, bad):
    with pytest.raises(ValueError, match="string task ID or a function object"):
        WorkflowBuilder(wf_name()).add_task(bad)


def test_add_task_twice_is_a_duplicate(wf_name):
    name = wf_name()
    define_diamond(name)
    builder = WorkflowBuilder(name)
    builder.add_task("top")
    with pytest.raises(ValueError, match="Failed to add task: Duplicate task"):
        builder.add_task("top")


def test_add_task_looks_in_the_builders_own_namespace(wf_name):
    name, other = wf_name("a"), wf_name("b")
    define_diamond(name)
    with pytest.raises(ValueError, match="not found in registry"):
        WorkflowBuilder(other).add_task("top")


def test_build_of_an_empty_builder(wf_name):
    with pytest.raises(ValueError) as info:
        WorkflowBuilder(wf_name()).build()
    message = str(info.value)
    assert message.startswith("Failed to build workflow: ")
    assert "Workflow cannot be empty" in message


def test_build_with_a_missing_dependency_names_it(wf_name):
    name = wf_name()
    with WorkflowBuilder(name):

        @cloaca.task()
        def parent_task_xyz(context):
            return context

        @cloaca.task(dependencies=["parent_task_xyz"])
        def child_task(context):
            return context

    builder = WorkflowBuilder(name)
    builder.add_task("child_task")  # its dependency is not added
    with pytest.raises(ValueError) as info:
        builder.build()
    assert str(info.value).startswith("Failed to build workflow: ")
    assert "parent_task_xyz" in str(info.value)


def test_exit_with_a_missing_dependency_names_it(wf_name):
    with pytest.raises(ValueError) as info:
        with WorkflowBuilder(wf_name()):

            @cloaca.task(dependencies=["ghost_dependency"])
            def lonely(context):
                return context

    assert str(info.value).startswith("Workflow validation failed: ")
    assert "ghost_dependency" in str(info.value)


def define_cycle(name: str) -> None:
    with WorkflowBuilder(name):

        @cloaca.task(dependencies=["cyc_gamma"])
        def cyc_alpha(context):
            return context

        @cloaca.task(dependencies=["cyc_alpha"])
        def cyc_beta(context):
            return context

        @cloaca.task(dependencies=["cyc_beta"])
        def cyc_gamma(context):
            return context

        @cloaca.task()
        def cyc_free(context):
            return context


def assert_names_the_cycle(message: str) -> None:
    assert re.search("cycl|circular", message, re.IGNORECASE), message
    for task_id in ("cyc_alpha", "cyc_beta", "cyc_gamma"):
        assert task_id in message


def test_exit_with_a_cycle_says_cycle_and_names_the_tasks(runner, wf_name):
    name = wf_name()
    with pytest.raises(ValueError) as info:
        define_cycle(name)
    assert str(info.value).startswith("Workflow validation failed: ")
    assert_names_the_cycle(str(info.value))
    with pytest.raises(ValueError, match="Workflow not found in registry"):
        runner.execute(name, Context())


def test_build_with_a_cycle_says_cycle_and_names_the_tasks(wf_name):
    name = wf_name()
    with pytest.raises(ValueError):
        define_cycle(name)  # the tasks stay registered; the workflow does not
    with pytest.raises(ValueError) as info:
        build_from(name, "cyc_alpha", "cyc_beta", "cyc_gamma", "cyc_free")
    assert str(info.value).startswith("Failed to build workflow: ")
    assert_names_the_cycle(str(info.value))


def test_self_dependency_is_a_cycle(wf_name):
    with pytest.raises(ValueError) as info:
        with WorkflowBuilder(wf_name()):

            @cloaca.task(dependencies=["narcissus"])
            def narcissus(context):
                return context

    assert re.search("cycl|circular", str(info.value), re.IGNORECASE)
    assert "narcissus" in str(info.value)


def test_exit_of_an_empty_block(wf_name):
    with pytest.raises(ValueError) as info:
        with WorkflowBuilder(wf_name()):
            pass
    assert str(info.value).startswith("Workflow validation failed: ")
    assert "Workflow cannot be empty" in str(info.value)


def test_exit_registers_the_workflow(runner, wf_name):
    name = wf_name()
    with WorkflowBuilder(name) as builder:
        assert isinstance(builder, WorkflowBuilder)

        @cloaca.task()
        def only(context):
            context.set("ran", True)
            return context

    result = runner.execute(name, Context())
    assert result.status == "Completed"
    assert result.final_context.get("ran") is True


def test_registration_is_seen_by_a_runner_created_earlier(runner, wf_name):
    name = wf_name()
    with pytest.raises(ValueError, match="Workflow not found in registry"):
        runner.execute(name, Context())
    define_diamond(name)
    assert runner.execute(name, Context()).status == "Completed"


def test_exit_pops_the_scope_even_when_the_block_raises(wf_name):
    class Boom(Exception):
        pass

    with pytest.raises(Boom):  # the block's own exception propagates, not suppressed
        with WorkflowBuilder(wf_name()):
            raise Boom()

    with pytest.raises(ValueError, match="No workflow context available"):
        cloaca.task()(lambda context: context)


def test_exit_still_registers_when_the_block_raised(runner, wf_name):
    # SPEC §2.2: __exit__ always runs its steps, registration included, and re-raises.
    name = wf_name()
    with pytest.raises(RuntimeError, match="after the task"):
        with WorkflowBuilder(name):

            @cloaca.task()
            def declared_before_the_error(context):
                context.set("ran", True)
                return context

            raise RuntimeError("after the task")

    assert runner.execute(name, Context()).final_context.get("ran") is True


def test_a_second_block_replaces_the_registration(runner, wf_name):
    name = wf_name()
    with WorkflowBuilder(name):

        @cloaca.task(id="step")
        def old_body(context):
            context.set("generation", "old")
            return context

    assert runner.execute(name, Context()).final_context.get("generation") == "old"

    with WorkflowBuilder(name):

        @cloaca.task(id="step")
        def new_body(context):
            context.set("generation", "new")
            return context

    result = runner.execute(name, Context())
    assert result.final_context.get("generation") == "new"


def test_tasks_left_over_from_an_earlier_block_are_included(runner, wf_name):
    # [QUIRK] kept: __exit__ takes every task registered in the namespace.
    name = wf_name()
    with WorkflowBuilder(name):

        @cloaca.task()
        def from_first_block(context):
            context.set("first", True)
            return context

    with WorkflowBuilder(name):

        @cloaca.task()
        def from_second_block(context):
            context.set("second", True)
            return context

    result = runner.execute(name, Context())
    assert result.status == "Completed"
    assert task_names(result) == {ns(name, "from_first_block"), ns(name, "from_second_block")}


def test_exit_ignores_add_task_and_build_registers_nothing(runner, wf_name):
    name = wf_name()
    define_diamond(name)
    partial = build_from(name, "top")  # built, not registered
    assert repr(partial) == f"Workflow(name='{name}', tasks=1)"
    result = runner.execute(name, Context())
    assert len(result.task_results) == 4


def test_builder_repr(wf_name):
    name = wf_name()
    assert repr(WorkflowBuilder(name)) == f"WorkflowBuilder(name='{name}')"


def test_builder_with_explicit_tenant_package_and_workflow(runner, wf_name):
    name, workflow_id = wf_name("name"), wf_name("id")
    with WorkflowBuilder(name, tenant="acme", package="pkg", workflow=workflow_id):

        @cloaca.task()
        def scoped(context):
            context.set("scoped", True)
            return context

    result = runner.execute(workflow_id, Context())  # registered under the workflow id
    assert result.status == "Completed"
    assert task_names(result) == {f"acme::pkg::{workflow_id}::scoped"}


# ====================================================================== Workflow (§2.3)
def test_workflow_properties_and_graph_queries(wf_name):
    name = wf_name()
    define_diamond(name)
    workflow = build_diamond(name, "four tasks")
    assert workflow.name == name
    assert workflow.description == "four tasks"
    assert re.fullmatch(r"[0-9a-f]{16}", workflow.version)
    order = workflow.topological_sort()
    assert sorted(order) == sorted(ns(name, t) for t in ("top", "left", "right", "bottom"))
    assert order[0] == ns(name, "top") and order[-1] == ns(name, "bottom")
    levels = workflow.get_execution_levels()
    assert [sorted(level) for level in levels] == [
        [ns(name, "top")],
        sorted([ns(name, "left"), ns(name, "right")]),
        [ns(name, "bottom")],
    ]
    assert workflow.get_roots() == [ns(name, "top")]
    assert workflow.get_leaves() == [ns(name, "bottom")]
    assert workflow.validate() is None
    assert repr(workflow) == f"Workflow(name='{name}', tasks=4)"


def test_workflow_description_defaults_to_empty(wf_name):
    name = wf_name()
    define_diamond(name)
    assert build_diamond(name).description == ""


def test_topological_sort_respects_every_dependency(wf_name):
    name = wf_name()
    with WorkflowBuilder(name):
        # declared in an order that is not a valid execution order
        @cloaca.task(dependencies=["t_mid", "t_root"])
        def t_last(context):
            return context

        @cloaca.task(dependencies=["t_root"])
        def t_mid(context):
            return context

        @cloaca.task()
        def t_root(context):
            return context

        @cloaca.task()
        def t_lone(context):
            return context

    workflow = build_from(name, "t_last", "t_mid", "t_root", "t_lone")
    order = workflow.topological_sort()
    position = {task: i for i, task in enumerate(order)}
    assert position[ns(name, "t_root")] < position[ns(name, "t_mid")] < position[ns(name, "t_last")]
    assert sorted(workflow.get_roots()) == sorted([ns(name, "t_root"), ns(name, "t_lone")])
    assert sorted(workflow.get_leaves()) == sorted([ns(name, "t_last"), ns(name, "t_lone")])
    assert len(workflow.get_execution_levels()) == 3


def test_workflow_has_no_public_constructor():
    with pytest.raises(TypeError):
        Workflow()
    with pytest.raises(TypeError):
        Workflow("name")


# ====================================================================== versioning (§9)
def test_identical_workflows_share_a_version(wf_name):
    name = wf_name()
    define_diamond(name)
    first = build_diamond(name, "same", team="data", tier="gold")
    second = build_diamond(name, "same", tier="gold", team="data")
    assert first.version == second.version


def test_description_tag_and_task_set_change_the_version(wf_name):
    name = wf_name()
    define_diamond(name)
    base = build_diamond(name, "original", team="data").version
    assert build_diamond(name, "changed", team="data").version != base
    assert build_diamond(name, "original", team="ops").version != base
    assert build_diamond(name, "original", team="data", extra="x").version != base
    fewer = WorkflowBuilder(name)
    fewer.description("original")
    fewer.tag("team", "data")
    fewer.add_task("top")
    assert fewer.build().version != base


def test_version_ignores_task_bodies_and_retry_options(wf_name):
    name = wf_name()
    with WorkflowBuilder(name):

        @cloaca.task(id="only")
        def body_one(context):
            return context

    before = build_from(name, "only").version
    with WorkflowBuilder(name):

        @cloaca.task(id="only", retry_attempts=7, retry_delay_ms=5)
        def body_two(context):
            context.set("different", True)
            return context

    assert build_from(name, "only").version == before


def test_version_is_stable_across_processes(wf_name):
    name = wf_name()
    define_diamond(name)
    here = build_diamond(name, "cross-process", team="data").version
    script = textwrap.dedent(
        f"""
        import cloaca
        from cloaca import WorkflowBuilder
        name = {name!r}
        with WorkflowBuilder(name):
            @cloaca.task()
            def top(context): return context
            @cloaca.task(dependencies=["top"])
            def left(context): return context
            @cloaca.task(dependencies=["top"])
            def right(context): return context
            @cloaca.task(dependencies=["left", "right"])
            def bottom(context): return context
        builder = WorkflowBuilder(name)
        builder.description("cross-process")
        builder.tag("team", "data")
        for task_id in ("bottom", "right", "left", "top"):
            builder.add_task(task_id)
        print(builder.build().version)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == here


def test_same_task_ids_in_two_workflows_do_not_collide(runner, wf_name):
    first, second = wf_name("v1"), wf_name("v2")
    with WorkflowBuilder(first):

        @cloaca.task()
        def version_test_task_1(context):
            context.set("from", "first")
            return context

    with WorkflowBuilder(second):

        @cloaca.task()
        def version_test_task_1(context):  # noqa: F811 - same id, other workflow
            context.set("from", "second")
            return context

        @cloaca.task(dependencies=["version_test_task_1"])
        def version_test_task_2(context):
            context.set("second_step", True)
            return context

    one = runner.execute(first, Context())
    two = runner.execute(second, Context())
    assert one.final_context.to_dict() == {"from": "first"}
    assert two.final_context.to_dict() == {"from": "second", "second_step": True}
    assert task_names(one) == {ns(first, "version_test_task_1")}
    assert len(two.task_results) == 2


# ====================================================================== register_workflow_constructor (§2.4)
def test_constructor_is_called_once_and_registered_under_the_given_name(runner, wf_name):
    name, alias = wf_name("def"), wf_name("alias")
    define_diamond(name)
    calls: list[int] = []

    def construct() -> Workflow:
        calls.append(1)
        return build_diamond(name)

    assert register_workflow_constructor(alias, construct) is None
    assert calls == [1]  # once, immediately
    result = runner.execute(alias, Context())
    assert result.status == "Completed"
    assert len(result.task_results) == 4
    assert calls == [1]  # executing does not call it again


def test_constructor_registration_replaces_a_previous_one(runner, wf_name):
    name, alias = wf_name("def"), wf_name("alias")
    define_diamond(name)
    register_workflow_constructor(alias, lambda: build_diamond(name))
    register_workflow_constructor(alias, lambda: build_from(name, "top"))
    assert len(runner.execute(alias, Context()).task_results) == 1


def test_constructor_returning_something_else(wf_name):
    with pytest.raises(ValueError, match="Failed to extract workflow from constructor"):
        register_workflow_constructor(wf_name(), lambda: "not a workflow")


def test_constructor_raising(wf_name):
    def broken() -> Workflow:
        raise RuntimeError("constructor exploded")

    with pytest.raises(ValueError, match="Failed to call workflow constructor") as info:
        register_workflow_constructor(wf_name(), broken)
    assert "constructor exploded" in str(info.value)


def test_failed_constructor_registers_nothing(runner, wf_name):
    alias = wf_name()
    with pytest.raises(ValueError):
        register_workflow_constructor(alias, lambda: None)
    with pytest.raises(ValueError, match="Workflow not found in registry"):
        runner.execute(alias, Context())
