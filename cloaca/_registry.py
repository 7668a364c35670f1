"""The process-wide registry of task, workflow and trigger definitions.

Every runner in the process reads the same registry: a workflow registered after a runner
was created is executable by it at once, and a trigger registered at any time is announced
to every live runner through the listeners.

Definitions land here from `_declare` (`@task`, `WorkflowBuilder`, `@trigger`); the registry
names their types and the definition modules never import it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping, Optional

if TYPE_CHECKING:
    from ._task import TaskDefinition
    from ._triggers.definition import TriggerDefinition
    from ._workflow import Workflow

TriggerListener = Callable[[str, Optional["TriggerDefinition"]], None]
"""Told of each change of a trigger: `(name, definition)` when it is declared or replaced,
`(name, None)` when it is removed."""


@dataclass(frozen=True)
class RegistrySnapshot:
    """What a registry held at one moment (see `Registry.snapshot`)."""

    tasks: Mapping[str, TaskDefinition]
    workflows: Mapping[str, Workflow]
    triggers: Mapping[str, TriggerDefinition]

log = logging.getLogger("cloaca")


class Registry:
    """Thread-safe maps of definitions keyed by task namespace, workflow name, trigger name."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._tasks: dict[str, TaskDefinition] = {}
        self._workflows: dict[str, Workflow] = {}
        self._triggers: dict[str, TriggerDefinition] = {}
        self._trigger_listeners: list[TriggerListener] = []
        self._workflows_generation = 0

    # tasks ---------------------------------------------------------------------------
    def register_task(self, definition: TaskDefinition) -> None:
        """Add or replace the task at `definition.namespace`."""
        with self._lock:
            self._tasks[str(definition.namespace)] = definition

    def get_task(self, namespace: str) -> TaskDefinition | None:
        with self._lock:
            return self._tasks.get(namespace)

    def tasks_in(self, workflow_prefix: str) -> list[TaskDefinition]:
        """Every task registered under `tenant::package::workflow`, in registration order."""
        prefix = workflow_prefix + "::"
        with self._lock:
            return [t for ns, t in self._tasks.items() if ns.startswith(prefix)]

    # workflows -----------------------------------------------------------------------
    def register_workflow(self, name: str, workflow: Workflow) -> None:
        """Add or replace the workflow executed under `name`."""
        with self._lock:
            replaced = name in self._workflows
            self._workflows[name] = workflow
            self._workflows_generation += 1
        if replaced:
            log.warning("cloaca: workflow '%s' is declared again; the new declaration replaces "
                        "the previous one", name)

    def get_workflow(self, name: str) -> Workflow | None:
        with self._lock:
            return self._workflows.get(name)

    def workflow_names(self) -> list[str]:
        with self._lock:
            return list(self._workflows)

    def workflows_generation(self) -> int:
        """A number that changes whenever the registered workflows change: what is derived
        from them may be kept as long as it stays the same."""
        with self._lock:
            return self._workflows_generation

    # triggers ------------------------------------------------------------------------
    def register_trigger(self, definition: TriggerDefinition) -> None:
        """Add or replace a trigger and announce it to every listening runner."""
        with self._lock:
            replaced = definition.name in self._triggers
            self._triggers[definition.name] = definition
        if replaced:
            log.warning("cloaca: trigger '%s' is declared again; the new declaration replaces "
                        "the previous one", definition.name)
        self._announce([(definition.name, definition)])

    def triggers(self) -> list[TriggerDefinition]:
        with self._lock:
            return list(self._triggers.values())

    def get_trigger(self, name: str) -> TriggerDefinition | None:
        with self._lock:
            return self._triggers.get(name)

    def remove_trigger(self, name: str) -> None:
        """Forget a trigger: no runner polls or schedules it any more, live ones included."""
        with self._lock:
            removed = self._triggers.pop(name, None)
        if removed is not None:
            self._announce([(name, None)])

    def add_trigger_listener(self, listener: TriggerListener) -> None:
        with self._lock:
            self._trigger_listeners.append(listener)

    def remove_trigger_listener(self, listener: TriggerListener) -> None:
        with self._lock:
            if listener in self._trigger_listeners:
                self._trigger_listeners.remove(listener)

    def _announce(self, changes: list[tuple[str, Optional[TriggerDefinition]]]) -> None:
        # Called without the lock held: a listener may wait for a runner's loop.
        with self._lock:
            listeners = list(self._trigger_listeners)
        for name, definition in changes:
            for listener in listeners:
                listener(name, definition)

    # snapshots -----------------------------------------------------------------------
    def snapshot(self) -> RegistrySnapshot:
        """Everything declared so far, to be put back later by `restore`."""
        with self._lock:
            return RegistrySnapshot(dict(self._tasks), dict(self._workflows), dict(self._triggers))

    def restore(self, snapshot: RegistrySnapshot) -> None:
        """Hold exactly what `snapshot` held again: what was declared since is forgotten.

        Live runners are told as for `register_trigger`/`remove_trigger`: they stop polling
        (or scheduling) the triggers declared since, and go back to the former definition of
        those re-declared since.
        """
        with self._lock:
            current = self._triggers
            self._tasks = dict(snapshot.tasks)
            self._workflows = dict(snapshot.workflows)
            self._workflows_generation += 1
            self._triggers = dict(snapshot.triggers)
        changes: list[tuple[str, Optional[TriggerDefinition]]] = [
            (name, None) for name in current if name not in snapshot.triggers
        ]
        changes += [
            (name, definition) for name, definition in snapshot.triggers.items()
            if current.get(name) is not definition
        ]
        self._announce(changes)


REGISTRY = Registry()
"""The one registry of this process."""
