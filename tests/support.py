"""Helpers shared by the test modules (plain functions and classes, not fixtures)."""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import cloaca
from cloaca import DefaultRunner


async def wait_until(predicate: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Poll `predicate` (sync, or returning an awaitable) until truthy; fail naming `what`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.02)


def poll_until(predicate: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Blocking `wait_until`, for sync tests."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


class SyncCalls:
    """`api.method(...)` runs the blocking `runner.method(...)` in a worker thread."""

    def __init__(self, runner: DefaultRunner) -> None:
        self._runner = runner

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._runner, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(method, *args, **kwargs)

        return call


class AsyncCalls:
    """`api.method(...)` awaits the twin `runner.amethod(...)`."""

    def __init__(self, runner: DefaultRunner) -> None:
        self._runner = runner

    def __getattr__(self, name: str) -> Callable[..., Any]:
        return getattr(self._runner, "a" + name)


MODES = {"sync": SyncCalls, "async": AsyncCalls}
"""Both ways of calling the runner API, for parametrized tests."""


def sigkill_when(child: "subprocess.Popen[bytes]", ready: Callable[[], Any], what: str,
                 output: "Path", timeout: float = 60) -> None:
    """SIGKILL `child` once `ready()` holds; fail, showing its `output` file, if it exited
    before that."""
    try:
        poll_until(lambda: ready() or child.poll() is not None, what, timeout)
        assert child.poll() is None, f"the child exited before it was killed:\n{output.read_text()}"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(10)
    assert child.returncode == -signal.SIGKILL


def finished_process(
    process: "subprocess.Popen[Any]", output: Path, timeout: float
) -> "subprocess.CompletedProcess[str]":
    """Wait for `process`, started with its stdout and stderr going to the files
    `output.stdout` and `output.stderr`: its exit code and what it wrote. Killed, and
    TimeoutExpired raised, if it has not ended after `timeout` seconds."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
    return subprocess.CompletedProcess(
        process.args, process.returncode, output.with_suffix(".stdout").read_text(),
        output.with_suffix(".stderr").read_text(),
    )


def drop_postgres_schema(url: str, schema: str) -> None:
    """Drop a test's PostgreSQL schema and everything in it (blocking)."""
    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


class SchemaDropper:
    """Drops the PostgreSQL schemas of finished tests in a thread of its own, on one
    connection per URL, while the next tests run (a drop is 20 ms; tests mostly wait).

    `drop_later` queues a drop; `finish` waits for every queued drop and returns the ones
    that failed (the session fixture in conftest.py calls it and fails the run on any)."""

    def __init__(self) -> None:
        self._queue: "queue.Queue[Optional[tuple[str, str]]]" = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        self._failures: list[str] = []
        self._lock = threading.Lock()

    def drop_later(self, url: str, schema: str) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="drop-test-schemas", daemon=True)
                self._thread.start()
        self._queue.put((url, schema))

    def finish(self, timeout: float = 120.0) -> list[str]:
        """Wait (up to `timeout`) for the queued drops; what failed, or did not end."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return []
        self._queue.put(None)
        thread.join(timeout)
        if thread.is_alive():
            return [f"schema drops still running after {timeout:g}s"] + self._failures
        failures, self._failures = self._failures, []
        return failures

    def _run(self) -> None:
        asyncio.run(self._drop_all())

    async def _drop_all(self) -> None:
        import asyncpg

        connections: dict[str, Any] = {}
        try:
            while True:
                item = await asyncio.to_thread(self._queue.get)
                if item is None:
                    return
                url, schema = item
                try:
                    if url not in connections:
                        connections[url] = await asyncpg.connect(url)
                    await connections[url].execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                except Exception as exc:  # reported by finish()
                    self._failures.append(f"DROP SCHEMA {schema}: {type(exc).__name__}: {exc}")
                    stale = connections.pop(url, None)
                    if stale is not None:
                        stale.terminate()
        finally:
            for conn in connections.values():
                await conn.close()


SCHEMA_DROPPER = SchemaDropper()


def drop_postgres_schema_later(url: str, schema: str) -> None:
    """Drop a test's PostgreSQL schema and everything in it, in the background (see
    SchemaDropper): for fixtures whose test is done with the schema and its connections."""
    SCHEMA_DROPPER.drop_later(url, schema)


_OTEL: list[Any] = []


def otel_sdk() -> tuple[Any, Any]:
    """(in-memory span exporter, in-memory metric reader) of the OpenTelemetry SDK providers,
    installed globally on first use (OpenTelemetry allows setting them once per process)."""
    if not _OTEL:
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        _OTEL.extend([exporter, reader])
    return _OTEL[0], _OTEL[1]


def recording_workflow(name: str) -> list[dict[str, Any]]:
    """Register workflow `name`; the contexts its runs start with are appended to the list."""
    seen: list[dict[str, Any]] = []
    with cloaca.WorkflowBuilder(name):
        @cloaca.task(id="record")
        def record(ctx):
            seen.append(ctx.to_dict())
            return ctx

    return seen
