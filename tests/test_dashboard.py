"""The dashboard over ASGI (httpx): every route, on SQLite and PostgreSQL; escaping, 404s, CSRF."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import uuid
from typing import Any, AsyncIterator, Callable

import httpx
import pytest
import pytest_asyncio

pytest.importorskip("starlette")
pytest.importorskip("jinja2")

from support import wait_until  # noqa: E402

import cloaca  # noqa: E402
from cloaca import Context, DefaultRunner  # noqa: E402
from cloaca._registry import REGISTRY  # noqa: E402
from cloaca.dashboard import _app, create_app  # noqa: E402

SCRIPT = "<script>alert('ctx')</script>"
IMG = "<img src=x onerror=alert('err')>"


# ====================================================================== helpers
def declare_diamond(name: str, message: str = "boom") -> None:
    """a -> (b fails with `message`, c) -> d; a writes a hostile context value."""
    with cloaca.WorkflowBuilder(name):
        @cloaca.task(id="a")
        def a(ctx: Context) -> Context:
            ctx.set("note", SCRIPT)
            return ctx

        @cloaca.task(id="b", dependencies=["a"], retry_attempts=1)
        def b(ctx: Context) -> Context:
            raise ValueError(message)

        @cloaca.task(id="c", dependencies=["a"])
        def c(ctx: Context) -> Context:
            ctx.set("c", 1)
            return ctx

        @cloaca.task(id="d", dependencies=["b", "c"])
        def d(ctx: Context) -> Context:
            return ctx


def declare_simple(name: str) -> None:
    with cloaca.WorkflowBuilder(name):
        @cloaca.task(id="only")
        def only(ctx: Context) -> Context:
            return ctx


def declare_gated(name: str, gate: threading.Event) -> None:
    """One task that waits for `gate` (so a run stays Running until the test sets it)."""
    with cloaca.WorkflowBuilder(name):
        @cloaca.task(id="wait")
        def wait(ctx: Context) -> Context:
            gate.wait(30)
            return ctx


@pytest_asyncio.fixture
async def client_for() -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    """`client_for(runner, allow_actions=False)`: an httpx client over the dashboard's ASGI app."""
    clients: list[httpx.AsyncClient] = []

    def make(runner: DefaultRunner, allow_actions: bool = False) -> httpx.AsyncClient:
        app = create_app(runner, allow_actions=allow_actions)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://dash")
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no action form"
    return match.group(1)


def task_names_in_dag(html: str) -> list[str]:
    svg = html[html.index('<svg class="dag"'):]
    svg = svg[: svg.index("</svg>")]
    return re.findall(r'<text class="name"[^>]*>([^<]*)</text>', svg)


# ====================================================================== pages and API
@pytest.mark.asyncio
async def test_runs_page_lists_filters_and_counts(runner: DefaultRunner, wf_name: Any,
                                                   client_for: Any) -> None:
    diamond, simple = wf_name("diamond"), wf_name("simple")
    declare_diamond(diamond)
    declare_simple(simple)
    failed = await runner.aexecute(diamond, Context({}))
    done = await runner.aexecute(simple, Context({}))
    client = client_for(runner)

    page = await client.get("/")
    assert page.status_code == 200
    assert f"/runs/{failed.execution_id}" in page.text and f"/runs/{done.execution_id}" in page.text
    assert "Failed 1" in page.text and "Completed 1" in page.text

    only_simple = await client.get("/runs", params={"workflow": simple})
    assert f"/runs/{done.execution_id}" in only_simple.text
    assert f"/runs/{failed.execution_id}" not in only_simple.text

    only_failed = await client.get("/", params={"status": "Failed"})
    assert f"/runs/{failed.execution_id}" in only_failed.text
    assert f"/runs/{done.execution_id}" not in only_failed.text

    api = (await client.get("/api/runs", params={"status": "Completed"})).json()
    assert [r["id"] for r in api["runs"]] == [done.execution_id]
    assert api["counts"] == {"Completed": 1, "Failed": 1} and api["total"] == 1


