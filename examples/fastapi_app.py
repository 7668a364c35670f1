"""A FastAPI service that embeds a cloaca runner on its own event loop.

    pip install -e '.[examples]'        # fastapi, uvicorn, httpx
    python examples/fastapi_app.py      # serves http://127.0.0.1:8000 (docs at /docs)

    curl -X POST localhost:8000/runs/svc_greet -H 'content-type: application/json' -d '{"name": "ada"}'
    curl -X POST localhost:8000/runs -H 'content-type: application/json' \
         -d '{"workflow": "svc_approval", "context": {"ticket": "t1"}}'     # 202 + execution_id
    curl localhost:8000/runs/<execution_id>                                # progress
    curl -X DELETE localhost:8000/runs/<execution_id>                      # cancel
    curl -X POST localhost:8000/events -H 'content-type: application/json' -d '{"kind": "signup"}'
    curl localhost:8000/runs
    curl localhost:8000/triggers

What it shows:

* The runner is opened in the app's lifespan with `async with cloaca.DefaultRunner(...)`, so it
  is bound to the loop uvicorn serves on: `async def` tasks and triggers run on that loop and
  use the objects the lifespan created there (an `httpx.AsyncClient`, an `asyncio.Queue`,
  `asyncio.Event`s), and endpoints start runs with `await runner.aexecute(...)`. Never call
  the blocking methods (`runner.execute`, ...) from an endpoint: on the runner's own loop they
  raise `RuntimeError` naming the `a`-twin to await instead.
* Tasks and triggers are module-level and process-wide (the registry is global). They find
  the app's resources through the loop they run on (`_resources()`): a runner bound to the
  app's loop runs them there, and anything else (another runner in the same process) finds
  none.
* `POST /runs/{workflow}` waits for the run and returns its outcome. A workflow that fails is
  still a completed request: HTTP 200 with `"status": "Failed"` and the error message (the run
  exists, `GET /runs/{id}` shows it). An unknown workflow is a 404; a runner that is shutting
  down, or a run that outlives `workflow_timeout_seconds`, is a 503.
* `POST /runs` is the 202 pattern for long runs: it returns the execution id as soon as the
  run is persisted (`runner.asubmit`), `GET /runs/{id}` reports its progress (status and each
  task's status), `DELETE /runs/{id}` cancels it (`runner.acancel`) wherever it executes.
* `@cloaca.trigger` polls an `asyncio.Queue` that `POST /events` feeds: each event becomes a
  run of `svc_event`.
* Graceful shutdown (Ctrl-C): uvicorn stops accepting, cancels requests still in flight after
  `timeout_graceful_shutdown`, then the lifespan exits, which shuts the runner down: running
  task bodies get `shutdown_grace_seconds`, then are cancelled; unfinished runs stay `Running`
  in the database and resume (at-least-once) when the service starts again on it. Try it with
  `POST /runs/svc_approval {"ticket": "t1"}`, Ctrl-C, restart, `POST /approvals/t1`.

Configuration: `CLOACA_DATABASE_URL` (default: a SQLite file in the temp directory, so that a
restart resumes interrupted runs), `HOST`, `PORT`, `SHUTDOWN_TIMEOUT` (uvicorn's
`timeout_graceful_shutdown`, default 5 s).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Optional

import httpx
from fastapi import Body, FastAPI, HTTPException, Query
from fastapi.responses import JSONResponse

import cloaca

EVENT_TRIGGER = "svc_events"
"""The trigger that turns `POST /events` into runs of `svc_event`."""


# =============================================================================
# App-level resources, made in the lifespan on the app's loop
# =============================================================================

@dataclass
class Resources:
    """What the lifespan creates on the app's loop and the tasks use."""

    loop: asyncio.AbstractEventLoop
    http: httpx.AsyncClient
    events: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    approvals: dict[str, asyncio.Event] = field(default_factory=dict)
    greet_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    greetings: int = 0
    handled_events: list[str] = field(default_factory=list)

    def approval(self, ticket: str) -> asyncio.Event:
        return self.approvals.setdefault(ticket, asyncio.Event())


_BY_LOOP: dict[asyncio.AbstractEventLoop, Resources] = {}


def _resources() -> Optional[Resources]:
    """The resources of the app serving on the running loop (None outside such an app)."""
    try:
        return _BY_LOOP.get(asyncio.get_running_loop())
    except RuntimeError:
        return None


def _require_resources() -> Resources:
    resources = _resources()
    if resources is None:
        raise RuntimeError("this task needs the FastAPI app's resources: run it from the app")
    return resources


# =============================================================================
# Workflows (module-level: the cloaca registry is process-wide)
# =============================================================================

