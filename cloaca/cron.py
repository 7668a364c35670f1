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
UTC instants. Where the wall clock jumps, these rules decide:

* A schedule whose hour field matches every hour (``*``, ``*/1``, ``0-23``,
  e.g. ``*/30 * * * *``, ``@hourly``) is *clock-following*: it fires at every
  real instant whose local wall time matches. Wall times skipped by a
  spring-forward do not fire; wall times repeated by a fall-back fire in
  both passes.
* Any other schedule (fixed hours, e.g. ``30 2 * * *``) fires once per
  matching wall time: a wall time skipped by a spring-forward fires at the
  instant it would have had before the change, i.e. shifted forward by the
  gap (``30 2 * * *`` in America/New_York on 2026-03-08 fires at 03:30 EDT =
  07:30 UTC); a wall time repeated by a fall-back fires at its FIRST
  occurrence only (``30 1 * * *`` on 2026-11-01 fires at 01:30 EDT = 05:30
  UTC). This is the ``fold=0`` reading of PEP 495.
* Two wall times that land on the same instant fire once.

Zone transitions are assumed to be at least a few days apart (true of every
zone in the tz database since 1970).
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from calendar import monthrange
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

__all__ = ["CronExpression"]

_DAY = 86_400
_NEAR = 2 * _DAY
_PROBE_STEP = 6 * 3600
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_SECOND = timedelta(seconds=1)
_MIN_PROBE = (date.min.toordinal() + 1 - _EPOCH_ORDINAL) * _DAY
_MAX_PROBE = (date.max.toordinal() - 1 - _EPOCH_ORDINAL) * _DAY
_MAX_YEAR = date.max.year

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
    names: dict[str, int] | None = None


_SECOND = _Field("second", 0, 59)
_MINUTE = _Field("minute", 0, 59)
_HOUR = _Field("hour", 0, 23)
_DOM = _Field("day-of-month", 1, 31)
_MONTH = _Field("month", 1, 12, _MONTH_NAMES)
_DOW = _Field("day-of-week", 0, 7, _DOW_NAMES)


