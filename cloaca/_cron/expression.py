"""Cron expressions: parsing, validation and fire-time computation (pure, no I/O).

Grammar (SPEC §7)
-----------------
Five fields ``minute hour day-of-month month day-of-week`` or six fields with a
leading ``second`` field. Per field: ``*``, ``?`` (same as ``*``), numbers,
ranges ``a-b``, steps ``*/n``, ``a-b/n`` and ``a/n`` (= ``a-max/n``), lists
``a,b``. Month names ``JAN``-``DEC`` and weekday names ``SUN``-``SAT`` (any
case). Weekdays are 0-7, 0 and 7 both Sunday; in a weekday range an end of 0
means 7 (``FRI-SUN`` = Friday, Saturday, Sunday). Extensions:

* day-of-month ``L`` = last day of the month, ``LW`` = last weekday (Mon-Fri)
  of the month, ``15W`` = the weekday nearest the 15th within the same month
  (Saturday -> Friday before, Sunday -> Monday after; ``1W`` on a Saturday is
  Monday the 3rd, ``31W`` on a Sunday is Friday the 29th); ``nW`` never fires
  in a month that has no day ``n``.
* day-of-week ``5#2`` = second Friday (``#1``-``#5``), ``5#L`` (or ``5L``) =
  last Friday of the month.
* Nicknames ``@yearly``/``@annually`` (``0 0 1 1 *``), ``@monthly``
  (``0 0 1 * *``), ``@weekly`` (``0 0 * * 0``), ``@daily`` (``0 0 * * *``),
  ``@hourly`` (``0 * * * *``).

A day-of-month or day-of-week field is *unrestricted* when it is exactly ``*``
or ``?``. When both are restricted a day matching **either** fires (Vixie OR);
otherwise the restricted one decides. Fire times have one-second resolution (a
five-field expression fires at second 0). An expression that can never fire
(``0 0 30 2 *``) is rejected by :meth:`CronExpression.parse`; ``next_after``
raises ``OverflowError`` only when no fire time is left before the year 10000.

Time zones and daylight saving
------------------------------
The expression is matched against the wall clock of its IANA zone; results are
UTC instants. Where the wall clock jumps, these rules decide (those of croner,
Cronos, ISC cron and the OCPS cron spec):

* A schedule whose hour field matches every hour (``*``, ``*/1``, ``0-23``,
  e.g. ``*/30 * * * *``, ``@hourly``) *follows the clock*: it fires at every
  real instant whose local wall time matches. Wall times skipped by a
  spring-forward do not fire; wall times repeated by a fall-back fire in
  both passes.
* Any other schedule (fixed hours, e.g. ``30 2 * * *``) fires once per
  matching wall time: a wall time skipped by a spring-forward fires at the
  first valid second after the gap (``30 2 * * *`` in America/New_York on
  2026-03-08 fires at 03:00 EDT = 07:00 UTC); a wall time repeated by a
  fall-back fires at its FIRST occurrence only (``30 1 * * *`` on 2026-11-01
  fires at 01:30 EDT = 05:30 UTC).
* Wall times that land on the same instant fire once.

Who does what
-------------
croniter evaluates the calendar: given a naive wall time, the next matching
wall time (fields, ``L``, ``W``, ``#``, ``L5``). This module adds:

* the grammar front-end: validation with errors quoting the expression, and
  the translation of the forms croniter lacks or reads differently -- ``5#L``
  and ``5L`` become croniter's ``L5``; ``LW`` becomes ``31W`` (croniter moves
  ``nW`` to the month's last day when the month is shorter, which for 31 is
  the last weekday); ``nW`` with n > 28 is filtered out of months without day
  n; a weekday list mixing plain days and ``#``/``L`` forms, and the
  day-of-month / day-of-week OR, are evaluated as several croniter
  expressions whose earliest match wins;
* the time-zone policy above (zoneinfo offsets; croniter only sees wall times);
* caches: compiled expressions per (expression, zone) and recent next-fire
  results, so that many schedules on one expression cost one evaluation.
"""

from __future__ import annotations

import re
import threading
from calendar import monthrange
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Callable, Optional
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter

__all__ = ["CronExpression"]

