"""What the engine tells the outside world where run and task states change: log records
and, when the `otel` extra (opentelemetry-api) is installed, spans and metrics.

Loggers (a `NullHandler` only: the application decides where records go):
- `cloaca.run`: run started and completed (DEBUG), failed (WARNING), cancelled (INFO);
- `cloaca.task`: attempt failed (WARNING, with the exception), retry scheduled (INFO),
  callback failed (ERROR);
- `cloaca.trigger` and `cloaca.cron` are written by the trigger poller and cron scheduler.
Records carry `execution_id`, `workflow_name` and, for tasks, `task_name` and `attempt`.

Spans: `cloaca.run <workflow>` per run, a child of the span current where the run was
submitted; `cloaca.task <task id>` per attempt, a child of its run's span. The run span's
context is stored with the run (`trace_context`), so a runner that resumes or shares the run
in another process continues the same trace. Spans are made only once the application has
installed a tracer provider (an SDK); metrics go to the API's meter (a no-op without an SDK).
Without opentelemetry installed every hook is a no-op that costs one attribute lookup.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any, Mapping, Optional

if TYPE_CHECKING:
    from .._store.base import ExecutionRecord, TaskRecord

run_log = logging.getLogger("cloaca.run")
task_log = logging.getLogger("cloaca.task")

try:  # the optional `otel` extra
    from opentelemetry import context as _otel_context
    from opentelemetry import metrics as _metrics
    from opentelemetry import propagate as _propagate
    from opentelemetry import trace as _trace
    from opentelemetry.trace import Status as _Status
    from opentelemetry.trace import StatusCode as _StatusCode
except ImportError:  # pragma: no cover - exercised by the benchmark without the extra
    _trace = None  # type: ignore[assignment]

TRACING = _trace is not None
"""Whether opentelemetry-api is importable (spans and metrics are then emitted)."""


_provider_seen = False
_no_provider_until = 0.0
PROVIDER_RECHECK_SECONDS = 1.0
"""How long "no SDK installed" is believed before asking again (asking costs a few µs)."""


def spans_on() -> bool:
    """Spans cost something only once an application installed a tracer provider (an SDK):
    until then the API's proxy would hand out spans that record nothing. Once there is one,
    it stays (the API sets it only once); while there is none, the answer is asked again
    at most once a second and whenever a runner starts."""
    global _provider_seen, _no_provider_until
    if _provider_seen or not TRACING:
        return _provider_seen
    now = time.monotonic()
    if now < _no_provider_until:
        return False
    _provider_seen = not isinstance(_trace.get_tracer_provider(), _trace.ProxyTracerProvider)
    _no_provider_until = now + PROVIDER_RECHECK_SECONDS
    return _provider_seen


def recheck_provider() -> None:
    """Ask again whether a tracer provider is installed, at the next run."""
    global _no_provider_until
    _no_provider_until = 0.0


def run_extra(execution: ExecutionRecord) -> dict[str, Any]:
    return {"execution_id": execution.id, "workflow_name": execution.workflow_name}


def task_extra(execution: ExecutionRecord, record: TaskRecord) -> dict[str, Any]:
    return {
        "execution_id": execution.id, "workflow_name": execution.workflow_name,
        "task_name": short_name(record.task_name), "attempt": record.attempt,
    }


def short_name(task_name: str) -> str:
    """A task's id within its workflow (`transform` of `public::embedded::wf::transform`)."""
    return task_name.rsplit("::", 1)[-1]


def caller_trace_context() -> Optional[dict[str, str]]:
    """The trace context current where a run is submitted (to parent its run span), if any."""
    if not spans_on() or not _trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _propagate.inject(carrier)
    return carrier or None


