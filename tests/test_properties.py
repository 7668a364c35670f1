"""Property-based tests (hypothesis): Context serialisation and merge, duration strings,
cron expressions against croniter and the brute-force DST reference of
tests/test_cron_expression.py.

Example counts stay modest so that the default run stays quick; `--hypothesis-seed` or
HYPOTHESIS_PROFILE=thorough (more examples) for a deeper search.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings, strategies as st

from cloaca import Context
from cloaca._context import canonical_json, context_hash
from cloaca._cron.expression import CronExpression
from cloaca._engine.merge import merge_contexts, merge_values
from cloaca._triggers.definition import MIN_POLL_INTERVAL_MS, parse_duration_ms

from test_cron_expression import fires, reference_fires

settings.register_profile("default", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

UTC = timezone.utc

# ====================================================================== JSON values
scalars = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)
contexts = st.dictionaries(st.text(max_size=12), json_values, max_size=6)


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON values: true is not 1, 1 is not 1.0."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


# ====================================================================== Context
@given(contexts)
def test_a_context_survives_json_serialisation(data: dict[str, Any]) -> None:
    context = Context(data)
    again = Context.from_json(context.to_json())
    assert same_json(again.to_dict(), data)
    assert same_json(Context(again.to_dict()).to_dict(), data)


@given(contexts, st.randoms())
def test_the_context_hash_ignores_key_order(data: dict[str, Any], random: Any) -> None:
    keys = list(data)
    random.shuffle(keys)
    shuffled = {k: data[k] for k in keys}
    assert canonical_json(shuffled) == canonical_json(data)
    assert context_hash(shuffled) == context_hash(data)


@given(contexts)
def test_a_context_is_a_copy_of_what_it_was_given(data: dict[str, Any]) -> None:
    before = json.dumps(data, sort_keys=True)
    context = Context(data)
    for key in list(context.to_dict()):
        context.set(key, "changed")
    assert json.dumps(data, sort_keys=True) == before


# ====================================================================== merge
@given(st.lists(contexts, max_size=4))
def test_merge_keeps_every_key_and_leaves_its_inputs_alone(outputs: list[dict[str, Any]]) -> None:
    before = json.dumps(outputs, sort_keys=True)
    merged = merge_contexts(outputs)
    assert json.dumps(outputs, sort_keys=True) == before
    assert set(merged) == {k for o in outputs for k in o}
    for key, value in merged.items():
        holders = [o[key] for o in outputs if key in o]
        if len(holders) == 1:
            assert same_json(value, holders[0])


@given(contexts)
def test_merging_a_context_with_itself_changes_nothing(data: dict[str, Any]) -> None:
    assert same_json(merge_contexts([data, data]), data)
    assert same_json(merge_contexts([data]), data)


@given(st.lists(json_values, max_size=6), st.lists(json_values, max_size=6))
@example([1], [True])
@example([0], [False])
@example([1], [1.0])
def test_list_merge_is_an_order_preserving_union_of_json_values(earlier: list[Any], later: list[Any]) -> None:
    merged = merge_values(earlier, later)
    assert same_json(merged[: len(earlier)], earlier)
    added = merged[len(earlier):]
    assert same_json(added, [x for x in later if not any(same_json(x, y) for y in earlier)])


@given(json_values, json_values)
def test_a_later_value_wins_unless_both_are_lists_or_dicts(earlier: Any, later: Any) -> None:
    assume(not (isinstance(earlier, list) and isinstance(later, list)))
    assume(not (isinstance(earlier, dict) and isinstance(later, dict)))
    assert same_json(merge_values(earlier, later), later)


# ====================================================================== durations
UNITS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000}


@given(st.integers(0, 10**12), st.sampled_from(sorted(UNITS)), st.sampled_from(["", " ", "  "]))
def test_a_duration_is_its_number_times_its_unit(number: int, unit: str, pad: str) -> None:
    text = f"{pad}{number}{unit}{pad}"
    expected = number * UNITS[unit]
    if expected < MIN_POLL_INTERVAL_MS:
        with pytest.raises(ValueError, match="shortest poll interval"):
            parse_duration_ms(text)
    else:
        assert parse_duration_ms(text) == expected


@given(st.text(max_size=12))
@example("١٠s")  # Arabic-Indic digits
@example("１０s")  # full-width digits
@example("99999999999999999999h")
def test_any_other_text_is_refused_with_a_value_error_naming_it(text: str) -> None:
    match = re.fullmatch(r"[ \t\n\r\f\v]*([0-9]+)(ms|s|m|h)[ \t\n\r\f\v]*", text)
    if match is not None and MIN_POLL_INTERVAL_MS <= int(match.group(1)) * UNITS[match.group(2)] < 2**63:
        assert parse_duration_ms(text) == int(match.group(1)) * UNITS[match.group(2)]
        return
    with pytest.raises(ValueError) as caught:
        parse_duration_ms(text)
    assert "poll_interval" in str(caught.value)


# ====================================================================== cron
def field(low: int, high: int) -> st.SearchStrategy[str]:
    """One cron field of the standard grammar over [low, high]."""
    number = st.integers(low, high)
    # a-b with a < b: croniter reads a degenerate range "a-a" as "*" (cloaca.cron as "a")
    ranges = st.tuples(number, number).filter(lambda ab: ab[0] != ab[1]).map(
        lambda ab: f"{min(ab)}-{max(ab)}"
    )
    single = number.map(str) | ranges
    # steps from 2: croniter reads "*/1" as "*" (unrestricted), cloaca.cron as restricted
    # (only exactly "*" or "?" is unrestricted, as its docstring says)
    stepped = st.tuples(st.sampled_from(["*"]) | ranges, st.integers(2, high - low + 1)).map(
        lambda rs: f"{rs[0]}/{rs[1]}"
    )
    items = single | stepped
    return st.just("*") | items | st.lists(items, min_size=2, max_size=3).map(",".join)


cron_expressions = st.tuples(
    field(0, 59), field(0, 23), field(1, 28) | st.just("*"), field(1, 12), st.just("*") | field(0, 6)
).map(" ".join)
moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1)).map(
    lambda d: d.replace(microsecond=0, tzinfo=UTC)
)


def field_values(text: str, low: int, high: int) -> set[int]:
    """The values a field of `field`'s grammar names."""
    values: set[int] = set()
    for item in text.split(","):
        base, _, step = item.partition("/")
        first, _, last = (f"{low}-{high}" if base == "*" else base).partition("-")
        values.update(range(int(first), int(last or first) + 1, int(step or 1)))
    return values


