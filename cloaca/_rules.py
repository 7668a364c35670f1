"""Trigger rules: plain-dict conditions that decide whether a task runs or is skipped.

The helpers build the tagged dicts users pass as `@cloaca.task(trigger_rules=...)`;
`normalize_rule`, `qualify_rule` and `evaluate_rule` are what the task layer and the engine
do with them.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

from ._context import NotJsonError, json_copy

# Status condition type → the task status that makes it true.
_STATUS_CONDITIONS = {"TaskSuccess": "Completed", "TaskFailed": "Failed", "TaskSkipped": "Skipped"}
_COMBINATORS = ("All", "Any", "None")
_CONDITION_TYPES = (*_STATUS_CONDITIONS, "ContextValue")
_RULE_TYPES = (*_COMBINATORS, "Always", *_CONDITION_TYPES)

_OPERATOR_ALIASES = {
    "Equals": ("==", "eq"),
    "NotEquals": ("!=", "ne"),
    "GreaterThan": (">", "gt"),
    "LessThan": ("<", "lt"),
    "Contains": (),
    "NotContains": (),
    "Exists": (),
    "NotExists": (),
}
_OPERATORS = {
    spelling: canonical
    for canonical, aliases in _OPERATOR_ALIASES.items()
    for spelling in (canonical.lower(), *aliases)
}
_VALUELESS_OPERATORS = ("Exists", "NotExists")
_MISSING = object()

_RULE_ERROR_PREFIX = "@cloaca.task(trigger_rules=...): invalid trigger rule: "


# --------------------------------------------------------------------------------------
# Building rules


def _canonical_operator(operator: str) -> Optional[str]:
    return _OPERATORS.get(operator.replace("_", "").lower())


def _unknown_operator(operator: Any) -> str:
    valid = ", ".join(
        f"{name} ({', '.join(aliases)})" if aliases else name
        for name, aliases in _OPERATOR_ALIASES.items()
    )
    return f"unknown operator {operator!r}; valid operators: {valid}"


def normalize_operator(operator: str) -> str:
    """The canonical PascalCase name of `operator` (case-insensitive, underscores ignored)."""
    if not isinstance(operator, str):
        raise TypeError(f"operator must be a str, got {type(operator).__name__}")
    canonical = _canonical_operator(operator)
    if canonical is None:
        raise ValueError(_unknown_operator(operator))
    return canonical


def _status_condition(kind: str, task_name: str) -> dict[str, Any]:
    if not isinstance(task_name, str):
        raise TypeError(f"task_name must be a str, got {type(task_name).__name__}")
    return {"type": kind, "task_name": task_name}


def task_success(task_name: str) -> dict[str, Any]:
    """Condition: the named task ended `Completed`."""
    return _status_condition("TaskSuccess", task_name)


def task_failed(task_name: str) -> dict[str, Any]:
    """Condition: the named task ended `Failed` (after all its retries)."""
    return _status_condition("TaskFailed", task_name)


def task_skipped(task_name: str) -> dict[str, Any]:
    """Condition: the named task ended `Skipped`."""
    return _status_condition("TaskSkipped", task_name)


def context_value(key: str, operator: str, value: Any = None) -> dict[str, Any]:
    """Condition on the value under `key` in the task's input context."""
    if not isinstance(key, str):
        raise TypeError(f"context_value key must be a str, got {type(key).__name__}")
    try:
        stored = json_copy(value)
    except NotJsonError as exc:
        raise TypeError(f"context_value value is not JSON-serialisable: {exc.reason}") from None
    canonical = normalize_operator(operator)
    return {"type": "ContextValue", "key": key, "operator": canonical, "value": stored}


def all_of(*conditions: dict[str, Any]) -> dict[str, Any]:
    """Rule: every condition is true (true when there are none)."""
    return {"type": "All", "conditions": list(conditions)}


def any_of(*conditions: dict[str, Any]) -> dict[str, Any]:
    """Rule: at least one condition is true (false when there are none)."""
    return {"type": "Any", "conditions": list(conditions)}


