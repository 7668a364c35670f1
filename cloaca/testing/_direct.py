"""Calling user code once, without a runner: one poll of a trigger, one task body."""

from __future__ import annotations

from typing import Any, Union

import anyio.to_thread

from .._context import Context
from .._registry import REGISTRY
from .._task import TaskDefinition, TaskHandle
from .._triggers.definition import TriggerDefinition, TriggerResult
from ._blocking import run_blocking

ContextLike = Union[Context, dict[str, Any], None]


def poll_trigger(name: str) -> TriggerResult:
    """Poll the registered trigger `name` once and return what it decided.

    A trigger returning a bool gives `TriggerResult.fire()` (True) or `TriggerResult.skip()`
    (False), as in a runner; whatever the trigger raises propagates unchanged.
    """
    return run_blocking("poll_trigger", apoll_trigger, name)


async def apoll_trigger(name: str) -> TriggerResult:
    """Async twin of `poll_trigger` (a sync trigger runs in a worker thread)."""
    definition = _trigger(name)
    outcome = await _call_user_code(definition.function, definition.is_async)
    if isinstance(outcome, TriggerResult):
        return outcome
    if isinstance(outcome, bool):
        return TriggerResult.fire() if outcome else TriggerResult.skip()
    raise TypeError(
        f"trigger '{name}' returned {type(outcome).__name__}; "
        "expected a cloaca.TriggerResult or a bool"
    )


def run_task(workflow_name: str, task_id: str, context: ContextLike = None) -> Context:
    """Run the body of task `task_id` of the registered workflow `workflow_name` once.

    The body gets a copy of `context` (a Context, a dict or None for an empty one) and a
    TaskHandle if it asks for one. Returns the Context it returned or, if it returned None,
    the context it was given with its in-place changes. Whatever it raises propagates
    unchanged; no retry, timeout or callback applies.
    """
    return run_blocking("run_task", arun_task, workflow_name, task_id, context)


async def arun_task(workflow_name: str, task_id: str, context: ContextLike = None) -> Context:
    """Async twin of `run_task` (a sync body runs in a worker thread)."""
    definition = _task(workflow_name, task_id)
    given = _context_copy(context)
    args: tuple[Any, ...] = (given,)
    if definition.wants_handle:
        args = (given, TaskHandle._create(_Slot()))
    result = await _call_user_code(definition.function, definition.is_async, *args)
    if result is None:
        return given
    if isinstance(result, Context):
        return result
    raise TypeError(
        f"task '{task_id}' of workflow '{workflow_name}' returned {type(result).__name__}; "
        "expected a cloaca.Context or None"
    )


async def _call_user_code(function: Any, is_async: bool, *args: Any) -> Any:
    if is_async:
        return await function(*args)
    return await anyio.to_thread.run_sync(function, *args)


def _trigger(name: str) -> TriggerDefinition:
    if not isinstance(name, str):
        raise TypeError(f"trigger name must be a str, got {type(name).__name__}")
    definition = REGISTRY.get_trigger(name)
    if definition is None:
        known = ", ".join(sorted(t.name for t in REGISTRY.triggers())) or "none"
        raise ValueError(f"No trigger named '{name}' is registered (registered: {known})")
    if definition.cron is not None:
        raise ValueError(
            f"Trigger '{name}' is a cron trigger ('{definition.cron}'): its function is never "
            "polled; test its schedule with a FakeClock and cloaca_runner instead"
        )
    return definition


def _task(workflow_name: str, task_id: str) -> TaskDefinition:
    workflow = REGISTRY.get_workflow(workflow_name)
    if workflow is None:
        known = ", ".join(sorted(REGISTRY.workflow_names())) or "none"
        raise ValueError(f"No workflow named '{workflow_name}' is registered (registered: {known})")
    tasks = workflow.tasks
    for definition in tasks.values():
        if task_id in (definition.id, definition.full_name):
            return definition
    ids = ", ".join(d.id for d in tasks.values())
    raise ValueError(f"Workflow '{workflow_name}' has no task '{task_id}' (its tasks: {ids})")


def _context_copy(context: ContextLike) -> Context:
    if context is None:
        return Context()
    if isinstance(context, Context):
        return Context(context.to_dict())
    if isinstance(context, dict):
        return Context(context)
    raise TypeError(f"context must be a cloaca.Context, a dict or None, got {type(context).__name__}")


class _Slot:
    """The executor slot of a task run alone: always available, nothing to give back."""

    def __init__(self) -> None:
        self.held = True

    async def release(self) -> None:
        self.held = False

    async def acquire(self) -> None:
        self.held = True
