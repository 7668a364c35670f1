"""How the CLI shows things: aligned tables, coloured statuses, humanised times, JSON."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from typing import Any, Callable, Iterable, Optional, Sequence

import click

_STATUS_COLOURS = {
    "Completed": "green",
    "Failed": "red",
    "Cancelled": "magenta",
    "Running": "yellow",
    "Ready": "cyan",
    "Pending": "cyan",
    "Paused": "cyan",
    "launched": "green",
    "failed": "red",
    "skipped": "bright_black",
    "Skipped": "bright_black",
    "NotStarted": "bright_black",
    "yes": "green",
    "no": "bright_black",
}

NONE = "-"
"""What a table cell shows for a missing value."""


def use_colour() -> bool:
    """Colour only on a terminal, and never with NO_COLOR set (https://no-color.org)."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def paint(text: str, colour: Optional[str], *, bold: bool = False) -> str:
    if not use_colour() or (colour is None and not bold):
        return text
    return click.style(text, fg=colour, bold=bold or None)


def status(text: Optional[str]) -> str:
    """A status word, coloured by what it means."""
    if text is None:
        return NONE
    return paint(text, _STATUS_COLOURS.get(text))


def _visible_width(text: str) -> int:
    return len(click.unstyle(text))


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], empty: str) -> str:
    """Rows under bold headers, columns aligned on visible width (colour codes ignored)."""
    rows = [list(r) for r in rows]
    if not rows:
        return empty
    widths = [
        max(_visible_width(cell) for cell in column)
        for column in zip(headers, *rows)
    ]

    def line(cells: Sequence[str]) -> str:
        padded = [c + " " * (w - _visible_width(c)) for c, w in zip(cells, widths)]
        return "  ".join(padded).rstrip()

    return "\n".join([paint(line(headers), None, bold=True)] + [line(r) for r in rows])


def fields(pairs: Sequence[tuple[str, str]]) -> str:
    """`Label   value` lines, labels aligned."""
    width = max(len(label) for label, _ in pairs)
    return "\n".join(f"{paint(label.ljust(width), None, bold=True)}  {value}" for label, value in pairs)


def parse_time(text: Optional[str]) -> Optional[datetime]:
    return None if text is None else datetime.fromisoformat(text)


def when(text: Optional[str]) -> str:
    """An RFC 3339 timestamp as local time, to the second."""
    moment = parse_time(text)
    return NONE if moment is None else moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: Optional[float]) -> str:
    """`350ms`, `12.3s`, `4m 05s`, `2h 03m`, `3d 04h`."""
    if seconds is None:
        return NONE
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h {whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d {whole % 86400 // 3600:02d}h"


def between(start: Optional[str], end: Optional[str], now: Callable[[], datetime]) -> str:
    """The time from `start` to `end` (or until now, marked `+`, while still open)."""
    begun = parse_time(start)
    if begun is None:
        return NONE
    ended = parse_time(end)
    if ended is None:
        return duration((now().astimezone() - begun).total_seconds()) + "+"
    return duration((ended - begun).total_seconds())


def milliseconds(ms: int) -> str:
    return duration(ms / 1000.0)


def yes_no(flag: bool) -> str:
    return status("yes" if flag else "no")


def clip(text: Optional[str], width: int = 60) -> str:
    """The first line of `text`, cut to `width` characters."""
    if not text:
        return NONE
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= width else first[: width - 1] + "…"


def emit_json(document: Any, stream: Any) -> None:
    """One JSON document, the whole of the command's standard output."""
    stream.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    stream.flush()
