"""Cron expressions (cloaca/_cron/expression.py): SPEC §7 grammar, time zones, DST rules, errors.

Expected dates are hand-computed. 2026 calendar anchors: Jan 1 is a Thursday, Feb 1 and
Mar 1 are Sundays, May 1 is a Friday, Aug 1 is a Saturday, Nov 1 is a Sunday.
"""

from __future__ import annotations

import ast
import pickle
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from cloaca._cron import expression as cron_module
from cloaca._cron.expression import CronExpression

UTC = timezone.utc


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def fires(expression: str, after: datetime, count: int, tz: str = "UTC") -> list[datetime]:
    """The first ``count`` fire times after ``after``, by chained next_after calls."""
    cron = CronExpression.parse(expression, tz)
    out = []
    for _ in range(count):
        after = cron.next_after(after)
        out.append(after)
    return out


def day_fires(expression: str, tz: str, first: datetime, last: datetime) -> list[datetime]:
    """Every fire time in [first, last] (both inclusive, UTC)."""
    cron = CronExpression.parse(expression, tz)
    return cron.slots_between(first - timedelta(seconds=1), last, 10_000)


def every(first: datetime, last: datetime, step: timedelta) -> list[datetime]:
    out = []
    while first <= last:
        out.append(first)
        first += step
    return out


JAN1 = utc(2026, 1, 1)


# --------------------------------------------------------------------------------------
# API shape


def test_parse_keeps_expression_and_timezone() -> None:
    cron = CronExpression.parse("*/5 * * * *", "Europe/Paris")
    assert cron.expression == "*/5 * * * *"
    assert cron.timezone == "Europe/Paris"
    assert CronExpression.parse("0 0 * * *").timezone == "UTC"


def test_is_immutable_hashable_and_picklable() -> None:
    cron = CronExpression.parse("0 12 * * *", "Asia/Tokyo")
    with pytest.raises(AttributeError, match="immutable"):
        cron.expression = "0 13 * * *"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        del cron.timezone  # type: ignore[misc]
    same = CronExpression.parse("0 12 * * *", "Asia/Tokyo")
    assert cron == same and hash(cron) == hash(same)
    assert cron != CronExpression.parse("0 12 * * *", "UTC")
    copy = pickle.loads(pickle.dumps(cron))
    assert copy == cron
    assert copy.next_after(JAN1) == utc(2026, 1, 1, 3)
    assert repr(cron) == "CronExpression('0 12 * * *', timezone='Asia/Tokyo')"


def test_next_after_is_strictly_after_and_utc() -> None:
    cron = CronExpression.parse("0 * * * *")
    result = cron.next_after(utc(2026, 1, 1, 10))
    assert result == utc(2026, 1, 1, 11)
    assert result.tzinfo is UTC
    assert cron.next_after(utc(2026, 1, 1, 10, 59, 59)) == utc(2026, 1, 1, 11)


def test_next_after_sub_second_inputs() -> None:
    cron = CronExpression.parse("* * * * * *")
    assert cron.next_after(utc(2026, 1, 1, 10).replace(microsecond=999_999)) == utc(2026, 1, 1, 10, 0, 1)
    assert cron.next_after(utc(2026, 1, 1, 10).replace(microsecond=1)) == utc(2026, 1, 1, 10, 0, 1)
    assert cron.next_after(utc(2026, 1, 1, 10)) == utc(2026, 1, 1, 10, 0, 1)


def test_next_after_accepts_any_aware_input() -> None:
    cron = CronExpression.parse("0 0 * * *")
    after = datetime(2026, 1, 1, 20, 0, tzinfo=ZoneInfo("America/New_York"))  # 2026-01-02 01:00Z
    assert cron.next_after(after) == utc(2026, 1, 3)
    assert cron.next_after(datetime(2026, 1, 1, 23, tzinfo=timezone(timedelta(hours=-2)))) == utc(2026, 1, 3)


def test_naive_and_non_datetime_inputs_are_rejected() -> None:
    cron = CronExpression.parse("0 0 * * *")
    with pytest.raises(ValueError, match="timezone-aware"):
        cron.next_after(datetime(2026, 1, 1))
    with pytest.raises(TypeError, match="datetime"):
        cron.next_after("2026-01-01T00:00:00Z")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone-aware"):
        cron.slots_between(datetime(2026, 1, 1), utc(2026, 1, 2), 5)