with cloaca.WorkflowBuilder("svc_greet") as builder:
    builder.description("Greet someone; proves the task runs on the app's loop")

    @cloaca.task(id="greet")
    async def greet(context):
        resources = _require_resources()
        async with resources.greet_lock:  # an asyncio.Lock of the app's loop
            resources.greetings += 1
            number = resources.greetings
        context.set("greeting", f"hello, {context.get('name', 'world')}")
        context.set("greeting_number", number)
        context.set("on_app_loop", asyncio.get_running_loop() is resources.loop)
        context.set("thread_id", threading.get_ident())
        return context


with cloaca.WorkflowBuilder("svc_fetch") as builder:
    builder.description("GET a URL with the app's shared httpx.AsyncClient")

    @cloaca.task(id="fetch", retry_attempts=1)
    async def fetch(context):
        response = await _require_resources().http.get(context.get("url"))
        context.set("http_status", response.status_code)
        context.set("body", response.json())
        return context


with cloaca.WorkflowBuilder("svc_fail") as builder:
    builder.description("Always fails (no retries): how a failed run looks over HTTP")

    @cloaca.task(id="explode", retry_attempts=1)
    async def explode(context):
        raise ValueError(context.get("reason", "boom"))


with cloaca.WorkflowBuilder("svc_approval") as builder:
    builder.description("Waits until POST /approvals/{ticket}; survives a restart of the service")

    @cloaca.task(id="wait_for_approval", retry_attempts=1)
    async def wait_for_approval(context):
        await _require_resources().approval(str(context.get("ticket"))).wait()
        context.set("approved", True)
        return context


with cloaca.WorkflowBuilder("svc_event") as builder:
    builder.description("Handles one event of POST /events (fired by the svc_events trigger)")

    @cloaca.task(id="handle_event")
    async def handle_event(context):
        event = context.get("event") or {}
        _require_resources().handled_events.append(event.get("event_id"))
        context.set("handled", True)
        return context


EXPOSED_WORKFLOWS = frozenset({"svc_greet", "svc_fetch", "svc_fail", "svc_approval", "svc_event"})
"""What `POST /runs/{workflow}` may start (a service does not run arbitrary names)."""


# =============================================================================
# The background trigger: one fire per queued event
# =============================================================================

@cloaca.trigger(name=EVENT_TRIGGER, workflow="svc_event", poll_interval="100ms",
                allow_concurrent=True)
async def svc_events():
    resources = _resources()
    if resources is None:  # a runner outside the app (another loop): nothing to poll
        return cloaca.TriggerResult.skip()
    try:
        event = resources.events.get_nowait()
    except asyncio.QueueEmpty:
        return cloaca.TriggerResult.skip()
    return cloaca.TriggerResult.fire(cloaca.Context({"event": event}))


# =============================================================================
# The app
# =============================================================================

def default_database_url() -> str:
    return os.environ.get("CLOACA_DATABASE_URL") or (
        "sqlite:///" + os.path.join(tempfile.gettempdir(), "cloaca-fastapi-example.db")
    )


def default_config() -> cloaca.DefaultRunnerConfig:
    # Give running tasks a few seconds to finish at shutdown (async tasks are bounded by
    # max_concurrent_async_tasks, 1,000 by default; sync ones by max_concurrent_tasks).
    return cloaca.DefaultRunnerConfig(shutdown_grace_seconds=5.0)


def _run_json(result: cloaca.WorkflowResult) -> dict[str, Any]:
    return {
        "execution_id": result.execution_id,
        "workflow_name": result.workflow_name,
        "status": result.status,
        "final_context": result.final_context.to_dict(),
        "error_message": result.error_message,
        "start_time": result.start_time,
        "end_time": result.end_time,
        "duration_seconds": result.duration_seconds,
        "task_results": result.task_results,
    }


