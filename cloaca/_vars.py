"""Workflow variables read from `CLOACINA_VAR_<name>` environment variables."""

from __future__ import annotations

import os

_PREFIX = "CLOACINA_VAR_"


def _env_name(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"variable name must be a str, got {type(name).__name__}")
    return _PREFIX + name


def var(name: str) -> str:
    """The value of environment variable `CLOACINA_VAR_<name>`; KeyError if it is unset."""
    env_name = _env_name(name)
    value = os.environ.get(env_name)
    if value is None:
        raise KeyError(f"Variable {name!r} is not set (environment variable {env_name})")
    return value


def var_or(name: str, default: str) -> str:
    """The value of environment variable `CLOACINA_VAR_<name>`, or `default` if it is unset."""
    return os.environ.get(_env_name(name), default)