def test_slots_between_bounds_and_limit() -> None:
    cron = CronExpression.parse("0 * * * *")
    assert cron.slots_between(utc(2026, 1, 1, 1), utc(2026, 1, 1, 4), 10) == [
        utc(2026, 1, 1, 2),
        utc(2026, 1, 1, 3),
        utc(2026, 1, 1, 4),
    ]
    assert cron.slots_between(utc(2026, 1, 1, 1), utc(2026, 1, 1, 23), 2) == [utc(2026, 1, 1, 2), utc(2026, 1, 1, 3)]
    assert cron.slots_between(utc(2026, 1, 1, 1), utc(2026, 1, 1, 23), 0) == []
    assert cron.slots_between(utc(2026, 1, 1, 5), utc(2026, 1, 1, 1), 10) == []
    assert cron.slots_between(utc(2026, 1, 1, 1, 0, 1), utc(2026, 1, 1, 1, 59, 59), 10) == []
    assert all(slot.tzinfo is UTC for slot in cron.slots_between(JAN1, utc(2026, 1, 2), 100))


def test_slots_between_rejects_bad_limit() -> None:
    cron = CronExpression.parse("0 * * * *")
    with pytest.raises(ValueError, match="limit"):
        cron.slots_between(JAN1, utc(2026, 1, 2), -1)
    with pytest.raises(TypeError, match="limit"):
        cron.slots_between(JAN1, utc(2026, 1, 2), 2.0)  # type: ignore[arg-type]


def test_module_is_pure() -> None:
    tree = ast.parse(Path(cron_module.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not any(name.startswith(("cloaca", "asyncio", "anyio", "socket", ".")) for name in imported)


# --------------------------------------------------------------------------------------
# grammar: basic fields


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("*/15 * * * *", [utc(2026, 1, 1, 0, 15), utc(2026, 1, 1, 0, 30), utc(2026, 1, 1, 0, 45)]),
        ("5 4 * * *", [utc(2026, 1, 1, 4, 5), utc(2026, 1, 2, 4, 5), utc(2026, 1, 3, 4, 5)]),
        ("0 0 1 1 *", [utc(2027, 1, 1), utc(2028, 1, 1), utc(2029, 1, 1)]),
        ("0 12 * 3 *", [utc(2026, 3, 1, 12), utc(2026, 3, 2, 12), utc(2026, 3, 3, 12)]),
        ("10,20,40 3 * * *", [utc(2026, 1, 1, 3, 10), utc(2026, 1, 1, 3, 20), utc(2026, 1, 1, 3, 40)]),
        ("0 9-11 * * *", [utc(2026, 1, 1, 9), utc(2026, 1, 1, 10), utc(2026, 1, 1, 11), utc(2026, 1, 2, 9)]),
        ("7 0-20/8 * * *", [utc(2026, 1, 1, 0, 7), utc(2026, 1, 1, 8, 7), utc(2026, 1, 1, 16, 7), utc(2026, 1, 2, 0, 7)]),
        ("5/20 1 * * *", [utc(2026, 1, 1, 1, 5), utc(2026, 1, 1, 1, 25), utc(2026, 1, 1, 1, 45), utc(2026, 1, 2, 1, 5)]),
        ("0 0 1 */4 *", [utc(2026, 5, 1), utc(2026, 9, 1), utc(2027, 1, 1)]),
        ("0 0 1,15 * *", [utc(2026, 1, 15), utc(2026, 2, 1), utc(2026, 2, 15)]),
        ("1-3,58 0 * * *", [utc(2026, 1, 1, 0, 1), utc(2026, 1, 1, 0, 2), utc(2026, 1, 1, 0, 3), utc(2026, 1, 1, 0, 58)]),
        ("0  0   *  * *", [utc(2026, 1, 2), utc(2026, 1, 3)]),
        ("05 04 * * *", [utc(2026, 1, 1, 4, 5), utc(2026, 1, 2, 4, 5)]),
    ],
)
def test_five_field_grammar(expression: str, expected: list[datetime]) -> None:
    assert fires(expression, JAN1, len(expected)) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("*/10 * * * * *", [utc(2026, 1, 1, 0, 0, 10), utc(2026, 1, 1, 0, 0, 20), utc(2026, 1, 1, 0, 0, 30)]),
        ("30 15 10 * * *", [utc(2026, 1, 1, 10, 15, 30), utc(2026, 1, 2, 10, 15, 30)]),
        ("0 0 0 * * *", [utc(2026, 1, 2), utc(2026, 1, 3)]),
        ("5,50 0 * * * *", [utc(2026, 1, 1, 0, 0, 5), utc(2026, 1, 1, 0, 0, 50), utc(2026, 1, 1, 1, 0, 5)]),
        ("0-2 1 0 * * *", [utc(2026, 1, 1, 0, 1, 0), utc(2026, 1, 1, 0, 1, 1), utc(2026, 1, 1, 0, 1, 2), utc(2026, 1, 2, 0, 1)]),
        ("59 59 23 31 12 *", [utc(2026, 12, 31, 23, 59, 59), utc(2027, 12, 31, 23, 59, 59)]),
    ],
)
def test_six_field_grammar_with_leading_seconds(expression: str, expected: list[datetime]) -> None:
    assert fires(expression, JAN1, len(expected)) == expected