def create_app(database_url: Optional[str] = None,
               config: Optional[cloaca.DefaultRunnerConfig] = None) -> FastAPI:
    """The service; the runner opens on `database_url` (default: `default_database_url()`)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = database_url or default_database_url()
        loop = asyncio.get_running_loop()
        async with httpx.AsyncClient(timeout=10.0) as http:
            resources = Resources(loop=loop, http=http)
            _BY_LOOP[loop] = resources
            try:
                runner = cloaca.DefaultRunner.with_config(url, config or default_config())
                async with runner:  # bound to this loop; shut down (gracefully) on exit
                    app.state.runner = runner
                    app.state.resources = resources
                    app.state.closing = False
                    yield
                    app.state.closing = True  # from here on the runner refuses work: 503
            finally:
                _BY_LOOP.pop(loop, None)

    app = FastAPI(title="cloaca FastAPI example", lifespan=lifespan)

    @app.exception_handler(ValueError)
    async def shutting_down(request: Any, exc: ValueError) -> JSONResponse:
        """The runner refuses work while it shuts down: 503, not a 500 with a traceback."""
        if getattr(app.state, "closing", False):
            return JSONResponse({"detail": f"the service is shutting down: {exc}"}, status_code=503)
        raise exc

    def runner_of() -> cloaca.DefaultRunner:
        return app.state.runner

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"ok": True}

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        resources: Resources = app.state.resources
        return {
            "greetings": resources.greetings,
            "handled_events": list(resources.handled_events),
            "pending_events": resources.events.qsize(),
            "loop_thread_id": threading.get_ident(),
        }

    @app.post("/runs/{workflow}")
    async def start_run(workflow: str,
                        context: Optional[dict[str, Any]] = Body(default=None)) -> dict[str, Any]:
        if workflow not in EXPOSED_WORKFLOWS:
            raise HTTPException(404, f"unknown workflow '{workflow}'")
        try:
            result = await runner_of().aexecute(workflow, cloaca.Context(context or {}))
        except ValueError as exc:  # shutting down, or the workflow timeout
            raise HTTPException(503, str(exc)) from None
        return _run_json(result)  # "Completed" or "Failed": both are HTTP 200

    @app.post("/runs", status_code=202)
    async def submit_run(body: dict[str, Any] = Body(...)) -> JSONResponse:
        workflow, context = body.get("workflow"), body.get("context") or {}
        if workflow not in EXPOSED_WORKFLOWS:
            raise HTTPException(404, f"unknown workflow '{workflow}'")
        if not isinstance(context, dict):
            raise HTTPException(422, "'context' must be a JSON object")
        try:
            execution_id = await runner_of().asubmit(workflow, cloaca.Context(context))
        except ValueError as exc:  # shutting down
            raise HTTPException(503, str(exc)) from None
        return JSONResponse({"execution_id": execution_id, "status_url": f"/runs/{execution_id}"},
                            status_code=202)

    @app.delete("/runs/{execution_id}")
    async def cancel_run(execution_id: str) -> dict[str, Any]:
        try:
            cancelled = await runner_of().acancel(execution_id)
        except ValueError:
            raise HTTPException(404, f"unknown execution '{execution_id}'") from None
        return {"execution_id": execution_id, "cancelled": cancelled}

    @app.get("/runs")
    async def list_runs(workflow_name: Optional[str] = None, status: Optional[str] = None,
                        limit: int = Query(100, ge=1, le=1000),
                        offset: int = Query(0, ge=0)) -> list[dict[str, Any]]:
        return await runner_of().alist_executions(workflow_name, status, limit, offset)

    @app.get("/runs/{execution_id}")
    async def get_run(execution_id: str) -> dict[str, Any]:
        result = await runner_of().aget_execution(execution_id)
        if result is None:
            raise HTTPException(404, f"unknown execution '{execution_id}'")
        return _run_json(result)

    @app.get("/triggers")
    async def list_triggers(enabled_only: bool = False) -> list[dict[str, Any]]:
        return await runner_of().alist_trigger_schedules(enabled_only=enabled_only)

    @app.post("/triggers/{name}/enabled")
    async def set_trigger_enabled(name: str, value: bool = Query(...)) -> dict[str, Any]:
        runner = runner_of()
        if await runner.aget_trigger_schedule(name) is None:
            raise HTTPException(404, f"unknown trigger '{name}'")
        await runner.aset_trigger_enabled(name, value)
        return await runner.aget_trigger_schedule(name)

    @app.post("/events", status_code=202)
    async def post_event(event: Optional[dict[str, Any]] = Body(default=None)) -> JSONResponse:
        payload = dict(event or {})
        payload["event_id"] = uuid.uuid4().hex
        resources: Resources = app.state.resources
        resources.events.put_nowait(payload)
        return JSONResponse({"event_id": payload["event_id"]}, status_code=202)

    @app.post("/approvals/{ticket}")
    async def approve(ticket: str) -> dict[str, Any]:
        resources: Resources = app.state.resources
        resources.approval(ticket).set()
        return {"ticket": ticket, "approved": True}

    return app


app = create_app()
"""For `uvicorn examples.fastapi_app:app` (the runner opens when the app starts serving)."""


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(
        app,
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8000")),
        # Requests still waiting for their run are cancelled after this long at shutdown, so
        # that the lifespan (and the runner's graceful stop) can run; their runs resume later.
        timeout_graceful_shutdown=float(os.environ.get("SHUTDOWN_TIMEOUT", "5")),
    )
