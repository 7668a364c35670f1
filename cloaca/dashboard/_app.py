"""The dashboard's ASGI application: routes, pages, JSON API and actions."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from datetime import datetime
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Optional, Union
from urllib.parse import parse_qs, quote, urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._result import WorkflowResult
from .._runner import DefaultRunner
from ._csrf import COOKIE, FIELD, CsrfGuard
from ._graph import format_seconds, short_name, status_class, task_graph, timeline
from ._source import RunnerSource

HERE = Path(__file__).parent
RUN_STATUSES = ("Pending", "Running", "Completed", "Failed", "Cancelled")
ACTIVE = ("Pending", "Running")
PAGE_SIZE = 50
MAX_LIMIT = 500
HISTORY_LIMIT = 50
REFRESH_ACTIVE_MS = 2000
REFRESH_SCHEDULES_MS = 10000
MAX_FORM_BYTES = 4096

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]

NOTICES = {
    "cancelled": "Cancellation requested.",
    "not-cancelled": "The run had already ended; nothing to cancel.",
    "retried": "The run was resumed.",
    "enabled": "Enabled.",
    "disabled": "Disabled.",
}


def create_app(runner_or_url: Union[DefaultRunner, str], *, allow_actions: bool = False) -> ASGIApp:
    """An ASGI app showing runs, their DAGs, triggers and cron schedules.

    Give it the application's runner, or a database URL: the app then opens its own runner on
    first use (or at startup) and shuts it down when the server stops. Cancel, retry and
    enable/disable exist only with `allow_actions=True`, as POSTs guarded by a CSRF token.
    Mount it anywhere (`app.mount("/cloaca", create_app(runner))`): its links are relative
    to the mount point.
    """
    dashboard = _Dashboard(RunnerSource(runner_or_url), bool(allow_actions))
    return _SecurityHeaders(dashboard.app)


class _SecurityHeaders:
    """Adds the Content-Security-Policy and friends to every response."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _Dashboard:
    def __init__(self, source: RunnerSource, allow_actions: bool) -> None:
        self.source = source
        self.allow_actions = allow_actions
        self.csrf = CsrfGuard()
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"), autoescape=True,
            undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        )
        self.templates.filters.update(when=_when, seconds=format_seconds, status_class=status_class,
                                      pretty_json=_pretty_json, duration=_duration,
                                      short=short_name, clock=_clock)
        routes = [
            Route("/", self.runs_page, name="runs"),
            Route("/runs", self.runs_page),
            Route("/runs/{execution_id}", self.run_page, name="run"),
            Route("/triggers", self.triggers_page, name="triggers"),
            Route("/triggers/{name:path}", self.trigger_page, name="trigger"),
            Route("/cron", self.cron_page, name="cron"),
            Route("/cron/{schedule_id}", self.schedule_page, name="schedule"),
            Route("/api/runs", self.api_runs),
            Route("/api/runs/{execution_id}", self.api_run),
            Route("/api/triggers", self.api_triggers),
            Route("/api/cron", self.api_cron),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]
        if allow_actions:
            routes[2:2] = [
                Route("/runs/{execution_id}", self.run_action, methods=["POST"]),
                Route("/triggers/{name:path}", self.trigger_action, methods=["POST"]),
                Route("/cron/{schedule_id}", self.schedule_action, methods=["POST"]),
            ]
        self.app = Starlette(
            routes=routes, lifespan=self.lifespan,
            exception_handlers={HTTPException: self.http_error, Exception: self.server_error},
        )

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        if self.source.owned:
            await self.source.get()
        try:
            yield
        finally:
            await self.source.close()

    # ------------------------------------------------------------------ runs
    async def runs_page(self, request: Request) -> Response:
        listing = await self._runs(request, api=False)
        active = sum(listing["counts"].get(s, 0) for s in ACTIVE)
        pages = max(1, math.ceil(listing["total"] / listing["limit"]))
        page_no = listing["offset"] // listing["limit"] + 1
        return self.render(
            request, "runs.html", refresh=REFRESH_ACTIVE_MS if active else 0, title="Runs",
            statuses=RUN_STATUSES, page=page_no, pages=pages, **listing,
        )

    async def api_runs(self, request: Request) -> Response:
        return JSONResponse(await self._runs(request, api=True))

    async def _runs(self, request: Request, api: bool) -> dict[str, Any]:
        params = request.query_params
        workflow = params.get("workflow") or None
        status = params.get("status") or None
        if status is not None and status not in RUN_STATUSES:
            raise HTTPException(400, f"unknown status {status!r}; valid: {', '.join(RUN_STATUSES)}")
        if api:
            limit, offset = _paging(request, PAGE_SIZE)
        else:
            limit = PAGE_SIZE
            offset = (_int_param(params, "page", 1, 1, None) - 1) * PAGE_SIZE
        runner = await self.source.get()
        counts, runs = await asyncio.gather(
            runner.acount_executions(workflow), runner.alist_executions(workflow, status, limit, offset))
        total = counts.get(status, 0) if status else sum(counts.values())
        return {"runs": runs, "counts": counts, "total": total, "limit": limit, "offset": offset,
                "workflow": workflow, "status": status}

    async def run_page(self, request: Request) -> Response:
        result = await self._result(request)
        runner = await self.source.get()
        tasks = result.task_results
        return self.render(
            request, "run.html", title=f"Run {result.execution_id}", run=_run_json(result),
            graph=task_graph(await runner.aget_workflow(result.workflow_name), tasks),
            timeline=timeline(tasks, result.start_time, result.end_time, time.time()),
            failed=[t for t in tasks if t["error_message"] or t["traceback"]],
            refresh=REFRESH_ACTIVE_MS if result.status in ACTIVE else 0,
            can_cancel=result.status in ACTIVE, can_retry=result.status in ("Failed", "Cancelled"),
        )

    async def api_run(self, request: Request) -> Response:
        return JSONResponse(_run_json(await self._result(request)))

    async def _result(self, request: Request) -> WorkflowResult:
        execution_id = request.path_params["execution_id"]
        result = await (await self.source.get()).aget_execution(execution_id)
        if result is None:
            raise HTTPException(404, f"no run with id {execution_id!r}")
        return result

    async def run_action(self, request: Request) -> Response:
        form = await self._checked_form(request)
        execution_id = request.path_params["execution_id"]
        runner = await self.source.get()
        if await runner.aget_execution(execution_id) is None:
            raise HTTPException(404, f"no run with id {execution_id!r}")
        action = form.get("action")
        if action == "cancel":
            notice = "cancelled" if await runner.acancel(execution_id) else "not-cancelled"
        elif action == "retry":
            await self._conflict_on_value_error(runner.aretry_execution(execution_id))
            notice = "retried"
        else:
            raise HTTPException(400, "action must be 'cancel' or 'retry'")
        return self.redirect(request, "run", {"notice": notice}, execution_id=execution_id)

    # ------------------------------------------------------------------ triggers
    async def triggers_page(self, request: Request) -> Response:
        triggers = await (await self.source.get()).alist_trigger_schedules(limit=MAX_LIMIT)
        return self.render(request, "triggers.html", title="Triggers", triggers=triggers,
                           refresh=REFRESH_SCHEDULES_MS)

    async def trigger_page(self, request: Request) -> Response:
        name = request.path_params["name"]
        runner = await self.source.get()
        trigger = await runner.aget_trigger_schedule(name)
        if trigger is None:
            raise HTTPException(404, f"no trigger named {name!r}")
        history = await runner.aget_trigger_execution_history(name, limit=HISTORY_LIMIT)
        return self.render(request, "trigger.html", title=f"Trigger {name}", trigger=trigger,
                           history=history, refresh=REFRESH_SCHEDULES_MS)

    async def api_triggers(self, request: Request) -> Response:
        limit, offset = _paging(request, 100)
        triggers = await (await self.source.get()).alist_trigger_schedules(limit=limit, offset=offset)
        return JSONResponse({"triggers": triggers, "limit": limit, "offset": offset})

    async def trigger_action(self, request: Request) -> Response:
        enabled = _enable_flag(await self._checked_form(request))
        name = request.path_params["name"]
        runner = await self.source.get()
        if await runner.aget_trigger_schedule(name) is None:
            raise HTTPException(404, f"no trigger named {name!r}")
        await runner.aset_trigger_enabled(name, enabled)
        notice = "enabled" if enabled else "disabled"
        return self.redirect(request, "trigger", {"notice": notice}, name=name)

    # ------------------------------------------------------------------ cron
    async def cron_page(self, request: Request) -> Response:
        schedules, problem = await self._schedules(MAX_LIMIT, 0)
        return self.render(request, "cron.html", title="Cron schedules", schedules=schedules,
                           problem=problem, refresh=REFRESH_SCHEDULES_MS)

    async def schedule_page(self, request: Request) -> Response:
        schedule = await self._schedule(request)
        history = await (await self.source.get()).aget_cron_execution_history(
            schedule["id"], limit=HISTORY_LIMIT)
        return self.render(request, "schedule.html", title="Cron schedule", schedule=schedule,
                           history=history, refresh=REFRESH_SCHEDULES_MS)

    async def api_cron(self, request: Request) -> Response:
        limit, offset = _paging(request, 100)
        schedules, problem = await self._schedules(limit, offset)
        body: dict[str, Any] = {"schedules": schedules, "limit": limit, "offset": offset}
        if problem:
            body["error"] = problem
        return JSONResponse(body)

    async def _schedules(self, limit: int, offset: int) -> tuple[list[dict[str, Any]], Optional[str]]:
        """The schedules, or none and why (a runner without cron scheduling)."""
        try:
            return await (await self.source.get()).alist_cron_schedules(limit=limit, offset=offset), None
        except ValueError as exc:
            return [], str(exc)

    async def _schedule(self, request: Request) -> dict[str, Any]:
        schedule_id = request.path_params["schedule_id"]
        try:
            return await (await self.source.get()).aget_cron_schedule(schedule_id)
        except ValueError:
            raise HTTPException(404, f"no cron schedule with id {schedule_id!r}") from None

    async def schedule_action(self, request: Request) -> Response:
        enabled = _enable_flag(await self._checked_form(request))
        schedule = await self._schedule(request)
        await (await self.source.get()).aset_cron_schedule_enabled(schedule["id"], enabled)
        notice = "enabled" if enabled else "disabled"
        return self.redirect(request, "schedule", {"notice": notice}, schedule_id=schedule["id"])

    # ------------------------------------------------------------------ plumbing
    def url(self, request: Request, route: str, query: Optional[dict[str, Any]] = None,
            **params: Any) -> str:
        """The path of `route` under the app's mount point, with an optional query string."""
        quoted = {k: quote(str(v), safe="") for k, v in params.items()}
        path = request.scope.get("root_path", "") + str(self.app.url_path_for(route, **quoted))
        query = {k: v for k, v in (query or {}).items() if v not in (None, "")}
        return path + ("?" + urlencode(query) if query else "")

    def render(self, request: Request, template: str, status_code: int = 200,
               **context: Any) -> HTMLResponse:
        token = request.cookies.get(COOKIE)
        fresh = not self.csrf.valid(token)
        if fresh:
            token = self.csrf.new_token()
        context.setdefault("refresh", 0)
        context.setdefault("notice", NOTICES.get(request.query_params.get("notice", "")))
        html = self.templates.get_template(template).render(
            url=lambda route, query=None, **p: self.url(request, route, query, **p),
            static=lambda path: self.url(request, "static", path=path).replace("%2F", "/"),
            allow_actions=self.allow_actions, csrf_field=FIELD, csrf_token=token, **context,
        )
        response = HTMLResponse(html, status_code=status_code)
        if fresh and self.allow_actions:
            response.set_cookie(COOKIE, token or "", httponly=True, samesite="strict",
                                path=request.scope.get("root_path", "") or "/")
        return response

    def redirect(self, request: Request, route: str, query: dict[str, Any], **params: Any) -> Response:
        return RedirectResponse(self.url(request, route, query, **params), status_code=303)

    async def _checked_form(self, request: Request) -> dict[str, str]:
        """The POSTed form, once its CSRF token matches the cookie (else 403)."""
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, "form too large")
        fields = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        if not self.csrf.accepts(request.cookies.get(COOKIE), fields.get(FIELD)):
            raise HTTPException(403, "missing or invalid CSRF token: reload the page and try again")
        return fields

    @staticmethod
    async def _conflict_on_value_error(action: Awaitable[Any]) -> Any:
        try:
            return await action
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return self._error(request, exc.status_code, exc.detail)

    async def server_error(self, request: Request, exc: Exception) -> Response:
        return self._error(request, 500, f"{type(exc).__name__}: {exc}")

    def _error(self, request: Request, status_code: int, detail: str) -> Response:
        if _is_api(request):
            return JSONResponse({"error": detail}, status_code=status_code)
        return self.render(request, "error.html", status_code=status_code,
                           title=f"Error {status_code}", code=status_code, detail=detail)