def test_every_second_fires_each_second() -> None:
    assert fires("* * * * * *", utc(2026, 12, 31, 23, 59, 58), 3) == [
        utc(2026, 12, 31, 23, 59, 59),
        utc(2027, 1, 1, 0, 0, 0),
        utc(2027, 1, 1, 0, 0, 1),
    ]


def test_question_mark_is_a_wildcard() -> None:
    assert fires("0 0 ? * MON", JAN1, 2) == [utc(2026, 1, 5), utc(2026, 1, 12)]
    assert fires("0 0 1 * ?", JAN1, 2) == [utc(2026, 2, 1), utc(2026, 3, 1)]
    assert fires("? 0 0 * * *", JAN1, 2) == [utc(2026, 1, 1, 0, 0, 1), utc(2026, 1, 1, 0, 0, 2)]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0 0 1 jan,Jul *", [utc(2026, 7, 1), utc(2027, 1, 1)]),
        ("0 0 1 FEB-apr *", [utc(2026, 2, 1), utc(2026, 3, 1), utc(2026, 4, 1), utc(2027, 2, 1)]),
        ("0 0 1 JAN-DEC/5 *", [utc(2026, 6, 1), utc(2026, 11, 1), utc(2027, 1, 1)]),
        ("0 0 10 dec *", [utc(2026, 12, 10)]),
    ],
)
def test_month_names(expression: str, expected: list[datetime]) -> None:
    assert fires(expression, JAN1, len(expected)) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0 0 * * sun", [utc(2026, 1, 4), utc(2026, 1, 11)]),
        ("0 0 * * Sat,SUN", [utc(2026, 1, 3), utc(2026, 1, 4), utc(2026, 1, 10)]),
        ("0 0 * * MON-FRI", [utc(2026, 1, 2), utc(2026, 1, 5), utc(2026, 1, 6)]),
        ("0 0 * * fri-sun", [utc(2026, 1, 2), utc(2026, 1, 3), utc(2026, 1, 4), utc(2026, 1, 9)]),
        ("0 0 * * 7", [utc(2026, 1, 4), utc(2026, 1, 11)]),
        ("0 0 * * 0", [utc(2026, 1, 4), utc(2026, 1, 11)]),
        ("0 0 * * 5-7", [utc(2026, 1, 2), utc(2026, 1, 3), utc(2026, 1, 4), utc(2026, 1, 9)]),
        ("0 0 * * 6-0", [utc(2026, 1, 3), utc(2026, 1, 4), utc(2026, 1, 10)]),
        ("0 0 * * 0-7", [utc(2026, 1, 2), utc(2026, 1, 3), utc(2026, 1, 4)]),
        ("0 0 * * */3", [utc(2026, 1, 3), utc(2026, 1, 4), utc(2026, 1, 7), utc(2026, 1, 10)]),
        ("0 0 * * 1/2", [utc(2026, 1, 2), utc(2026, 1, 5), utc(2026, 1, 7), utc(2026, 1, 9)]),
    ],
)
def test_weekday_names_and_numbers(expression: str, expected: list[datetime]) -> None:
    assert fires(expression, JAN1, len(expected)) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("@yearly", [utc(2027, 1, 1), utc(2028, 1, 1)]),
        ("@annually", [utc(2027, 1, 1), utc(2028, 1, 1)]),
        ("@monthly", [utc(2026, 2, 1), utc(2026, 3, 1)]),
        ("@weekly", [utc(2026, 1, 4), utc(2026, 1, 11)]),
        ("@daily", [utc(2026, 1, 2), utc(2026, 1, 3)]),
        ("@hourly", [utc(2026, 1, 1, 1), utc(2026, 1, 1, 2)]),
        ("@DAILY", [utc(2026, 1, 2)]),
    ],
)
def test_nicknames(expression: str, expected: list[datetime]) -> None:
    assert fires(expression, JAN1, len(expected)) == expected


def test_nickname_in_a_time_zone() -> None:
    assert fires("@daily", JAN1, 2, "America/New_York") == [utc(2026, 1, 1, 5), utc(2026, 1, 2, 5)]


# --------------------------------------------------------------------------------------
# grammar: L, W, #, and the day-of-month / day-of-week OR


def test_last_day_of_month() -> None:
    assert fires("0 0 L * *", JAN1, 4) == [utc(2026, 1, 31), utc(2026, 2, 28), utc(2026, 3, 31), utc(2026, 4, 30)]
    assert fires("0 0 L 2 *", JAN1, 3) == [utc(2026, 2, 28), utc(2027, 2, 28), utc(2028, 2, 29)]
    assert fires("0 0 1,L * *", JAN1, 3) == [utc(2026, 1, 31), utc(2026, 2, 1), utc(2026, 2, 28)]


