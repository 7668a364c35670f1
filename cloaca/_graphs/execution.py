"""Running a computation graph once (C6): order, arguments, routing, skips, errors.

`GraphRun` decides what runs and with which arguments; the drivers only call the nodes:
`run_graph` in the caller's thread, `arun_graph` on the loop (coroutine nodes awaited,
plain ones in worker threads).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Iterator, Optional

import anyio.to_thread

from .._bridge import run_to_completion
from .._context import Context, NotJsonError, json_copy
from .model import Graph

_NOTHING = object()


class GraphError(Exception):
    """A graph run failed; the text names the node and the cause."""


class GraphRun:
    """The state of one run: what each node delivered, which terminals produced what."""

    def __init__(self, graph: Graph, cache: dict[str, Any], context: Optional[Context]) -> None:
        self.graph = graph
        self.cache = cache
        self.context = context
        self.delivered: dict[str, Any] = {}  # linear node -> its return value
        self.selected: dict[str, tuple[str, Any]] = {}  # routing node -> (variant, payload)
        self.outputs: list[tuple[str, Any]] = []

    def steps(self) -> Iterator[tuple[str, Callable[..., Any], tuple[Any, ...]]]:
        """The nodes to call, in order, with their arguments; `record` each result before
        asking for the next (skips depend on it)."""
        for name in self.graph.order:
            if name not in self.graph.nodes:
                raise GraphError(f"node '{name}' not found in topology of graph '{self.graph.name}'")
            arguments = self._arguments(name)
            if arguments is not None:
                yield name, self.graph.functions[name], arguments

    def _arguments(self, name: str) -> Optional[tuple[Any, ...]]:
        """The node's positional arguments, or None if it is skipped."""
        incoming = self.graph.incoming.get(name, [])
        from_edges: list[Any] = []
        for edge in incoming:
            if edge.variant is None:
                value = self.delivered.get(edge.source, _NOTHING)
            else:
                selection = self.selected.get(edge.source)
                if selection is None:
                    continue
                if selection[0] != edge.variant:
                    return None  # its router chose another branch
                value = selection[1]
            if value is not _NOTHING:
                from_edges.append(value)
        if incoming and not from_edges:
            return None  # everything feeding it was skipped
        spec = self.graph.nodes[name]
        if self.context is not None and not incoming and not spec.inputs:
            return _context_arguments(self.graph.functions[name], self.context)
        return tuple(self.cache.get(source) for source in spec.inputs) + tuple(from_edges)

    def record(self, name: str, result: Any) -> None:
        """Take node `name`'s return value according to its kind."""
        spec = self.graph.nodes[name]
        if spec.kind == "routing":
            self.selected[name] = _route(name, result)
        elif spec.kind == "linear":
            self.delivered[name] = result
        else:
            try:
                self.outputs.append((name, json_copy(result)))
            except NotJsonError as exc:
                raise GraphError(f"terminal '{name}' result conversion failed: {exc.reason}") from None


def _context_arguments(function: Callable[..., Any], context: Context) -> tuple[Any, ...]:
    """A root of a trigger-less graph gets the Context, unless it takes no argument at all."""
    try:
        inspect.signature(function).bind(context)
    except TypeError:
        return ()
    except ValueError:  # no signature available (some builtins)
        pass
    return (context,)


def _route(name: str, result: Any) -> tuple[str, Any]:
    where = f"routing node '{name}'"
    if not isinstance(result, tuple):
        raise GraphError(
            f"{where} must return a (variant_name, value) tuple, got {type(result).__name__}"
        )
    if len(result) != 2:
        raise GraphError(f"{where} returned tuple of length {len(result)}, expected 2")
    if not isinstance(result[0], str):
        raise GraphError(f"{where} returned a tuple whose first element must be a string")
    return result[0], result[1]


def _failed(name: str, exc: BaseException) -> GraphError:
    return GraphError(f"node '{name}' failed: {type(exc).__name__}: {exc}")


def run_graph(graph: Graph, cache: dict[str, Any], context: Optional[Context] = None) -> list[tuple[str, Any]]:
    """Run `graph` in this thread; the (terminal, JSON value) pairs in execution order."""
    run = GraphRun(graph, cache, context)
    for name, function, arguments in run.steps():
        try:
            result = function(*arguments)
            if inspect.iscoroutine(result):
                result = run_to_completion(_returning(result))
        except Exception as exc:
            raise _failed(name, exc) from exc
        run.record(name, result)
    return run.outputs


async def arun_graph(graph: Graph, cache: dict[str, Any], context: Optional[Context] = None,
                     limiter: Optional[anyio.CapacityLimiter] = None) -> list[tuple[str, Any]]:
    """Run `graph` on the loop: coroutine nodes awaited, plain nodes in worker threads."""
    run = GraphRun(graph, cache, context)
    for name, function, arguments in run.steps():
        try:
            if inspect.iscoroutinefunction(function):
                result = await function(*arguments)
            else:
                # abandoned on cancel, like task bodies: a timed-out run does not wait for it
                result = await anyio.to_thread.run_sync(function, *arguments, limiter=limiter,
                                                        abandon_on_cancel=True)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            raise _failed(name, exc) from exc
        run.record(name, result)
    return run.outputs


def _returning(awaitable: Any) -> Callable[[], Any]:
    """A coroutine function that awaits `awaitable` (a sync node returned a coroutine)."""

    async def wait() -> Any:
        return await awaitable

    return wait