@pytest.mark.asyncio
async def test_runs_are_paged(runner: DefaultRunner, wf_name: Any, client_for: Any,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_app, "PAGE_SIZE", 2)
    name = wf_name()
    declare_simple(name)
    ids = [(await runner.aexecute(name, Context({"i": i}))).execution_id for i in range(5)]
    newest_first = ids[::-1]
    client = client_for(runner)

    pages = [(await client.get("/", params={"workflow": name, "page": n})).text for n in (1, 2, 3)]
    for n, html in enumerate(pages):
        shown = [i for i in ids if f"/runs/{i}" in html]
        assert shown == sorted(newest_first[2 * n: 2 * n + 2], key=ids.index)
        assert f"page {n + 1} of 3 (5 runs)" in html

    api = (await client.get("/api/runs", params={"workflow": name, "limit": 2, "offset": 3})).json()
    assert [r["id"] for r in api["runs"]] == newest_first[3:5]
    assert api["total"] == 5


@pytest.mark.asyncio
async def test_run_page_draws_the_dag_timeline_errors_and_contexts(
        runner: DefaultRunner, wf_name: Any, client_for: Any) -> None:
    name = wf_name()
    declare_diamond(name, message="disk full")
    result = await runner.aexecute(name, Context({"order": 7}))
    client = client_for(runner)

    page = await client.get(f"/runs/{result.execution_id}")
    assert page.status_code == 200
    html = page.text
    assert sorted(task_names_in_dag(html)) == ["a", "b", "c", "d"]
    assert html.count('<path class="edge"') == 4  # a->b, a->c, b->d, c->d
    assert re.search(r'class="node s-failed" data-task="[^"]*::b"', html)
    assert re.search(r'class="node s-completed" data-task="[^"]*::d"', html)
    assert html.count('<g class="bar ') == 4  # every task started: one timeline bar each
    assert "disk full" in html
    assert "<summary>Traceback</summary>" in html and "raise ValueError(message)" in html
    assert "&#34;order&#34;: 7" in html  # the input context
    assert "&#34;c&#34;: 1" in html  # the final context

    api = (await client.get(f"/api/runs/{result.execution_id}")).json()
    assert api["status"] == "Failed" and api["workflow_name"] == name
    assert api["input_context"] == {"order": 7}
    assert api["final_context"] == result.final_context.to_dict()
    assert {t["status"] for t in api["task_results"]} == {"Completed", "Failed"}


