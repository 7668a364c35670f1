"""Declaring what the registry holds: `WorkflowBuilder` and the `@task`s of its `with` block,
`register_workflow_constructor`, and `@trigger`.

Each builds a definition (`_task`, `_workflow`, `_triggers.definition`) and lands it in the
process-wide registry; the definitions themselves know nothing of the registry.
"""

from __future__ import annotations

import inspect
import threading
from types import TracebackType
from typing import Any, Callable, Iterable, Optional, Sequence, TypeVar, Union

from ._cron.expression import CronExpression
from ._graphs.builder import get_graph
from ._namespace import DEFAULT_PACKAGE, DEFAULT_TENANT, WorkflowContext
from ._registry import REGISTRY
from ._retry import RetryPolicy, policy_from_task_kwargs
from ._rules import normalize_rule, qualify_rule
from ._sealed import Sealed
from ._task import FailureCallback, SuccessCallback, TaskDefinition
from ._triggers.definition import (
    DEFAULT_POLL_INTERVAL,
    TriggerDefinition,
    parse_duration_ms,
)
from ._workflow import Workflow

_HANDLE_PARAM_NAMES = ("handle", "task_handle")


# --------------------------------------------------------------------------------------
# The current workflow scope (pushed by `with WorkflowBuilder(...)`), one stack per thread.

_scope = threading.local()
_scope_holders = 0
_scope_holders_lock = threading.Lock()


def _push_scope(context: WorkflowContext) -> None:
    """Make `context` the scope in which `@task` registers on this thread."""
    global _scope_holders
    stack = getattr(_scope, "stack", None)
    if stack is None:
        stack = _scope.stack = []
    stack.append(context)
    declared = getattr(_scope, "declared", None)
    if declared is None:
        declared = _scope.declared = []
    declared.append(set())
    with _scope_holders_lock:
        _scope_holders += 1


def _pop_scope() -> None:
    """Leave the innermost workflow scope of this thread."""
    global _scope_holders
    _scope.stack.pop()
    _scope.declared.pop()
    with _scope_holders_lock:
        _scope_holders -= 1


def _current_scope() -> WorkflowContext:
    """The innermost workflow scope of this thread, or a ValueError saying why there is none."""
    stack = getattr(_scope, "stack", None)
    if stack:
        return stack[-1]
    if _scope_holders:
        raise ValueError(
            "No workflow context available on this thread: another thread is inside a "
            "'with cloaca.WorkflowBuilder(...)' block; declare tasks on the thread that opened it"
        )
    raise ValueError(
        "No workflow context available: declare tasks inside a "
        "'with cloaca.WorkflowBuilder(...)' block"
    )


def _declare_once(scope: WorkflowContext, task_id: str) -> None:
    """ValueError if the innermost `with WorkflowBuilder` block already declared `task_id`."""
    declared = _scope.declared[-1]
    if task_id in declared:
        raise ValueError(
            f"Duplicate task id '{task_id}' in workflow '{scope.workflow_id}': two @task "
            "declarations in one workflow must have different ids"
        )
    declared.add(task_id)


# --------------------------------------------------------------------------------------
# Tasks


def _wants_handle(function: Callable[..., Any]) -> bool:
    code = function.__code__
    positional = code.co_varnames[: code.co_argcount]
    return len(positional) >= 2 and positional[1] in _HANDLE_PARAM_NAMES


def _dependency_id(index: int, dependency: Any) -> str:
    if isinstance(dependency, str):
        return dependency
    name = getattr(dependency, "__name__", None)
    if isinstance(name, str):
        return name
    raise ValueError(
        f"Dependency {index} must be either a string or a function object with __name__ attribute"
    )


def _check_callback(option: str, callback: Any) -> None:
    if callback is not None and not callable(callback):
        raise TypeError(f"@cloaca.task({option}=...) must be callable, got {type(callback).__name__}")


def _invoked_graph(invokes: Any, post_invocation: Any) -> Optional[str]:
    """The name of the graph a task invokes, checked now (C8.1); None if it invokes none."""
    if invokes is None:
        if post_invocation is not None:
            raise ValueError("@cloaca.task(post_invocation=...) requires invokes=... (a computation graph)")
        return None
    name = getattr(invokes, "NAME", None)
    if not isinstance(name, str):
        raise ValueError(
            f"@cloaca.task(invokes=...): expected a ComputationGraphBuilder instance, got {invokes!r}"
        )
    graph = get_graph(name)
    if graph is None:
        raise ValueError(
            f"@cloaca.task(invokes=...): computation graph '{name}' is not registered; declare the "
            "task after the graph's 'with ComputationGraphBuilder(...)' block"
        )
    if graph.reactor is not None:
        raise ValueError(
            f"@cloaca.task(invokes=...): computation graph '{name}' is reactor-triggered (bound to "
            f"reactor '{graph.reactor.name}'); a task can only invoke a trigger-less graph"
        )
    return name


