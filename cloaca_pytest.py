"""The pytest plugin of cloaca, loaded through the `pytest11` entry point (SPEC A14).

Fixtures: `cloaca_registry` (declarations made during the test are forgotten after it),
`cloaca_clock` (a `cloaca.testing.FakeClock`; a test that asks for it gets a `cloaca_runner`
whose cron scheduler runs on it) and `cloaca_runner` (an in-memory runner, shut down after the
test; in an async test it is bound to the test's event loop). It lives outside the `cloaca`
package and imports cloaca only when a test uses a fixture, so that test suites that never
use it pay nothing for it.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, AsyncIterator, Iterator

import pytest

try:
    import pytest_asyncio
except ImportError:  # async tests need pytest-asyncio; sync ones work without it
    pytest_asyncio = None

if TYPE_CHECKING:
    from cloaca import DefaultRunner
    from cloaca._registry import Registry
    from cloaca.testing import FakeClock

_LOOP_SCOPES = ("function", "class", "module", "package", "session")


@pytest.fixture
def cloaca_registry() -> Iterator[Registry]:
    """The process's registry; what the test declares in it is removed after the test."""
    from cloaca.testing import isolated_registry

    with isolated_registry() as registry:
        yield registry


@pytest.fixture
def cloaca_clock() -> FakeClock:
    """A FakeClock at the current time; `cloaca_runner` fires cron slots by it."""
    from cloaca.testing import FakeClock

    return FakeClock()


@pytest.fixture
def cloaca_runner(request: pytest.FixtureRequest, cloaca_registry: Registry) -> Iterator[DefaultRunner]:
    """An in-memory DefaultRunner, shut down after the test (which also gets `cloaca_registry`).

    In an `async def` test it runs on the test's event loop; in a sync test on a thread of
    its own. If the test also asks for `cloaca_clock`, the runner's cron scheduler uses it.
    """
    if inspect.iscoroutinefunction(getattr(request.node, "obj", None)):
        if pytest_asyncio is None:
            pytest.fail("cloaca_runner in an async test needs pytest-asyncio (pip install pytest-asyncio)")
        yield request.getfixturevalue(_runner_fixture_name(_test_loop_scope(request)))
        return
    runner = _new_runner(request)
    try:
        yield runner
    finally:
        runner.shutdown()


def _test_loop_scope(request: pytest.FixtureRequest) -> str:
    """The scope of the event loop pytest-asyncio runs the test in."""
    marker = request.node.get_closest_marker("asyncio")
    if marker is not None:
        scope = marker.kwargs.get("loop_scope") or marker.kwargs.get("scope")
        if scope:
            return str(scope)
    try:
        return str(request.config.getini("asyncio_default_test_loop_scope") or "function")
    except ValueError:  # pytest-asyncio versions without that option run tests in function loops
        return "function"


def _runner_fixture_name(loop_scope: str) -> str:
    return f"_cloaca_runner_on_{loop_scope}_loop"


def _runner_on_loop(loop_scope: str) -> object:
    """A function-scoped async fixture whose runner is bound to the loop of `loop_scope`."""
    assert pytest_asyncio is not None

    @pytest_asyncio.fixture(name=_runner_fixture_name(loop_scope), loop_scope=loop_scope)
    async def runner_on_loop(request: pytest.FixtureRequest) -> AsyncIterator[DefaultRunner]:
        async with _new_runner(request) as runner:
            yield runner

    return runner_on_loop


if pytest_asyncio is not None:
    # One per loop scope: the runner must live on the very loop the test runs on.
    for _scope in _LOOP_SCOPES:
        globals()[_runner_fixture_name(_scope)] = _runner_on_loop(_scope)


def _new_runner(request: pytest.FixtureRequest) -> DefaultRunner:
    from cloaca import DefaultRunner

    if "cloaca_clock" in request.fixturenames:
        return DefaultRunner(":memory:", _clock=request.getfixturevalue("cloaca_clock"))
    return DefaultRunner(":memory:")