def test_nearest_weekday() -> None:
    # 15th: Feb 15 is a Sunday -> Mon 16; Aug 15 is a Saturday -> Fri 14; Nov 15 Sunday -> 16.
    expected = [utc(2026, m, d) for m, d in [(1, 15), (2, 16), (3, 16), (4, 15), (5, 15), (6, 15), (7, 15), (8, 14)]]
    assert fires("0 0 15W * *", JAN1, 8) == expected
    assert fires("0 0 15w 11 *", JAN1, 1) == [utc(2026, 11, 16)]


def test_nearest_weekday_stays_in_the_month() -> None:
    # Aug 1 2026 is a Saturday: 1W is Monday Aug 3, not Friday Jul 31.
    assert fires("0 0 1W 8 *", JAN1, 1) == [utc(2026, 8, 3)]
    # May 31 2026 is a Sunday: 31W is Friday May 29, not Monday Jun 1.
    assert fires("0 0 31W 5 *", JAN1, 1) == [utc(2026, 5, 29)]
    # 31W never fires in 30-day months.
    assert fires("0 0 31W * *", JAN1, 3) == [utc(2026, 1, 30), utc(2026, 3, 31), utc(2026, 5, 29)]


def test_last_weekday_of_month() -> None:
    # Jan 31 Sat -> 30; Feb 28 Sat -> 27; Mar 31 Tue; May 31 Sun -> 29.
    assert fires("0 0 LW * *", JAN1, 5) == [
        utc(2026, 1, 30),
        utc(2026, 2, 27),
        utc(2026, 3, 31),
        utc(2026, 4, 30),
        utc(2026, 5, 29),
    ]


def test_nth_weekday() -> None:
    assert fires("0 0 * * 5#2", JAN1, 3) == [utc(2026, 1, 9), utc(2026, 2, 13), utc(2026, 3, 13)]
    assert fires("0 0 * * FRI#2", JAN1, 1) == [utc(2026, 1, 9)]
    assert fires("0 0 * * 0#1", JAN1, 2) == [utc(2026, 1, 4), utc(2026, 2, 1)]
    assert fires("0 0 * * 7#1", JAN1, 2) == [utc(2026, 1, 4), utc(2026, 2, 1)]
    # Fifth Monday: only in months that have one (Mar 30, Jun 29, Aug 31 in 2026).
    assert fires("0 0 * * 1#5", JAN1, 3) == [utc(2026, 3, 30), utc(2026, 6, 29), utc(2026, 8, 31)]
    assert fires("0 0 * * 1#1,3#3", JAN1, 3) == [utc(2026, 1, 5), utc(2026, 1, 21), utc(2026, 2, 2)]


def test_last_weekday_of_kind() -> None:
    expected = [utc(2026, 1, 30), utc(2026, 2, 27), utc(2026, 3, 27), utc(2026, 4, 24), utc(2026, 5, 29)]
    assert fires("0 0 * * 5#L", JAN1, 5) == expected
    assert fires("0 0 * * fri#l", JAN1, 5) == expected
    assert fires("0 0 * * 5L", JAN1, 5) == expected
    assert fires("0 0 * * 7#L", JAN1, 2) == [utc(2026, 1, 25), utc(2026, 2, 22)]


def test_fifth_monday_of_february_waits_for_a_leap_year_starting_on_monday() -> None:
    assert fires("0 0 * 2 1#5", JAN1, 2) == [utc(2044, 2, 29), utc(2072, 2, 29)]


def test_day_of_month_or_day_of_week_when_both_restricted() -> None:
    # 13th of any month OR any Friday (Jan 13 2026 is a Tuesday).
    assert fires("0 0 13 * 5", JAN1, 5) == [
        utc(2026, 1, 2),
        utc(2026, 1, 9),
        utc(2026, 1, 13),
        utc(2026, 1, 16),
        utc(2026, 1, 23),
    ]
    assert fires("0 0 L * 1#1", JAN1, 3) == [utc(2026, 1, 5), utc(2026, 1, 31), utc(2026, 2, 2)]


def test_only_the_restricted_day_field_counts() -> None:
    assert fires("0 0 13 * *", JAN1, 2) == [utc(2026, 1, 13), utc(2026, 2, 13)]
    assert fires("0 0 * * 2", JAN1, 2) == [utc(2026, 1, 6), utc(2026, 1, 13)]
    assert fires("0 0 ? * 2", JAN1, 2) == [utc(2026, 1, 6), utc(2026, 1, 13)]


def test_leap_day() -> None:
    assert fires("0 0 29 2 *", JAN1, 2) == [utc(2028, 2, 29), utc(2032, 2, 29)]


# --------------------------------------------------------------------------------------
# time zones


def test_fixed_offset_zone() -> None:
    assert fires("0 9 * * *", JAN1, 2, "Asia/Kolkata") == [utc(2026, 1, 1, 3, 30), utc(2026, 1, 2, 3, 30)]
    assert fires("0 * * * *", JAN1, 2, "Asia/Kolkata") == [utc(2026, 1, 1, 0, 30), utc(2026, 1, 1, 1, 30)]
    assert fires("0 0 1 7 *", JAN1, 1, "Asia/Tokyo") == [utc(2026, 6, 30, 15)]