def test_a_day_of_week_naming_every_day_is_restricted_and_fires_every_day() -> None:
    base = datetime(2000, 1, 1, tzinfo=UTC)  # a Saturday
    expected = [datetime(2000, 1, day, tzinfo=UTC) for day in (2, 3, 4)]
    assert fires("0 0 1,*/2 * 0,0-6", base, 3) == expected
    assert croniter_reads_as_unrestricted("0 0 1,*/2 * 0,0-6")
    assert not croniter_reads_as_unrestricted("0 0 1,*/2 * 0,2-6")
    assert not croniter_reads_as_unrestricted("0 0 * * 0-6")


def croniter_reads_as_unrestricted(expression: str) -> bool:
    """A day-of-week field naming all seven days, next to a restricted day-of-month: for
    cloaca.cron (as for Vixie cron) both are restricted and a day matching either fires, so
    every day does; croniter, depending on how the day-of-month is written, reads such a
    day-of-week as "*" and fires only on the days of the month (seen: "0 0 1,*/2 * 0,0-6")."""
    day_of_month, _, day_of_week = expression.split()[2:]
    return day_of_month != "*" and day_of_week != "*" and field_values(day_of_week, 0, 6) == set(range(7))


@settings(max_examples=40)
@given(cron_expressions, moments)
def test_cron_agrees_with_croniter_in_utc(expression: str, base: datetime) -> None:
    from croniter import croniter

    assume(not croniter_reads_as_unrestricted(expression))

    reference = croniter(expression, base)
    expected = [reference.get_next(datetime).astimezone(UTC) for _ in range(12)]
    assert fires(expression, base, 12) == expected


ZONES = ["America/New_York", "Europe/London", "Australia/Lord_Howe", "America/Santiago", "Asia/Kolkata"]
TRANSITIONS = [
    datetime(2026, 3, 8, 7, tzinfo=UTC), datetime(2026, 11, 1, 6, tzinfo=UTC),
    datetime(2026, 3, 29, 1, tzinfo=UTC), datetime(2026, 10, 3, 15, 30, tzinfo=UTC),
    datetime(2026, 4, 5, 3, tzinfo=UTC),
]


@settings(max_examples=25)
@given(
    st.sampled_from(ZONES), st.sampled_from(TRANSITIONS),
    st.sets(st.integers(0, 59), min_size=1, max_size=4),
    st.sets(st.integers(0, 23), min_size=1, max_size=5) | st.just(set(range(24))),
)
def test_cron_matches_the_brute_force_dst_reference(tz: str, around: datetime, minutes: set[int], hours: set[int]) -> None:
    hour_field = "*" if len(hours) == 24 else ",".join(map(str, sorted(hours)))
    expression = f"{','.join(map(str, sorted(minutes)))} {hour_field} * * *"
    start, end = around - timedelta(days=1), around + timedelta(days=1)
    got = CronExpression.parse(expression, tz).slots_between(start - timedelta(seconds=1), end, 100_000)
    assert got == reference_fires(minutes, hours, tz, start, end)
