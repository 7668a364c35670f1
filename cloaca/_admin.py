"""PostgreSQL tenant provisioning (SPEC §8.1-8.3): a schema and a login role per tenant.

`DatabaseAdmin` methods are blocking, as upstream; each is written once as a coroutine
(the `a`-prefixed twin) and the sync method runs it on a private event loop. Every
operation opens its own connection, so an admin object is not tied to any event loop.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import secrets
import string
import urllib.parse
from typing import Any, Awaitable, Callable, NoReturn, Optional, TypeVar

from ._bridge import run_to_completion
from ._store.postgres_queries import quote_ident
from ._tenancy import RESERVED_SCHEMAS, check_identifier

T = TypeVar("T")

RESERVED_USERNAMES = frozenset({"postgres"})
"""Besides these, every name starting with `pg_` (PostgreSQL's built-in roles) is reserved."""
GENERATED_PASSWORD_LENGTH = 32
_PASSWORD_ALPHABET = string.ascii_letters + string.digits
_CONNECT_TIMEOUT_SECONDS = 10.0
_SCRAM_ITERATIONS = 4096


class TenantConfig:
    """What `DatabaseAdmin.create_tenant` creates: a schema, and a login role that may use it."""

    __slots__ = ("_schema_name", "_username", "_password")

    def __init__(self, schema_name: str, username: str, password: Optional[str] = None) -> None:
        _require_str("schema_name", schema_name)
        _require_str("username", username)
        if password is not None:
            _require_str("password", password)
        self._schema_name = schema_name
        self._username = username
        self._password = password or ""

    @property
    def schema_name(self) -> str:
        return self._schema_name

    @property
    def username(self) -> str:
        return self._username

    @property
    def password(self) -> str:
        """The password to give the role; "" means "generate one"."""
        return self._password

    def __repr__(self) -> str:
        return (
            f"TenantConfig(schema_name={self._schema_name!r}, username={self._username!r}, "
            "password='***')"
        )


class TenantCredentials:
    """What a tenant's runner connects with (returned by `create_tenant`; no constructor)."""

    __slots__ = ("_username", "_password", "_schema_name", "_connection_string")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("No constructor defined for TenantCredentials")

    @classmethod
    def _create(cls, username: str, password: str, schema_name: str,
                connection_string: str) -> TenantCredentials:
        credentials = object.__new__(cls)
        credentials._username = username
        credentials._password = password
        credentials._schema_name = schema_name
        credentials._connection_string = connection_string
        return credentials

    @property
    def username(self) -> str:
        return self._username

    @property
    def password(self) -> str:
        return self._password

    @property
    def schema_name(self) -> str:
        return self._schema_name

    @property
    def connection_string(self) -> str:
        """The admin URL's host, port and database with the tenant's user and password."""
        return self._connection_string

    def __repr__(self) -> str:
        return (
            f"TenantCredentials(username={self._username!r}, password='***', "
            f"schema_name={self._schema_name!r}, connection_string='***')"
        )


class DatabaseAdmin:
    """Creates and removes tenants of one PostgreSQL database (needs a role that may create
    roles and schemas)."""

    __slots__ = ("_url", "_parts", "_database")

    def __init__(self, database_url: str) -> None:
        if not isinstance(database_url, str) or not database_url.startswith(
            ("postgres://", "postgresql://")
        ):
            raise RuntimeError(
                "DatabaseAdmin requires a PostgreSQL connection: the URL must start with "
                "postgres:// or postgresql://"
            )
        try:
            parts = urllib.parse.urlsplit(database_url)
            parts.port  # noqa: B018 - raises ValueError for a malformed port
        except ValueError as exc:
            raise RuntimeError(f"Invalid database URL: {_scrub_url_error(exc, database_url)}") from None
        database = urllib.parse.unquote(parts.path.lstrip("/"))
        if not database:
            raise RuntimeError("Invalid database URL: Database name is required in URL path")
        self._url = database_url
        self._parts = parts
        self._database = database

    def __repr__(self) -> str:
        return "DatabaseAdmin()"

    # ---------------------------------------------------------------- create
    def create_tenant(self, config: TenantConfig) -> TenantCredentials:
        """Create the tenant's schema, login role, grants and tables, in one transaction."""
        return _run_sync(self.acreate_tenant, config, name="create_tenant")

    async def acreate_tenant(self, config: TenantConfig) -> TenantCredentials:
        if not isinstance(config, TenantConfig):
            raise TypeError(f"config must be a TenantConfig, got {type(config).__name__}")
        try:
            _check_names(config.schema_name, config.username)
        except ValueError as exc:
            raise RuntimeError(f"Failed to create tenant: {exc}") from None
        password = config.password or _generate_password()
        schema, role = quote_ident(config.schema_name), quote_ident(config.username)
        try:
            conn = await self._connect()
        except Exception as exc:
            raise RuntimeError(f"Failed to create tenant: {self._connect_error(exc)}") from None
        try:
            async with conn.transaction():
                if await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", config.username):
                    raise _TenantError(f"role '{config.username}' already exists")
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
                await conn.execute(await _create_role_sql(conn, config.username, password))
                await conn.execute(f"GRANT USAGE, CREATE ON SCHEMA {schema} TO {role}")
                for kind in ("TABLES", "SEQUENCES"):
                    await conn.execute(
                        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT ALL ON {kind} TO {role}"
                    )
                from ._store.postgres import (
                    apply_migrations,  # the one migration code path
                )

                # The tables are created as (so owned by) the tenant's role: its own runners
                # can then apply the migrations of a later cloaca to its schema.
                await conn.execute(f"GRANT {role} TO CURRENT_USER")
                await conn.execute(f"SET LOCAL ROLE {role}")
                await apply_migrations(conn, config.schema_name)
                await conn.execute("RESET ROLE")
                await conn.execute(f"REVOKE {role} FROM CURRENT_USER")
                for kind in ("TABLES", "SEQUENCES"):
                    await conn.execute(f"GRANT ALL ON ALL {kind} IN SCHEMA {schema} TO {role}")
        except Exception as exc:
            raise RuntimeError(f"Failed to create tenant: {_describe(exc)}") from None
        finally:
            await conn.close()
        return TenantCredentials._create(
            config.username, password, config.schema_name,
            self._tenant_url(config.username, password),
        )

    # ---------------------------------------------------------------- remove
    def remove_tenant(self, schema_name: str, username: str) -> None:
        """Revoke the role's privileges, drop the schema (cascade) and the role."""
        _run_sync(self.aremove_tenant, schema_name, username, name="remove_tenant")

    async def aremove_tenant(self, schema_name: str, username: str) -> None:
        try:
            _require_str("schema_name", schema_name)
            _require_str("username", username)
            _check_names(schema_name, username)
        except (TypeError, ValueError) as exc:
            raise RuntimeError(f"Failed to remove tenant: {exc}") from None
        schema, role = quote_ident(schema_name), quote_ident(username)
        try:
            conn = await self._connect()
        except Exception as exc:
            raise RuntimeError(f"Failed to remove tenant: {self._connect_error(exc)}") from None
        try:
            async with conn.transaction():
                if await conn.fetchval("SELECT current_user") == username:
                    raise _TenantError(f"role '{username}' is the role this DatabaseAdmin connects as")
                role_exists = bool(
                    await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", username)
                )
                schema_exists = bool(
                    await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema_name)
                )
                if role_exists and schema_exists:
                    for statement in (
                        f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {role}",
                        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {role}",
                        f"REVOKE ALL ON SCHEMA {schema} FROM {role}",
                        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} REVOKE ALL ON TABLES FROM {role}",
                        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} REVOKE ALL ON SEQUENCES FROM {role}",
                    ):
                        try:  # best effort, as upstream: the drops below are what matter
                            async with conn.transaction():  # a savepoint
                                await conn.execute(statement)
                        except Exception:
                            pass
                await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
                if role_exists:
                    # Whatever the role still owns or was granted in this database (objects
                    # a tenant's runner created, other grants) would block DROP ROLE.
                    await conn.execute(f"DROP OWNED BY {role} CASCADE")
                    await conn.execute(f"DROP ROLE {role}")
        except Exception as exc:
            raise RuntimeError(f"Failed to remove tenant: {_describe(exc)}") from None
        finally:
            await conn.close()

    # ---------------------------------------------------------------- internals
    async def _connect(self) -> Any:
        import asyncpg

        return await asyncpg.connect(self._url, timeout=_CONNECT_TIMEOUT_SECONDS)

    def _connect_error(self, exc: BaseException) -> str:
        from ._store.postgres import describe_error, describe_url, scrub, url_secrets

        return (
            f"cannot connect to PostgreSQL database {describe_url(self._url)}: "
            f"{scrub(describe_error(exc), url_secrets(self._url))}"
        )

    def _tenant_url(self, username: str, password: str) -> str:
        parts = self._parts
        hostspec = parts.netloc.rpartition("@")[2]
        userinfo = f"{urllib.parse.quote(username, safe='')}:{urllib.parse.quote(password, safe='')}"
        query = urllib.parse.urlencode(
            [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k not in ("user", "password")]
        )
        return urllib.parse.urlunsplit((parts.scheme, f"{userinfo}@{hostspec}", parts.path, query, ""))