def none_of(*conditions: dict[str, Any]) -> dict[str, Any]:
    """Rule: no condition is true (true when there are none)."""
    return {"type": "None", "conditions": list(conditions)}


def always() -> dict[str, Any]:
    """Rule: always run (the default)."""
    return {"type": "Always"}


# --------------------------------------------------------------------------------------
# Validating user-supplied rules


class _InvalidRule(Exception):
    """What is wrong with a rule, for the ValueError raised by `normalize_rule`."""


def normalize_rule(rule: Any, task_label: str) -> dict[str, Any]:
    """A validated, canonical copy of a `trigger_rules=` value (None → `always()`).

    A bare condition becomes `all_of(condition)`. Raises ValueError saying what is wrong;
    a non-empty `task_label` is appended to the message to say which task it concerns.
    """
    if rule is None:
        return always()
    try:
        return _normalized_rule(rule)
    except _InvalidRule as exc:
        where = f" (task {task_label!r})" if task_label else ""
        raise ValueError(f"{_RULE_ERROR_PREFIX}{exc}{where}") from None


def _normalized_rule(rule: Any) -> dict[str, Any]:
    kind = _rule_type(rule)
    if kind == "Always":
        _check_keys(rule, required=("type",))
        return always()
    if kind in _COMBINATORS:
        _check_keys(rule, required=("type", "conditions"))
        conditions = rule["conditions"]
        if not isinstance(conditions, (list, tuple)):
            raise _InvalidRule(
                f"'conditions' of a {kind!r} rule must be a list, got {type(conditions).__name__}"
            )
        return {"type": kind, "conditions": [_normalized_condition(c, kind) for c in conditions]}
    return all_of(_normalized_condition(rule, None))


def _rule_type(node: Any) -> str:
    if not isinstance(node, dict):
        raise _InvalidRule(
            "expected a dict built by cloaca.all_of/any_of/none_of/always or a condition "
            f"helper, got {type(node).__name__}"
        )
    kind = node.get("type")
    if kind not in _RULE_TYPES:
        raise _InvalidRule(f"unknown 'type' {kind!r}; expected one of {', '.join(_RULE_TYPES)}")
    return str(kind)


