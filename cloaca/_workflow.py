"""Workflows: the validated, versioned, read-only `Workflow`.

`WorkflowBuilder` and `register_workflow_constructor` (which register workflows) are in `_declare.py`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Iterable

from ._sealed import Sealed
from ._task import TaskDefinition


class Workflow(Sealed):
    """A built, validated, versioned DAG of tasks (read-only; made by `WorkflowBuilder`)."""

    __slots__ = (
        "_name", "_description", "_tags", "_tenant", "_tasks", "_order", "_dependents", "_version",
        "_roots",
    )

    _how_to_get_one = "use cloaca.WorkflowBuilder"

    @classmethod
    def _create(
        cls,
        name: str,
        tenant: str,
        description: str,
        tags: dict[str, str],
        tasks: Iterable[TaskDefinition],
    ) -> Workflow:
        """Validate and build; a ValueError says what is wrong (empty, missing dep, cycle)."""
        workflow = object.__new__(cls)
        workflow._name = name
        workflow._tenant = tenant
        workflow._description = description
        workflow._tags = dict(tags)
        by_name = {t.full_name: t for t in tasks}
        workflow._order = _topological_order(name, by_name)
        workflow._tasks = {n: by_name[n] for n in workflow._order}
        workflow._dependents = _dependents(workflow._tasks)
        workflow._roots = tuple(n for n in workflow._order if not workflow._tasks[n].dependencies)
        workflow._version = _version(workflow)
        return workflow

    @property
    def name(self) -> str:
        return self._name

    @property
    def description(self) -> str:
        return self._description

    @property
    def version(self) -> str:
        """Content hash of the structure (16 hex digits), stable across processes."""
        return self._version

    def topological_sort(self) -> list[str]:
        """Full task namespaces in dependency order."""
        return list(self._order)

    def get_execution_levels(self) -> list[list[str]]:
        """Tasks grouped into levels whose members can run in parallel."""
        level: dict[str, int] = {}
        for name in self._order:
            deps = self._tasks[name].dependencies
            level[name] = 1 + max((level[d] for d in deps), default=-1)
        levels: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
        for name in self._order:
            levels[level[name]].append(name)
        return levels

    def get_roots(self) -> list[str]:
        """Tasks with no dependencies."""
        return list(self._roots)

    def get_leaves(self) -> list[str]:
        """Tasks that nothing depends on."""
        return [n for n in self._order if not self._dependents[n]]

    def validate(self) -> None:
        """Raise ValueError if the workflow is invalid (a built Workflow always is valid)."""
        _topological_order(self._name, self._tasks)

    # engine-facing -------------------------------------------------------------------
    @property
    def tasks(self) -> dict[str, TaskDefinition]:
        """Task definitions by full namespace, in topological order (engine use)."""
        return self._tasks

    @property
    def roots(self) -> tuple[str, ...]:
        """Tasks with no dependencies, in topological order (engine use)."""
        return self._roots

    def dependents_of(self, task_name: str) -> tuple[str, ...]:
        return self._dependents[task_name]

    def __repr__(self) -> str:
        return f"Workflow(name='{self._name}', tasks={len(self._tasks)})"


def _topological_order(workflow_name: str, tasks: dict[str, TaskDefinition]) -> list[str]:
    if not tasks:
        raise ValueError("Workflow cannot be empty")
    for name, definition in tasks.items():
        for dep in definition.dependencies:
            if dep not in tasks:
                raise ValueError(
                    f"Missing dependency: task '{definition.id}' depends on "
                    f"'{dep.rsplit('::', 1)[-1]}', which is not a task of workflow '{workflow_name}'"
                )
    remaining = {name: len(set(d.dependencies)) for name, d in tasks.items()}
    dependents = _dependents(tasks)
    ready = [name for name, count in remaining.items() if count == 0]
    order: list[str] = []
    while ready:
        name = ready.pop(0)
        order.append(name)
        for child in dependents[name]:
            remaining[child] -= 1
            if remaining[child] == 0:
                ready.append(child)
    if len(order) < len(tasks):
        raise ValueError(
            f"Dependency cycle detected in workflow '{workflow_name}': "
            + " -> ".join(_find_cycle(tasks, set(tasks) - set(order)))
        )
    return order


def _find_cycle(tasks: dict[str, TaskDefinition], candidates: set[str]) -> list[str]:
    """Short task ids along one cycle among `candidates`, closed (first id repeated last)."""
    start = min(candidates)
    path: list[str] = []
    seen: dict[str, int] = {}
    node = start
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = next(d for d in sorted(set(tasks[node].dependencies)) if d in candidates)
    cycle = path[seen[node]:] + [node]
    return [n.rsplit("::", 1)[-1] for n in reversed(cycle)]


def _dependents(tasks: dict[str, TaskDefinition]) -> dict[str, tuple[str, ...]]:
    children: dict[str, list[str]] = {name: [] for name in tasks}
    for name, definition in tasks.items():
        for dep in dict.fromkeys(definition.dependencies):
            if dep in children:
                children[dep].append(name)
    return {name: tuple(c) for name, c in children.items()}


def _version(workflow: Workflow) -> str:
    content = {
        "name": workflow._name,
        "tenant": workflow._tenant,
        "description": workflow._description,
        "tags": sorted(workflow._tags.items()),
        "tasks": sorted([n, sorted(t.dependencies)] for n, t in workflow._tasks.items()),
    }
    digest = hashlib.sha256(json.dumps(content, separators=(",", ":")).encode()).hexdigest()
    return digest[:16]
