"""DefaultRunner on PostgreSQL, schema isolation and tenants (SPEC §3.1, §3.3, §8, A7).

Tests that talk to a real server need CLOACA_TEST_POSTGRES_URL (a role that may create
schemas and roles); they skip without it. Each uses fresh schemas and roles, dropped at
teardown. Argument validation, unreachable servers and a server refusing the password
(a small fake speaking the PostgreSQL wire protocol, since the test server trusts every
login) need no server and always run.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import socketserver
import struct
import threading
import uuid
from typing import Any, Iterator

import pytest

import cloaca
from cloaca import Context, DefaultRunner
from cloaca._admin import DatabaseAdmin
from cloaca._admin import TenantConfig
from cloaca._admin import TenantCredentials
from cloaca._store.postgres_tenants import scram_verifier as _scram_verifier
from cloaca._registry import REGISTRY
from cloaca._store.postgres_queries import LATEST_VERSION

from support import poll_until

POSTGRES_URL = os.environ.get("CLOACA_TEST_POSTGRES_URL")
needs_postgres = pytest.mark.skipif(not POSTGRES_URL, reason="CLOACA_TEST_POSTGRES_URL is not set")
SECRET = "Sup3r-s3cret-pw"

CHAIN = "pg_runner_chain_wf"
with cloaca.WorkflowBuilder(CHAIN):

    @cloaca.task(id="first")
    def _first(context: Context) -> Context:
        context.set("steps", ["first"])
        return context

    @cloaca.task(id="second", dependencies=["first"])
    async def _second(context: Context) -> Context:
        context.set("steps", context.get("steps") + ["second"])
        return context

    @cloaca.task(id="third", dependencies=["second"])
    def _third(context: Context) -> Context:
        context.set("steps", context.get("steps") + ["third"])
        return context


# ====================================================================== helpers
def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def sql(statement: str, *args: Any, url: str | None = None) -> list[tuple[Any, ...]]:
    import asyncpg

    async def run() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(url or POSTGRES_URL)
        try:
            return [tuple(r) for r in await conn.fetch(statement, *args)]
        finally:
            await conn.close()

    return asyncio.run(run())


def with_search_path(url: str, schema: str) -> str:
    """`url` whose connections use `schema` (asyncpg passes unknown query keys as settings)."""
    return f"{url}{'&' if '?' in url else '?'}search_path={schema}"


def url_with_password(url: str, password: str, *, host: str | None = None,
                      database: str | None = None) -> str:
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    user = parts.username or "postgres"
    hostspec = host or parts.netloc.rpartition("@")[2]
    path = f"/{database}" if database is not None else parts.path
    return urllib.parse.urlunsplit((parts.scheme, f"{user}:{password}@{hostspec}", path, parts.query, ""))


@pytest.fixture
def schema() -> Iterator[str]:
    name = unique("cloaca_rt")
    yield name
    sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def tenants() -> Iterator[list[tuple[str, str]]]:
    """(schema, user) pairs to remove at teardown, whatever the test did."""
    created: list[tuple[str, str]] = []
    yield created
    for schema_name, username in created:
        sql(f'DROP SCHEMA IF EXISTS "{schema_name}" CASCADE')
        if sql("SELECT 1 FROM pg_roles WHERE rolname = $1", username):
            sql(f'DROP OWNED BY "{username}" CASCADE')
            sql(f'DROP ROLE "{username}"')


# ====================================================================== DefaultRunner(url)
@needs_postgres
def test_default_runner_on_postgres_runs_workflows_and_every_management_api(schema):
    sql(f'CREATE SCHEMA "{schema}"')
    trigger_name = unique("pg_runner_trigger")
    fired: list[int] = []

    @cloaca.trigger(workflow=CHAIN, name=trigger_name, poll_interval="50ms")
    def poll() -> cloaca.TriggerResult:
        if fired:
            return cloaca.TriggerResult.skip()
        fired.append(1)
        return cloaca.TriggerResult.fire(Context({"from": "trigger"}))

    try:
        with DefaultRunner(with_search_path(POSTGRES_URL, schema)) as runner:
            result = runner.execute(CHAIN, Context({"n": 1}))
            assert result.status == "Completed" and result.error_message is None
            assert result.final_context.get("steps") == ["first", "second", "third"]
            assert result.final_context.get("n") == 1

            # run history
            listed = runner.list_executions()
            assert [r["id"] for r in listed if r["id"] == result.execution_id] == [result.execution_id]
            assert runner.list_executions(workflow_name=CHAIN, status="Completed", limit=1)[0]["status"] == "Completed"
            assert runner.list_executions(workflow_name="no_such_wf") == []
            again = runner.get_execution(result.execution_id)
            assert again.status == "Completed"
            assert [t["task_name"] for t in again.task_results] == [
                t["task_name"] for t in result.task_results]
            assert runner.get_execution(str(uuid.uuid4())) is None

            # triggers: the fire ran the workflow and was closed when its run ended
            history = poll_until(
                lambda: [h for h in runner.get_trigger_execution_history(trigger_name)
                         if h["completed_at"] is not None],
                "the trigger's fire to complete",
            )
            fired_run = runner.get_execution(history[0]["workflow_execution_id"])
            assert fired_run.status == "Completed" and fired_run.final_context.get("from") == "trigger"
            assert runner.get_trigger_schedule(trigger_name)["workflow_name"] == CHAIN
            assert trigger_name in [t["trigger_name"] for t in runner.list_trigger_schedules()]
            runner.set_trigger_enabled(trigger_name, False)
            assert runner.get_trigger_schedule(trigger_name)["enabled"] is False
            assert trigger_name not in [
                t["trigger_name"] for t in runner.list_trigger_schedules(enabled_only=True)]

            # cron: every second (six fields); a slot fires once and its run is linked
            sid = runner.register_cron_workflow(CHAIN, "* * * * * *", "UTC")
            assert runner.get_cron_schedule(sid)["cron_expression"] == "* * * * * *"
            cron_history = poll_until(
                lambda: [h for h in runner.get_cron_execution_history(sid)
                         if h["workflow_execution_id"]],
                "a cron slot to launch a run",
            )
            cron_run = runner.get_execution(cron_history[0]["workflow_execution_id"])
            assert cron_run is not None and cron_run.workflow_name == CHAIN
            runner.update_cron_schedule(sid, "0 0 1 1 *", "Europe/Paris")
            schedule = runner.get_cron_schedule(sid)
            assert (schedule["cron_expression"], schedule["timezone"]) == ("0 0 1 1 *", "Europe/Paris")
            runner.set_cron_schedule_enabled(sid, False)
            assert runner.get_cron_schedule(sid)["enabled"] is False
            assert runner.list_cron_schedules(enabled_only=True) == []
            assert [s["id"] for s in runner.list_cron_schedules()] == [sid]
            stats = runner.get_cron_execution_stats("2000-01-01T00:00:00+00:00")
            assert stats["total_executions"] >= 1 and stats["successful_executions"] >= 1
            runner.delete_cron_schedule(sid)
            assert runner.list_cron_schedules() == []
            with pytest.raises(ValueError, match="Failed to get cron schedule"):
                runner.get_cron_schedule(sid)
    finally:
        REGISTRY.remove_trigger(trigger_name)
    # The tables went into the schema of the URL's search_path, nowhere else.
    tables = {t for (t,) in sql("SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema)}
    assert {"workflow_executions", "task_executions", "cloaca_schema_version"} <= tables


@needs_postgres
@pytest.mark.asyncio
async def test_async_twins_on_postgres(schema):
    async with DefaultRunner.with_schema(POSTGRES_URL, schema) as runner:
        result = await runner.aexecute(CHAIN, Context({"n": 2}))
        assert result.status == "Completed"
        assert [r["id"] for r in await runner.alist_executions()] == [result.execution_id]
        assert (await runner.aget_execution(result.execution_id)).final_context.get("n") == 2


@needs_postgres
def test_a_runner_on_the_same_schema_sees_runs_of_another_runner(schema):
    with DefaultRunner.with_schema(POSTGRES_URL, schema) as first:
        run_id = first.execute(CHAIN, Context({})).execution_id
        with DefaultRunner.with_schema(POSTGRES_URL, schema) as second:
            assert second.get_execution(run_id).status == "Completed"
            assert [r["id"] for r in second.list_executions()] == [run_id]


# ====================================================================== with_schema
def test_with_schema_is_static_with_exactly_two_parameters():
    """Upstream's two parameters; only the secret source (GRAPHS.md C10) follows, keyword-only."""
    assert isinstance(inspect.getattr_static(DefaultRunner, "with_schema"), staticmethod)
    parameters = inspect.signature(DefaultRunner.with_schema).parameters.values()
    assert [p.name for p in parameters if p.kind is not p.KEYWORD_ONLY] == ["database_url", "schema"]
    assert [p.name for p in parameters if p.kind is p.KEYWORD_ONLY] == ["secrets", "granted_secrets"]


