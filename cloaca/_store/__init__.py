"""Persistence backends. `store_for_url` is the one place that maps a database URL to a store."""

from __future__ import annotations

import os
import re
import sys
import tempfile
import urllib.parse
from typing import Any

from .base import Store, TenantStore, WorkSharing

__all__ = ["Store", "TenantStore", "store_for_url", "tenants_for_url"]

_MEMORY_URLS = (":memory:", "sqlite://:memory:", "sqlite:///:memory:")
_SHARING = {"run": WorkSharing.BY_RUN, "task": WorkSharing.BY_TASK}
"""The values of a SQLite URL's `sharing` parameter: how runners on the file share work."""
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")
DISTRIBUTION = "cloaca-asyncio"
"""The project's name on the package index (the index's `cloaca` is upstream's binding)."""


def store_for_url(url: str, schema: str | None = None, pool_size: int = 10, create: bool = True) -> Store:
    """The store for a database URL (SPEC §3.1); ValueError for a URL no backend serves.

    `pool_size` bounds the connections of a PostgreSQL store (SQLite uses one). A `sqlite://`
    URL may end in `?sharing=task` (work shared by task, as on PostgreSQL) or `?sharing=run`.
    `create=False`: opening a SQLite file that does not exist fails and creates nothing (a
    private in-memory database is always new; PostgreSQL databases are never created).
    """
    if not isinstance(url, str):
        raise TypeError(f"database URL must be a str, got {type(url).__name__}")
    if url.startswith(("postgres://", "postgresql://")):
        return _postgres_store(url, schema, pool_size)
    if schema is not None:
        raise ValueError("Schema isolation requires PostgreSQL (a postgres:// or postgresql:// URL)")
    return _sqlite_store(url, create)


def _private_sqlite(**options: Any) -> Store:
    from .sqlite import SQLiteStore

    # A private temp file rather than SQLite's ":memory:", so that every connection of the
    # runner sees the same database; it is deleted when the runner closes.
    handle, path = tempfile.mkstemp(prefix="cloaca-memory-", suffix=".db")
    os.close(handle)
    os.unlink(path)
    return SQLiteStore(path, delete_on_close=True, **options)


def _sqlite_store(url: str, create: bool) -> Store:
    from .sqlite import SQLiteStore

    if url in _MEMORY_URLS:
        return _private_sqlite()
    if url.startswith("sqlite://"):
        path, _, query = url.partition("?")
        options = _sqlite_options(url, query)
        if path in _MEMORY_URLS:
            return _private_sqlite(**options)
        path = path[len("sqlite://"):]
        if not path:
            raise ValueError(f"SQLite URL '{url}' names no file")
        return SQLiteStore(path, create=create, **options)
    if url.startswith("file:"):
        return SQLiteStore(url, create=create)
    if _SCHEME.match(url) is None and (url.startswith(("/", "./", "../")) or url.endswith(_SQLITE_SUFFIXES)):
        return SQLiteStore(url, create=create)
    raise ValueError(
        f"Unsupported database URL '{url}': use 'sqlite:///abs/path.db', 'sqlite://rel/path.db', "
        "a path ending in .db, ':memory:', or 'postgresql://user@host/database'"
    )


def _sqlite_options(url: str, query: str) -> dict[str, Any]:
    """The SQLiteStore options a URL's query sets (`sharing`); the other parameters are
    ignored, saying so."""
    options: dict[str, Any] = {}
    ignored = []
    for name, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if name != "sharing":
            ignored.append(f"{name}={value}" if value else name)
        elif value in _SHARING:
            options["work_sharing"] = _SHARING[value]
        else:
            raise ValueError(
                f"SQLite URL '{url}': parameter 'sharing' has unknown value '{value}' "
                f"(use {' or '.join(repr(v) for v in _SHARING)})"
            )
    if ignored:
        print(
            f"cloaca: ignoring query parameters '{'&'.join(ignored)}' of SQLite URL (WAL and "
            "a 30 s busy timeout are always applied)",
            file=sys.stderr,
        )
    return options


def tenants_for_url(url: str) -> TenantStore:
    """Tenant administration (a schema and a login role per tenant) of the PostgreSQL
    database at `url`."""
    try:
        from .postgres_tenants import PostgresTenants
    except ImportError as exc:
        raise _without_postgres(exc) from None
    return PostgresTenants(url)


def _postgres_store(url: str, schema: str | None, pool_size: int) -> Store:
    try:
        from .postgres import PostgresStore
    except ImportError as exc:
        raise _without_postgres(exc) from None
    return PostgresStore(url, schema=schema, pool_size=pool_size)


def _without_postgres(exc: ImportError) -> RuntimeError:
    return RuntimeError(
        f"PostgreSQL support needs the 'postgres' extra (pip install '{DISTRIBUTION}[postgres]'): {exc}"
    )