D = TypeVar("D", bound="_Decorator")


class _Decorator(Sealed):
    """What a declaring function returns: its options, applied to the function decorated."""

    __slots__ = ("_options",)

    @classmethod
    def _create(cls: type[D], options: dict[str, Any]) -> D:
        decorator = object.__new__(cls)
        decorator._options = options
        return decorator


class TaskDecorator(_Decorator):
    """What `cloaca.task(...)` returns; calling it on a function registers the task."""

    __slots__ = ()
    _how_to_get_one = "use cloaca.task(...)"

    def __call__(self, function: Callable[..., Any]) -> Callable[..., Any]:
        scope = _current_scope()
        options = self._options
        invokes = _invoked_graph(options["invokes"], options["post_invocation"])
        task_id = options["id"] or function.__name__
        _declare_once(scope, task_id)
        prefix = str(scope)
        dependencies = tuple(
            f"{prefix}::{_dependency_id(i, dep)}" for i, dep in enumerate(options["dependencies"])
        )
        definition = TaskDefinition(
            namespace=scope.task_namespace(task_id),
            function=function,
            dependencies=dependencies,
            retry_policy=options["retry_policy"],
            trigger_rule=qualify_rule(options["trigger_rule"], prefix),
            on_success=options["on_success"],
            on_failure=options["on_failure"],
            wants_handle=_wants_handle(function),
            is_async=inspect.iscoroutinefunction(function),
            invokes=invokes,
            post_invocation=options["post_invocation"],
        )
        REGISTRY.register_task(definition)
        return function

    def __repr__(self) -> str:
        return f"TaskDecorator(id={self._options['id']!r})"


def task(
    *,
    id: Optional[str] = None,
    dependencies: Optional[Sequence[Any]] = None,
    retry: Optional[RetryPolicy] = None,
    retry_attempts: Optional[int] = None,
    retry_backoff: Optional[str] = None,
    retry_delay_ms: Optional[int] = None,
    retry_max_delay_ms: Optional[int] = None,
    retry_condition: Optional[str] = None,
    retry_jitter: Optional[bool] = None,
    on_success: Optional[SuccessCallback] = None,
    on_failure: Optional[FailureCallback] = None,
    invokes: Any = None,
    post_invocation: Any = None,
    trigger_rules: Optional[dict[str, Any]] = None,
) -> TaskDecorator:
    """Declare a task of the workflow whose `with WorkflowBuilder(...)` block is open."""
    if id is not None and not isinstance(id, str):
        raise TypeError(f"@cloaca.task(id=...) must be a str, got {type(id).__name__}")
    if dependencies is not None and isinstance(dependencies, (str, bytes)):
        raise TypeError("@cloaca.task(dependencies=...) must be a list of task ids or functions")
    _check_callback("on_success", on_success)
    _check_callback("on_failure", on_failure)
    _check_callback("post_invocation", post_invocation)
    policy = policy_from_task_kwargs(
        retry, retry_attempts, retry_backoff, retry_delay_ms, retry_max_delay_ms,
        retry_condition, retry_jitter,
    )
    rule = normalize_rule(trigger_rules, id or "<task>")
    return TaskDecorator._create(
        {
            "id": id,
            "dependencies": list(dependencies or ()),
            "retry_policy": policy,
            "trigger_rule": rule,
            "on_success": on_success,
            "on_failure": on_failure,
            "invokes": invokes,
            "post_invocation": post_invocation,
        }
    )


# --------------------------------------------------------------------------------------
# Workflows


