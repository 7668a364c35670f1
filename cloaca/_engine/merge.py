"""How the outputs of several dependencies merge into one task's input (SPEC §3.4.4)."""

from __future__ import annotations

import json
from typing import Any, Iterable


def merge_values(earlier: Any, later: Any) -> Any:
    """List + list: order-preserving union; dict + dict: recursive merge; else later wins."""
    if isinstance(earlier, list) and isinstance(later, list):
        present = {_json_identity(item) for item in earlier}
        merged = list(earlier)
        merged.extend(item for item in later if _json_identity(item) not in present)
        return merged
    if isinstance(earlier, dict) and isinstance(later, dict):
        return merge_contexts([earlier, later])
    return later


def _json_identity(value: Any) -> str:
    """Equal for equal JSON values only: Python's == would take true for 1 and 1 for 1.0."""
    return json.dumps(value, sort_keys=True)


def merge_contexts(contexts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Merge dependency outputs, in declaration order, into a new dict (inputs are not changed)."""
    merged: dict[str, Any] = {}
    for context in contexts:
        for key, value in context.items():
            merged[key] = merge_values(merged[key], value) if key in merged else value
    return merged