def test_with_schema_validation_messages_in_order():
    url = "postgresql://postgres@127.0.0.1:1/test"
    with pytest.raises(ValueError, match="Schema name cannot be empty"):
        DefaultRunner.with_schema(url, "")
    for bad in ("bad-name", "a b", "x;DROP", "émile"):
        with pytest.raises(ValueError, match="must contain only alphanumeric characters and underscores"):
            DefaultRunner.with_schema(url, bad)
    with pytest.raises(ValueError, match="requires PostgreSQL"):
        DefaultRunner.with_schema("sqlite:///tmp/x.db", "tenant")
    with pytest.raises(ValueError, match="requires PostgreSQL"):
        DefaultRunner.with_schema("sqlite:///tmp/x.db", "")  # the URL is checked first
    for reserved in ("public", "pg_catalog", "information_schema", "pg_temp"):
        with pytest.raises(ValueError, match="reserved"):
            DefaultRunner.with_schema(url, reserved)
    with pytest.raises(ValueError, match="start with a letter"):
        DefaultRunner.with_schema(url, "9lives")


def test_with_schema_on_an_unreachable_server_fails_to_set_up_the_schema():
    with pytest.raises(RuntimeError, match="Failed to set up schema") as caught:
        DefaultRunner.with_schema(f"postgresql://postgres:{SECRET}@127.0.0.1:1/test", "tenant_x")
    message = str(caught.value)
    assert "127.0.0.1:1" in message and "'test'" in message
    assert SECRET not in message


