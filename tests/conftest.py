"""Shared fixtures of the test-suite.

The task and workflow registry is process-wide: every test must register workflows under
names of its own. `wf_name` gives names that are unique per test (and per call).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import uuid
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator

import pytest
import pytest_asyncio

from cloaca import DefaultRunner, DefaultRunnerConfig

from support import SCHEMA_DROPPER, drop_postgres_schema_later

_counter = itertools.count()


def unique_name(prefix: str) -> str:
    """A workflow name no other test (or call) uses: `<prefix>_<n>`, safe as an identifier."""
    return f"{re.sub(r'[^0-9A-Za-z_]', '_', prefix)}_{next(_counter)}"


@pytest.fixture
def wf_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """`wf_name()` / `wf_name("suffix")`: a workflow name prefixed by the test's name."""

    def make(suffix: str = "wf") -> str:
        return unique_name(f"{request.node.name}_{suffix}")

    return make


POSTGRES_URL = os.environ.get("CLOACA_TEST_POSTGRES_URL")


@contextlib.contextmanager
def private_runner(backend: str) -> Iterator[DefaultRunner]:
    """A sync-mode runner on a private database, shut down at the end: in-memory SQLite
    (work shared by run) for "sqlite", a fresh PostgreSQL schema (work shared by task) for
    "postgres" (skipped unless CLOACA_TEST_POSTGRES_URL is set).

    Its workflow timeout is lowered from one hour to 60 s so that a run that hangs because
    of a bug fails the test instead of stalling the suite.
    """
    config = DefaultRunnerConfig(workflow_timeout_seconds=60)
    if backend == "sqlite":
        r = DefaultRunner.with_config(":memory:", config)
        try:
            yield r
        finally:
            r.shutdown()
        return
    if not POSTGRES_URL:
        pytest.skip("CLOACA_TEST_POSTGRES_URL is not set")
    schema = f"cloaca_runner_{uuid.uuid4().hex[:12]}"  # unique across concurrent test processes
    r = DefaultRunner(POSTGRES_URL, _config=config, _schema=schema)
    try:
        yield r
    finally:
        r.shutdown()
        drop_postgres_schema_later(POSTGRES_URL, schema)


@pytest.fixture(params=["sqlite", "postgres"])
def runner(request: pytest.FixtureRequest) -> Iterator[DefaultRunner]:
    """A runner of the test's own on each backend (see private_runner)."""
    with private_runner(request.param) as r:
        yield r


@pytest.fixture
def db_url(tmp_path) -> str:
    """A SQLite file URL in the test's temporary directory (the file does not exist yet)."""
    return f"sqlite:///{tmp_path}/cloaca.db"


@pytest.fixture
def runner_factory() -> Iterator[Callable[..., DefaultRunner]]:
    """`runner_factory(url=":memory:", **config)`: a sync-mode runner with DefaultRunnerConfig
    fields `config` (workflow timeout 60 s unless given), shut down at teardown."""
    made: list[DefaultRunner] = []

    def make(url: str = ":memory:", **config: object) -> DefaultRunner:
        config.setdefault("workflow_timeout_seconds", 60)
        r = DefaultRunner.with_config(url, DefaultRunnerConfig(**config))  # type: ignore[arg-type]
        made.append(r)
        return r

    yield make
    for r in reversed(made):
        r.shutdown()


@pytest_asyncio.fixture
async def opened(backend: Any) -> AsyncIterator[Callable[[], Awaitable[Any]]]:
    """A factory of opened stores on the database of the module's `backend` fixture (its
    `make()` gives an unopened store), all closed at teardown."""
    stores: list[Any] = []

    async def open_one() -> Any:
        s = backend.make()
        await s.open()
        stores.append(s)
        return s

    yield open_one
    for s in stores:
        await s.close()


@pytest_asyncio.fixture(params=["sqlite", "postgres"])
async def make_runner(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[Callable[..., DefaultRunner]]:
    """`make_runner(**config)`: a new (unstarted) runner on the test's one database; use it
    with `async with`. Successive runners see what earlier ones persisted."""
    if request.param == "postgres" and not POSTGRES_URL:
        pytest.skip("CLOACA_TEST_POSTGRES_URL is not set")
    schema = f"cloaca_reactors_{uuid.uuid4().hex[:12]}"

    def make(**config: Any) -> DefaultRunner:
        config.setdefault("workflow_timeout_seconds", 60)
        config.setdefault("reactor_poll_interval_seconds", 3600)  # tests poll subscriptions
        settings = DefaultRunnerConfig(**config)  # type: ignore[arg-type]
        if request.param == "sqlite":
            return DefaultRunner.with_config(f"sqlite:///{tmp_path}/cloaca.db", settings)
        return DefaultRunner(POSTGRES_URL, _config=settings, _schema=schema)

    yield make
    if request.param == "postgres":
        drop_postgres_schema_later(POSTGRES_URL, schema)


@pytest.fixture(scope="session", autouse=True)
def _dropped_schemas() -> Iterator[None]:
    """The test schemas queued by drop_postgres_schema_later are all dropped by the end of
    the session; a drop that failed fails it."""
    yield
    failures = SCHEMA_DROPPER.finish()
    assert not failures, "test schemas not dropped:\n" + "\n".join(failures)


@pytest.fixture(scope="session")
def example_runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The example scripts that the session's selected tests read (`EXAMPLE_SCRIPTS` of their
    modules), all started when the first of those tests asks (see example_support.py)."""
    from example_support import ExampleRuns

    names: list[str] = []
    for item in request.session.items:
        for name in getattr(getattr(item, "module", None), "EXAMPLE_SCRIPTS", ()):
            if "example_runs" in getattr(item, "fixturenames", ()) and name not in names:
                names.append(name)
    runs = ExampleRuns(tmp_path_factory.mktemp("examples"), names)
    try:
        yield runs
    finally:
        runs.stop()


@pytest.fixture(autouse=True)
def _forget_reactors_declared_by_the_test() -> Iterator[None]:
    """Every runner loads every registered reactor, and an accumulator may feed only one:
    reactors a test declares are forgotten after it, so tests cannot collide."""
    from cloaca._reactors import definitions

    with definitions._lock:
        saved = dict(definitions._reactors)
    yield
    with definitions._lock:
        definitions._reactors.clear()
        definitions._reactors.update(saved)


@pytest.fixture(autouse=True)
def _forget_finished_spans() -> Iterator[None]:
    """Once a test installed the OpenTelemetry SDK (it stays for the process), spans of every
    later test would pile up in its in-memory exporter: drop them after each test."""
    yield
    import support

    if support._OTEL:
        support._OTEL[0].clear()