class Observer:
    """The engine's one point of emission for logs, spans and metrics."""

    def __init__(self) -> None:
        recheck_provider()  # a provider installed before this runner starts traces its first run
        if TRACING:
            self._tracer = _trace.get_tracer("cloaca")
            meter = _metrics.get_meter("cloaca")
            self._runs = meter.create_counter("cloaca.runs", description="Runs ended, by workflow and status")
            self._attempts = meter.create_counter(
                "cloaca.task.attempts", description="Task attempts ended, by workflow, task and status"
            )
            self._duration = meter.create_histogram(
                "cloaca.task.duration", unit="s", description="Duration of task attempts"
            )

    # ------------------------------------------------------------------ runs
    def run_started(
        self, execution: ExecutionRecord, parent: Optional[Mapping[str, str]],
        attributes: Optional[Mapping[str, str]], traced: bool,
    ) -> Any:
        """Log the run's start and, if `traced` (spans on), open its span (returned) and
        record its trace context."""
        if run_log.isEnabledFor(logging.DEBUG):
            run_log.debug("run %s of workflow '%s' started", execution.id, execution.workflow_name,
                          extra=run_extra(execution))
        if not traced:
            return None
        return self._start_run_span(execution, _propagate.extract(parent or {}), attributes, resumed=False)

    def run_resumed(self, execution: ExecutionRecord, traced: bool) -> Any:
        """If `traced`, a span for a run this runner goes on with, in the trace the run began in."""
        if not traced:
            return None
        return self._start_run_span(execution, _parent_of(execution), None, resumed=True)

    def _start_run_span(
        self, execution: ExecutionRecord, parent: Any, attributes: Optional[Mapping[str, str]],
        resumed: bool,
    ) -> Any:
        span = self._tracer.start_span(
            f"cloaca.run {execution.workflow_name}", context=parent,
            attributes={"cloaca.execution_id": execution.id,
                        "cloaca.workflow_name": execution.workflow_name,
                        **(attributes or {}), **({"cloaca.resumed": True} if resumed else {})},
        )
        if not resumed:
            carrier: dict[str, str] = {}
            _propagate.inject(carrier, context=_trace.set_span_in_context(span))
            execution.trace_context = json.dumps(carrier) if carrier else None
        return span

    def run_ended(self, execution: ExecutionRecord, span: Any, counted: bool) -> None:
        """Log the end of a run and close its span; `counted`: this runner ended it."""
        status = execution.status
        if status == "Failed":
            run_log.warning("run %s of workflow '%s' failed: %s", execution.id,
                            execution.workflow_name, execution.error_message, extra=run_extra(execution))
        elif status == "Cancelled":
            run_log.info("run %s of workflow '%s' was cancelled", execution.id,
                         execution.workflow_name, extra=run_extra(execution))
        elif run_log.isEnabledFor(logging.DEBUG):
            run_log.debug("run %s of workflow '%s' %s", execution.id, execution.workflow_name,
                          status.lower(), extra=run_extra(execution))
        if not TRACING:
            return
        if counted:
            self._runs.add(1, {"workflow": execution.workflow_name, "status": status})
        if span is not None:
            span.set_attribute("cloaca.status", status)
            if status == "Failed":
                span.set_status(_Status(_StatusCode.ERROR, execution.error_message or "failed"))
            span.end()

    # ------------------------------------------------------------------ attempts
    def attempt_started(
        self, execution: ExecutionRecord, record: TaskRecord, run_span: Any, traced: bool
    ) -> Any:
        """Note the attempt's start (for the duration metric) and, when spans are on, open
        its span and make it current: (span, context token, start), or None without tracing."""
        if not TRACING:
            return None
        started = time.perf_counter()
        if not traced:  # spans_on() when the run was loaded (it costs a few µs: once a run)
            return None, None, started
        parent = _trace.set_span_in_context(run_span) if run_span is not None else _parent_of(execution)
        span = self._tracer.start_span(
            f"cloaca.task {short_name(record.task_name)}", context=parent,
            attributes={"cloaca.execution_id": execution.id,
                        "cloaca.workflow_name": execution.workflow_name,
                        "cloaca.task_name": short_name(record.task_name),
                        "cloaca.attempt": record.attempt},
        )
        token = _otel_context.attach(_trace.set_span_in_context(span))
        return span, token, started

    def attempt_ended(
        self, execution: ExecutionRecord, record: TaskRecord, handle: Any, ok: bool,
        error: str, exc: Optional[BaseException],
    ) -> None:
        """Log a failed attempt (with its exception) and close the attempt's span."""
        if not ok:
            task_log.warning(
                "task '%s' of run %s (workflow '%s') failed on attempt %d: %s",
                short_name(record.task_name), execution.id, execution.workflow_name,
                record.attempt, error, exc_info=exc, extra=task_extra(execution, record),
            )
        if handle is None:
            return
        span, token, started = handle
        if token is not None:
            _otel_context.detach(token)
        labels = {"workflow": execution.workflow_name, "task": short_name(record.task_name),
                  "status": "Completed" if ok else "Failed"}
        self._attempts.add(1, labels)
        self._duration.record(time.perf_counter() - started, labels)
        if span is None:
            return
        if not ok:
            if exc is not None:
                span.record_exception(exc)
            span.set_status(_Status(_StatusCode.ERROR, error))
        span.end()

    def attempt_abandoned(self, handle: Any) -> None:
        """Close the span of an attempt abandoned with its run (cancelled, or shutdown)."""
        if handle is None or handle[0] is None:
            return
        span, token, _ = handle
        _otel_context.detach(token)
        span.set_attribute("cloaca.abandoned", True)
        span.end()

    def callback_failed(
        self, execution: ExecutionRecord, record: TaskRecord, callback: Any, exc: BaseException
    ) -> None:
        task_log.error("callback %s of task '%s' of run %s (workflow '%s') raised %s: %s",
                       getattr(callback, "__name__", repr(callback)), short_name(record.task_name),
                       execution.id, execution.workflow_name, type(exc).__name__, exc,
                       exc_info=exc, extra=task_extra(execution, record))

    def count_run(self, workflow_name: str, status: str) -> None:
        """Count a run that ended here without a span of this runner's (a cancel)."""
        if TRACING:
            self._runs.add(1, {"workflow": workflow_name, "status": status})

    def run_let_go(self, span: Any) -> None:
        """Close the span of a run this runner stopped holding while it goes on elsewhere."""
        if span is not None:
            span.set_attribute("cloaca.continued_elsewhere", True)
            span.end()

    def run_not_created(self, span: Any) -> None:
        """Close the span of a run that was not persisted (a refused duplicate fire, an error)."""
        if span is not None:
            span.set_attribute("cloaca.created", False)
            span.end()

    def retry_scheduled(self, execution: ExecutionRecord, record: TaskRecord, delay: float) -> None:
        task_log.info("task '%s' of run %s (workflow '%s') will be retried in %.3gs (attempt %d)",
                      short_name(record.task_name), execution.id, execution.workflow_name, delay,
                      record.attempt + 1, extra=task_extra(execution, record))


def _parent_of(execution: ExecutionRecord) -> Any:
    """The context of the run's span as stored with the run (or none)."""
    if not execution.trace_context:
        return None
    try:
        return _propagate.extract(json.loads(execution.trace_context))
    except (ValueError, TypeError):
        return None
