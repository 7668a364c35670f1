"""`@task(invokes=graph, post_invocation=hook)`: what runs after the task body (C8.2)."""

from __future__ import annotations

import asyncio
import inspect
import json
from typing import Any, Callable, Optional

import anyio
import anyio.to_thread

from .._context import Context, json_copy
from .._secrets import SecretResolver
from .._task import TaskDefinition
from .builder import get_graph
from .execution import GraphError, arun_graph


class InvocationFailed(Exception):
    """The graph or the post-invocation hook failed; the text is the task's error."""


async def invoke_after_body(definition: TaskDefinition, output_json: str, limiter: anyio.CapacityLimiter,
                            secrets: Optional[SecretResolver] = None,
                            timeout: float = 300.0) -> tuple[bool, str, str, bool]:
    """The attempt's outcome once the task's graph and hook ran on the body's output context:
    (ok, output JSON, error text, error is transient), as the executor's attempt returns it.
    The graph and hook together get `timeout` seconds (the task's own timeout)."""
    assert definition.invokes is not None
    try:
        async with asyncio.timeout(timeout):
            data = await invoke_graph(definition.id, definition.invokes, definition.post_invocation,
                                      output_json, limiter,
                                      lambda data: Context._from_trusted(data, secrets))
        return True, json.dumps(data), "", False
    except TimeoutError:
        return (False, "", f"computation graph '{definition.invokes}' invocation timed out after "
                f"{timeout:g}s", True)
    except InvocationFailed as exc:
        return False, "", str(exc), False
    except (TypeError, ValueError) as exc:  # a hook's Context holding non-JSON data
        return False, "", f"post_invocation callback failed: {type(exc).__name__}: {exc}", False


async def invoke_graph(task_id: str, graph_name: str, post_invocation: Optional[Callable[..., Any]],
                       output_json: str, limiter: anyio.CapacityLimiter,
                       make_context: Callable[[dict[str, Any]], Context] = Context._from_trusted,
                       ) -> dict[str, Any]:
    """The task context (JSON text) with the graph's terminal outputs written in, then passed
    through `post_invocation`. `make_context` wraps data for the nodes and the hook."""
    data = json.loads(output_json)
    graph = get_graph(graph_name)
    if graph is None:
        raise InvocationFailed(
            f"task '{task_id}' invokes computation graph '{graph_name}' which is not registered"
        )
    try:
        outputs = await arun_graph(graph, {}, make_context(json.loads(output_json)), limiter)
    except GraphError as exc:
        raise InvocationFailed(f"computation graph '{graph_name}' invocation failed: {exc}") from None
    merged = dict(data)
    merged.update(outputs)
    if post_invocation is None:
        return merged
    try:
        returned = await _call(post_invocation, make_context(json_copy(merged)), limiter)
    except Exception as exc:
        raise InvocationFailed(
            f"post_invocation callback failed: {type(exc).__name__}: {exc}"
        ) from None
    # Only a returned Context replaces the task context; in-place edits are lost (upstream).
    return dict(returned._data_view()) if isinstance(returned, Context) else merged


async def _call(function: Callable[..., Any], context: Context, limiter: anyio.CapacityLimiter) -> Any:
    if inspect.iscoroutinefunction(function):
        return await function(context)
    result = await anyio.to_thread.run_sync(function, context, limiter=limiter)
    if inspect.isawaitable(result):
        result = await result
    return result