def test_an_unreachable_server_is_a_runtime_error_naming_host_and_database():
    with pytest.raises(RuntimeError, match="Failed to create DefaultRunner") as caught:
        DefaultRunner(f"postgresql://someone:{SECRET}@127.0.0.1:1/appdb")
    message = str(caught.value)
    assert "127.0.0.1:1" in message and "'appdb'" in message
    assert SECRET not in message and "someone" not in message


@needs_postgres
def test_a_missing_database_is_a_runtime_error_naming_host_and_database():
    missing = unique("no_such_db")
    url = url_with_password(POSTGRES_URL, SECRET, database=missing)
    with pytest.raises(RuntimeError) as caught:
        DefaultRunner(url)
    message = str(caught.value)
    assert missing in message and "does not exist" in message
    assert SECRET not in message
    with pytest.raises(RuntimeError, match="Failed to set up schema") as caught:
        DefaultRunner.with_schema(url, "tenant_x")
    assert missing in str(caught.value) and SECRET not in str(caught.value)


class _PasswordRefusingServer(socketserver.ThreadingTCPServer):
    """Speaks just enough of the PostgreSQL protocol to ask for a password and refuse it.

    Its error message quotes the password it received, like a careless server or driver
    might: the runner's message must not.
    """

    daemon_threads = True
    allow_reuse_address = True


