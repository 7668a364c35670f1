"""Declaration-only decorators: `workflow_params`, `workflow_secrets`, `boundary_schema`.

They record what a packaged workflow declares for the server's compiler; at run time they
return the decorated object unchanged (SPEC §10).
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

F = TypeVar("F")


class _PassThrough:
    """A decorator that returns what it decorates, keeping the declaration it was made with."""

    __slots__ = ("declaration",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(f"{type(self).__name__} cannot be instantiated directly")

    @classmethod
    def _create(cls, declaration: Any) -> Any:
        decorator = object.__new__(cls)
        decorator.declaration = declaration
        return decorator

    def __call__(self, target: F) -> F:
        return target

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.declaration!r})"


class WorkflowParamsDecorator(_PassThrough):
    """What `workflow_params(...)` returns."""


class WorkflowSecretsDecorator(_PassThrough):
    """What `workflow_secrets(...)` returns."""


class _BoundarySchemaDecorator(_PassThrough):
    """What `boundary_schema(...)` returns."""


def workflow_params(**types: Any) -> WorkflowParamsDecorator:
    """Declare a workflow's typed inputs (name=type); a no-op at run time."""
    return WorkflowParamsDecorator._create(dict(types))


def workflow_secrets(*names: str) -> WorkflowSecretsDecorator:
    """Declare the secrets a workflow needs; a no-op at run time."""
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"workflow_secrets() takes secret names (str), got {type(name).__name__}")
    return WorkflowSecretsDecorator._create(tuple(names))


def boundary_schema(**types: Any) -> Callable[[F], F]:
    """Declare an accumulator boundary's shape (name=type); a no-op at run time."""
    return _BoundarySchemaDecorator._create(dict(types))