def test_wall_time_follows_the_season() -> None:
    assert fires("0 12 1 * *", JAN1, 7, "America/New_York") == [
        utc(2026, 1, 1, 17),
        utc(2026, 2, 1, 17),
        utc(2026, 3, 1, 17),
        utc(2026, 4, 1, 16),
        utc(2026, 5, 1, 16),
        utc(2026, 6, 1, 16),
        utc(2026, 7, 1, 16),
    ]
    assert fires("0 12 1 * *", utc(2026, 10, 1), 3, "America/New_York") == [
        utc(2026, 10, 1, 16),
        utc(2026, 11, 1, 17),
        utc(2026, 12, 1, 17),
    ]


def test_day_boundaries_are_local() -> None:
    # Friday 23:30 in Sydney (UTC+11 in January) is Friday 12:30 UTC.
    assert fires("30 23 * * FRI", JAN1, 2, "Australia/Sydney") == [utc(2026, 1, 2, 12, 30), utc(2026, 1, 9, 12, 30)]
    assert fires("0 0 L * *", JAN1, 2, "America/Los_Angeles") == [utc(2026, 1, 31, 8), utc(2026, 2, 28, 8)]


# --------------------------------------------------------------------------------------
# daylight saving: America/New_York, 2026-03-08 (02:00 EST -> 03:00 EDT at 07:00Z) and
# 2026-11-01 (02:00 EDT -> 01:00 EST at 06:00Z)

NY = "America/New_York"
SPRING_DAY = (utc(2026, 3, 8, 5), utc(2026, 3, 9, 3, 59, 59))  # local 00:00 EST .. 23:59:59 EDT
FALL_DAY = (utc(2026, 11, 1, 4), utc(2026, 11, 2, 4, 59, 59))  # local 00:00 EDT .. 23:59:59 EST


def test_spring_forward_fixed_time_fires_once_at_the_end_of_the_gap() -> None:
    # The skipped 02:30 fires at the first valid second after the gap, 03:00 EDT (croner,
    # Cronos, ISC cron, OCPS), not shifted by the gap to 03:30.
    assert day_fires("30 2 * * *", NY, *SPRING_DAY) == [utc(2026, 3, 8, 7)]  # 03:00 EDT
    assert fires("30 2 * * *", utc(2026, 3, 6), 4, NY) == [
        utc(2026, 3, 6, 7, 30),  # 02:30 EST
        utc(2026, 3, 7, 7, 30),
        utc(2026, 3, 8, 7),  # 03:00 EDT
        utc(2026, 3, 9, 6, 30),  # 02:30 EDT
    ]
    assert day_fires("0 2 * * *", NY, *SPRING_DAY) == [utc(2026, 3, 8, 7)]  # 03:00 EDT
    assert day_fires("0 30 2 * * *", NY, *SPRING_DAY) == [utc(2026, 3, 8, 7)]
    assert day_fires("59 59 2 * * *", NY, *SPRING_DAY) == [utc(2026, 3, 8, 7)]


def test_spring_forward_colliding_wall_times_fire_once() -> None:
    assert day_fires("0,30 2 * * *", NY, *SPRING_DAY) == [utc(2026, 3, 8, 7)]
    assert day_fires("0 2,3 * * *", NY, *SPRING_DAY) == [utc(2026, 3, 8, 7)]
    assert day_fires("30 2,3 * * *", NY, *SPRING_DAY) == [utc(2026, 3, 8, 7), utc(2026, 3, 8, 7, 30)]


def test_spring_forward_every_thirty_minutes() -> None:
    got = day_fires("*/30 * * * *", NY, *SPRING_DAY)
    assert got[:6] == [
        utc(2026, 3, 8, 5),  # 00:00 EST
        utc(2026, 3, 8, 5, 30),
        utc(2026, 3, 8, 6),
        utc(2026, 3, 8, 6, 30),  # 01:30 EST
        utc(2026, 3, 8, 7),  # 03:00 EDT
        utc(2026, 3, 8, 7, 30),
    ]
    assert got == every(utc(2026, 3, 8, 5), utc(2026, 3, 9, 3, 30), timedelta(minutes=30))
    assert len(got) == 46  # a 23-hour day


def test_spring_forward_every_two_hours_keeps_the_skipped_slot() -> None:
    assert day_fires("15 */2 * * *", NY, *SPRING_DAY) == [
        utc(2026, 3, 8, 5, 15),  # 00:15 EST
        utc(2026, 3, 8, 7),  # 02:15 -> 03:00 EDT
        utc(2026, 3, 8, 8, 15),  # 04:15 EDT
        *every(utc(2026, 3, 8, 10, 15), utc(2026, 3, 9, 2, 15), timedelta(hours=2)),
    ]