_NEAR = 2 * 86_400
"""Zone transitions are assumed to be more than this far apart (true of every zone since 1970)."""
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EPOCH_WALL = datetime(1970, 1, 1)
_ONE_SECOND = timedelta(seconds=1)
_FIRST_PROBE = (datetime.min.replace(tzinfo=timezone.utc) - _EPOCH_UTC) // _ONE_SECOND + 86_400
_LAST_PROBE = (datetime.max.replace(tzinfo=timezone.utc) - _EPOCH_UTC) // _ONE_SECOND - 86_400
_LONGEST_MONTH = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}

_MONTH_NAMES = {
    name: number
    for number, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"),
        start=1,
    )
}
_DOW_NAMES = {name: number for number, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}

_NICKNAMES = {
    "@YEARLY": "0 0 1 1 *",
    "@ANNUALLY": "0 0 1 1 *",
    "@MONTHLY": "0 0 1 * *",
    "@WEEKLY": "0 0 * * 0",
    "@DAILY": "0 0 * * *",
    "@HOURLY": "0 * * * *",
}

_ITEM_RE = re.compile(r"^(?:(?P<star>[*?])|(?P<lo>[A-Z0-9]+)(?:-(?P<hi>[A-Z0-9]+))?)(?:/(?P<step>[^/]*))?$")
_NEAREST_RE = re.compile(r"^(?P<day>\d+)W$")
_NTH_RE = re.compile(r"^(?P<dow>[A-Z0-9]+)#(?P<nth>[^#]*)$")
_LAST_DOW_RE = re.compile(r"^(?P<dow>\d+)L$")


class _FieldError(Exception):
    """A problem in one field; turned into a ValueError quoting the expression."""


@dataclass(frozen=True)
class _Field:
    """The bounds and names of one cron field."""

    name: str
    low: int
    high: int
    names: Optional[dict[str, int]] = None


_SECOND = _Field("second", 0, 59)
_MINUTE = _Field("minute", 0, 59)
_HOUR = _Field("hour", 0, 23)
_DOM = _Field("day-of-month", 1, 31)
_MONTH = _Field("month", 1, 12, _MONTH_NAMES)
_DOW = _Field("day-of-week", 0, 7, _DOW_NAMES)


# --------------------------------------------------------------------------- validation


def _parse_value(text: str, field: _Field) -> int:
    """One number or name of ``field``, range-checked."""
    if field.names and text in field.names:
        return field.names[text]
    if not text.isdigit() or not text.isascii():
        raise _FieldError(f"{field.name} value {text!r} is not a number" + (" or name" if field.names else ""))
    value = int(text)
    if not field.low <= value <= field.high:
        raise _FieldError(f"{field.name} value {value} out of range {field.low}-{field.high}")
    return value


def _parse_item(item: str, field: _Field) -> set[int]:
    """The values of one list element (``*``, ``a``, ``a-b``, with optional ``/n``)."""
    match = _ITEM_RE.match(item)
    if match is None:
        raise _FieldError(f"invalid {field.name} element {item!r}")
    star, lo_text, hi_text, step_text = match.group("star", "lo", "hi", "step")
    step = 1
    if step_text is not None:
        if not step_text.isdigit() or not step_text.isascii() or int(step_text) == 0:
            raise _FieldError(f"{field.name} step {step_text!r} is not a positive integer")
        step = int(step_text)
    open_high = 6 if field is _DOW else field.high
    if star:
        low, high = field.low, open_high
    else:
        low = _parse_value(lo_text, field)
        if hi_text is not None:
            high = _parse_value(hi_text, field)
            if field is _DOW and high == 0 and low > 0:
                high = 7
            if high < low:
                raise _FieldError(f"{field.name} range {lo_text}-{hi_text} is reversed")
        else:
            high = max(low, open_high) if step_text is not None else low
    return {value % 7 if field is _DOW else value for value in range(low, high + 1, step)}


def _items(text: str, field: _Field) -> list[str]:
    """The elements of a comma list; empty elements are errors."""
    items = text.split(",")
    if any(not item for item in items):
        raise _FieldError(f"empty element in {field.name} field {text!r}")
    return items


def _values(text: str, field: _Field) -> set[int]:
    """A field without extensions: the set of allowed values."""
    values: set[int] = set()
    for item in _items(text, field):
        values |= _parse_item(item, field)
    return values


