"""TaskNamespace and WorkflowContext: SPEC §2.5."""

from __future__ import annotations

import pytest

from cloaca._namespace import TaskNamespace
from cloaca._namespace import WorkflowContext


def ns(task: str = "task", workflow: str = "wf") -> TaskNamespace:
    return TaskNamespace("public", "embedded", workflow, task)


def test_task_namespace_properties() -> None:
    n = TaskNamespace("t", "p", "w", "x")
    assert (n.tenant_id, n.package_name, n.workflow_id, n.task_id) == ("t", "p", "w", "x")


def test_task_namespace_is_read_only() -> None:
    with pytest.raises(AttributeError):
        ns().task_id = "other"  # type: ignore[misc]


def test_task_namespace_rejects_non_str_parts() -> None:
    with pytest.raises(TypeError, match="namespace parts must be str"):
        TaskNamespace("t", "p", "w", 1)  # type: ignore[arg-type]


def test_str_and_repr() -> None:
    assert str(ns()) == "public::embedded::wf::task"
    assert repr(ns()) == "TaskNamespace('public', 'embedded', 'wf', 'task')"


def test_from_string_round_trips() -> None:
    parsed = TaskNamespace.from_string("t::p::w::x")
    assert parsed == TaskNamespace("t", "p", "w", "x")
    assert str(parsed) == "t::p::w::x"


def test_from_string_keeps_empty_parts() -> None:
    assert TaskNamespace.from_string("t::p::w::").task_id == ""


@pytest.mark.parametrize("text", ["", "a", "a::b::c", "a::b::c::d::e", "a:b:c:d"])
def test_from_string_requires_exactly_four_parts(text: str) -> None:
    with pytest.raises(ValueError, match="Invalid namespace format"):
        TaskNamespace.from_string(text)


def test_from_string_rejects_non_str() -> None:
    with pytest.raises(TypeError):
        TaskNamespace.from_string(None)  # type: ignore[arg-type]


def test_parent_has_empty_task_id() -> None:
    assert ns().parent() == TaskNamespace("public", "embedded", "wf", "")


def test_is_child_of() -> None:
    assert ns().is_child_of(ns().parent())
    assert not ns().is_child_of(ns("task", workflow="other").parent())
    assert not ns().is_child_of(ns("other"))  # parent must have no task id
    assert not ns().parent().is_child_of(ns().parent())  # child must have a task id


def test_is_sibling_of() -> None:
    assert ns("a").is_sibling_of(ns("b"))
    assert not ns("a").is_sibling_of(ns("a"))
    assert not ns("a").is_sibling_of(ns("b", workflow="other"))
    assert not ns("a").is_sibling_of(ns("a").parent())
    assert not ns("a").parent().is_sibling_of(ns("b"))


def test_equality_and_hash_by_value() -> None:
    assert ns() == ns()
    assert ns() != ns("other")
    assert hash(ns()) == hash(ns())
    assert len({ns(), ns(), ns("other")}) == 2
    assert ns() != "public::embedded::wf::task"


def test_workflow_context_properties_str_repr() -> None:
    wf = WorkflowContext("t", "p", "w")
    assert (wf.tenant_id, wf.package_name, wf.workflow_id) == ("t", "p", "w")
    assert str(wf) == "t::p::w"
    assert repr(wf) == "WorkflowContext('t', 'p', 'w')"


def test_workflow_context_task_namespace_and_resolve_dependency() -> None:
    wf = WorkflowContext("t", "p", "w")
    assert wf.task_namespace("x") == TaskNamespace("t", "p", "w", "x")
    assert wf.resolve_dependency("y") == TaskNamespace("t", "p", "w", "y")


def test_workflow_context_workflow_namespace() -> None:
    assert WorkflowContext("t", "p", "w").workflow_namespace() == TaskNamespace("t", "p", "w", "")


def test_workflow_context_contains_namespace() -> None:
    wf = WorkflowContext("t", "p", "w")
    assert wf.contains_namespace(TaskNamespace("t", "p", "w", "x"))
    assert wf.contains_namespace(TaskNamespace("t", "p", "w", ""))
    assert not wf.contains_namespace(TaskNamespace("t", "p", "other", "x"))
    assert not wf.contains_namespace(TaskNamespace("other", "p", "w", "x"))


def test_workflow_context_equality_and_hash() -> None:
    assert WorkflowContext("t", "p", "w") == WorkflowContext("t", "p", "w")
    assert WorkflowContext("t", "p", "w") != WorkflowContext("t", "p", "x")
    assert hash(WorkflowContext("t", "p", "w")) == hash(WorkflowContext("t", "p", "w"))
    assert WorkflowContext("t", "p", "w") != TaskNamespace("t", "p", "w", "")


def test_workflow_context_rejects_non_str_parts() -> None:
    with pytest.raises(TypeError, match="namespace parts must be str"):
        WorkflowContext("t", None, "w")  # type: ignore[arg-type]