class _RefusePassword(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock = self.request
        sock.settimeout(5)

        def read(n: int) -> bytes:
            data = b""
            while len(data) < n:
                chunk = sock.recv(n - len(data))
                if not chunk:
                    raise ConnectionError("client went away")
                data += chunk
            return data

        try:
            while True:
                length, code = struct.unpack("!ii", read(8))
                if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest: not here
                    sock.sendall(b"N")
                    continue
                read(length - 8)  # the rest of the startup message
                break
            sock.sendall(b"R" + struct.pack("!ii", 8, 3))  # AuthenticationCleartextPassword
            kind, length = struct.unpack("!ci", read(5))
            password = read(length - 4).rstrip(b"\0").decode()
            fields = (
                b"SFATAL\0VFATAL\0C28P01\0M"
                + f'password authentication failed for user "x": got "{password}"'.encode()
                + b"\0\0"
            )
            sock.sendall(b"E" + struct.pack("!i", len(fields) + 4) + fields)
        except (ConnectionError, OSError, struct.error):
            pass


@pytest.fixture
def refusing_server() -> Iterator[int]:
    server = _PasswordRefusingServer(("127.0.0.1", 0), _RefusePassword)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_a_wrong_password_is_a_runtime_error_that_never_shows_the_password(refusing_server):
    url = f"postgresql://x:{SECRET}@127.0.0.1:{refusing_server}/appdb"
    with pytest.raises(RuntimeError, match="Failed to create DefaultRunner") as caught:
        DefaultRunner(url)
    message = str(caught.value)
    assert "password authentication failed" in message  # the server's reason is kept
    assert f"127.0.0.1:{refusing_server}" in message and "'appdb'" in message
    assert SECRET not in message
    with pytest.raises(RuntimeError, match="Failed to set up schema") as caught:
        DefaultRunner.with_schema(url, "tenant_x")
    assert SECRET not in str(caught.value) and "'appdb'" in str(caught.value)
    # A password with URL-escaped characters is scrubbed in both spellings.
    odd = "p@ss:w/rd%"
    escaped = "p%40ss%3Aw%2Frd%25"
    with pytest.raises(RuntimeError) as caught:
        DefaultRunner(f"postgresql://x:{escaped}@127.0.0.1:{refusing_server}/appdb")
    assert odd not in str(caught.value) and escaped not in str(caught.value)


# ====================================================================== tenants
def test_tenant_config_properties_and_masked_repr():
    config = TenantConfig("tenant_a", "user_a", "hunter2")
    assert (config.schema_name, config.username, config.password) == ("tenant_a", "user_a", "hunter2")
    assert repr(config) == "TenantConfig(schema_name='tenant_a', username='user_a', password='***')"
    assert TenantConfig("s", "u").password == "" and TenantConfig("s", "u", None).password == ""
    with pytest.raises(AttributeError):
        config.password = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        TenantConfig(1, "u")  # type: ignore[arg-type]


def test_tenant_credentials_has_no_constructor():
    with pytest.raises(TypeError):
        TenantCredentials()


def test_the_tenancy_names_are_exported():
    assert cloaca.DatabaseAdmin is DatabaseAdmin
    assert cloaca.TenantConfig is TenantConfig
    assert cloaca.TenantCredentials is TenantCredentials
    assert {"DatabaseAdmin", "TenantConfig", "TenantCredentials"} <= set(cloaca.__all__)


def test_database_admin_url_validation():
    with pytest.raises(RuntimeError, match="DatabaseAdmin requires a PostgreSQL connection"):
        DatabaseAdmin("sqlite:///x.db")
    with pytest.raises(RuntimeError, match="Database name is required in URL path"):
        DatabaseAdmin("postgresql://postgres@127.0.0.1:5432")
    with pytest.raises(RuntimeError, match="Database name is required in URL path"):
        DatabaseAdmin("postgresql://postgres@127.0.0.1:5432/")
    with pytest.raises(RuntimeError, match="Invalid database URL"):
        DatabaseAdmin("postgresql://postgres@127.0.0.1:notaport/test")
    assert repr(DatabaseAdmin("postgresql://postgres@127.0.0.1:5432/test")) == "DatabaseAdmin()"


@pytest.mark.parametrize(
    ("schema_name", "username", "fragment"),
    [
        ("public", "u1", "'public' is reserved"),
        ("pg_catalog", "u1", "'pg_catalog' is reserved"),
        ("information_schema", "u1", "is reserved"),
        ("pg_temp", "u1", "is reserved"),
        ("", "u1", "must be 1-63 characters"),
        ("9abc", "u1", "start with a letter"),
        ("a-b", "u1", "alphanumeric"),
        ("x" * 64, "u1", "1-63 characters"),
        ("s1", "postgres", "'postgres' is reserved"),
        ("s1", "pg_monitor", "reserved"),
        ("s1", "pg_anything", "reserved"),
        ("s1", "bad name", "alphanumeric"),
        ("s1", "robert'); DROP TABLE x;--", "alphanumeric"),
    ],
)
def test_tenant_names_are_validated_before_any_sql(schema_name, username, fragment):
    # Port 1 refuses connections: a name error proves validation ran before connecting.
    admin = DatabaseAdmin("postgresql://postgres@127.0.0.1:1/test")
    with pytest.raises(RuntimeError, match="Failed to create tenant") as caught:
        admin.create_tenant(TenantConfig(schema_name, username, "pw"))
    assert fragment in str(caught.value)
    with pytest.raises(RuntimeError, match="Failed to remove tenant") as caught:
        admin.remove_tenant(schema_name, username)
    assert fragment in str(caught.value)


def test_admin_connection_failures_are_runtime_errors_without_the_password():
    admin = DatabaseAdmin(f"postgresql://postgres:{SECRET}@127.0.0.1:1/test")
    with pytest.raises(RuntimeError, match="Failed to create tenant") as caught:
        admin.create_tenant(TenantConfig("tenant_ok", "user_ok"))
    assert "127.0.0.1:1" in str(caught.value) and SECRET not in str(caught.value)
    with pytest.raises(RuntimeError, match="Failed to remove tenant") as caught:
        admin.remove_tenant("tenant_ok", "user_ok")
    assert SECRET not in str(caught.value)


@pytest.mark.asyncio
async def test_admin_sync_methods_refuse_to_block_a_running_loop():
    admin = DatabaseAdmin("postgresql://postgres@127.0.0.1:1/test")
    with pytest.raises(RuntimeError, match="acreate_tenant"):
        admin.create_tenant(TenantConfig("s", "u"))
    with pytest.raises(RuntimeError, match="aremove_tenant"):
        admin.remove_tenant("s", "u")


def test_scram_verifier_agrees_with_the_rfc_7677_example():
    """The keys of the verifier reproduce RFC 7677's server signature and client proof."""
    import base64
    import hashlib
    import hmac

    verifier = _scram_verifier("pencil", base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="))
    method, rest = verifier.split("$", 1)
    iterations_salt, keys = rest.split("$")
    stored_key, server_key = (base64.b64decode(k) for k in keys.split(":"))
    assert (method, iterations_salt) == ("SCRAM-SHA-256", "4096:W22ZaJ0SNY7soEsUEjb6gQ==")
    nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    auth_message = (
        f"n=user,r=rOprNGfwEbeRWgbNEkqO,r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r={nonce}"
    ).encode()
    server_signature = hmac.new(server_key, auth_message, hashlib.sha256).digest()
    assert base64.b64encode(server_signature).decode() == "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    # ClientProof = ClientKey XOR HMAC(StoredKey, AuthMessage), and StoredKey = H(ClientKey).
    proof = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    client_signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
    client_key = bytes(a ^ b for a, b in zip(proof, client_signature))
    assert hashlib.sha256(client_key).digest() == stored_key


@needs_postgres
def test_scram_verifier_matches_the_servers_own(tenants):
    role = unique("cloaca_scram")
    tenants.append((unique("unused"), role))
    sql(f"CREATE ROLE \"{role}\" LOGIN PASSWORD 'correct horse'")  # hashed by the server
    [(stored,)] = sql("SELECT rolpassword FROM pg_authid WHERE rolname = $1", role)
    import base64

    salt = base64.b64decode(stored.split("$")[1].split(":")[1])
    assert _scram_verifier("correct horse", salt) == stored


@needs_postgres
def test_tenants_are_isolated_with_their_own_credentials(tenants):
    admin = DatabaseAdmin(POSTGRES_URL)
    a_schema, a_user = unique("tenant_a"), unique("user_a")
    b_schema, b_user = unique("tenant_b"), unique("user_b")
    tenants.extend([(a_schema, a_user), (b_schema, b_user)])

    creds_a = admin.create_tenant(TenantConfig(a_schema, a_user, "pw-of-a"))
    creds_b = admin.create_tenant(TenantConfig(b_schema, b_user))  # generated password
    assert (creds_a.username, creds_a.password, creds_a.schema_name) == (a_user, "pw-of-a", a_schema)
    assert len(creds_b.password) == 32 and creds_b.password.isalnum()
    assert f"{a_user}:pw-of-a@" in creds_a.connection_string
    import urllib.parse

    admin_parts, tenant_parts = (urllib.parse.urlsplit(u) for u in (POSTGRES_URL, creds_a.connection_string))
    assert (tenant_parts.hostname, tenant_parts.port, tenant_parts.path) == (
        admin_parts.hostname, admin_parts.port, admin_parts.path)
    assert (tenant_parts.username, tenant_parts.password) == (a_user, "pw-of-a")
    assert "pw-of-a" not in repr(creds_a) and creds_a.connection_string not in repr(creds_a)
    # The role really has the password it was given (as a SCRAM verifier, never in clear).
    [(stored,)] = sql("SELECT rolpassword FROM pg_authid WHERE rolname = $1", a_user)
    assert stored.startswith("SCRAM-SHA-256$") and "pw-of-a" not in stored
    import base64

    salt = base64.b64decode(stored.split("$")[1].split(":")[1])
    assert _scram_verifier("pw-of-a", salt) == stored

    with DefaultRunner.with_schema(creds_a.connection_string, a_schema) as runner_a:
        with DefaultRunner.with_schema(creds_b.connection_string, b_schema) as runner_b:
            a_runs = {runner_a.execute(CHAIN, Context({"t": "a"})).execution_id for _ in range(2)}
            b_run = runner_b.execute(CHAIN, Context({"t": "b"})).execution_id
            assert {r["id"] for r in runner_a.list_executions()} == a_runs
            assert {r["id"] for r in runner_b.list_executions()} == {b_run}
            assert runner_a.get_execution(b_run) is None
            assert runner_b.get_execution(next(iter(a_runs))) is None

    # Each tenant's role owns nothing of the other: reading B's tables as A is refused.
    import asyncpg

    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
        sql(f'SELECT count(*) FROM "{b_schema}".workflow_executions', url=creds_a.connection_string)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
        sql(f'SELECT count(*) FROM "{a_schema}".task_executions', url=creds_b.connection_string)
    # Nor may a tenant put tables into the shared default schema... or into the other's.
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        sql(f'CREATE TABLE "{b_schema}".intruder (x int)', url=creds_a.connection_string)
    # Its tables are its own (so its runners can migrate them), and it can read them.
    owners = sql("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = $1", a_schema)
    assert owners == [(creds_a.username,)]
    # Its own tables it can read directly.
    [(count,)] = sql(f'SELECT count(*) FROM "{a_schema}".workflow_executions', url=creds_a.connection_string)
    assert count == 2

    with pytest.raises(RuntimeError, match="Failed to create tenant: role .* already exists"):
        admin.create_tenant(TenantConfig(unique("tenant_c"), a_user))

    admin.remove_tenant(a_schema, a_user)
    assert sql("SELECT 1 FROM pg_roles WHERE rolname = $1", a_user) == []
    assert sql("SELECT 1 FROM pg_namespace WHERE nspname = $1", a_schema) == []
    assert sql("SELECT 1 FROM pg_namespace WHERE nspname = $1", b_schema) != []
    admin.remove_tenant(a_schema, a_user)  # already gone: nothing to do


@needs_postgres
@pytest.mark.asyncio
async def test_admin_async_twins_create_and_remove(tenants):
    admin = DatabaseAdmin(POSTGRES_URL)
    schema_name, username = unique("tenant_async"), unique("user_async")
    tenants.append((schema_name, username))
    creds = await admin.acreate_tenant(TenantConfig(schema_name, username))
    assert creds.schema_name == schema_name
    import asyncpg

    conn = await asyncpg.connect(creds.connection_string)
    try:
        assert await conn.fetchval("SELECT current_user") == username
        assert await conn.fetchval(
            f'SELECT MAX(version) FROM "{schema_name}".cloaca_schema_version') == LATEST_VERSION
    finally:
        await conn.close()
    await admin.aremove_tenant(schema_name, username)
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        assert await conn.fetchval("SELECT count(*) FROM pg_roles WHERE rolname = $1", username) == 0
    finally:
        await conn.close()


@needs_postgres
def test_remove_tenant_surfaces_sql_errors(tenants):
    admin = DatabaseAdmin(POSTGRES_URL)
    schema_name, username = unique("tenant_err"), unique("user_err")
    tenants.append((schema_name, username))
    admin.create_tenant(TenantConfig(schema_name, username))
    # The role this admin connects as cannot be removed as a tenant.
    [(me,)] = sql("SELECT current_user")
    with pytest.raises(RuntimeError, match="Failed to remove tenant"):
        admin.remove_tenant(schema_name, me)
    assert sql("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema_name) != []  # rolled back
    # A role that still owns objects in another database cannot be dropped: a RuntimeError.
    other_db = unique("cloaca_other_db")
    sql(f'CREATE DATABASE "{other_db}" OWNER "{username}"')
    try:
        with pytest.raises(RuntimeError, match="Failed to remove tenant"):
            admin.remove_tenant(schema_name, username)
        assert sql("SELECT 1 FROM pg_roles WHERE rolname = $1", username) != []
    finally:
        sql(f'DROP DATABASE "{other_db}"')
    admin.remove_tenant(schema_name, username)
    assert sql("SELECT 1 FROM pg_roles WHERE rolname = $1", username) == []


@needs_postgres
def test_a_tenants_runner_applies_a_later_migration_to_its_own_schema(tenants, monkeypatch):
    from cloaca._store import postgres_queries

    admin = DatabaseAdmin(POSTGRES_URL)
    schema_name, username = unique("tenant_mig"), unique("user_mig")
    tenants.append((schema_name, username))
    creds = admin.create_tenant(TenantConfig(schema_name, username, "pw-of-mig"))
    # A later cloaca, with one more migration that alters a table.
    later = LATEST_VERSION + 1
    monkeypatch.setattr(postgres_queries, "MIGRATIONS", [
        *postgres_queries.MIGRATIONS,
        (later, "ALTER TABLE task_executions ADD COLUMN later_column TEXT"),
    ])
    monkeypatch.setattr(postgres_queries, "LATEST_VERSION", later)

    with DefaultRunner.with_schema(creds.connection_string, schema_name) as runner:
        assert runner.execute(CHAIN, Context({})).status == "Completed"
    quoted = f'"{schema_name}"'
    [(version,)] = sql(f"SELECT MAX(version) FROM {quoted}.cloaca_schema_version")
    assert version == later
    assert sql("SELECT 1 FROM information_schema.columns WHERE table_schema = $1 "
               "AND table_name = 'task_executions' AND column_name = 'later_column'", schema_name)