def _is_api(request: Request) -> bool:
    path, root = request.scope["path"], request.scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    return path == "/api" or path.startswith("/api/")


def _run_json(result: WorkflowResult) -> dict[str, Any]:
    """A run as the JSON API and the run page show it."""
    return {
        "execution_id": result.execution_id, "workflow_name": result.workflow_name,
        "status": result.status, "start_time": result.start_time, "end_time": result.end_time,
        "duration_seconds": result.duration_seconds, "error_message": result.error_message,
        "input_context": result.input_context.to_dict(),
        "final_context": result.final_context.to_dict(),
        "task_results": result.task_results,
    }


def _paging(request: Request, default_limit: int) -> tuple[int, int]:
    """The `limit` and `offset` query parameters of an API request (400 when out of range)."""
    params = request.query_params
    return (_int_param(params, "limit", default_limit, 1, MAX_LIMIT),
            _int_param(params, "offset", 0, 0, None))


def _int_param(params: Any, name: str, default: int, low: int, high: Optional[int]) -> int:
    raw = params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HTTPException(400, f"{name} must be an integer, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise HTTPException(400, f"{name} must be {bound}, got {value}")
    return value


def _enable_flag(form: dict[str, str]) -> bool:
    action = form.get("action")
    if action not in ("enable", "disable"):
        raise HTTPException(400, "action must be 'enable' or 'disable'")
    return action == "enable"


def _when(text: Optional[str]) -> str:
    """An RFC 3339 time as `2026-11-30 07:30:12` (UTC), or an empty string."""
    if not text:
        return ""
    try:
        return datetime.fromisoformat(text).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return text


def _clock(text: Optional[str]) -> str:
    """An RFC 3339 time as `07:30:12.345` (UTC), or an empty string."""
    if not text:
        return ""
    try:
        return datetime.fromisoformat(text).strftime("%H:%M:%S.%f")[:-3]
    except ValueError:
        return text


def _duration(start: Optional[str], end: Optional[str]) -> str:
    """The time between two RFC 3339 times, formatted; empty while `end` is unknown."""
    if not start or not end:
        return ""
    try:
        seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except ValueError:
        return ""
    return format_seconds(seconds)


def _pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)
