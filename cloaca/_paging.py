"""Pagination arguments shared by the listing methods of the runner."""

from __future__ import annotations

from typing import Optional

DEFAULT_LIMIT = 100


def page(limit: Optional[int], offset: Optional[int]) -> tuple[int, int]:
    """(limit, offset) with the defaults 100 and 0; ValueError naming a bad value."""
    limit = DEFAULT_LIMIT if limit is None else limit
    offset = 0 if offset is None else offset
    for label, value in (("limit", limit), ("offset", offset)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{label} must be a non-negative int, got {value!r}")
    return limit, offset
