"""`@cloaca.task`: declaring tasks inside a workflow scope, and the `TaskHandle` they may ask for."""

from __future__ import annotations

import inspect
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Optional, Protocol, Sequence, Union

import anyio
import anyio.to_thread

from ._bridge import from_worker_thread
from ._graphs.builder import get_graph
from ._namespace import TaskNamespace, WorkflowContext
from ._registry import REGISTRY
from ._retry import RetryPolicy, policy_from_task_kwargs
from ._rules import normalize_rule, qualify_rule

SuccessCallback = Callable[..., Any]
FailureCallback = Callable[..., Any]
DeferCondition = Callable[[], Union[bool, Awaitable[bool]]]

_HANDLE_PARAM_NAMES = ("handle", "task_handle")


# --------------------------------------------------------------------------------------
# The current workflow scope (pushed by `with WorkflowBuilder(...)`), one stack per thread.

_scope = threading.local()
_scope_holders = 0
_scope_holders_lock = threading.Lock()


def push_scope(context: WorkflowContext) -> None:
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


def pop_scope() -> None:
    """Leave the innermost workflow scope of this thread."""
    global _scope_holders
    _scope.stack.pop()
    _scope.declared.pop()
    with _scope_holders_lock:
        _scope_holders -= 1


def current_scope() -> WorkflowContext:
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
# Definitions


@dataclass(frozen=True)
class TaskDefinition:
    """A registered task: its function and everything the engine needs to run it."""

    namespace: TaskNamespace
    function: Callable[..., Any]
    dependencies: tuple[str, ...]
    retry_policy: RetryPolicy
    trigger_rule: dict[str, Any]
    on_success: Optional[SuccessCallback]
    on_failure: Optional[FailureCallback]
    wants_handle: bool
    is_async: bool
    invokes: Optional[str] = None
    """Name of the trigger-less computation graph run after the body (looked up at each run)."""
    post_invocation: Optional[Callable[..., Any]] = None

    @property
    def id(self) -> str:
        return self.namespace.task_id

    @property
    def full_name(self) -> str:
        return str(self.namespace)


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


class TaskDecorator:
    """What `cloaca.task(...)` returns; calling it on a function registers the task."""

    __slots__ = ("_options",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("TaskDecorator cannot be instantiated directly; use cloaca.task(...)")

    @classmethod
    def _create(cls, options: dict[str, Any]) -> TaskDecorator:
        decorator = object.__new__(cls)
        decorator._options = options
        return decorator

    def __call__(self, function: Callable[..., Any]) -> Callable[..., Any]:
        scope = current_scope()
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
# TaskHandle


class SlotControl(Protocol):
    """What a handle needs from the engine: give back and take again an executor slot."""

    @property
    def held(self) -> bool: ...

    async def release(self) -> None: ...

    async def acquire(self) -> None: ...


class TaskHandle:
    """Execution control handed to tasks whose second parameter is `handle`/`task_handle`."""

    __slots__ = ("_slot", "_consumed", "sub_status")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("TaskHandle cannot be instantiated directly; the runner injects it")

    @classmethod
    def _create(cls, slot: SlotControl) -> TaskHandle:
        handle = object.__new__(cls)
        handle._slot = slot
        handle._consumed = False
        handle.sub_status = "Active"
        return handle

    def _consume(self) -> None:
        self._consumed = True

    def is_slot_held(self) -> bool:
        """Whether the task currently holds an executor slot."""
        return not self._consumed and self._slot.held

    def defer_until(self, condition: Callable[[], bool], poll_interval_ms: int = 1000) -> None:
        """Release the slot, poll `condition` every `poll_interval_ms` until it is True, re-take it.

        For sync task bodies (they run in worker threads). Async bodies use `defer_until_async`.
        """
        self._check_usable(poll_interval_ms)
        try:
            from_worker_thread(self._slot.release)
        except RuntimeError as exc:
            raise ValueError(
                "defer_until failed: call it from a sync task body; async tasks use "
                f"'await handle.defer_until_async(...)' ({exc})"
            ) from None
        self.sub_status = "Deferred"
        try:
            while True:
                time.sleep(poll_interval_ms / 1000)
                if self._consumed:
                    raise ValueError("defer_until failed: TaskHandle has already been consumed")
                if _condition_met(condition):
                    break
        finally:
            from_worker_thread(self._slot.acquire)
            self.sub_status = "Active"

    async def defer_until_async(
        self, condition: DeferCondition, poll_interval_ms: int = 1000
    ) -> None:
        """Awaitable `defer_until` for `async def` tasks; `condition` may be sync or async."""
        self._check_usable(poll_interval_ms)
        await self._slot.release()
        self.sub_status = "Deferred"
        try:
            while True:
                await anyio.sleep(poll_interval_ms / 1000)
                if inspect.iscoroutinefunction(condition):
                    met = await _async_condition_met(condition)
                else:
                    met = await anyio.to_thread.run_sync(_condition_met, condition)
                if met:
                    break
        finally:
            await self._slot.acquire()
            self.sub_status = "Active"

    def _check_usable(self, poll_interval_ms: int) -> None:
        if self._consumed:
            raise ValueError("defer_until failed: TaskHandle has already been consumed")
        if not isinstance(poll_interval_ms, int) or poll_interval_ms < 0:
            raise ValueError(
                f"defer_until failed: poll_interval_ms must be a non-negative int, got {poll_interval_ms!r}"
            )

    def __repr__(self) -> str:
        return f"TaskHandle(sub_status={self.sub_status})"


def _report_condition_error(exc: Exception) -> bool:
    # A broken condition counts as "not yet", as upstream; it is reported, not raised.
    print(f"cloaca: defer_until condition raised {type(exc).__name__}: {exc}", file=sys.stderr)
    return False


def _condition_met(condition: Callable[[], Any]) -> bool:
    try:
        return condition() is True
    except Exception as exc:
        return _report_condition_error(exc)


async def _async_condition_met(condition: Callable[[], Awaitable[Any]]) -> bool:
    try:
        return (await condition()) is True
    except Exception as exc:
        return _report_condition_error(exc)
