"""Task identities: `TaskNamespace` (tenant::package::workflow::task) and `WorkflowContext`."""

from __future__ import annotations

from typing import Any

_SEPARATOR = "::"
DEFAULT_TENANT = "public"
"""The tenant of what names none: workflows declared, reactors, subscriptions, events."""
DEFAULT_PACKAGE = "embedded"
"""The package of workflows declared in the embedding process (not loaded from a package)."""


def _checked_parts(*parts: Any) -> tuple[str, ...]:
    for part in parts:
        if not isinstance(part, str):
            raise TypeError(f"namespace parts must be str, got {type(part).__name__}")
    return parts


def _quoted(parts: tuple[str, ...]) -> str:
    return ", ".join(repr(part) for part in parts)


class _Namespace:
    """A value made of `::`-joined string parts: str, repr, equality and hash by value."""

    __slots__ = ("_parts",)
    _parts: tuple[str, ...]

    def __str__(self) -> str:
        return _SEPARATOR.join(self._parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({_quoted(self._parts)})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._parts == other._parts  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._parts)


class TaskNamespace(_Namespace):
    """The four-part identity `tenant::package::workflow::task` of a task (value object)."""

    __slots__ = ()

    def __init__(self, tenant_id: str, package_name: str, workflow_id: str, task_id: str) -> None:
        self._parts: tuple[str, str, str, str] = _checked_parts(  # type: ignore[assignment]
            tenant_id, package_name, workflow_id, task_id
        )

    @staticmethod
    def from_string(namespace_str: str) -> TaskNamespace:
        """Parse `tenant::package::workflow::task`; ValueError unless there are exactly 4 parts."""
        if not isinstance(namespace_str, str):
            raise TypeError(f"namespace must be a str, got {type(namespace_str).__name__}")
        parts = namespace_str.split(_SEPARATOR)
        if len(parts) != 4:
            raise ValueError(
                f"Invalid namespace format: {namespace_str!r} "
                "(expected 'tenant::package::workflow::task')"
            )
        return TaskNamespace(*parts)

    @property
    def tenant_id(self) -> str:
        return self._parts[0]

    @property
    def package_name(self) -> str:
        return self._parts[1]

    @property
    def workflow_id(self) -> str:
        return self._parts[2]

    @property
    def task_id(self) -> str:
        return self._parts[3]

    def parent(self) -> TaskNamespace:
        """The same namespace with an empty task id (the workflow's namespace)."""
        return TaskNamespace(*self._parts[:3], "")

    def is_child_of(self, parent: TaskNamespace) -> bool:
        """Whether `parent` is this task's workflow namespace (which has no task id)."""
        return (
            self._parts[:3] == parent._parts[:3]
            and self.task_id != ""
            and parent.task_id == ""
        )

    def is_sibling_of(self, other: TaskNamespace) -> bool:
        """Whether `other` is a different task of the same workflow."""
        return (
            self._parts[:3] == other._parts[:3]
            and self.task_id != ""
            and other.task_id != ""
            and self.task_id != other.task_id
        )


class WorkflowContext(_Namespace):
    """The three-part namespace `tenant::package::workflow` that tasks are declared in."""

    __slots__ = ()

    def __init__(self, tenant_id: str, package_name: str, workflow_id: str) -> None:
        self._parts: tuple[str, str, str] = _checked_parts(  # type: ignore[assignment]
            tenant_id, package_name, workflow_id
        )

    @property
    def tenant_id(self) -> str:
        return self._parts[0]

    @property
    def package_name(self) -> str:
        return self._parts[1]

    @property
    def workflow_id(self) -> str:
        return self._parts[2]

    def task_namespace(self, task_id: str) -> TaskNamespace:
        """The namespace of task `task_id` in this workflow."""
        return TaskNamespace(*self._parts, task_id)

    def resolve_dependency(self, task_name: str) -> TaskNamespace:
        """The namespace of dependency `task_name` in this workflow."""
        return self.task_namespace(task_name)

    def workflow_namespace(self) -> TaskNamespace:
        """This workflow's own namespace (empty task id)."""
        return self.task_namespace("")

    def contains_namespace(self, namespace: TaskNamespace) -> bool:
        """Whether `namespace` lies in this workflow."""
        return namespace._parts[:3] == self._parts