@pytest.mark.asyncio
async def test_a_run_of_a_workflow_unknown_here_is_drawn_from_its_tasks(
        runner: DefaultRunner, wf_name: Any, client_for: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    name = wf_name()
    declare_diamond(name)
    result = await runner.aexecute(name, Context({}))
    monkeypatch.setattr(DefaultRunner, "aget_workflow", _no_workflow)
    html = (await client_for(runner).get(f"/runs/{result.execution_id}")).text
    assert sorted(task_names_in_dag(html)) == ["a", "b", "c", "d"]
    assert '<path class="edge"' not in html


async def _no_workflow(self: DefaultRunner, workflow_name: str) -> None:
    return None


@pytest.mark.asyncio
async def test_a_running_run_asks_to_be_refreshed_until_it_ends(
        runner: DefaultRunner, wf_name: Any, client_for: Any) -> None:
    name, gate = wf_name(), threading.Event()
    declare_gated(name, gate)
    running = asyncio.ensure_future(runner.aexecute(name, Context({})))
    try:
        client = client_for(runner)
        listed = await wait_until(
            lambda: runner.alist_executions(workflow_name=name, status="Running"), "a Running run")
        run_id = listed[0]["id"]
        page = (await client.get(f"/runs/{run_id}")).text
        assert f'data-refresh="{_app.REFRESH_ACTIVE_MS}"' in page
        assert 'data-refresh="2000"' in (await client.get("/", params={"workflow": name})).text
    finally:
        gate.set()
        await running
    page = (await client.get(f"/runs/{run_id}")).text
    assert 'data-refresh="0"' in page and "s-completed" in page


@pytest.mark.asyncio
async def test_triggers_and_cron_pages_and_api(runner: DefaultRunner, wf_name: Any,
                                               client_for: Any) -> None:
    workflow = wf_name()
    declare_simple(workflow)
    trigger_name = f"dash/{uuid.uuid4().hex[:6]}"  # a slash: the name travels in the URL path

    @cloaca.trigger(name=trigger_name, workflow=workflow, poll_interval="1h")
    def never() -> cloaca.TriggerResult:
        return cloaca.TriggerResult.skip()

    try:
        await wait_until(lambda: runner.aget_trigger_schedule(trigger_name), "the trigger's row")
        schedule_id = await runner.aregister_cron_workflow(workflow, "0 0 1 1 *", "UTC")
        client = client_for(runner)

        triggers = await client.get("/triggers")
        assert triggers.status_code == 200 and trigger_name in triggers.text
        assert "dash%2F" in triggers.text  # the link quotes the slash
        detail = await client.get(f"/triggers/{trigger_name}")
        assert detail.status_code == 200 and "has not fired yet" in detail.text
        api = (await client.get("/api/triggers")).json()
        assert trigger_name in [t["trigger_name"] for t in api["triggers"]]

        cron = await client.get("/cron")
        assert cron.status_code == 200 and "0 0 1 1 *" in cron.text
        assert f"/cron/{schedule_id}" in cron.text
        one = await client.get(f"/cron/{schedule_id}")
        assert one.status_code == 200 and "has not fired yet" in one.text
        schedules = (await client.get("/api/cron")).json()["schedules"]
        assert [s["id"] for s in schedules] == [schedule_id]
        assert schedules[0]["next_run_at"].endswith("+00:00")
    finally:
        REGISTRY.remove_trigger(trigger_name)


# ====================================================================== safety
@pytest.mark.asyncio
async def test_user_text_comes_back_inert(runner: DefaultRunner, wf_name: Any,
                                          client_for: Any) -> None:
    name = wf_name()
    declare_diamond(name, message=IMG)
    result = await runner.aexecute(name, Context({"input": SCRIPT}))
    client = client_for(runner)
    pages = [
        (await client.get(f"/runs/{result.execution_id}")).text,
        (await client.get("/", params={"workflow": name})).text,
        (await client.get("/", params={"workflow": SCRIPT})).text,  # reflected filter value
        (await client.get(f"/runs/{IMG}")).text,  # reflected in the 404 message
    ]
    for html in pages:
        assert "<script>alert" not in html and "<img src=x" not in html
    run_page = pages[0]
    assert "&lt;script&gt;alert(" in run_page  # the context value, escaped
    assert "&lt;img src=x onerror=alert(" in run_page  # the error message, escaped
    assert "<script" not in run_page.replace('<script src="/static/dashboard.js" defer></script>', "")
    api = (await client.get(f"/api/runs/{result.execution_id}")).json()
    assert api["input_context"]["input"] == SCRIPT  # JSON carries the data as it is


@pytest.mark.asyncio
async def test_every_response_has_a_content_security_policy(runner: DefaultRunner,
                                                             client_for: Any) -> None:
    client = client_for(runner)
    for path in ("/", "/api/runs", "/static/dashboard.js", "/runs/missing"):
        response = await client.get(path)
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.asyncio
async def test_unknown_ids_are_404_pages_or_json(runner: DefaultRunner, client_for: Any) -> None:
    client = client_for(runner)
    unknown = str(uuid.uuid4())
    for path in (f"/runs/{unknown}", "/triggers/no-such-trigger", f"/cron/{unknown}",
                 "/cron/not-a-uuid", "/no/such/page"):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("text/html")
        assert "<h1>404</h1>" in response.text
    for path in (f"/api/runs/{unknown}", "/api/nothing"):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert "error" in response.json()


@pytest.mark.asyncio
async def test_bad_query_parameters_are_400(runner: DefaultRunner, client_for: Any) -> None:
    client = client_for(runner)
    bad_status = await client.get("/api/runs", params={"status": "Exploded"})
    assert bad_status.status_code == 400 and "Completed" in bad_status.json()["error"]
    assert (await client.get("/", params={"page": "zero"})).status_code == 400
    assert (await client.get("/api/runs", params={"limit": "100000"})).status_code == 400


@pytest.mark.asyncio
async def test_without_allow_actions_there_are_no_actions(runner: DefaultRunner, wf_name: Any,
                                                          client_for: Any) -> None:
    name = wf_name()
    declare_diamond(name)
    result = await runner.aexecute(name, Context({}))
    client = client_for(runner)
    page = await client.get(f"/runs/{result.execution_id}")
    assert "<form method=\"post\"" not in page.text and "cloaca_csrf" not in page.headers.get("set-cookie", "")
    posted = await client.post(f"/runs/{result.execution_id}", data={"action": "retry"})
    assert posted.status_code in (404, 405)
    assert (await runner.aget_execution(result.execution_id)).status == "Failed"


@pytest.mark.asyncio
async def test_actions_need_the_csrf_token_of_this_app(runner: DefaultRunner, wf_name: Any,
                                                       client_for: Any) -> None:
    workflow = wf_name()
    declare_simple(workflow)
    schedule_id = await runner.aregister_cron_workflow(workflow, "0 0 1 1 *", "UTC")
    client = client_for(runner, allow_actions=True)
    page = await client.get(f"/cron/{schedule_id}")
    token = csrf_token(page.text)
    assert client.cookies.get("cloaca_csrf") == token

    target = f"/cron/{schedule_id}"
    forged = "0" * 32 + "." + "0" * 64
    refusals = [
        ({"action": "disable"}, token),  # no token in the form
        ({"action": "disable", "csrf_token": token}, ""),  # no cookie
        ({"action": "disable", "csrf_token": forged}, token),  # the form's token is not the cookie's
        ({"action": "disable", "csrf_token": forged}, forged),  # planted cookie, not signed here
    ]
    for form, cookie in refusals:
        # An explicit Cookie header replaces the client's cookie jar for this request.
        response = await client.post(target, data=form, headers={"Cookie": f"cloaca_csrf={cookie}"})
        assert response.status_code == 403, (form, cookie)
        assert "CSRF" in response.text
    other_app = client_for(runner, allow_actions=True)  # another app signs with another secret
    refused = await other_app.post(target, data={"action": "disable", "csrf_token": token},
                                   headers={"Cookie": f"cloaca_csrf={token}"})
    assert refused.status_code == 403
    assert (await runner.aget_cron_schedule(schedule_id))["enabled"] is True

    token = csrf_token((await client.get(target)).text)  # a refused request may have set a new cookie
    done = await client.post(target, data={"action": "disable", "csrf_token": token})
    assert done.status_code == 303 and done.headers["location"] == f"{target}?notice=disabled"
    assert (await runner.aget_cron_schedule(schedule_id))["enabled"] is False
    assert "Disabled." in (await client.get(done.headers["location"])).text


@pytest.mark.asyncio
async def test_enable_and_disable_a_trigger(runner: DefaultRunner, wf_name: Any,
                                            client_for: Any) -> None:
    workflow = wf_name()
    declare_simple(workflow)
    trigger_name = f"dash_toggle_{uuid.uuid4().hex[:6]}"

    @cloaca.trigger(name=trigger_name, workflow=workflow, poll_interval="1h")
    def never() -> cloaca.TriggerResult:
        return cloaca.TriggerResult.skip()

    try:
        await wait_until(lambda: runner.aget_trigger_schedule(trigger_name), "the trigger's row")
        client = client_for(runner, allow_actions=True)
        token = csrf_token((await client.get("/triggers")).text)
        response = await client.post(f"/triggers/{trigger_name}",
                                     data={"action": "disable", "csrf_token": token})
        assert response.status_code == 303
        assert (await runner.aget_trigger_schedule(trigger_name))["enabled"] is False
        response = await client.post(f"/triggers/{trigger_name}",
                                     data={"action": "enable", "csrf_token": token})
        assert (await runner.aget_trigger_schedule(trigger_name))["enabled"] is True
        unknown = await client.post("/triggers/nope", data={"action": "enable", "csrf_token": token})
        assert unknown.status_code == 404
        bad = await client.post(f"/triggers/{trigger_name}", data={"action": "explode", "csrf_token": token})
        assert bad.status_code == 400
    finally:
        REGISTRY.remove_trigger(trigger_name)


@pytest.mark.asyncio
async def test_cancel_and_retry_from_the_run_page(runner: DefaultRunner, wf_name: Any,
                                                  client_for: Any) -> None:
    name, gate = wf_name(), threading.Event()
    declare_gated(name, gate)
    running = asyncio.ensure_future(runner.aexecute(name, Context({})))
    client = client_for(runner, allow_actions=True)
    try:
        listed = await wait_until(
            lambda: runner.alist_executions(workflow_name=name, status="Running"), "a Running run")
        run_id = listed[0]["id"]
        page = (await client.get(f"/runs/{run_id}")).text
        assert "Cancel run" in page and "Retry run" not in page
        cancelled = await client.post(f"/runs/{run_id}", data={"action": "cancel", "csrf_token": csrf_token(page)})
        assert cancelled.status_code == 303
        assert (await running).status == "Cancelled"
    finally:
        gate.set()
    page = (await client.get(f"/runs/{run_id}")).text
    assert "Retry run" in page and "Cancel run" not in page
    retried = await client.post(f"/runs/{run_id}", data={"action": "retry", "csrf_token": csrf_token(page)})
    assert retried.status_code == 303 and retried.headers["location"].endswith("notice=retried")
    final = await runner.aget_result(run_id, timeout=30)
    assert final.status == "Completed"
    again = await client.post(f"/runs/{run_id}", data={"action": "retry", "csrf_token": csrf_token(page)})
    assert again.status_code == 409  # a Completed run cannot be retried


# ====================================================================== embedding
@pytest.mark.asyncio
async def test_mounted_in_fastapi_links_stay_under_the_mount_point(runner: DefaultRunner,
                                                                   wf_name: Any) -> None:
    fastapi = pytest.importorskip("fastapi")
    name = wf_name()
    declare_diamond(name)
    result = await runner.aexecute(name, Context({}))
    api = fastapi.FastAPI()
    api.mount("/ops/cloaca", create_app(runner))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://app") as c:
        html = (await c.get("/ops/cloaca/")).text
        assert f'href="/ops/cloaca/runs/{result.execution_id}"' in html
        assert 'href="/ops/cloaca/static/dashboard.css"' in html
        assert (await c.get("/ops/cloaca/static/dashboard.css")).status_code == 200
        run = await c.get(f"/ops/cloaca/runs/{result.execution_id}")
        assert run.status_code == 200 and 'href="/ops/cloaca/triggers"' in run.text
        missing = await c.get("/ops/cloaca/api/runs/nope")
        assert missing.status_code == 404 and "error" in missing.json()


@contextlib.asynccontextmanager
async def lifespan_of(app: Any) -> AsyncIterator[None]:
    """Run an ASGI app's lifespan (startup on entry, shutdown on exit), as a server would."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    task = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                                     inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
        await task


@pytest.mark.asyncio
async def test_a_url_opens_its_own_runner_for_the_app_s_lifetime(tmp_path: Any, wf_name: Any) -> None:
    url = f"sqlite:///{tmp_path}/dash.db"
    name = wf_name()
    declare_simple(name)
    async with DefaultRunner(url) as writer:
        run_id = (await writer.aexecute(name, Context({}))).execution_id
    app = create_app(url)
    async with lifespan_of(app):  # the runner opens at startup and closes at shutdown
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://d") as c:
            assert f"/runs/{run_id}" in (await c.get("/")).text
            assert (await c.get(f"/api/runs/{run_id}")).json()["status"] == "Completed"
    async with DefaultRunner(url) as again:  # the app's runner released the database
        assert (await again.aget_execution(run_id)) is not None


@pytest.mark.asyncio
async def test_a_url_of_a_sqlite_file_that_does_not_exist_fails_startup_naming_it(tmp_path: Any) -> None:
    missing = tmp_path / "mistyped.db"
    app = create_app(f"sqlite:///{missing}")
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    task = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                                     inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    answer = await outbox.get()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert answer["type"] == "lifespan.startup.failed"
    assert "No SQLite database" in answer["message"] and "mistyped.db" in answer["message"]
    assert not missing.exists()


def test_create_app_rejects_what_is_neither_a_runner_nor_a_url() -> None:
    with pytest.raises(TypeError, match="DefaultRunner or a database URL"):
        create_app(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        create_app("")


def test_count_executions_is_per_workflow_and_status(runner: DefaultRunner, wf_name: Any) -> None:
    one, two = wf_name("one"), wf_name("two")
    declare_simple(one)
    declare_diamond(two)
    runner.execute(one, Context({}))
    runner.execute(one, Context({}))
    runner.execute(two, Context({}))
    assert runner.count_executions(one) == {"Completed": 2}
    assert runner.count_executions(two) == {"Failed": 1}
    assert runner.count_executions(wf_name("none")) == {}
    with pytest.raises(TypeError, match="workflow_name"):
        runner.count_executions(3)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_trigger_and_cron_history_link_the_runs_they_launched(
        runner: DefaultRunner, wf_name: Any, client_for: Any) -> None:
    workflow = wf_name()
    declare_simple(workflow)
    trigger_name = f"dash_fires_{uuid.uuid4().hex[:6]}"
    fired: list[bool] = []

    @cloaca.trigger(name=trigger_name, workflow=workflow, poll_interval="50ms")
    def once() -> cloaca.TriggerResult:
        if fired:
            return cloaca.TriggerResult.skip()
        fired.append(True)
        return cloaca.TriggerResult.fire(Context({"from": "trigger"}))

    try:
        schedule_id = await runner.aregister_cron_workflow(workflow, "* * * * * *", "UTC")
        fires = await wait_until(lambda: runner.aget_trigger_execution_history(trigger_name),
                                 "the trigger's fire")
        slots = await wait_until(
            lambda: _launched(runner.aget_cron_execution_history(schedule_id)), "a cron fire")
        await runner.aset_cron_schedule_enabled(schedule_id, False)
        client = client_for(runner)
        trigger_page = (await client.get(f"/triggers/{trigger_name}")).text
        assert f'href="/runs/{fires[0]["workflow_execution_id"]}"' in trigger_page
        schedule_page = (await client.get(f"/cron/{schedule_id}")).text
        assert f'href="/runs/{slots[0]["workflow_execution_id"]}"' in schedule_page
        assert "paused" in schedule_page  # a disabled schedule has no next fire
    finally:
        REGISTRY.remove_trigger(trigger_name)


async def _launched(history: Any) -> list[dict[str, Any]]:
    return [f for f in await history if f["workflow_execution_id"]]


@pytest.mark.asyncio
async def test_a_runner_without_cron_says_so_instead_of_failing(client_for: Any) -> None:
    config = cloaca.DefaultRunnerConfig(enable_cron_scheduling=False)
    async with DefaultRunner.with_config(":memory:", config) as runner:
        client = client_for(runner)
        page = await client.get("/cron")
        assert page.status_code == 200 and "Cron scheduling not enabled" in page.text
        api = await client.get("/api/cron")
        assert api.status_code == 200 and api.json()["schedules"] == []
        assert "not enabled" in api.json()["error"]


def test_serve_binds_the_loopback_by_default_and_warns_otherwise(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    uvicorn = pytest.importorskip("uvicorn")
    from cloaca.dashboard import serve

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(dict(kw, app=app)))
    serve("sqlite:///unused.db")
    assert calls[-1]["host"] == "127.0.0.1" and calls[-1]["port"] == 8765
    said = capsys.readouterr().err
    assert "http://127.0.0.1:8765/" in said and "read-only" in said and "warning" not in said
    serve("sqlite:///unused.db", host="0.0.0.0", port=9000, allow_actions=True)
    assert calls[-1]["host"] == "0.0.0.0" and calls[-1]["port"] == 9000
    said = capsys.readouterr().err
    assert "actions enabled" in said and "reachable from other machines" in said
