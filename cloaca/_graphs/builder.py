"""`ComputationGraphBuilder` and `@cloaca.node`: declaring, validating and registering graphs (C4, C5, C7)."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any, Callable, Optional, TypeVar

from .._context import Context, NotJsonError, json_copy
from .execution import GraphError, arun_graph, run_graph
from .model import Graph, NodeSpec, ReactorBinding, parse_topology

F = TypeVar("F", bound=Callable[..., Any])

_lock = threading.Lock()
_graphs: dict[str, Graph] = {}
# The builder whose `with` block is open and the nodes staged in it: one slot, not a stack
# (nesting builders is unsupported, as upstream).
_active: Optional["ComputationGraphBuilder"] = None
_staged: dict[str, Callable[..., Any]] = {}


def get_graph(name: str) -> Optional[Graph]:
    """The graph registered under `name`, if any."""
    with _lock:
        return _graphs.get(name)


def registered_graphs() -> list[Graph]:
    with _lock:
        return list(_graphs.values())


def node(function: F) -> F:
    """Declare a node of the `ComputationGraphBuilder` whose `with` block is open."""
    with _lock:
        if _active is None:
            raise ValueError(
                "@cloaca.node must be used inside a ComputationGraphBuilder context manager"
            )
        _staged[function.__name__] = function
    return function


class ComputationGraphBuilder:
    """Declares a computation graph: `with ComputationGraphBuilder(name, graph={...}):` + `@node`s."""

    def __init__(self, name: str, *, graph: dict[str, Any], reactor: Any = None,
                 react: Any = None) -> None:
        if react is not None:
            raise ValueError(
                "CLOACI-I-0101: ComputationGraphBuilder(react=...) is retired; declare the reactor "
                "with @cloaca.reactor and pass the class as reactor=..., or omit it for a "
                "trigger-less graph"
            )
        if not isinstance(name, str) or not name:
            raise TypeError(f"ComputationGraphBuilder: name must be a non-empty str, got {name!r}")
        self._name = name
        self._reactor = _reactor_binding(reactor) if reactor is not None else None
        self._nodes = parse_topology(name, graph)

    @property
    def NAME(self) -> str:  # noqa: N802 - the attribute upstream's @task(invokes=) reads
        """The graph's name."""
        return self._name

    def __repr__(self) -> str:
        return f"ComputationGraphBuilder(name='{self._name}', nodes={len(self._nodes)})"

    def __enter__(self) -> ComputationGraphBuilder:
        global _active
        with _lock:
            _active = self
            _staged.clear()
        return self

    def __exit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> bool:
        global _active
        with _lock:
            _active = None
            staged = dict(_staged)
            _staged.clear()
        if exc_type is not None:
            return False  # let the body's own error through; nothing is registered
        graph = Graph(self._name, self._nodes, self._validated_functions(staged), self._reactor)
        with _lock:
            _graphs[self._name] = graph
        return False

    def _validated_functions(self, staged: dict[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
        where = f"computation graph '{self._name}'"
        for name in self._nodes:
            if name not in staged:
                raise AttributeError(
                    f"{where}: node '{name}' is in the topology but no @cloaca.node function "
                    f"named '{name}' was defined in its with block"
                )
        for name in staged:
            if name not in self._nodes:
                raise ValueError(
                    f"{where}: @cloaca.node function '{name}' is not a node of the topology"
                )
        for spec in self._nodes.values():
            self._check_inputs(where, spec)
        return {name: staged[name] for name in self._nodes}

    def _check_inputs(self, where: str, spec: NodeSpec) -> None:
        if self._reactor is None:
            if spec.inputs:
                raise ValueError(
                    f"{where}: node '{spec.name}' declares inputs {list(spec.inputs)}, but the graph "
                    "is trigger-less (no reactor=); a trigger-less graph has no accumulator cache"
                )
            return
        for source in spec.inputs:
            if source not in self._reactor.accumulators:
                raise ValueError(
                    f"{where}: node '{spec.name}' input '{source}' is not an accumulator of reactor "
                    f"'{self._reactor.name}' (its accumulators: {list(self._reactor.accumulators)})"
                )

    # ------------------------------------------------------------------ execution
    def execute(self, inputs: dict[str, Any]) -> Any:
        """Run the registered graph once on `inputs`; the output of the last terminal that ran."""
        graph, cache, context = self._prepare(inputs)
        try:
            return _last_output(run_graph(graph, cache, context))
        except GraphError as exc:
            raise _execution_failed(exc) from None

    async def aexecute(self, inputs: dict[str, Any]) -> Any:
        """Async `execute`: `async def` nodes are awaited, sync nodes run in worker threads."""
        graph, cache, context = self._prepare(inputs)
        try:
            return _last_output(await arun_graph(graph, cache, context))
        except GraphError as exc:
            raise _execution_failed(exc) from None

    def _prepare(self, inputs: Any) -> tuple[Graph, dict[str, Any], Optional[Context]]:
        if not isinstance(inputs, dict):
            raise TypeError(f"execute() inputs must be a dict, got {type(inputs).__name__}")
        try:
            cache = json_copy(inputs)
        except NotJsonError as exc:
            raise TypeError(f"execute() inputs are not JSON values: {exc.reason}") from None
        graph = get_graph(self._name)
        if graph is None:
            raise ValueError(
                f"computation graph '{self._name}' is not built yet: call execute() after its "
                "'with ComputationGraphBuilder(...)' block"
            )
        # A trigger-less graph's roots receive the inputs as a Context (C7 deviation).
        context = Context._from_trusted(cache) if graph.reactor is None else None
        return graph, cache, context


def _last_output(outputs: list[tuple[str, Any]]) -> Any:
    return outputs[-1][1] if outputs else None


def _execution_failed(exc: GraphError) -> ValueError:
    return ValueError(f"graph execution failed: {exc}")


def _reactor_binding(reactor: Any) -> ReactorBinding:
    try:
        name, accumulators, mode = reactor.NAME, reactor.ACCUMULATORS, reactor.REACTION_MODE
    except AttributeError:
        raise TypeError(
            "ComputationGraphBuilder(reactor=...) expects a class decorated with @cloaca.reactor "
            f"(with NAME, ACCUMULATORS and REACTION_MODE), got {reactor!r}"
        ) from None
    return ReactorBinding(str(name), tuple(accumulators), str(mode))