def _check_keys(
    node: dict[str, Any], required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> None:
    missing = [key for key in required if key not in node]
    if missing:
        raise _InvalidRule(f"{node['type']!r} is missing {', '.join(map(repr, missing))}")
    unknown = [key for key in node if key not in required and key not in optional]
    if unknown:
        raise _InvalidRule(f"{node['type']!r} has unknown keys {', '.join(map(repr, unknown))}")


def _normalized_condition(node: Any, combinator: Optional[str]) -> dict[str, Any]:
    kind = _rule_type(node)
    if kind not in _CONDITION_TYPES:
        raise _InvalidRule(
            f"rule type {kind!r} cannot be nested inside {combinator!r}; all_of/any_of/none_of "
            "accept only conditions (task_success, task_failed, task_skipped, context_value)"
        )
    if kind in _STATUS_CONDITIONS:
        _check_keys(node, required=("type", "task_name"))
        return {"type": kind, "task_name": _checked_task_name(node["task_name"])}
    return _normalized_context_condition(node)


def _checked_task_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise _InvalidRule(f"'task_name' must be a non-empty str, got {name!r}")
    if "::" in name:
        parts = name.split("::")
        if len(parts) != 4 or not all(parts):
            raise _InvalidRule(
                f"task name {name!r} must be a task id or a full "
                "'tenant::package::workflow::task' namespace"
            )
    return name


def _normalized_context_condition(node: dict[str, Any]) -> dict[str, Any]:
    _check_keys(node, required=("type", "key", "operator"), optional=("value",))
    key, operator = node["key"], node["operator"]
    if not isinstance(key, str):
        raise _InvalidRule(f"'key' must be a str, got {type(key).__name__}")
    canonical = _canonical_operator(operator) if isinstance(operator, str) else None
    if canonical is None:
        raise _InvalidRule(_unknown_operator(operator))
    if "value" not in node and canonical not in _VALUELESS_OPERATORS:
        raise _InvalidRule(f"'ContextValue' with operator {canonical!r} is missing 'value'")
    try:
        value = json_copy(node.get("value"))
    except NotJsonError as exc:
        raise _InvalidRule(f"'value' is not JSON-serialisable: {exc.reason}") from None
    return {"type": "ContextValue", "key": key, "operator": canonical, "value": value}


# --------------------------------------------------------------------------------------
# Qualifying and evaluating normalised rules


def qualify_rule(rule: dict[str, Any], workflow_prefix: str) -> dict[str, Any]:
    """A copy of `rule` whose short task names read `<workflow_prefix>::<name>`.

    `workflow_prefix` is `tenant::package::workflow`; full namespaces are kept as they are.
    """
    qualified = dict(rule)
    if "conditions" in rule:
        qualified["conditions"] = [qualify_rule(c, workflow_prefix) for c in rule["conditions"]]
    if "value" in rule:
        qualified["value"] = json_copy(rule["value"])
    if rule["type"] in _STATUS_CONDITIONS and "::" not in rule["task_name"]:
        qualified["task_name"] = f"{workflow_prefix}::{rule['task_name']}"
    return qualified


def evaluate_rule(
    rule: dict[str, Any], task_statuses: Mapping[str, str], context: Mapping[str, Any]
) -> bool:
    """Whether a normalised rule holds, given task statuses by full name and the input context."""
    kind = rule["type"]
    if kind == "Always":
        return True
    if kind in _COMBINATORS:
        results = (evaluate_rule(c, task_statuses, context) for c in rule["conditions"])
        if kind == "All":
            return all(results)
        if kind == "Any":
            return any(results)
        return not any(results)
    status = _STATUS_CONDITIONS.get(kind)
    if status is not None:
        return task_statuses.get(rule["task_name"]) == status
    if kind == "ContextValue":
        actual = context.get(rule["key"], _MISSING)
        return _CONTEXT_TESTS[rule["operator"]](actual, rule.get("value"))
    raise ValueError(f"unknown trigger rule type {kind!r}")


def _json_equal(a: Any, b: Any) -> bool:
    """Exact JSON equality: types must match (1 != 1.0, True != 1)."""
    if type(a) is not type(b):
        return False
    if type(a) is list:
        return len(a) == len(b) and all(map(_json_equal, a, b))
    if type(a) is dict:
        return a.keys() == b.keys() and all(_json_equal(v, b[k]) for k, v in a.items())
    return bool(a == b)


def _is_number(value: Any) -> bool:
    return type(value) is int or type(value) is float


def _equals(actual: Any, expected: Any) -> bool:
    return actual is not _MISSING and _json_equal(actual, expected)


def _greater_than(actual: Any, expected: Any) -> bool:
    return _is_number(actual) and _is_number(expected) and float(actual) > float(expected)


def _less_than(actual: Any, expected: Any) -> bool:
    return _is_number(actual) and _is_number(expected) and float(actual) < float(expected)


def _contains(actual: Any, expected: Any) -> bool:
    if type(actual) is str and type(expected) is str:
        return expected in actual
    if type(actual) is list:
        return any(_json_equal(item, expected) for item in actual)
    return False


_CONTEXT_TESTS: dict[str, Callable[[Any, Any], bool]] = {
    "Equals": _equals,
    "NotEquals": lambda actual, expected: not _equals(actual, expected),
    "GreaterThan": _greater_than,
    "LessThan": _less_than,
    "Contains": _contains,
    "NotContains": lambda actual, expected: not _contains(actual, expected),
    "Exists": lambda actual, expected: actual is not _MISSING,
    "NotExists": lambda actual, expected: actual is _MISSING,
}