def _listed(values: set[int], every: int) -> str:
    """The values as a croniter list, ``*`` when they are all ``every`` values of the field."""
    return "*" if len(values) == every else ",".join(str(value) for value in sorted(values))


def _fields_of(expression: str) -> list[str]:
    """The six fields (seconds first) of an expression, nicknames expanded."""
    text = expression.strip().upper()
    if text.startswith("@"):
        if text not in _NICKNAMES:
            raise _FieldError(f"unknown nickname {expression.strip()!r}")
        text = _NICKNAMES[text]
    fields = text.split()
    if len(fields) == 5:
        fields.insert(0, "0")
    elif len(fields) != 6:
        raise _FieldError(f"expected 5 or 6 fields, got {len(fields)}")
    return fields


# --------------------------------------------------------------------------- translation to croniter

_DayRule = tuple[str, str, Optional[Callable[[datetime], bool]]]
"""A croniter (day-of-month, day-of-week) pair, and a filter its matches must pass."""


def _day_of_month_rules(text: str, months: set[int]) -> list[_DayRule]:
    """croniter rules for the day-of-month field (with the day-of-week unrestricted)."""
    days: set[int] = set()
    rules: list[_DayRule] = []
    tokens: list[str] = []
    for item in _items(text, _DOM):
        nearest = _NEAREST_RE.match(item)
        if item == "L":
            tokens.append("L")
        elif item == "LW":
            rules.append(("31W", "*", None))  # croniter: nW in a shorter month = weekday nearest its last day
        elif nearest:
            day = _parse_value(nearest.group("day"), _DOM)
            if any(day <= _LONGEST_MONTH[month] for month in months):
                rules.append((f"{day}W", "*", None if day <= 28 else _month_has_day(day)))
        else:
            days |= _parse_item(item, _DOM)
    days = {day for day in days if any(day <= _LONGEST_MONTH[month] for month in months)}
    if len(days) == 31:
        rules.append(("*", "*", None))
    elif days or tokens:
        rules.append((",".join([_listed(days, 31)] * bool(days) + tokens), "*", None))
    return rules


def _month_has_day(day: int) -> Callable[[datetime], bool]:
    """A filter keeping the matches that fall in a month with a day ``day``."""
    return lambda moment: day <= monthrange(moment.year, moment.month)[1]


def _day_of_week_rules(text: str) -> list[_DayRule]:
    """croniter rules for the day-of-week field (with the day-of-month unrestricted)."""
    days: set[int] = set()
    special: list[str] = []  # croniter does not mix plain days with #n / Ln in one field
    for item in _items(text, _DOW):
        nth, last = _NTH_RE.match(item), _LAST_DOW_RE.match(item)
        if nth:
            day = _parse_value(nth.group("dow"), _DOW) % 7
            which = nth.group("nth")
            if which == "L":
                special.append(f"L{day}")
            elif which.isdigit() and which.isascii() and 1 <= int(which) <= 5:
                special.append(f"{day}#{int(which)}")
            else:
                raise _FieldError(f"day-of-week occurrence {which!r} in {item!r} must be 1-5 or L")
        elif last:
            special.append(f"L{_parse_value(last.group('dow'), _DOW) % 7}")
        else:
            days |= _parse_item(item, _DOW)
    rules: list[_DayRule] = [("*", _listed(days, 7), None)] if days else []
    return rules + ([("*", ",".join(special), None)] if special else [])


class _Calendar:
    """One croniter expression over naive wall times, with an optional filter on its matches."""

    def __init__(self, fields: str, keep: Optional[Callable[[datetime], bool]]) -> None:
        self._iter = croniter(fields, _EPOCH_WALL)
        self._keep = keep
        self._lock = threading.Lock()  # croniter iterators are stateful

    def first_after(self, start: datetime) -> datetime:
        """The first matching wall time strictly after ``start``."""
        with self._lock:
            while True:
                self._iter.set_current(start, force=True)
                found = self._iter.get_next(datetime)
                if self._keep is None or self._keep(found):
                    return found
                start = found.replace(hour=23, minute=59, second=59)  # the filter rejects the whole day


