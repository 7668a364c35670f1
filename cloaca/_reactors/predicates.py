"""`when=` predicates of reactor subscriptions: CEL over `payload`, `reactor`, `tenant` (C11.1, C11.5).

Compiled with Google's CEL runtime (`cel-expr-python`, the `cel` extra). Its type checker
rejects free identifiers other than the three variables (comprehension variables are bound
only inside their macro), and its evaluator compares ints with doubles as upstream does.
"""

from __future__ import annotations

import functools
import re
import threading
from typing import Any

VARIABLES = ("payload", "reactor", "tenant")
_UNDECLARED = re.compile(r"undeclared reference to '([^']+)'")


class PredicateError(Exception):
    """A predicate could not be evaluated to a bool for a firing."""


def _cel() -> Any:
    try:
        from cel_expr_python import cel
    except ImportError:
        raise ValueError(
            "Invalid predicate expression: CEL predicates need the 'cel-expr-python' package "
            "(pip install 'cloaca[cel]')"
        ) from None
    return cel


_env_lock = threading.Lock()
_env: Any = None


def _environment() -> Any:
    global _env
    with _env_lock:
        if _env is None:
            cel = _cel()
            _env = cel.NewEnv(variables={name: cel.Type.DYN for name in VARIABLES})
        return _env


@functools.lru_cache(maxsize=256)
def compile_predicate(expression: str) -> Any:
    """The compiled predicate; ValueError ⊇ 'Invalid predicate expression' if it does not
    parse or names a variable other than payload, reactor, tenant."""
    if not isinstance(expression, str):
        raise ValueError(f"Invalid predicate expression: expected a CEL string, got {type(expression).__name__}")
    environment = _environment()
    try:
        return environment.compile(expression)
    except Exception as exc:  # the binding raises RuntimeError; any failure is the user's input
        text = str(exc)
        unknown = sorted(set(_UNDECLARED.findall(text)))
        if unknown:
            raise ValueError(
                f"Invalid predicate expression {expression!r}: unknown identifier(s) "
                f"{', '.join(unknown)}; a predicate may only use {', '.join(VARIABLES)}"
            ) from None
        raise ValueError(f"Invalid predicate expression {expression!r}: {text.strip()}") from None


def evaluate(expression: str, payload: dict[str, Any], reactor: str, tenant: str) -> bool:
    """The predicate's value for one firing; PredicateError if it errs or is not a bool."""
    try:
        program = compile_predicate(expression)
        value = program.eval(data={"payload": payload, "reactor": reactor, "tenant": tenant})
        kind = value.type().name()
        result = value.value()
    except Exception as exc:
        raise PredicateError(f"{type(exc).__name__}: {exc}") from None
    if kind == "ERROR":
        raise PredicateError(str(result))
    if not isinstance(result, bool):
        raise PredicateError(f"predicate evaluated to {kind} {result!r}, expected a bool")
    return bool(result)