def test_next_after_around_the_end_of_the_gap() -> None:
    # The skipped 02:45 fires at 07:00Z (03:00 EDT): from 06:59:59Z it is next, from 07:00Z
    # or 07:10Z (03:10 EDT) it is past.
    assert fires("45 2 * * *", utc(2026, 3, 8, 6, 59, 59), 2, NY) == [utc(2026, 3, 8, 7), utc(2026, 3, 9, 6, 45)]
    assert fires("45 2 * * *", utc(2026, 3, 8, 7), 1, NY) == [utc(2026, 3, 9, 6, 45)]
    assert fires("45 2 * * *", utc(2026, 3, 8, 7, 10), 2, NY) == [utc(2026, 3, 9, 6, 45), utc(2026, 3, 10, 6, 45)]
    assert fires("15 2,3 * * *", utc(2026, 3, 8, 7, 10), 3, NY) == [
        utc(2026, 3, 8, 7, 15),
        utc(2026, 3, 9, 6, 15),
        utc(2026, 3, 9, 7, 15),
    ]


def test_fall_back_fixed_time_fires_once_at_first_occurrence() -> None:
    assert day_fires("30 1 * * *", NY, *FALL_DAY) == [utc(2026, 11, 1, 5, 30)]  # 01:30 EDT
    assert fires("30 1 * * *", utc(2026, 10, 31), 3, NY) == [
        utc(2026, 10, 31, 5, 30),
        utc(2026, 11, 1, 5, 30),
        utc(2026, 11, 2, 6, 30),  # 01:30 EST
    ]
    assert day_fires("0 1 * * *", NY, *FALL_DAY) == [utc(2026, 11, 1, 5)]
    assert day_fires("0 2 * * *", NY, *FALL_DAY) == [utc(2026, 11, 1, 7)]  # 02:00 EST, once


def test_fall_back_second_pass_does_not_refire_fixed_time() -> None:
    # 06:15Z is 01:15 EST, inside the repeated hour.
    assert fires("30 1 * * *", utc(2026, 11, 1, 6, 15), 1, NY) == [utc(2026, 11, 2, 6, 30)]


def test_fall_back_fixed_hour_every_minute_runs_the_first_pass_only() -> None:
    got = day_fires("* 1 * * *", NY, *FALL_DAY)
    assert got == every(utc(2026, 11, 1, 5), utc(2026, 11, 1, 5, 59), timedelta(minutes=1))
    got = day_fires("*/20 * 1 * * *", NY, *FALL_DAY)
    assert got == every(utc(2026, 11, 1, 5), utc(2026, 11, 1, 5, 59, 40), timedelta(seconds=20))


def test_fall_back_every_thirty_minutes_fires_in_both_passes() -> None:
    got = day_fires("*/30 * * * *", NY, *FALL_DAY)
    assert got[2:8] == [
        utc(2026, 11, 1, 5),  # 01:00 EDT
        utc(2026, 11, 1, 5, 30),  # 01:30 EDT
        utc(2026, 11, 1, 6),  # 01:00 EST
        utc(2026, 11, 1, 6, 30),  # 01:30 EST
        utc(2026, 11, 1, 7),  # 02:00 EST
        utc(2026, 11, 1, 7, 30),
    ]
    assert got == every(utc(2026, 11, 1, 4), utc(2026, 11, 2, 4, 30), timedelta(minutes=30))
    assert len(got) == 50  # a 25-hour day


def test_fall_back_hourly_fires_every_real_hour() -> None:
    assert day_fires("@hourly", NY, *FALL_DAY) == every(utc(2026, 11, 1, 4), utc(2026, 11, 2, 4), timedelta(hours=1))
    assert day_fires("0 * * * *", NY, *SPRING_DAY) == every(utc(2026, 3, 8, 5), utc(2026, 3, 9, 3), timedelta(hours=1))


def test_every_second_across_both_transitions() -> None:
    cron = CronExpression.parse("* * * * * *", NY)
    for moment in (utc(2026, 3, 8, 6, 59, 58), utc(2026, 11, 1, 5, 59, 58)):
        assert cron.slots_between(moment, moment + timedelta(seconds=4), 10) == every(
            moment + timedelta(seconds=1), moment + timedelta(seconds=4), timedelta(seconds=1)
        )


# Europe/London 2026: 01:00 GMT -> 02:00 BST on Mar 29, 02:00 BST -> 01:00 GMT on Oct 25,
# both at 01:00Z.


