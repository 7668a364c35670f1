"""Geometry of a run's pictures: the task DAG (layered, left to right) and the attempts timeline.

Only coordinates and labels are computed here; the templates draw them as inline SVG (so every
label goes through the template's escaping).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional, Sequence

from .._workflow import Workflow

NODE_W, NODE_H = 180, 46
GAP_X, GAP_Y, PAD = 64, 18, 12
LABEL_CHARS = 22

ROW_H, LABEL_W, CHART_W = 24, 200, 640

_STATUS_CLASS = {
    "NotStarted": "notstarted", "Ready": "ready", "Pending": "pending", "Running": "running",
    "Completed": "completed", "Failed": "failed", "Skipped": "skipped", "Cancelled": "cancelled",
}


def status_class(status: Optional[str]) -> str:
    """The CSS class of a run or task status (a fixed set: never the status text itself)."""
    return _STATUS_CLASS.get(status or "", "other")


@dataclass(frozen=True)
class Node:
    key: str
    label: str
    title: str
    status: str
    css: str
    attempts: int
    x: int
    y: int


@dataclass(frozen=True)
class Graph:
    nodes: list[Node]
    edges: list[str]
    """SVG path data, one per dependency."""
    width: int
    height: int
    node_w: int = NODE_W
    node_h: int = NODE_H


def short_name(namespace: str) -> str:
    """`tenant::package::workflow::task` -> `task`."""
    return namespace.rsplit("::", 1)[-1]


def task_graph(workflow: Optional[Workflow], task_results: Sequence[dict[str, Any]]) -> Graph:
    """Lay out the run's tasks in dependency layers; without a matching workflow, one column."""
    results = {_result_key(r): r for r in task_results}
    layers, children = _structure(workflow, results)
    layers = _order_layers(layers, children)
    tallest = max((len(layer) for layer in layers), default=0)
    height = PAD * 2 + tallest * NODE_H + max(tallest - 1, 0) * GAP_Y
    width = PAD * 2 + len(layers) * NODE_W + max(len(layers) - 1, 0) * GAP_X
    nodes: dict[str, Node] = {}
    for col, layer in enumerate(layers):
        span = len(layer) * NODE_H + (len(layer) - 1) * GAP_Y
        top = (height - span) // 2
        for row, key in enumerate(layer):
            result = results.get(key, {})
            status = result.get("status") or "NotStarted"
            nodes[key] = Node(
                key=key, label=_clip(short_name(key)), title=key, status=status,
                css=status_class(status), attempts=int(result.get("attempt_count") or 0),
                x=PAD + col * (NODE_W + GAP_X), y=top + row * (NODE_H + GAP_Y),
            )
    edges = [_edge(nodes[a], nodes[b]) for a, kids in children.items() for b in kids]
    return Graph(nodes=list(nodes.values()), edges=edges, width=max(width, NODE_W),
                 height=max(height, NODE_H))


def _result_key(result: dict[str, Any]) -> str:
    return str(result.get("task_namespace") or result.get("task_name") or "?")


def _structure(workflow: Optional[Workflow], results: dict[str, dict[str, Any]]
               ) -> tuple[list[list[str]], dict[str, list[str]]]:
    """(layers of node keys, children of each key), from the workflow when it matches the run."""
    if workflow is not None:
        names = workflow.topological_sort()
        by_short = {short_name(n): n for n in names}
        keyed = all(k in names for k in results)
        if keyed or all(k in by_short for k in results):
            key = (lambda n: n) if keyed else short_name
            layers = [[key(n) for n in level] for level in workflow.get_execution_levels()]
            children = {key(n): [key(c) for c in workflow.dependents_of(n)] for n in names}
            return layers, children
    return ([list(results)] if results else []), {}


def _order_layers(layers: list[list[str]], children: dict[str, list[str]]) -> list[list[str]]:
    """Order each layer by the mean position of its parents (fewer crossing edges)."""
    parents: dict[str, list[str]] = {}
    for parent, kids in children.items():
        for kid in kids:
            parents.setdefault(kid, []).append(parent)
    position: dict[str, float] = {}
    ordered: list[list[str]] = []
    for layer in layers:
        def weight(key: str, index: int) -> tuple[float, int]:
            placed = [position[p] for p in parents.get(key, []) if p in position]
            return (sum(placed) / len(placed) if placed else float(index), index)

        layer = [k for _, k in sorted((weight(k, i), k) for i, k in enumerate(layer))]
        position.update((k, float(i)) for i, k in enumerate(layer))
        ordered.append(layer)
    return ordered


def _edge(a: Node, b: Node) -> str:
    x1, y1 = a.x + NODE_W, a.y + NODE_H // 2
    x2, y2 = b.x, b.y + NODE_H // 2
    mid = (x1 + x2) / 2
    return f"M{x1},{y1} C{mid:g},{y1} {mid:g},{y2} {x2},{y2}"


def _clip(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


@dataclass(frozen=True)
class Bar:
    label: str
    title: str
    css: str
    x: float
    width: float
    y: int
    text: str


@dataclass(frozen=True)
class Timeline:
    bars: list[Bar]
    width: int
    height: int
    label_w: int = LABEL_W
    row_h: int = ROW_H
    span_text: str = ""


def timeline(task_results: Sequence[dict[str, Any]], run_start: Optional[str],
             run_end: Optional[str], now: float) -> Timeline:
    """One bar per task that started, from its start to its end (or now), on the run's time axis."""
    started = [(r, _seconds(r.get("start_time"))) for r in task_results]
    started = [(r, s) for r, s in started if s is not None]
    t0 = _seconds(run_start)
    if t0 is None:
        t0 = min((s for _, s in started), default=now)
    ends = [_seconds(r.get("end_time")) or now for r, _ in started]
    t1 = max([_seconds(run_end) or now, *ends])
    span = max(t1 - t0, 1e-3)
    bars = []
    for row, ((result, start), end) in enumerate(zip(started, ends)):
        x = LABEL_W + (start - t0) / span * CHART_W
        attempts = int(result.get("attempt_count") or 0)
        key = _result_key(result)
        bars.append(Bar(
            label=_clip(short_name(key)), title=key, css=status_class(result.get("status")),
            x=round(x, 1), width=round(max((end - start) / span * CHART_W, 2.0), 1), y=row * ROW_H,
            text=f"{attempts} attempt{'s' if attempts != 1 else ''}, {format_seconds(end - start)}",
        ))
    return Timeline(bars=bars, width=LABEL_W + CHART_W + 170, height=max(len(bars), 1) * ROW_H,
                    span_text=format_seconds(span))


def _seconds(text: Optional[str]) -> Optional[float]:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def format_seconds(seconds: Optional[float]) -> str:
    """`12 ms`, `4.5 s`, `3 min 20 s`, `2 h 5 min`."""
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.3g} ms"
    if seconds < 10:
        return f"{seconds:.3g} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"
