"""`Context.secret` / `secret_field` and the runner's secret sources (GRAPHS.md C10)."""

from __future__ import annotations

import json
from typing import Any, Optional

import pytest

import cloaca
from cloaca._secrets import SecretResolver

from conftest import unique_name

API = {"api_token": {"token": "s3cr3t", "user": "bot"}}


def context(data: Optional[dict[str, Any]] = None, source: Any = API, **kwargs: Any) -> cloaca.Context:
    return cloaca.Context._from_trusted(dict(data or {}), SecretResolver(source, **kwargs))


# ------------------------------------------------------------------ the accessors
def test_secret_returns_resolved_fields() -> None:
    ctx = context()
    fields = ctx.secret("api_token")
    assert fields == {"token": "s3cr3t", "user": "bot"}
    fields["token"] = "changed"  # a new dict each time
    assert ctx.secret("api_token")["token"] == "s3cr3t"


def test_secret_field_returns_single_value() -> None:
    assert context().secret_field("api_token", "token") == "s3cr3t"


def test_secret_is_alias_aware_through_secret_refs_map() -> None:
    ctx = context({"__cloacina_secret_refs__": {"local": "api_token"}})
    assert ctx.secret_field("local", "user") == "bot"
    assert ctx.secret("api_token")["user"] == "bot"  # a name that is no alias resolves as is


def test_secret_value_not_leaked_into_serialized_data() -> None:
    ctx = context({"k": 1})
    ctx.secret("api_token")
    ctx.secret_field("api_token", "token")
    assert len(ctx) == 1
    assert "s3cr3t" not in ctx.to_json()


def test_secret_not_configured_raises_runtime_error() -> None:
    with pytest.raises(RuntimeError, match="secrets backend not configured"):
        cloaca.Context({"a": 1}).secret("api_token")
    with pytest.raises(RuntimeError):
        cloaca.Context().secret_field("api_token", "token")


def test_secret_not_found_raises_key_error() -> None:
    with pytest.raises(KeyError, match="secret not found: missing"):
        context().secret("missing")


def test_secret_field_missing_field_raises_key_error() -> None:
    with pytest.raises(KeyError, match="secret 'api_token' has no field 'password'"):
        context().secret_field("api_token", "password")


def test_secret_outside_the_grant_raises_permission_error() -> None:
    ctx = context(source={**API, "other": {"x": "y"}}, granted={"api_token"})
    assert ctx.secret_field("api_token", "user") == "bot"
    with pytest.raises(PermissionError, match="secret not granted: other"):
        ctx.secret("other")


@pytest.mark.parametrize("bad", [{"n": 1}, ["token"], "text"])
def test_malformed_secret_raises_runtime_error_without_the_value(bad: Any) -> None:
    with pytest.raises(RuntimeError, match="secret backend error") as caught:
        context(source={"api_token": bad}).secret("api_token")
    assert "text" not in str(caught.value)


def test_failing_backend_raises_runtime_error() -> None:
    def broken(name: str) -> dict[str, str]:
        raise ConnectionError("vault unreachable")

    with pytest.raises(RuntimeError, match="secret backend error: ConnectionError: vault unreachable"):
        context(source=broken).secret("api_token")


def test_callable_and_object_sources() -> None:
    assert context(source=lambda name: {"v": name}).secret_field("abc", "v") == "abc"
    with pytest.raises(KeyError):
        context(source=lambda name: None).secret("abc")

    class Vault:
        def resolve(self, name: str) -> Optional[dict[str, str]]:
            return {"from": "vault"} if name == "known" else None

    assert context(source=Vault()).secret("known") == {"from": "vault"}


def test_unusable_source_rejected_when_the_runner_is_made() -> None:
    with pytest.raises(TypeError, match="secrets="):
        cloaca.DefaultRunner(":memory:", secrets=42)


@pytest.mark.asyncio
async def test_async_accessors_and_async_source() -> None:
    class AsyncVault:
        async def aresolve(self, name: str) -> dict[str, str]:
            return {"token": name.upper()}

    ctx = context(source=AsyncVault())
    assert await ctx.asecret("abc") == {"token": "ABC"}
    assert await ctx.asecret_field("abc", "token") == "ABC"
    with pytest.raises(RuntimeError, match="asecret"):
        ctx.secret("abc")  # on the loop thread: a sync accessor cannot wait for an async source
    assert await context().asecret_field("api_token", "user") == "bot"  # sync source from async


# ------------------------------------------------------------------ environment source
def test_environment_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOACINA_SECRETS_db.main", json.dumps({"password": "verbatim"}))
    monkeypatch.setenv("CLOACINA_SECRETS_API_KEY", json.dumps({"key": "upper"}))
    monkeypatch.setenv("CLOACINA_SECRETS_broken", "{not json")
    ctx = context(source=cloaca._secrets.EnvironmentSecrets())
    assert ctx.secret_field("db.main", "password") == "verbatim"
    assert ctx.secret_field("api-key", "key") == "upper"  # upper-cased, '-' -> '_'
    with pytest.raises(KeyError):
        ctx.secret("absent_secret")
    with pytest.raises(RuntimeError, match="secret backend error"):
        ctx.secret("broken")


# ------------------------------------------------------------------ through the runner
def _secret_workflow(name: str, graph: Optional[cloaca.ComputationGraphBuilder] = None) -> None:
    with cloaca.WorkflowBuilder(name):
        @cloaca.task(id="sync_body", invokes=graph, retry_attempts=0)
        def sync_body(ctx):
            ctx.set("user", ctx.secret_field("api_token", "user"))
            return ctx

        # Retried as by default (3 attempts), 10 ms apart rather than 1 s then 2 s: a runner
        # without secrets fails it too.
        @cloaca.task(id="async_body", dependencies=["sync_body"], retry_delay_ms=10)
        async def async_body(ctx):
            ctx.set("token_length", len(await ctx.asecret_field("api_token", "token")))
            return ctx


def test_runner_mapping_source_reaches_sync_and_async_tasks_and_graph_nodes(wf_name) -> None:
    def reads_secret(ctx):
        return ctx.secret_field("api_token", "user") + "!"

    graph = cloaca.ComputationGraphBuilder(unique_name("graph"), graph={"reads_secret": {}})
    with graph:
        cloaca.node(reads_secret)
    name = wf_name()
    _secret_workflow(name, graph)
    runner = cloaca.DefaultRunner(":memory:", secrets=API)
    try:
        result = runner.execute(name, cloaca.Context())
    finally:
        runner.shutdown()
    assert result.status == "Completed", result.error_message
    final = result.final_context
    assert (final["user"], final["token_length"], final["reads_secret"]) == ("bot", 6, "bot!")
    assert "s3cr3t" not in final.to_json()


def test_runner_environment_source_is_the_default(wf_name, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOACINA_SECRETS_api_token", json.dumps({"user": "env-bot", "token": "abc"}))
    name = wf_name()
    _secret_workflow(name)
    runner = cloaca.DefaultRunner.with_config(":memory:", cloaca.DefaultRunnerConfig())
    try:
        result = runner.execute(name, cloaca.Context())
    finally:
        runner.shutdown()
    assert (result.final_context["user"], result.final_context["token_length"]) == ("env-bot", 3)


def test_runner_without_secrets_fails_the_task(wf_name) -> None:
    name = wf_name()
    _secret_workflow(name)
    runner = cloaca.DefaultRunner(":memory:", secrets=False)
    try:
        result = runner.execute(name, cloaca.Context())
    finally:
        runner.shutdown()
    assert result.status == "Failed"
    assert "RuntimeError: secrets backend not configured" in result.task_results[0]["error_message"]
