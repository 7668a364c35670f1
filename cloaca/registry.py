"""The process-wide registry of task, workflow and trigger definitions.

Every runner in the process reads the same registry: a workflow registered after a runner
was created is executable by it at once, and a trigger registered at any time is announced
to every live runner through the listeners.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .task import TaskDefinition
    from .trigger import TriggerDefinition
    from .workflow import Workflow

TriggerListener = Callable[["TriggerDefinition"], None]

log = logging.getLogger("cloaca")


class Registry:
    """Thread-safe maps of definitions keyed by task namespace, workflow name, trigger name."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._tasks: dict[str, TaskDefinition] = {}
        self._workflows: dict[str, Workflow] = {}
        self._triggers: dict[str, TriggerDefinition] = {}
        self._trigger_listeners: list[TriggerListener] = []

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
        if replaced:
            log.warning("cloaca: workflow '%s' is declared again; the new declaration replaces "
                        "the previous one", name)

    def get_workflow(self, name: str) -> Workflow | None:
        with self._lock:
            return self._workflows.get(name)

    def workflow_names(self) -> list[str]:
        with self._lock:
            return list(self._workflows)

    # triggers ------------------------------------------------------------------------
    def register_trigger(self, definition: TriggerDefinition) -> None:
        """Add or replace a trigger and announce it to every listening runner."""
        with self._lock:
            replaced = definition.name in self._triggers
            self._triggers[definition.name] = definition
            listeners = list(self._trigger_listeners)
        if replaced:
            log.warning("cloaca: trigger '%s' is declared again; the new declaration replaces "
                        "the previous one", definition.name)
        for listener in listeners:
            listener(definition)

    def triggers(self) -> list[TriggerDefinition]:
        with self._lock:
            return list(self._triggers.values())

    def get_trigger(self, name: str) -> TriggerDefinition | None:
        with self._lock:
            return self._triggers.get(name)

    def remove_trigger(self, name: str) -> None:
        """Forget a trigger: runners started afterwards do not poll it (live ones keep theirs)."""
        with self._lock:
            self._triggers.pop(name, None)

    def add_trigger_listener(self, listener: TriggerListener) -> None:
        with self._lock:
            self._trigger_listeners.append(listener)

    def remove_trigger_listener(self, listener: TriggerListener) -> None:
        with self._lock:
            if listener in self._trigger_listeners:
                self._trigger_listeners.remove(listener)


REGISTRY = Registry()
"""The one registry of this process."""
