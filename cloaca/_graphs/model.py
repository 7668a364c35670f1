"""A built computation graph: its nodes, their edges, and the order they run in (C4, C6.1)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any, Callable, Optional


@dataclass(frozen=True)
class NodeSpec:
    """One entry of a topology dict."""

    name: str
    inputs: tuple[str, ...]
    routes: Optional[dict[str, str]]
    next: Optional[str]

    @property
    def kind(self) -> str:
        if self.routes is not None:
            return "routing"
        return "linear" if self.next is not None else "terminal"


@dataclass(frozen=True)
class Edge:
    """`source` feeds `target`; `variant` is set for a routed edge."""

    source: str
    target: str
    variant: Optional[str]


@dataclass(frozen=True)
class ReactorBinding:
    """The reactor a graph is bound to (copied from its class when the builder was made)."""

    name: str
    accumulators: tuple[str, ...]
    mode: str


class Graph:
    """A validated, registered computation graph."""

    __slots__ = ("name", "nodes", "functions", "reactor", "order", "incoming")

    def __init__(self, name: str, nodes: dict[str, NodeSpec], functions: dict[str, Callable[..., Any]],
                 reactor: Optional[ReactorBinding]) -> None:
        self.name = name
        self.nodes = nodes
        self.functions = functions
        self.reactor = reactor
        edges = _edges(nodes)
        self.incoming: dict[str, list[Edge]] = {}
        for edge in edges:
            self.incoming.setdefault(edge.target, []).append(edge)
        self.order = _topological_order(nodes, edges)

    def __repr__(self) -> str:
        return f"Graph(name={self.name!r}, nodes={len(self.nodes)})"


def parse_topology(graph_name: str, topology: Any) -> dict[str, NodeSpec]:
    """The nodes of a topology dict, in its insertion order; TypeError names a malformed node."""
    if not isinstance(topology, dict):
        raise TypeError(
            f"ComputationGraphBuilder({graph_name!r}): 'graph' must be a dict of node name -> "
            f"node spec, got {type(topology).__name__}"
        )
    return {name: _parse_node(graph_name, name, spec) for name, spec in topology.items()}


def _parse_node(graph_name: str, name: Any, spec: Any) -> NodeSpec:
    where = f"ComputationGraphBuilder({graph_name!r}): node {name!r}"
    if not isinstance(name, str):
        raise TypeError(f"{where}: node names must be str, got {type(name).__name__}")
    if not isinstance(spec, dict):
        raise TypeError(f"{where}: its spec must be a dict, got {type(spec).__name__}")
    inputs = spec.get("inputs", [])
    if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
        raise TypeError(f"{where}: 'inputs' must be a list of accumulator names (str)")
    routes = spec.get("routes")
    if routes is not None:
        if not isinstance(routes, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in routes.items()
        ):
            raise TypeError(f"{where}: 'routes' must be a dict of variant name (str) -> node name (str)")
        return NodeSpec(name, tuple(inputs), dict(routes), None)
    following = spec.get("next")
    if following is not None and not isinstance(following, str):
        raise TypeError(f"{where}: 'next' must be a node name (str), got {type(following).__name__}")
    return NodeSpec(name, tuple(inputs), None, following)


def _edges(nodes: dict[str, NodeSpec]) -> list[Edge]:
    """Every edge, sources in declaration order (the order of a node's fan-in arguments)."""
    edges: list[Edge] = []
    for node in nodes.values():
        if node.routes is not None:
            edges.extend(Edge(node.name, target, variant) for variant, target in node.routes.items())
        elif node.next is not None:
            edges.append(Edge(node.name, node.next, None))
    return edges


def _topological_order(nodes: dict[str, NodeSpec], edges: list[Edge]) -> list[str]:
    """Kahn's order taking the greatest ready name first; nodes on a cycle are left out."""
    names = list(nodes)
    for edge in edges:
        if edge.target not in nodes and edge.target not in names:
            names.append(edge.target)
    indegree = dict.fromkeys(names, 0)
    successors: dict[str, list[str]] = {}
    for edge in edges:
        indegree[edge.target] += 1
        successors.setdefault(edge.source, []).append(edge.target)
    ready = sorted(n for n, d in indegree.items() if d == 0)
    order: list[str] = []
    while ready:
        name = ready.pop()
        order.append(name)
        for target in successors.get(name, ()):
            indegree[target] -= 1
            if indegree[target] == 0:
                bisect.insort(ready, target)
    return order
