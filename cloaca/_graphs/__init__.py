"""Computation graphs: nodes wired by `next` and `routes`, run in-process (GRAPHS.md C4–C8)."""

from .builder import ComputationGraphBuilder, get_graph, node
from .execution import GraphError, arun_graph, run_graph

__all__ = ["ComputationGraphBuilder", "GraphError", "arun_graph", "get_graph", "node", "run_graph"]