@dataclass(frozen=True, eq=False)
class _Plan:
    """A compiled expression: its croniter calendars, zone and daylight-saving policy."""

    expression: str
    zone: ZoneInfo
    calendars: tuple[_Calendar, ...]
    follows_clock: bool

    def next_wall(self, wall: int) -> int:
        """The first matching wall time (naive epoch seconds) at or after ``wall``."""
        try:
            start = _EPOCH_WALL + timedelta(seconds=wall - 1)
            found = min(calendar.first_after(start) for calendar in self.calendars)
        except (OverflowError, ValueError, CroniterBadDateError):  # past datetime.max
            raise OverflowError(f"{self.expression!r} has no fire time before year 10000") from None
        return (found - _EPOCH_WALL) // _ONE_SECOND


def _compile(expression: str, zone: ZoneInfo) -> _Plan:
    """The croniter calendars of an expression; _FieldError when invalid."""
    fields = _fields_of(expression)
    second, minute, hour = (_values(text, field) for text, field in zip(fields, (_SECOND, _MINUTE, _HOUR)))
    month = _values(fields[4], _MONTH)
    dom_free, dow_free = fields[3] in ("*", "?"), fields[5] in ("*", "?")
    rules: list[_DayRule] = [("*", "*", None)] if dom_free and dow_free else []
    if not dom_free:
        rules += _day_of_month_rules(fields[3], month)
    if not dow_free:
        rules += _day_of_week_rules(fields[5])
    if not rules:
        raise _FieldError("it never fires (no month has a matching day)")
    times = f"{_listed(minute, 60)} {_listed(hour, 24)}", _listed(month, 12), _listed(second, 60)
    calendars = tuple(_Calendar(f"{times[0]} {dom} {times[1]} {dow} {times[2]}", keep) for dom, dow, keep in rules)
    return _Plan(expression, zone, calendars, follows_clock=len(hour) == 24)


@lru_cache(maxsize=1024)
def _plan(expression: str, timezone: str) -> _Plan:
    """The shared compiled form of a valid (expression, zone)."""
    zone = _load_zone(timezone)
    try:
        return _compile(expression, zone)
    except _FieldError as exc:
        raise ValueError(f"Invalid cron expression {expression!r}: {exc}") from None


# --------------------------------------------------------------------------- time-zone policy


def _load_zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ValueError quoting it when unknown."""
    if not isinstance(name, str):
        raise TypeError(f"timezone must be a str, not {type(name).__name__}")
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError) as exc:
        raise ValueError(f"Unknown timezone {name!r}") from exc


def _offset(zone: ZoneInfo, instant: int) -> int:
    """The UTC offset (seconds) in force at an epoch-seconds instant (clamped to years 1-9999)."""
    instant = min(max(instant, _FIRST_PROBE), _LAST_PROBE)
    return int(datetime.fromtimestamp(instant, zone).utcoffset().total_seconds())  # type: ignore[union-attr]


def _wall_offset(zone: ZoneInfo, wall: int, fold: int = 0) -> int:
    """The offset of a wall time read as its first (fold=0) or second (fold=1) pass (PEP 495)."""
    moment = _EPOCH_WALL + timedelta(seconds=wall)
    return int(zone.utcoffset(moment.replace(fold=fold)).total_seconds())  # type: ignore[union-attr]


def _transition(zone: ZoneInfo, low: int, high: int) -> int:
    """The first second in (low, high] whose offset is not the offset at ``low``."""
    old = _offset(zone, low)
    while high - low > 1:
        middle = (low + high) // 2
        if _offset(zone, middle) == old:
            low = middle
        else:
            high = middle
    return high


def _instants(zone: ZoneInfo, wall: int) -> list[int]:
    """Every instant whose wall time is ``wall``: none in a gap, two in a fold."""
    offsets = {_wall_offset(zone, wall, fold) for fold in (0, 1)}
    return sorted(wall - o for o in offsets if _offset(zone, wall - o) == o)


def _first_instant(zone: ZoneInfo, wall: int) -> int:
    """A fixed-time wall time's one fire: its first occurrence, or the end of the gap it falls in."""
    first = _wall_offset(zone, wall)
    if _offset(zone, wall - first) == first:  # fold=0 is the earlier reading of a repeated time
        return wall - first
    return _transition(zone, wall - _wall_offset(zone, wall, 1), wall - first)


