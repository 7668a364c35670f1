"""Security checks: hostile names reach SQL only as parameters, passwords stay out of
errors, logs and reprs, and a tenant's runner sees only its own runs.

tests/test_postgres_runner.py already checks that tenant and schema names are validated
before any SQL, that a wrong password is never shown at construction, and the basic
isolation of two tenants; these tests add names that are valid but hostile, passwords
at run time (connections lost, calls failing), and every run-control call across tenants.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import urllib.parse
import uuid
from typing import Iterator

import pytest

import cloaca
from cloaca import Context, DatabaseAdmin, DefaultRunner, DefaultRunnerConfig, TenantConfig
from cloaca._registry import REGISTRY

from _tcp_proxy import TcpProxy
from support import poll_until

POSTGRES_URL = os.environ.get("CLOACA_TEST_POSTGRES_URL")
needs_postgres = pytest.mark.skipif(not POSTGRES_URL, reason="CLOACA_TEST_POSTGRES_URL is not set")

HOSTILE = [
    "robert'); DROP TABLE workflow_executions;--",
    'quote" and \' both',
    "semi;colon;; --comment /* block */",
    "back\\slash and %s %(x)s $1 ? :name",
    "ünïcødé ☃ 名前 🚀 \u200b",
]


def hostile_workflow(name: str) -> None:
    with cloaca.WorkflowBuilder(name):

        @cloaca.task(id=f"task {name}")
        def first(context: Context) -> Context:
            context.set(name, name)
            return context

        @cloaca.task(id=f"then {name}", dependencies=[f"task {name}"])
        def then(context: Context) -> Context:
            context.set("seen", context.get(name))
            return context


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_workflow_task_and_key_names_round_trip_intact(runner: DefaultRunner, name: str) -> None:
    workflow = f"{name} {uuid.uuid4().hex[:6]}"
    hostile_workflow(workflow)
    result = runner.execute(workflow, Context({name: name, "input": name}))
    assert result.status == "Completed", result.error_message
    assert result.final_context.get(workflow) == workflow and result.final_context.get("seen") == workflow
    assert result.final_context.get(name) == name
    assert {t["task_name"] for t in result.task_results} == {f"task {workflow}", f"then {workflow}"}
    listed = runner.list_executions(workflow_name=workflow)
    assert [r["id"] for r in listed] == [result.execution_id] and listed[0]["workflow_name"] == workflow
    assert runner.get_execution(result.execution_id).workflow_name == workflow
    assert runner.list_executions(workflow_name=name + "' OR '1'='1") == []  # no injection via the filter


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_trigger_and_cron_instance_names_round_trip_intact(runner: DefaultRunner, name: str) -> None:
    workflow = f"wf {name} {uuid.uuid4().hex[:6]}"
    hostile_workflow(workflow)
    trigger = f"trigger {name} {uuid.uuid4().hex[:6]}"
    fired = []

    @cloaca.trigger(workflow=workflow, name=trigger, poll_interval="50ms")
    def poll() -> cloaca.TriggerResult:
        if fired:
            return cloaca.TriggerResult.skip()
        fired.append(1)
        return cloaca.TriggerResult.fire(Context({"from": name}))

    try:
        poll_until(lambda: runner.get_trigger_execution_history(trigger), "the trigger's fire")
        schedule = runner.get_trigger_schedule(trigger)
        assert schedule is not None and schedule["trigger_name"] == trigger and schedule["workflow_name"] == workflow
        runner.set_trigger_enabled(trigger, False)
        assert runner.get_trigger_schedule(trigger)["enabled"] is False
        assert trigger in {s["trigger_name"] for s in runner.list_trigger_schedules()}
        assert runner.get_trigger_schedule(trigger + "' OR '1'='1") is None
    finally:
        REGISTRY.remove_trigger(trigger)

    schedule_id = runner.register_workflow_instance(workflow, f"instance {name}", "0 0 * * *", "UTC",
                                                    Context({name: name}))
    assert runner.get_cron_schedule(schedule_id)["workflow_name"] == workflow
    with pytest.raises(ValueError, match="Failed to register workflow instance"):  # found by its name
        runner.register_workflow_instance(workflow, f"instance {name}", "0 0 * * *", "UTC", Context({}))
    runner.register_workflow_instance(workflow, f"instance {name}'", "0 0 * * *", "UTC", Context({}))


# ====================================================================== passwords
SECRET = "s3cr3t-P@ss;'w\"rd"


@pytest.fixture
def role_with_password() -> Iterator[str]:
    """A database and a login role with a hostile password that owns it; the role's URL."""
    import asyncpg

    role, database = f"cloaca_pw_{uuid.uuid4().hex[:8]}", f"cloaca_pw_{uuid.uuid4().hex[:8]}"

    async def admin(*statements: str) -> None:
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    literal = SECRET.replace("'", "''")
    asyncio.run(admin(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{literal}'",
                      f'CREATE DATABASE "{database}" OWNER "{role}"'))
    parts = urllib.parse.urlsplit(POSTGRES_URL)
    host = parts.netloc.rpartition("@")[2]
    userinfo = f"{role}:{urllib.parse.quote(SECRET, safe='')}"
    try:
        yield urllib.parse.urlunsplit((parts.scheme, f"{userinfo}@{host}", "/" + database, "", ""))
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)', f'DROP ROLE IF EXISTS "{role}"'))