class WorkflowBuilder:
    """Builds a workflow; used as a context manager it registers the workflow on exit."""

    def __init__(
        self,
        name: str,
        *,
        tenant: Optional[str] = None,
        package: Optional[str] = None,
        workflow: Optional[str] = None,
    ) -> None:
        if not isinstance(name, str):
            raise TypeError(f"WorkflowBuilder name must be a str, got {type(name).__name__}")
        if not name:
            raise ValueError("WorkflowBuilder name cannot be empty")
        self._name = name
        self._context = WorkflowContext(
            tenant or DEFAULT_TENANT, package or DEFAULT_PACKAGE, workflow or name
        )
        self._description = ""
        self._tags: dict[str, str] = {}
        self._added: list[TaskDefinition] = []

    def description(self, text: str) -> None:
        """Set the workflow's description."""
        self._description = text

    def tag(self, key: str, value: str) -> None:
        """Set one tag."""
        self._tags[key] = value

    def add_task(self, task: Union[str, Callable[..., Any]]) -> None:
        """Add an already-registered task of this builder's namespace to what `build()` returns."""
        if isinstance(task, str):
            task_id = task
        else:
            task_id = getattr(task, "__name__", None)
            if not isinstance(task_id, str):
                raise ValueError(
                    "add_task expects a string task ID or a function object with __name__, "
                    f"got {type(task).__name__}"
                )
        namespace = str(self._context.task_namespace(task_id))
        definition = REGISTRY.get_task(namespace)
        if definition is None:
            raise ValueError(f"Task '{task_id}' not found in registry (namespace {namespace})")
        if any(t.full_name == namespace for t in self._added):
            raise ValueError(f"Failed to add task: Duplicate task: {task_id}")
        self._added.append(definition)

    def build(self) -> Workflow:
        """Validate and return a workflow of the tasks added with `add_task` (registers nothing)."""
        try:
            return self._workflow(self._added)
        except ValueError as exc:
            raise ValueError(f"Failed to build workflow: {exc}") from None

    def _workflow(self, tasks: Iterable[TaskDefinition]) -> Workflow:
        return Workflow._create(
            self._context.workflow_id, self._context.tenant_id, self._description, self._tags, tasks
        )

    def __enter__(self) -> WorkflowBuilder:
        _push_scope(self._context)
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        _pop_scope()
        tasks = REGISTRY.tasks_in(str(self._context))
        try:
            workflow = self._workflow(tasks)
        except ValueError as error:
            if exc is None:
                raise ValueError(f"Workflow validation failed: {error}") from None
            return  # the block's own exception propagates
        REGISTRY.register_workflow(self._context.workflow_id, workflow)

    def __repr__(self) -> str:
        return f"WorkflowBuilder(name='{self._name}')"


def register_workflow_constructor(name: str, constructor: Callable[[], Workflow]) -> None:
    """Call `constructor()` once now and register the Workflow it returns under `name`."""
    try:
        workflow = constructor()
    except Exception as exc:
        raise ValueError(f"Failed to call workflow constructor: {type(exc).__name__}: {exc}") from exc
    if not isinstance(workflow, Workflow):
        raise ValueError(
            f"Failed to extract workflow from constructor: it returned {type(workflow).__name__}, "
            "not a Workflow"
        )
    REGISTRY.register_workflow(name, workflow)


# --------------------------------------------------------------------------------------
# Triggers


class TriggerDecorator(_Decorator):
    """What `cloaca.trigger(...)` returns; calling it on a function registers the trigger."""

    __slots__ = ()
    _how_to_get_one = "use cloaca.trigger(...)"

    def __call__(self, function: Callable[[], Any]) -> Callable[[], Any]:
        if not callable(function):
            raise TypeError(f"@cloaca.trigger must decorate a function, got {type(function).__name__}")
        options = dict(self._options)
        options["name"] = options["name"] or function.__name__
        REGISTRY.register_trigger(TriggerDefinition(function=function, **options))
        return function

    def __repr__(self) -> str:
        return f"TriggerDecorator(name={self._options['name']!r}, workflow={self._options['workflow']!r})"


def trigger(
    *,
    name: Optional[str] = None,
    on: Optional[str] = None,
    poll_interval: Optional[str] = None,
    cron: Optional[str] = None,
    timezone: Optional[str] = None,
    allow_concurrent: bool = False,
    workflow: Optional[str] = None,
) -> TriggerDecorator:
    """Declare a trigger that polls the decorated function and fires `workflow` (alias `on`)."""
    if workflow is not None and on is not None and workflow != on:
        raise ValueError(
            f"@cloaca.trigger: 'workflow={workflow!r}' and 'on={on!r}' name different workflows; "
            "give one of them"
        )
    target = workflow if workflow is not None else on
    if name is not None and (not isinstance(name, str) or not name):
        raise ValueError(f"@cloaca.trigger: name must be a non-empty string, got {name!r}")
    if not isinstance(allow_concurrent, bool):
        raise TypeError(f"@cloaca.trigger: allow_concurrent must be a bool, got {allow_concurrent!r}")
    if cron is not None:
        cron, timezone = _validate_cron_form(cron, timezone, poll_interval, target)
        interval_ms = parse_duration_ms(DEFAULT_POLL_INTERVAL)
    else:
        interval_ms = parse_duration_ms(poll_interval if poll_interval is not None else DEFAULT_POLL_INTERVAL)
    return TriggerDecorator._create(
        {
            "name": name,
            "workflow": target,
            "poll_interval_ms": interval_ms,
            "allow_concurrent": allow_concurrent,
            "cron": cron,
            "timezone": timezone,
        }
    )


def _validate_cron_form(
    cron: str, timezone: Optional[str], poll_interval: Optional[str], target: Optional[str]
) -> tuple[str, str]:
    if poll_interval is not None:
        raise ValueError("@cloaca.trigger: cannot set both 'cron' and 'poll_interval'")
    if target is None:
        raise ValueError("@cloaca.trigger: a cron trigger needs the workflow to run ('workflow=' or 'on=')")
    expression = CronExpression.parse(cron, timezone or "UTC")
    return expression.expression, expression.timezone
