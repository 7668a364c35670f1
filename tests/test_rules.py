"""Trigger rules: SPEC §5 helpers, validation, qualification and evaluation."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from cloaca._rules import all_of
from cloaca._rules import always
from cloaca._rules import any_of
from cloaca._rules import context_value
from cloaca._rules import evaluate_rule
from cloaca._rules import none_of
from cloaca._rules import normalize_operator
from cloaca._rules import normalize_rule
from cloaca._rules import qualify_rule
from cloaca._rules import task_failed
from cloaca._rules import task_skipped
from cloaca._rules import task_success

PREFIX = "public::embedded::wf"
RULE_ERROR = r"@cloaca\.task\(trigger_rules=\.\.\.\): invalid trigger rule: "


def evaluate(
    rule: dict[str, Any],
    statuses: dict[str, str] | None = None,
    context: dict[str, Any] | None = None,
) -> bool:
    return evaluate_rule(rule, statuses or {}, context or {})


def holds(key: str, operator: str, value: Any, context: dict[str, Any]) -> bool:
    return evaluate(context_value(key, operator, value), context=context)


# --------------------------------------------------------------------------------------
# helpers


def test_status_condition_helpers() -> None:
    assert task_success("a") == {"type": "TaskSuccess", "task_name": "a"}
    assert task_failed("b") == {"type": "TaskFailed", "task_name": "b"}
    assert task_skipped("c") == {"type": "TaskSkipped", "task_name": "c"}


def test_status_helpers_require_str() -> None:
    with pytest.raises(TypeError, match="task_name must be a str"):
        task_success(1)  # type: ignore[arg-type]


def test_context_value_helper() -> None:
    assert context_value("flag", "equals", True) == {
        "type": "ContextValue",
        "key": "flag",
        "operator": "Equals",
        "value": True,
    }


def test_context_value_copies_value_and_turns_tuples_into_lists() -> None:
    value = [1, (2,)]
    condition = context_value("k", "eq", value)
    value.append(3)
    assert condition["value"] == [1, [2]]


def test_context_value_rejects_non_json_value_and_non_str_key() -> None:
    with pytest.raises(TypeError, match="context_value value is not JSON-serialisable: datetime"):
        context_value("k", "eq", datetime.datetime.now())
    with pytest.raises(TypeError, match="context_value key must be a str"):
        context_value(1, "eq", 1)  # type: ignore[arg-type]


def test_context_value_value_defaults_to_none_for_exists() -> None:
    assert context_value("k", "exists")["value"] is None


def test_combinator_helpers() -> None:
    a, b = task_success("a"), task_failed("b")
    assert all_of(a, b) == {"type": "All", "conditions": [a, b]}
    assert any_of(a) == {"type": "Any", "conditions": [a]}
    assert none_of() == {"type": "None", "conditions": []}
    assert always() == {"type": "Always"}


# --------------------------------------------------------------------------------------
# operators


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("Equals", "Equals"),
        ("equals", "Equals"),
        ("EQUALS", "Equals"),
        ("==", "Equals"),
        ("eq", "Equals"),
        ("EQ", "Equals"),
        ("NotEquals", "NotEquals"),
        ("not_equals", "NotEquals"),
        ("!=", "NotEquals"),
        ("ne", "NotEquals"),
        ("GreaterThan", "GreaterThan"),
        ("greater_than", "GreaterThan"),
        (">", "GreaterThan"),
        ("gt", "GreaterThan"),
        ("LessThan", "LessThan"),
        ("less_than", "LessThan"),
        ("<", "LessThan"),
        ("lt", "LessThan"),
        ("Contains", "Contains"),
        ("contains", "Contains"),
        ("NotContains", "NotContains"),
        ("not_contains", "NotContains"),
        ("NOT_CONTAINS", "NotContains"),
        ("Exists", "Exists"),
        ("exists", "Exists"),
        ("NotExists", "NotExists"),
        ("not_exists", "NotExists"),
        ("Not_Exists", "NotExists"),
    ],
)
def test_operator_normalisation(spelling: str, canonical: str) -> None:
    assert normalize_operator(spelling) == canonical
    assert context_value("k", spelling, 1)["operator"] == canonical


@pytest.mark.parametrize("operator", [">=", "<=", "ge", "equal", "in", ""])
def test_unknown_operator_lists_valid_names(operator: str) -> None:
    with pytest.raises(ValueError) as info:
        context_value("k", operator, 1)
    message = str(info.value)
    assert f"unknown operator {operator!r}" in message
    for name in (
        "Equals",
        "NotEquals",
        "GreaterThan",
        "LessThan",
        "Contains",
        "NotContains",
        "Exists",
        "NotExists",
    ):
        assert name in message


def test_non_str_operator_is_type_error() -> None:
    with pytest.raises(TypeError, match="operator must be a str"):
        normalize_operator(None)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# normalize_rule


def test_none_means_always() -> None:
    assert normalize_rule(None, "t") == {"type": "Always"}


def test_helper_output_is_kept() -> None:
    rule = any_of(task_success("a"), context_value("k", "gt", 1))
    assert normalize_rule(rule, "t") == rule


def test_bare_condition_is_wrapped_in_all_of() -> None:
    condition = context_value("flag", "equals", True)
    assert normalize_rule(condition, "t") == {"type": "All", "conditions": [condition]}
    assert normalize_rule(task_success("a"), "t") == all_of(task_success("a"))


def test_hand_written_dict_is_canonicalised() -> None:
    rule = {
        "type": "Any",
        "conditions": (
            {"type": "ContextValue", "key": "n", "operator": "gt", "value": (1,)},
            {"type": "TaskSkipped", "task_name": "x"},
        ),
    }
    assert normalize_rule(rule, "t") == {
        "type": "Any",
        "conditions": [
            {"type": "ContextValue", "key": "n", "operator": "GreaterThan", "value": [1]},
            {"type": "TaskSkipped", "task_name": "x"},
        ],
    }


def test_normalized_rule_does_not_alias_input() -> None:
    rule = all_of(context_value("k", "eq", [1]))
    normalized = normalize_rule(rule, "t")
    rule["conditions"][0]["value"].append(2)
    rule["conditions"].append(task_success("x"))
    assert normalized == all_of(context_value("k", "eq", [1]))


def test_exists_without_value_key_is_accepted() -> None:
    assert normalize_rule(
        {"type": "ContextValue", "key": "k", "operator": "exists"}, "t"
    ) == all_of({"type": "ContextValue", "key": "k", "operator": "Exists", "value": None})


@pytest.mark.parametrize("inner", [any_of(task_success("a")), all_of(), none_of(), always()])
def test_nested_combinators_are_rejected(inner: dict[str, Any]) -> None:
    with pytest.raises(
        ValueError, match=RULE_ERROR + f"rule type '{inner['type']}' cannot be nested inside 'All'"
    ):
        normalize_rule(all_of(task_success("x"), inner), "t")


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ("task_success('a')", "expected a dict"),
        (["All"], "expected a dict"),
        ({}, "unknown 'type' None"),
        ({"type": "Sometimes"}, "unknown 'type' 'Sometimes'"),
        ({"type": "All"}, "'All' is missing 'conditions'"),
        ({"type": "All", "conditions": "a"}, "'conditions' of a 'All' rule must be a list"),
        ({"type": "All", "conditions": [1]}, "expected a dict"),
        ({"type": "Always", "extra": 1}, "'Always' has unknown keys 'extra'"),
        ({"type": "TaskSuccess"}, "'TaskSuccess' is missing 'task_name'"),
        ({"type": "TaskSuccess", "task": "a"}, "'TaskSuccess' is missing 'task_name'"),
        ({"type": "TaskFailed", "task_name": "a", "x": 1}, "'TaskFailed' has unknown keys 'x'"),
        ({"type": "TaskSuccess", "task_name": ""}, "'task_name' must be a non-empty str"),
        ({"type": "TaskSuccess", "task_name": 3}, "'task_name' must be a non-empty str"),
        (
            {"type": "TaskSuccess", "task_name": "wf::a"},
            "task name 'wf::a' must be a task id or a full",
        ),
        ({"type": "TaskSuccess", "task_name": "a::b::c::"}, "task name 'a::b::c::' must be"),
        ({"type": "ContextValue", "operator": "eq", "value": 1}, "'ContextValue' is missing 'key'"),
        ({"type": "ContextValue", "key": "k", "value": 1}, "'ContextValue' is missing 'operator'"),
        (
            {"type": "ContextValue", "key": "k", "operator": "eq"},
            "'ContextValue' with operator 'Equals' is missing 'value'",
        ),
        ({"type": "ContextValue", "key": 1, "operator": "eq", "value": 1}, "'key' must be a str"),
        (
            {"type": "ContextValue", "key": "k", "operator": ">=", "value": 1},
            "unknown operator '>='",
        ),
        ({"type": "ContextValue", "key": "k", "operator": 5, "value": 1}, "unknown operator 5"),
        (
            {"type": "ContextValue", "key": "k", "operator": "eq", "value": {1, 2}},
            "'value' is not JSON-serialisable: set",
        ),
    ],
)
def test_invalid_rules_raise_value_error_saying_what_is_wrong(rule: Any, problem: str) -> None:
    with pytest.raises(ValueError) as info:
        normalize_rule(rule, "")
    message = str(info.value)
    assert message.startswith("@cloaca.task(trigger_rules=...): invalid trigger rule: ")
    assert problem in message


def test_task_label_is_appended_when_given() -> None:
    with pytest.raises(ValueError) as info:
        normalize_rule({"type": "Nope"}, "my_task")
    assert str(info.value).endswith("(task 'my_task')")


def test_full_namespace_task_name_is_accepted() -> None:
    assert normalize_rule(task_success("t::p::w::a"), "") == all_of(task_success("t::p::w::a"))


# --------------------------------------------------------------------------------------
# qualify_rule


def test_qualify_rule_prefixes_short_names_only() -> None:
    rule = normalize_rule(
        any_of(
            task_success("a"),
            task_failed("t::p::w::b"),
            task_skipped("c"),
            context_value("a", "eq", 1),
        ),
        "",
    )
    assert qualify_rule(rule, PREFIX) == {
        "type": "Any",
        "conditions": [
            {"type": "TaskSuccess", "task_name": f"{PREFIX}::a"},
            {"type": "TaskFailed", "task_name": "t::p::w::b"},
            {"type": "TaskSkipped", "task_name": f"{PREFIX}::c"},
            {"type": "ContextValue", "key": "a", "operator": "Equals", "value": 1},
        ],
    }


def test_qualify_rule_returns_a_copy() -> None:
    rule = all_of(task_success("a"), context_value("k", "eq", [1]))
    qualified = qualify_rule(rule, PREFIX)
    qualified["conditions"][1]["value"].append(2)
    assert rule == all_of(task_success("a"), context_value("k", "eq", [1]))


def test_qualify_always_and_bare_condition() -> None:
    assert qualify_rule(always(), PREFIX) == always()
    assert qualify_rule(task_success("x"), PREFIX) == task_success(f"{PREFIX}::x")


# --------------------------------------------------------------------------------------
# evaluate_rule: combinators and status conditions


def test_always_is_true() -> None:
    assert evaluate(always())


def test_empty_combinators() -> None:
    assert evaluate(all_of()) is True
    assert evaluate(any_of()) is False
    assert evaluate(none_of()) is True


@pytest.mark.parametrize(
    ("values", "all_expected", "any_expected", "none_expected"),
    [
        ([True, True], True, True, False),
        ([True, False], False, True, False),
        ([False, False], False, False, True),
    ],
)
def test_combinators(
    values: list[bool], all_expected: bool, any_expected: bool, none_expected: bool
) -> None:
    context = {f"k{i}": value for i, value in enumerate(values)}
    conditions = [context_value(f"k{i}", "eq", True) for i in range(len(values))]
    assert evaluate(all_of(*conditions), context=context) is all_expected
    assert evaluate(any_of(*conditions), context=context) is any_expected
    assert evaluate(none_of(*conditions), context=context) is none_expected


class RecordingContext(dict):  # type: ignore[type-arg]
    """A context that records which keys were read."""

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__(data)
        self.reads: list[str] = []

    def get(self, key: str, default: Any = None) -> Any:
        self.reads.append(key)
        return super().get(key, default)


def test_evaluation_short_circuits_left_to_right() -> None:
    context = RecordingContext({"a": 1, "b": 2, "c": 3})
    conditions = [context_value(k, "eq", 2) for k in ("a", "b", "c")]
    assert evaluate_rule(any_of(*conditions), {}, context) is True
    assert context.reads == ["a", "b"]
    context.reads.clear()
    assert evaluate_rule(all_of(*conditions), {}, context) is False
    assert context.reads == ["a"]
    context.reads.clear()
    assert evaluate_rule(none_of(*conditions), {}, context) is False
    assert context.reads == ["a", "b"]


@pytest.mark.parametrize(
    ("status", "success", "failed", "skipped"),
    [
        ("Completed", True, False, False),
        ("Failed", False, True, False),
        ("Skipped", False, False, True),
        ("Running", False, False, False),
        (None, False, False, False),
    ],
)
def test_status_conditions(status: str | None, success: bool, failed: bool, skipped: bool) -> None:
    name = f"{PREFIX}::a"
    statuses = {} if status is None else {name: status}
    assert evaluate(task_success(name), statuses) is success
    assert evaluate(task_failed(name), statuses) is failed
    assert evaluate(task_skipped(name), statuses) is skipped


def test_qualified_short_name_matches_full_status_key() -> None:
    rule = qualify_rule(normalize_rule(task_success("a"), ""), PREFIX)
    assert evaluate(rule, {f"{PREFIX}::a": "Completed"})
    assert not evaluate(rule, {"a": "Completed"})


def test_unknown_rule_type_is_value_error() -> None:
    with pytest.raises(ValueError, match="unknown trigger rule type 'Bogus'"):
        evaluate({"type": "Bogus"})


# --------------------------------------------------------------------------------------
# evaluate_rule: context conditions


@pytest.mark.parametrize(
    ("actual", "expected", "equal"),
    [
        (1, 1, True),
        ("a", "a", True),
        (None, None, True),
        (True, True, True),
        ([1, {"a": [2]}], [1, {"a": [2]}], True),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}, True),
        (1, 1.0, False),
        (1.0, 1, False),
        (True, 1, False),
        (1, True, False),
        (False, 0, False),
        (0, None, False),
        ("1", 1, False),
        ([1], [1.0], False),
        ({"a": 1}, {"a": 1.0}, False),
        ([1, 2], [2, 1], False),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ([True], [1], False),
        (1.5, 1.5, True),
    ],
)
def test_equals_is_exact_json_equality(actual: Any, expected: Any, equal: bool) -> None:
    assert holds("k", "Equals", expected, {"k": actual}) is equal
    assert holds("k", "NotEquals", expected, {"k": actual}) is not equal


def test_equals_missing_key_is_not_equal() -> None:
    assert holds("k", "eq", None, {}) is False
    assert holds("k", "ne", None, {}) is True
    assert holds("k", "eq", None, {"k": None}) is True


@pytest.mark.parametrize(
    ("actual", "expected", "greater", "less"),
    [
        (5, 3, True, False),
        (3, 5, False, True),
        (3, 3, False, False),
        (2.5, 2, True, False),
        (2, 2.5, False, True),
        (-1, 0.0, False, True),
        (True, 0, False, False),
        (1, False, False, False),
        ("5", 3, False, False),
        (5, "3", False, False),
        (None, 1, False, False),
        ([5], 3, False, False),
    ],
)
def test_greater_and_less_only_for_numbers(
    actual: Any, expected: Any, greater: bool, less: bool
) -> None:
    assert holds("k", ">", expected, {"k": actual}) is greater
    assert holds("k", "<", expected, {"k": actual}) is less


def test_greater_and_less_missing_key_is_false() -> None:
    assert holds("k", "gt", 1, {}) is False
    assert holds("k", "lt", 1, {}) is False


@pytest.mark.parametrize(
    ("actual", "expected", "contains"),
    [
        ("hello world", "lo w", True),
        ("hello", "xyz", False),
        ("hello", "", True),
        (["a", "b"], "a", True),
        (["a", "b"], "c", False),
        ([1, 2], 1, True),
        ([1, 2], 1.0, False),
        ([True], 1, False),
        ([[1]], [1], True),
        ([{"a": 1}], {"a": 1}, True),
        ("123", 1, False),
        ({"a": 1}, "a", False),
        (5, 5, False),
        (None, None, False),
    ],
)
def test_contains_and_not_contains(actual: Any, expected: Any, contains: bool) -> None:
    assert holds("k", "contains", expected, {"k": actual}) is contains
    assert holds("k", "not_contains", expected, {"k": actual}) is not contains


def test_contains_missing_key_is_false_and_not_contains_true() -> None:
    assert holds("k", "contains", "a", {}) is False
    assert holds("k", "not_contains", "a", {}) is True


@pytest.mark.parametrize("value", [None, 0, False, "", [], "anything"])
def test_exists_and_not_exists_test_presence_only(value: Any) -> None:
    assert holds("k", "exists", "ignored", {"k": value}) is True
    assert holds("k", "not_exists", "ignored", {"k": value}) is False
    assert holds("k", "exists", value, {}) is False
    assert holds("k", "not_exists", value, {}) is True


def test_context_conditions_work_inside_combinators_with_statuses() -> None:
    rule = qualify_rule(
        normalize_rule(any_of(task_failed("a"), context_value("retry", "eq", True)), ""), PREFIX
    )
    assert evaluate(rule, {f"{PREFIX}::a": "Completed"}, {"retry": True})
    assert evaluate(rule, {f"{PREFIX}::a": "Failed"}, {})
    assert not evaluate(rule, {f"{PREFIX}::a": "Completed"}, {"retry": 1})