def test_london_transitions() -> None:
    london = "Europe/London"
    assert fires("30 1 * * *", utc(2026, 3, 27, 12), 3, london) == [
        utc(2026, 3, 28, 1, 30),  # 01:30 GMT
        utc(2026, 3, 29, 1),  # nonexistent 01:30 -> 02:00 BST
        utc(2026, 3, 30, 0, 30),  # 01:30 BST
    ]
    assert fires("30 1 * * *", utc(2026, 10, 24, 12), 2, london) == [
        utc(2026, 10, 25, 0, 30),  # first 01:30 (BST)
        utc(2026, 10, 26, 1, 30),  # 01:30 GMT
    ]
    fall_day = day_fires("*/30 * * * *", london, utc(2026, 10, 24, 23), utc(2026, 10, 25, 23, 59))
    assert fall_day == every(utc(2026, 10, 24, 23), utc(2026, 10, 25, 23, 30), timedelta(minutes=30))
    assert len(fall_day) == 50


# Australia/Sydney 2026: 03:00 AEDT -> 02:00 AEST on Apr 5 (at Apr 4 16:00Z),
# 02:00 AEST -> 03:00 AEDT on Oct 4 (at Oct 3 16:00Z).


def test_sydney_transitions() -> None:
    sydney = "Australia/Sydney"
    assert fires("30 2 * * *", utc(2026, 4, 3), 3, sydney) == [
        utc(2026, 4, 3, 15, 30),  # Apr 4 02:30 AEDT
        utc(2026, 4, 4, 15, 30),  # Apr 5 first 02:30 (AEDT)
        utc(2026, 4, 5, 16, 30),  # Apr 6 02:30 AEST
    ]
    assert fires("30 2 * * *", utc(2026, 10, 2), 3, sydney) == [
        utc(2026, 10, 2, 16, 30),  # Oct 3 02:30 AEST
        utc(2026, 10, 3, 16),  # Oct 4 nonexistent 02:30 -> 03:00 AEDT
        utc(2026, 10, 4, 15, 30),  # Oct 5 02:30 AEDT
    ]
    long_day = day_fires("0 * * * *", sydney, utc(2026, 4, 4, 13), utc(2026, 4, 5, 13, 59))
    assert long_day == every(utc(2026, 4, 4, 13), utc(2026, 4, 5, 13), timedelta(hours=1))
    assert len(long_day) == 25


# --------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize(
    ("expression", "detail"),
    [
        ("61 * * * *", "minute value 61 out of range 0-59"),
        ("* 25 * * *", "hour value 25 out of range 0-23"),
        ("* * 0 * *", "day-of-month value 0 out of range 1-31"),
        ("* * 32 * *", "day-of-month value 32 out of range 1-31"),
        ("* * * 13 *", "month value 13 out of range 1-12"),
        ("* * * * 8", "day-of-week value 8 out of range 0-7"),
        ("60 * * * * *", "second value 60 out of range 0-59"),
        ("every day", "expected 5 or 6 fields, got 2"),
        ("", "expected 5 or 6 fields, got 0"),
        ("   ", "expected 5 or 6 fields, got 0"),
        ("* * * *", "expected 5 or 6 fields, got 4"),
        ("* * * * * * *", "expected 5 or 6 fields, got 7"),
        ("@fortnightly", "unknown nickname"),
        ("*/0 * * * *", "step"),
        ("*/ * * * *", "step"),
        ("*/x * * * *", "step"),
        ("5-1 * * * *", "reversed"),
        ("1,,2 * * * *", "empty element"),
        ("1- * * * *", "invalid minute element"),
        ("-1 * * * *", "invalid minute element"),
        ("* * * * MON#6", "must be 1-5 or L"),
        ("* * * * 5#0", "must be 1-5 or L"),
        ("* * * * FOO", "day-of-week value 'FOO'"),
        ("* * * FOO *", "month value 'FOO'"),
        ("MON * * * *", "minute value 'MON'"),
        ("L * * * *", "minute value 'L'"),
        ("* * * * L", "day-of-week value 'L'"),
        ("* * 15W-20 * *", "day-of-month"),
        ("* * 32W * *", "day-of-month value 32 out of range 1-31"),
        ("* * 1-LW * *", "day-of-month"),
        ("* * 1#2 * *", "day-of-month"),
        ("* 1#2 * * *", "hour"),
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 4,6,9,11 *", "never fires"),
        ("0 0 30W 2 *", "never fires"),
    ],
)
def test_invalid_expressions_quote_the_input(expression: str, detail: str) -> None:
    with pytest.raises(ValueError) as caught:
        CronExpression.parse(expression)
    message = str(caught.value)
    assert message.startswith(f"Invalid cron expression '{expression}': ")
    assert detail in message


def test_error_message_is_exact_for_a_range_error() -> None:
    with pytest.raises(ValueError) as caught:
        CronExpression.parse("61 * * * *")
    assert str(caught.value) == "Invalid cron expression '61 * * * *': minute value 61 out of range 0-59"


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "utc ", "America", "../etc/passwd", "/usr/share/zoneinfo/UTC"])
def test_unknown_timezone_quotes_the_name(name: str) -> None:
    with pytest.raises(ValueError) as caught:
        CronExpression.parse("* * * * *", name)
    assert str(caught.value) == f"Unknown timezone {name!r}"


