"""Persistence backends. `store_for_url` is the one place that maps a database URL to a store."""

from __future__ import annotations

import os
import re
import sys
import tempfile

from .base import Store

__all__ = ["Store", "store_for_url"]

_MEMORY_URLS = (":memory:", "sqlite://:memory:", "sqlite:///:memory:")
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")
DISTRIBUTION = "cloaca-asyncio"
"""The project's name on the package index (the index's `cloaca` is upstream's binding)."""


def store_for_url(url: str, schema: str | None = None, pool_size: int = 10) -> Store:
    """The store for a database URL (SPEC §3.1); ValueError for a URL no backend serves.

    `pool_size` bounds the connections of a PostgreSQL store (SQLite uses one).
    """
    if not isinstance(url, str):
        raise TypeError(f"database URL must be a str, got {type(url).__name__}")
    if url.startswith(("postgres://", "postgresql://")):
        return _postgres_store(url, schema, pool_size)
    if schema is not None:
        raise ValueError("Schema isolation requires PostgreSQL (a postgres:// or postgresql:// URL)")
    if url in _MEMORY_URLS:
        return _private_sqlite()
    return _sqlite_store(url)


def _private_sqlite() -> Store:
    from .sqlite import SQLiteStore

    # A private temp file rather than SQLite's ":memory:", so that every connection of the
    # runner sees the same database; it is deleted when the runner closes.
    handle, path = tempfile.mkstemp(prefix="cloaca-memory-", suffix=".db")
    os.close(handle)
    os.unlink(path)
    return SQLiteStore(path, delete_on_close=True)


def _sqlite_store(url: str) -> Store:
    from .sqlite import SQLiteStore

    if url.startswith("sqlite://"):
        path = url[len("sqlite://"):]
        if "?" in path:
            path, query = path.split("?", 1)
            print(
                f"cloaca: ignoring query parameters '?{query}' of SQLite URL (WAL and a 30 s "
                "busy timeout are always applied)",
                file=sys.stderr,
            )
        if not path:
            raise ValueError(f"SQLite URL '{url}' names no file")
        return SQLiteStore(path)
    if url.startswith("file:"):
        return SQLiteStore(url)
    if _SCHEME.match(url) is None and (url.startswith(("/", "./", "../")) or url.endswith(_SQLITE_SUFFIXES)):
        return SQLiteStore(url)
    raise ValueError(
        f"Unsupported database URL '{url}': use 'sqlite:///abs/path.db', 'sqlite://rel/path.db', "
        "a path ending in .db, ':memory:', or 'postgresql://user@host/database'"
    )


def _postgres_store(url: str, schema: str | None, pool_size: int) -> Store:
    try:
        from .postgres import PostgresStore
    except ImportError as exc:
        raise RuntimeError(
            f"PostgreSQL support needs the 'postgres' extra (pip install '{DISTRIBUTION}[postgres]'): {exc}"
        ) from None
    return PostgresStore(url, schema=schema, pool_size=pool_size)