def _next_fixed(plan: _Plan, earliest: int) -> int:
    """The first fire at or after ``earliest`` of a fixed-time expression."""
    zone = plan.zone
    offset, before = _offset(zone, earliest), _offset(zone, earliest - 1)
    first_pass = _wall_offset(zone, earliest + offset)
    if before < offset:  # ``earliest`` ends a gap: the skipped wall times fire now
        wall = earliest + before
    elif first_pass != offset:  # in a repeated hour: its wall times fired in the first pass
        wall = _transition(zone, earliest + offset - first_pass, earliest) + first_pass
    else:
        wall = earliest + offset
    return _first_instant(zone, plan.next_wall(wall))


def _next_following_clock(plan: _Plan, earliest: int) -> int:
    """The first fire at or after ``earliest`` of an expression matching every hour."""
    zone, moment = plan.zone, earliest
    while True:
        offset = _offset(zone, moment)
        change = None if _offset(zone, moment + _NEAR) == offset else _transition(zone, moment, moment + _NEAR)
        wall = plan.next_wall(moment + offset)
        if change is None and wall - offset < moment + _NEAR and _offset(zone, wall - offset) == offset:
            return wall - offset  # no transition within reach: the wall time's only instant
        while not (later := [i for i in _instants(zone, wall) if i >= moment]):
            wall = plan.next_wall(wall + 1)  # skipped by a spring-forward
        if change is None or later[0] < change:
            return later[0]
        moment = change  # the clock jumps before that fire: read it again from the jump


@lru_cache(maxsize=4096)
def _next_instant(plan: _Plan, earliest: int) -> int:
    """The first fire instant (epoch seconds) at or after ``earliest`` (shared by equal schedules)."""
    return _next_following_clock(plan, earliest) if plan.follows_clock else _next_fixed(plan, earliest)


# --------------------------------------------------------------------------- datetimes


def _epoch_seconds(moment: datetime, what: str) -> int:
    """Whole epoch seconds at or before an aware datetime."""
    if not isinstance(moment, datetime):
        raise TypeError(f"{what} must be a datetime, not {type(moment).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {moment.isoformat()}")
    return (moment - _EPOCH_UTC) // _ONE_SECOND


def _utc(instant: int) -> datetime:
    """The aware UTC datetime of epoch seconds."""
    return _EPOCH_UTC + timedelta(seconds=instant)


# --------------------------------------------------------------------------- the expression


class CronExpression:
    """An immutable, validated cron expression evaluated in an IANA time zone."""

    __slots__ = ("expression", "timezone", "_plan")

    expression: str
    timezone: str

    def __init__(self, expression: str, timezone: str = "UTC") -> None:
        """Parse and validate; ValueError quoting the expression or zone when invalid."""
        if not isinstance(expression, str):
            raise TypeError(f"cron expression must be a str, not {type(expression).__name__}")
        plan = _plan(expression, timezone)
        setter = object.__setattr__
        setter(self, "expression", expression)
        setter(self, "timezone", timezone)
        setter(self, "_plan", plan)

    @classmethod
    def parse(cls, expression: str, timezone: str = "UTC") -> CronExpression:
        """A validated expression; ValueError quoting the expression or zone when invalid."""
        return cls(expression, timezone)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CronExpression):
            return NotImplemented
        return (self.expression, self.timezone) == (other.expression, other.timezone)

    def __hash__(self) -> int:
        return hash((self.expression, self.timezone))

    def __repr__(self) -> str:
        return f"CronExpression({self.expression!r}, timezone={self.timezone!r})"

    def __reduce__(self) -> tuple[type[CronExpression], tuple[str, str]]:
        return (CronExpression, (self.expression, self.timezone))

    def next_after(self, after: datetime) -> datetime:
        """The first fire time strictly after the aware datetime ``after``, in UTC."""
        return _utc(_next_instant(self._plan, _epoch_seconds(after, "after") + 1))

    def slots_between(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
        """Fire times t with start < t <= end, earliest first, at most ``limit``, in UTC."""
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise TypeError(f"limit must be an int, not {type(limit).__name__}")
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        instant, last = _epoch_seconds(start, "start") + 1, _epoch_seconds(end, "end")
        found: list[datetime] = []
        while len(found) < limit and instant <= last:
            try:
                fire = _next_instant(self._plan, instant)
            except OverflowError:
                break
            if fire > last:
                break
            found.append(_utc(fire))
            instant = fire + 1
        return found
