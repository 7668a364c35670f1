"""PostgreSQL tenants (SPEC §8.1-8.3): a schema and a login role per tenant, created with the
store's tables, and removed again. This is the SQL behind `cloaca.DatabaseAdmin`; every call
opens a connection of its own, so nothing here is tied to an event loop.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Any, Optional

import asyncpg

from . import postgres_queries as q
from .base import TenantError, TenantStore
from .postgres import (
    CONNECT_TIMEOUT_SECONDS,
    apply_migrations,
    describe_error,
    describe_url,
    scrub,
    url_secrets,
)

SCRAM_ITERATIONS = 4096


class PostgresTenants(TenantStore):
    """Creates and removes the tenants of the PostgreSQL database at `url`, connecting as the
    URL's role (one that may create roles and schemas). Names must have been checked
    (`cloaca._tenancy.check_identifier`) before they get here."""

    def __init__(self, url: str) -> None:
        self._url = url

    def scrub(self, message: str) -> str:
        """`message` without the URL's password, in any spelling."""
        return scrub(message, url_secrets(self._url))

    async def create(self, schema_name: str, username: str, password: str) -> None:
        """The schema, the login role with `password`, its grants and the store's tables
        (owned by the role), in one transaction; TenantError if any of it fails."""
        schema, role = q.quote_ident(schema_name), q.quote_ident(username)
        conn = await self._connect()
        try:
            async with conn.transaction():
                if await conn.fetchval(q.ROLE_EXISTS, username):
                    raise TenantError(f"role '{username}' already exists")
                await conn.execute(q.CREATE_SCHEMA.format(schema=schema))
                await conn.execute(await _create_role_sql(conn, username, password))
                await conn.execute(q.GRANT_SCHEMA_TO_TENANT.format(schema=schema, role=role))
                for kind in q.PRIVILEGE_KINDS:
                    await conn.execute(q.DEFAULT_PRIVILEGES_TO_TENANT.format(schema=schema, kind=kind, role=role))
                # The tables are created as (so owned by) the tenant's role: its own runners
                # can then apply the migrations of a later cloaca to its schema.
                await conn.execute(q.GRANT_ROLE_TO_ME.format(role=role))
                await conn.execute(q.SET_LOCAL_ROLE.format(role=role))
                await apply_migrations(conn, schema_name)
                await conn.execute(q.RESET_ROLE)
                await conn.execute(q.REVOKE_ROLE_FROM_ME.format(role=role))
                for kind in q.PRIVILEGE_KINDS:
                    await conn.execute(q.GRANT_ALL_TO_TENANT.format(kind=kind, schema=schema, role=role))
        except Exception as exc:
            raise _failure(exc) from None
        finally:
            await conn.close()

    async def remove(self, schema_name: str, username: str) -> None:
        """Revoke the role's privileges (best effort, as upstream), drop the schema with
        everything in it, what the role owns and the role; TenantError if that fails."""
        schema, role = q.quote_ident(schema_name), q.quote_ident(username)
        conn = await self._connect()
        try:
            async with conn.transaction():
                if await conn.fetchval(q.CURRENT_USER) == username:
                    raise TenantError(f"role '{username}' is the role this DatabaseAdmin connects as")
                role_exists = await conn.fetchval(q.ROLE_EXISTS, username)
                if role_exists and await conn.fetchval(q.SCHEMA_EXISTS, schema_name):
                    for statement in q.REVOKE_FROM_TENANT:
                        try:  # the drops below are what matter
                            async with conn.transaction():  # a savepoint
                                await conn.execute(statement.format(schema=schema, role=role))
                        except Exception:
                            pass
                await conn.execute(q.DROP_SCHEMA_CASCADE.format(schema=schema))
                if role_exists:
                    await conn.execute(q.DROP_OWNED_BY.format(role=role))
                    await conn.execute(q.DROP_ROLE.format(role=role))
        except Exception as exc:
            raise _failure(exc) from None
        finally:
            await conn.close()

    async def _connect(self) -> Any:
        try:
            return await asyncpg.connect(self._url, timeout=CONNECT_TIMEOUT_SECONDS)
        except Exception as exc:
            raise TenantError(
                f"cannot connect to PostgreSQL database {describe_url(self._url)}: "
                f"{self.scrub(describe_error(exc))}"
            ) from None


def _failure(exc: Exception) -> TenantError:
    if isinstance(exc, TenantError):
        return exc
    return TenantError(str(exc).strip() or type(exc).__name__)


async def _create_role_sql(conn: Any, username: str, password: str) -> str:
    """CREATE ROLE ... LOGIN PASSWORD ... for a checked name.

    An ASCII password is sent only as a SCRAM-SHA-256 verifier computed here (what psql's
    \\password does), so the clear password never reaches the server's logs or
    pg_stat_activity; any other password is quoted by the server itself (format %L), never
    by string pasting.
    """
    if password.isascii():
        return q.CREATE_ROLE_WITH_VERIFIER.format(role=q.quote_ident(username), verifier=scram_verifier(password))
    return await conn.fetchval(q.CREATE_ROLE_QUOTED, username, password)  # type: ignore[no-any-return]


def scram_verifier(password: str, salt: Optional[bytes] = None) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802 / 7677).

    For ASCII passwords SASLprep changes nothing (or fails, and PostgreSQL and clients then
    use the raw bytes alike), so hashing the UTF-8 bytes matches what the server computes.
    """
    salt = os.urandom(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, SCRAM_ITERATIONS)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
    return f"SCRAM-SHA-256${SCRAM_ITERATIONS}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"
