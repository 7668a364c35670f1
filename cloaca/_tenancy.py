"""PostgreSQL schema isolation: validation of schema and role names (SPEC §3.3, §8)."""

from __future__ import annotations

import re

RESERVED_SCHEMAS = frozenset({"public", "pg_catalog", "information_schema", "pg_temp"})
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def validate_schema_argument(database_url: str, schema: str) -> None:
    """The checks of `DefaultRunner.with_schema`, in the order and words of SPEC §3.3."""
    if not isinstance(database_url, str) or not database_url.startswith(("postgres://", "postgresql://")):
        raise ValueError("Schema isolation requires PostgreSQL: the URL must start with postgresql://")
    if not isinstance(schema, str):
        raise TypeError(f"schema must be a str, got {type(schema).__name__}")
    if not schema:
        raise ValueError("Schema name cannot be empty")
    if not all(c.isascii() and (c.isalnum() or c == "_") for c in schema):
        raise ValueError(
            f"Invalid schema name '{schema}': must contain only alphanumeric characters and underscores"
        )
    check_identifier("schema", schema, RESERVED_SCHEMAS)


def check_identifier(kind: str, name: str, reserved: frozenset[str]) -> None:
    """ValueError unless `name` is a safe, unreserved PostgreSQL identifier."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(
            f"Invalid {kind} name '{name}': must be 1-63 characters, start with a letter or "
            "underscore, and contain only alphanumeric characters and underscores"
        )
    if name.lower() in reserved:
        raise ValueError(f"Invalid {kind} name '{name}': '{name}' is reserved")
