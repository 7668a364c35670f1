"""PostgreSQL databases that tests create and drop, statements on their own connection, and
a TCP proxy in front of the test server (CLOACA_TEST_POSTGRES_URL)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import urllib.parse
import uuid
from typing import Any, Iterator, Optional

import pytest

from _tcp_proxy import TcpProxy

POSTGRES_URL = os.environ.get("CLOACA_TEST_POSTGRES_URL")


def admin(statement: str, *args: Any, url: Optional[str] = None) -> list[Any]:
    """Run one statement on a connection of its own (blocking)."""
    import asyncpg

    async def run() -> list[Any]:
        conn = await asyncpg.connect(url or POSTGRES_URL)
        try:
            return list(await conn.fetch(statement, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def url_for(database: str, host: Optional[str] = None, port: Optional[int] = None) -> str:
    """The test server's URL pointed at `database` (and optionally at another host:port)."""
    assert POSTGRES_URL
    parts = urllib.parse.urlsplit(POSTGRES_URL)
    netloc = parts.netloc
    if host is not None:
        userinfo = netloc.rpartition("@")[0]
        netloc = (userinfo + "@" if userinfo else "") + f"{host}:{port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, "/" + database, parts.query, ""))


@contextlib.contextmanager
def created_database(prefix: str) -> Iterator[str]:
    """A new, empty database (its URL), dropped with its connections afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin(f'CREATE DATABASE "{name}"')
    try:
        yield url_for(name)
    finally:
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def terminate_backends(database: str) -> int:
    """Terminate every connection to `database` but this one; how many there were."""
    rows = admin(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = $1 AND pid <> pg_backend_pid()", database,
    )
    return len(rows)


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    """A started TCP proxy to the test server (127.0.0.1:5432), stopped at teardown."""
    p = TcpProxy("127.0.0.1", 5432)
    p.start()
    try:
        yield p
    finally:
        p.stop()