@dataclass(frozen=True)
class _DaySpec:
    """Which days of a month fire: the day-of-month and day-of-week rules."""

    dom_star: bool
    dom_days: frozenset[int]
    dom_last: bool
    dom_last_weekday: bool
    dom_nearest: frozenset[int]
    dow_star: bool
    dow_days: frozenset[int]
    dow_nth: frozenset[tuple[int, int]]
    dow_last: frozenset[int]

    def days_in(self, year: int, month: int) -> tuple[int, ...]:
        """The firing days of ``month`` of ``year``, ascending."""
        length = monthrange(year, month)[1]
        if self.dom_star and self.dow_star:
            return tuple(range(1, length + 1))
        first_dow = (date(year, month, 1).weekday() + 1) % 7  # cron numbering, Sunday = 0
        dom = set() if self.dom_star else self._dom_matches(year, month, length, first_dow)
        dow = set() if self.dow_star else self._dow_matches(length, first_dow)
        return tuple(sorted(dom | dow))

    def _dom_matches(self, year: int, month: int, length: int, first_dow: int) -> set[int]:
        """The days matched by the day-of-month field."""
        days = {d for d in self.dom_days if d <= length}
        if self.dom_last:
            days.add(length)
        if self.dom_last_weekday:
            days.add(_nearest_weekday(length, length, first_dow))
        for target in self.dom_nearest:
            if target <= length:
                days.add(_nearest_weekday(target, length, first_dow))
        return days

    def _dow_matches(self, length: int, first_dow: int) -> set[int]:
        """The days matched by the day-of-week field."""
        days = set()
        for day in range(1, length + 1):
            dow = (first_dow + day - 1) % 7
            if (
                dow in self.dow_days
                or (dow, (day - 1) // 7 + 1) in self.dow_nth
                or (dow in self.dow_last and day + 7 > length)
            ):
                days.add(day)
        return days

    def always_fires_monthly(self) -> bool:
        """Whether every month surely has at least one firing day."""
        dom_sure = self.dom_last or self.dom_last_weekday or any(d <= 28 for d in self.dom_days | self.dom_nearest)
        dow_sure = bool(self.dow_days or self.dow_last or any(n <= 4 for _, n in self.dow_nth))
        if self.dom_star:
            return self.dow_star or dow_sure
        if self.dow_star:
            return dom_sure
        return dom_sure or dow_sure


def _nearest_weekday(day: int, length: int, first_dow: int) -> int:
    """The Monday-Friday day nearest ``day`` without leaving the month."""
    dow = (first_dow + day - 1) % 7
    if dow == 6:  # Saturday
        return day - 1 if day > 1 else day + 2
    if dow == 0:  # Sunday
        return day + 1 if day < length else day - 2
    return day


# --------------------------------------------------------------------------- parsing


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


def _parse_step(text: str, field: _Field) -> int:
    """The ``/n`` part of an item: a positive integer."""
    if not text.isdigit() or not text.isascii() or int(text) == 0:
        raise _FieldError(f"{field.name} step {text!r} is not a positive integer")
    return int(text)


def _parse_item(item: str, field: _Field) -> set[int]:
    """The values of one list element (``*``, ``a``, ``a-b``, with optional ``/n``)."""
    match = _ITEM_RE.match(item)
    if match is None:
        raise _FieldError(f"invalid {field.name} element {item!r}")
    star, lo_text, hi_text, step_text = match.group("star", "lo", "hi", "step")
    step = 1 if step_text is None else _parse_step(step_text, field)
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
    values = set(range(low, high + 1, step))
    if field is _DOW and 7 in values:
        values.discard(7)
        values.add(0)
    return values


def _split_list(text: str, field: _Field) -> list[str]:
    """The elements of a comma list; empty elements are errors."""
    items = text.split(",")
    if any(not item for item in items):
        raise _FieldError(f"empty element in {field.name} field {text!r}")
    return items


def _parse_plain(text: str, field: _Field) -> frozenset[int]:
    """A field without extensions: the set of allowed values."""
    values: set[int] = set()
    for item in _split_list(text, field):
        values |= _parse_item(item, field)
    return frozenset(values)


def _parse_dom(text: str) -> dict[str, object]:
    """The day-of-month field, with ``L``, ``LW`` and ``nW``."""
    days: set[int] = set()
    nearest: set[int] = set()
    last = last_weekday = False
    for item in _split_list(text, _DOM):
        nearest_match = _NEAREST_RE.match(item)
        if item == "L":
            last = True
        elif item == "LW":
            last_weekday = True
        elif nearest_match:
            nearest.add(_parse_value(nearest_match.group("day"), _DOM))
        else:
            days |= _parse_item(item, _DOM)
    return {
        "dom_star": text in ("*", "?"),
        "dom_days": frozenset(days),
        "dom_last": last,
        "dom_last_weekday": last_weekday,
        "dom_nearest": frozenset(nearest),
    }


def _parse_dow(text: str) -> dict[str, object]:
    """The day-of-week field, with ``d#n``, ``d#L`` and ``dL``."""
    days: set[int] = set()
    nth: set[tuple[int, int]] = set()
    last: set[int] = set()
    for item in _split_list(text, _DOW):
        nth_match = _NTH_RE.match(item)
        last_match = _LAST_DOW_RE.match(item)
        if nth_match:
            dow = _parse_value(nth_match.group("dow"), _DOW) % 7
            which = nth_match.group("nth")
            if which == "L":
                last.add(dow)
            elif which.isdigit() and which.isascii() and 1 <= int(which) <= 5:
                nth.add((dow, int(which)))
            else:
                raise _FieldError(f"day-of-week occurrence {which!r} in {item!r} must be 1-5 or L")
        elif last_match:
            last.add(_parse_value(last_match.group("dow"), _DOW) % 7)
        else:
            days |= _parse_item(item, _DOW)
    return {
        "dow_star": text in ("*", "?"),
        "dow_days": frozenset(days),
        "dow_nth": frozenset(nth),
        "dow_last": frozenset(last),
    }


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


def _next_table(values: frozenset[int], size: int) -> tuple[int, ...]:
    """For each v in 0..size, the smallest allowed value >= v, or -1 (last slot is -1)."""
    table = [-1] * (size + 1)
    following = -1
    for v in range(size - 1, -1, -1):
        if v in values:
            following = v
        table[v] = following
    return tuple(table)


def _can_fire(months: frozenset[int], days: _DaySpec) -> bool:
    """Whether some month of the 400-year Gregorian cycle has a firing day."""
    if days.always_fires_monthly():
        return True
    return any(days.days_in(year, month) for month in months for year in range(2000, 2400))


# --------------------------------------------------------------------------- time zones


def _load_zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ValueError quoting it when unknown."""
    if not isinstance(name, str):
        raise TypeError(f"timezone must be a str, not {type(name).__name__}")
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError) as exc:
        raise ValueError(f"Unknown timezone {name!r}") from exc


def _year_start(year: int) -> int:
    """Epoch seconds of January 1st, 00:00 UTC, of ``year`` (up to 10000)."""
    ordinal = date(year, 1, 1).toordinal() if year <= _MAX_YEAR else date.max.toordinal() + 1
    return (ordinal - _EPOCH_ORDINAL) * _DAY


def _year_of(instant: int) -> int:
    """The UTC calendar year of an epoch-seconds instant (clamped to 1..9999)."""
    instant = min(max(instant, _MIN_PROBE), _MAX_PROBE)
    return date.fromordinal(instant // _DAY + _EPOCH_ORDINAL).year


class _Timeline:
    """The UTC offsets (integer seconds) of one zone over time, transitions found per year."""

    def __init__(self, zone: ZoneInfo) -> None:
        self._zone = zone
        self._years: dict[int, tuple[list[int], list[int]]] = {}
        self._quiet: tuple[int, int, int] = (0, 0, 0)

    def _probe(self, instant: int) -> int:
        """The offset at ``instant``, straight from zoneinfo."""
        instant = min(max(instant, _MIN_PROBE), _MAX_PROBE)
        offset = datetime.fromtimestamp(instant, self._zone).utcoffset()
        return int(offset.total_seconds()) if offset is not None else 0

    def _year(self, year: int) -> tuple[list[int], list[int]]:
        """(starts, offsets) of a year: starts[0] is the second before it, the rest transitions."""
        table = self._years.get(year)
        if table is None:
            table = self._scan_year(year)
            self._years[year] = table
        return table

    def _scan_year(self, year: int) -> tuple[list[int], list[int]]:
        """Find the transitions of one year by probing and bisection."""
        start, end = _year_start(year) - 1, _year_start(year + 1)
        starts, offsets = [start], [self._probe(start)]
        previous = start
        while previous < end - 1:
            point = min(previous + _PROBE_STEP, end - 1)
            offset = self._probe(point)
            if offset != offsets[-1]:
                starts.append(self._bisect(previous, point, offsets[-1]))
                offsets.append(offset)
            previous = point
        return starts, offsets

    def _bisect(self, low: int, high: int, old: int) -> int:
        """The first second in (low, high] whose offset is not ``old``."""
        while high - low > 1:
            middle = (low + high) // 2
            if self._probe(middle) == old:
                low = middle
            else:
                high = middle
        return high

    def offset_at(self, instant: int) -> int:
        """The UTC offset in force at ``instant``."""
        starts, offsets = self._year(_year_of(instant))
        return offsets[max(bisect_right(starts, instant) - 1, 0)]

    def offsets_near(self, instant: int) -> tuple[int, int]:
        """(min, max) offset within two days of ``instant``."""
        before, after = self.offset_at(instant - _NEAR), self.offset_at(instant + _NEAR)
        return min(before, after), max(before, after)

    def quiet_span(self, instant: int) -> tuple[int, int, int]:
        """(low, high, offset): a span around ``instant`` with no transition within two days.

        ``low <= instant < high`` does not hold when ``instant`` is near a transition.
        """
        quiet = self._quiet
        if quiet[0] <= instant < quiet[1]:
            return quiet
        year = _year_of(instant)
        previous = [t for y in (year - 1, year) for t in self._year(y)[0][1:] if t <= instant]
        following = [t for y in (year, year + 1) for t in self._year(y)[0][1:] if t > instant]
        low = (previous[-1] if previous else _year_start(year - 1)) + _NEAR
        high = (following[0] if following else _year_start(year + 2)) - _NEAR
        quiet = (low, high, self.offset_at(instant))
        self._quiet = quiet
        return quiet

    def instants_of_wall(self, wall: int) -> list[int]:
        """Every instant whose local wall time is ``wall``: none in a gap, two in a fold."""
        before, after = self.offset_at(wall - _NEAR), self.offset_at(wall + _NEAR)
        found = {wall - o for o in (before, after) if self.offset_at(wall - o) == o}
        return sorted(found)

    def first_instant_of_wall(self, wall: int) -> int:
        """The PEP 495 ``fold=0`` instant of ``wall``: first occurrence, gaps shifted forward."""
        before = self.offset_at(wall - _NEAR)
        instants = self.instants_of_wall(wall)
        return instants[0] if instants else wall - before


@lru_cache(maxsize=None)
def _timeline(name: str) -> _Timeline:
    """The shared timeline of the zone ``name`` (already validated)."""
    return _Timeline(ZoneInfo(name))


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

    __slots__ = (
        "expression",
        "timezone",
        "_seconds",
        "_minutes",
        "_hours",
        "_months",
        "_days",
        "_follows_clock",
        "_timeline",
        "_month_cache",
    )

    expression: str
    timezone: str

    def __init__(self, expression: str, timezone: str = "UTC") -> None:
        """Parse and validate; ValueError quoting the expression or zone when invalid."""
        if not isinstance(expression, str):
            raise TypeError(f"cron expression must be a str, not {type(expression).__name__}")
        _load_zone(timezone)
        try:
            fields = _fields_of(expression)
            seconds, minutes, hours = (_parse_plain(t, f) for t, f in zip(fields[:3], (_SECOND, _MINUTE, _HOUR)))
            months = _parse_plain(fields[4], _MONTH)
            days = _DaySpec(**_parse_dom(fields[3]), **_parse_dow(fields[5]))  # type: ignore[arg-type]
            if not _can_fire(months, days):
                raise _FieldError("it never fires (no month has a matching day)")
        except _FieldError as exc:
            raise ValueError(f"Invalid cron expression {expression!r}: {exc}") from None
        setter = object.__setattr__
        setter(self, "expression", expression)
        setter(self, "timezone", timezone)
        setter(self, "_seconds", _next_table(seconds, 60))
        setter(self, "_minutes", _next_table(minutes, 60))
        setter(self, "_hours", _next_table(hours, 24))
        setter(self, "_months", _next_table(months, 13))
        setter(self, "_days", days)
        setter(self, "_follows_clock", len(hours) == 24)
        setter(self, "_timeline", _timeline(timezone))
        setter(self, "_month_cache", {})

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

    # ----------------------------------------------------------------- public queries

    def next_after(self, after: datetime) -> datetime:
        """The first fire time strictly after the aware datetime ``after``, in UTC."""
        return _utc(self._next_instant(_epoch_seconds(after, "after") + 1))

    def slots_between(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
        """Fire times t with start < t <= end, earliest first, at most ``limit``, in UTC."""
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise TypeError(f"limit must be an int, not {type(limit).__name__}")
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        instant, last = _epoch_seconds(start, "start") + 1, _epoch_seconds(end, "end")
        found: list[int] = []
        while len(found) < limit and instant <= last:
            try:
                fire = self._next_instant(instant)
            except OverflowError:
                break
            if fire > last:
                break
            found.append(fire)
            instant = fire + 1
        return [_utc(fire) for fire in found]

    # ----------------------------------------------------------------- instants

    def _next_instant(self, earliest: int) -> int:
        """The first fire instant (epoch seconds) at or after ``earliest``."""
        low, high, offset = self._timeline.quiet_span(earliest)
        if low <= earliest < high:
            fire = self._next_wall(earliest + offset) - offset
            if fire < high:
                return fire
        return self._next_instant_near_transition(earliest)

    def _next_instant_near_transition(self, earliest: int) -> int:
        """The first fire instant at or after ``earliest`` when offsets may change."""
        timeline = self._timeline
        wall = self._next_wall(earliest + timeline.offsets_near(earliest)[0])
        best: int | None = None
        while True:
            for fire in self._instants_of(wall):
                if fire >= earliest:
                    best = fire if best is None else min(best, fire)
                    break
            # A later wall time maps to an instant >= wall + 1 - (largest nearby offset).
            if best is not None and wall + 1 - timeline.offsets_near(best)[1] >= best:
                return best
            wall = self._next_wall(wall + 1)

    def _instants_of(self, wall: int) -> list[int]:
        """The instants at which a matching wall time fires, per the DST rules."""
        if self._follows_clock:
            return self._timeline.instants_of_wall(wall)
        return [self._timeline.first_instant_of_wall(wall)]

    # ----------------------------------------------------------------- wall clock

    def _month_days(self, year: int, month: int) -> tuple[int, ...]:
        """The firing days of a month (cached)."""
        key = year * 16 + month
        days = self._month_cache.get(key)
        if days is None:
            days = self._days.days_in(year, month)
            if len(self._month_cache) >= 1024:
                self._month_cache.clear()
            self._month_cache[key] = days
        return days

    def _next_wall(self, wall: int) -> int:
        """The first matching local wall time (naive epoch seconds) at or after ``wall``."""
        day_number, rest = divmod(wall, _DAY)
        day0 = date.fromordinal(day_number + _EPOCH_ORDINAL)
        year, month, day = day0.year, day0.month, day0.day
        hour, rest = divmod(rest, 3600)
        minute, second = divmod(rest, 60)
        while True:
            if year > _MAX_YEAR:
                raise OverflowError(f"{self!r} has no fire time before year {_MAX_YEAR + 1}")
            next_month = self._months[month]
            if next_month < 0:
                year, month, day, hour, minute, second = year + 1, 1, 1, 0, 0, 0
                continue
            if next_month != month:
                month, day, hour, minute, second = next_month, 1, 0, 0, 0
            days = self._month_days(year, month)
            index = bisect_left(days, day)
            if index == len(days):
                year, month = (year + 1, 1) if month == 12 else (year, month + 1)
                day, hour, minute, second = 1, 0, 0, 0
                continue
            if days[index] != day:
                day, hour, minute, second = days[index], 0, 0, 0
            next_hour = self._hours[hour]
            if next_hour < 0:
                day, hour, minute, second = day + 1, 0, 0, 0
                continue
            if next_hour != hour:
                hour, minute, second = next_hour, 0, 0
            next_minute = self._minutes[minute]
            if next_minute < 0:
                hour, minute, second = hour + 1, 0, 0
                continue
            if next_minute != minute:
                minute, second = next_minute, 0
            next_second = self._seconds[second]
            if next_second < 0:
                minute, second = minute + 1, 0
                continue
            ordinal = date(year, month, day).toordinal() - _EPOCH_ORDINAL
            return ordinal * _DAY + hour * 3600 + minute * 60 + next_second