def assert_no_password(text: str) -> None:
    for spelling in (SECRET, urllib.parse.quote(SECRET, safe=""), urllib.parse.quote(SECRET)):
        assert spelling not in text, f"the password appears in: {text[:300]}"


@needs_postgres
def test_passwords_never_appear_in_errors_logs_or_reprs_at_run_time(role_with_password: str, caplog, capfd) -> None:
    hostspec = urllib.parse.urlsplit(role_with_password).netloc.rpartition("@")[2]
    proxy = TcpProxy(*hostspec.split(":")) if ":" in hostspec else TcpProxy(hostspec, 5432)
    proxy.start()
    url = role_with_password.replace(hostspec, f"127.0.0.1:{proxy.port}")
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    hostile_workflow("pw chain")
    try:
        runner = DefaultRunner.with_config(url, DefaultRunnerConfig(lease_seconds=1.0, workflow_timeout_seconds=120))
        try:
            assert runner.execute("pw chain", Context({})).status == "Completed"
            errors += [repr(runner), repr(runner._store), runner._store.description]
            proxy.refuse()
            for call in (lambda: runner.list_executions(), lambda: runner.get_execution(str(uuid.uuid4())),
                         lambda: runner.list_trigger_schedules()):
                try:
                    call()
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc} {exc.__cause__!r}")
            time.sleep(1.5)  # lease renewal and claims fail, and are logged, meanwhile
            proxy.allow()
            assert runner.execute("pw chain", Context({})).status == "Completed"
        finally:
            runner.shutdown()
        with pytest.raises(RuntimeError) as caught:  # unreachable at start
            proxy.refuse()
            DefaultRunner(url)
        errors.append(str(caught.value))
    finally:
        proxy.stop()
    assert len(errors) > 4
    captured = capfd.readouterr()
    assert_no_password("\n".join(errors))
    assert_no_password(caplog.text)
    assert_no_password(captured.out + captured.err)


def test_tenant_objects_never_show_a_password() -> None:
    config = TenantConfig("tenant_x", "user_x", SECRET)
    admin = DatabaseAdmin(f"postgresql://admin:{urllib.parse.quote(SECRET, safe='')}@127.0.0.1:1/db")
    for text in (repr(config), str(config), repr(admin), str(admin)):
        assert_no_password(text)
    with pytest.raises(RuntimeError) as caught:
        admin.create_tenant(config)
    assert_no_password(str(caught.value))


# ====================================================================== tenants
@needs_postgres
def test_a_tenants_runner_cannot_read_or_touch_another_tenants_runs() -> None:
    admin = DatabaseAdmin(POSTGRES_URL)
    suffix = uuid.uuid4().hex[:8]
    tenants = [(f"tenant_a_{suffix}", f"user_a_{suffix}"), (f"tenant_b_{suffix}", f"user_b_{suffix}")]
    hostile_workflow("tenant chain")
    try:
        creds_a, creds_b = (admin.create_tenant(TenantConfig(s, u)) for s, u in tenants)
        with DefaultRunner.with_schema(creds_a.connection_string, creds_a.schema_name) as a, \
                DefaultRunner.with_schema(creds_b.connection_string, creds_b.schema_name) as b:
            done = a.execute("tenant chain", Context({"secret": "of a"}))
            other = a.submit("tenant chain", Context({}))
            a.cancel(other)
            a.register_workflow_instance("tenant chain", "nightly", "0 0 * * *", "UTC", Context({}))
            for execution_id in (done.execution_id, other):
                assert b.get_execution(execution_id) is None
                for call in (lambda: b.get_result(execution_id, timeout=0.5),
                             lambda: b.retry_execution(execution_id), lambda: b.cancel(execution_id)):
                    with pytest.raises(ValueError, match=f"Unknown execution id: {execution_id}"):
                        call()
            assert b.list_executions() == [] and b.list_cron_schedules() == []
            assert a.get_execution(done.execution_id).status == "Completed"
            assert {r["id"] for r in a.list_executions()} == {done.execution_id, other}
            assert len(a.list_cron_schedules()) == 1
    finally:
        for schema, user in tenants:
            admin.remove_tenant(schema, user)
