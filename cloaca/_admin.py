"""PostgreSQL tenant provisioning (SPEC §8.1-8.3): a schema and a login role per tenant.

`DatabaseAdmin` methods are blocking, as upstream; each is written once as a coroutine
(the `a`-prefixed twin) and the sync method runs it on a private event loop. Every
operation opens its own connection, so an admin object is not tied to any event loop.
"""

from __future__ import annotations

import asyncio
import secrets
import string
import urllib.parse
from typing import Any, Awaitable, Callable, NoReturn, Optional, TypeVar

from ._bridge import run_to_completion
from ._store import tenants_for_url
from ._store.base import TenantError
from ._tenancy import RESERVED_SCHEMAS, check_identifier

T = TypeVar("T")

RESERVED_USERNAMES = frozenset({"postgres"})
"""Besides these, every name starting with `pg_` (PostgreSQL's built-in roles) is reserved."""
GENERATED_PASSWORD_LENGTH = 32
_PASSWORD_ALPHABET = string.ascii_letters + string.digits


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

    __slots__ = ("_parts", "_tenants")

    def __init__(self, database_url: str) -> None:
        if not isinstance(database_url, str) or not database_url.startswith(
            ("postgres://", "postgresql://")
        ):
            raise RuntimeError(
                "DatabaseAdmin requires a PostgreSQL connection: the URL must start with "
                "postgres:// or postgresql://"
            )
        self._tenants = tenants_for_url(database_url)
        try:
            parts = urllib.parse.urlsplit(database_url)
            parts.port  # noqa: B018 - raises ValueError for a malformed port
        except ValueError as exc:
            raise RuntimeError(f"Invalid database URL: {self._tenants.scrub(str(exc))}") from None
        if not urllib.parse.unquote(parts.path.lstrip("/")):
            raise RuntimeError("Invalid database URL: Database name is required in URL path")
        self._parts = parts

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
        try:
            await self._tenants.create(config.schema_name, config.username, password)
        except TenantError as exc:
            raise RuntimeError(f"Failed to create tenant: {exc}") from None
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
        try:
            await self._tenants.remove(schema_name, username)
        except TenantError as exc:
            raise RuntimeError(f"Failed to remove tenant: {exc}") from None

    # ---------------------------------------------------------------- internals
    def _tenant_url(self, username: str, password: str) -> str:
        parts = self._parts
        hostspec = parts.netloc.rpartition("@")[2]
        userinfo = f"{urllib.parse.quote(username, safe='')}:{urllib.parse.quote(password, safe='')}"
        query = urllib.parse.urlencode(
            [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k not in ("user", "password")]
        )
        return urllib.parse.urlunsplit((parts.scheme, f"{userinfo}@{hostspec}", parts.path, query, ""))


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