class _TenantError(Exception):
    pass


def _require_str(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")


def _check_names(schema_name: str, username: str) -> None:
    """ValueError unless both names are safe, unreserved identifiers (checked before any SQL)."""
    check_identifier("schema", schema_name, RESERVED_SCHEMAS)
    check_identifier("user", username, RESERVED_USERNAMES)
    if username.lower().startswith("pg_"):
        raise ValueError(
            f"Invalid user name '{username}': names starting with 'pg_' are reserved "
            "for PostgreSQL's built-in roles"
        )


def _generate_password() -> str:
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(GENERATED_PASSWORD_LENGTH))


async def _create_role_sql(conn: Any, username: str, password: str) -> str:
    """CREATE ROLE ... LOGIN PASSWORD ... for a checked name.

    DDL takes no parameters. An ASCII password is sent only as a SCRAM-SHA-256 verifier
    computed here (what psql's \\password does), so the clear password never reaches the
    server's logs or pg_stat_activity; any other password is quoted by the server itself
    (format %L), never by string pasting.
    """
    if password.isascii():
        return f"CREATE ROLE {quote_ident(username)} LOGIN PASSWORD '{_scram_verifier(password)}'"
    return await conn.fetchval(
        "SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', $1::text, $2::text)", username, password
    )


def _scram_verifier(password: str, salt: Optional[bytes] = None) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802 / 7677).

    For ASCII passwords SASLprep changes nothing (or fails, and PostgreSQL and clients then
    use the raw bytes alike), so hashing the UTF-8 bytes matches what the server computes.
    """
    salt = os.urandom(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, _SCRAM_ITERATIONS)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
    return f"SCRAM-SHA-256${_SCRAM_ITERATIONS}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, _TenantError):
        return text
    return text or type(exc).__name__


def _scrub_url_error(exc: BaseException, url: str) -> str:
    from ._store.postgres import scrub, url_secrets

    return scrub(str(exc), url_secrets(url))


def _run_sync(fn: Callable[..., Awaitable[T]], *args: Any, name: str) -> T:
    """Run the coroutine function `fn` to completion from sync code."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run_to_completion(fn, *args)
    _blocking_on_loop(name)


def _blocking_on_loop(name: str) -> NoReturn:
    raise RuntimeError(
        f"DatabaseAdmin.{name}() blocks, and was called on the thread of a running event loop "
        f"(it would stall the loop); use 'await admin.a{name}(...)' instead"
    )