def test_non_string_inputs_are_type_errors() -> None:
    with pytest.raises(TypeError):
        CronExpression.parse(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        CronExpression.parse(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        CronExpression.parse("* * * * *", None)  # type: ignore[arg-type]


def test_valid_edge_expressions_are_accepted() -> None:
    for expression in ("0 0 31 * *", "0 0 30 2 5", "0 0 29 2 *", "0 0 * 2 1#5", "0 0 L 2 *", "0 0 1W,LW * *"):
        CronExpression.parse(expression)


# --------------------------------------------------------------------------------------
# cross-check against croniter where it is right (UTC, standard grammar)

CROSS_CHECKED = [
    "* * * * *",
    "*/7 * * * *",
    "5,10-20/3 */5 * * *",
    "0 0 1,15 * 1-5",
    "30 6 * * 1-5",
    "0 0 L * *",
    "0 0 15W * *",
    "0 0 * * FRI#3",
    "0 12 * JAN,JUN,DEC *",
    "17 3 29 2 *",
    "0 0 13 * 5",
    "0 9-17/2 * * MON-FRI",
    "45 23 31 * *",
    "0 0 * * 6,0",
    "1-59/13 1,3,22 2-29/9 */2 *",
]


@pytest.mark.parametrize("expression", CROSS_CHECKED)
def test_agrees_with_croniter_in_utc(expression: str) -> None:
    croniter = pytest.importorskip("croniter").croniter
    base = utc(2025, 12, 30, 22, 7)
    reference = croniter(expression, base)
    expected = [reference.get_next(datetime).astimezone(UTC) for _ in range(60)]
    assert fires(expression, base, 60) == expected


# --------------------------------------------------------------------------------------
# brute-force reference around transitions (minute/hour expressions, every day)


def reference_fires(minutes: set[int], hours: set[int], tz: str, start: datetime, end: datetime) -> list[datetime]:
    """The documented DST rules applied minute by minute with zoneinfo."""
    zone = ZoneInfo(tz)
    found: set[datetime] = set()
    if len(hours) == 24:  # clock-following: every real instant whose wall time matches
        moment = start
        while moment <= end:
            wall = moment.astimezone(zone)
            if wall.minute in minutes and wall.hour in hours:
                found.add(moment)
            moment += timedelta(minutes=1)
    else:  # fixed: each matching wall time once, at its first occurrence or the end of its gap
        wall = start.astimezone(zone).replace(tzinfo=None) - timedelta(hours=3)
        last = end.astimezone(zone).replace(tzinfo=None) + timedelta(hours=3)
        while wall <= last:
            if wall.minute in minutes and wall.hour in hours:
                moment = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
                if moment.astimezone(zone).replace(tzinfo=None) != wall:  # skipped: the first minute after the gap
                    moment = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
                    while moment.astimezone(zone).replace(tzinfo=None) <= wall:
                        moment += timedelta(minutes=1)
                if start <= moment <= end:
                    found.add(moment)
            wall += timedelta(minutes=1)
    return sorted(found)


@pytest.mark.parametrize(
    ("tz", "around"),
    [
        ("America/New_York", utc(2026, 3, 8, 7)),
        ("America/New_York", utc(2026, 11, 1, 6)),
        ("Europe/London", utc(2026, 3, 29, 1)),
        ("Australia/Sydney", utc(2026, 4, 4, 16)),
        ("Australia/Lord_Howe", utc(2026, 10, 3, 15, 30)),  # 30-minute jump
        ("Australia/Lord_Howe", utc(2026, 4, 4, 15)),
        ("America/Santiago", utc(2026, 4, 5, 3)),
    ],
)
@pytest.mark.parametrize(
    ("expression", "minutes", "hours"),
    [
        ("*/15 * * * *", {0, 15, 30, 45}, set(range(24))),
        ("10,40 * * * *", {10, 40}, set(range(24))),
        ("20 0-3 * * *", {20}, {0, 1, 2, 3}),
        ("0,45 */2 * * *", {0, 45}, set(range(0, 24, 2))),
        ("5 22-23,0-2 * * *", {5}, {22, 23, 0, 1, 2}),
    ],
)
def test_matches_brute_force_reference(tz: str, around: datetime, expression: str, minutes: set[int], hours: set[int]) -> None:
    start, end = around - timedelta(days=3), around + timedelta(days=3)
    got = CronExpression.parse(expression, tz).slots_between(start - timedelta(seconds=1), end, 100_000)
    assert got == reference_fires(minutes, hours, tz, start, end)


def test_end_of_calendar() -> None:
    cron = CronExpression.parse("0 0 1 1 *")
    with pytest.raises(OverflowError):
        cron.next_after(utc(9999, 1, 1, 1))
    assert cron.slots_between(utc(9998, 6, 1), datetime.max.replace(tzinfo=UTC), 5) == [utc(9999, 1, 1)]
