"""A runner with live reactors is SIGKILLed (GRAPHS.md C13.5, C13.6): the next runner on the
same database dispatches every firing the subscription had not dealt with (at least once,
none skipped) and flushes the batch buffer the dead runner had persisted."""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Optional

import pytest

import cloaca

from conftest import POSTGRES_URL, unique_name
from support import drop_postgres_schema_later, poll_until, sigkill_when

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

CHILD = Path(__file__).with_name("reactor_child.py")
_spec = importlib.util.spec_from_file_location("cloaca_reactor_child", CHILD)
child_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(child_module)  # type: ignore[union-attr]


def read_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def run_child_until_ready(tmp_path: Path, url: str, schema: Optional[str], prefix: str, log: Path) -> None:
    ready = tmp_path / "ready"
    child = subprocess.Popen(
        [sys.executable, str(CHILD), url, schema or "-", prefix, str(log), str(ready)],
        stdout=open(tmp_path / "child.out", "wb"), stderr=subprocess.STDOUT, cwd=str(tmp_path),
    )
    sigkill_when(child, ready.exists, "the child to be ready", tmp_path / "child.out")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_subscription_and_batch_buffer_survive_sigkill(tmp_path, backend: str) -> None:
    if backend == "postgres" and not POSTGRES_URL:
        pytest.skip("CLOACA_TEST_POSTGRES_URL is not set")
    url = f"sqlite:///{tmp_path}/kill.db" if backend == "sqlite" else POSTGRES_URL
    schema = None if backend == "sqlite" else f"cloaca_kill_{uuid.uuid4().hex[:12]}"
    prefix = unique_name("kill")
    log = tmp_path / "dispatched.log"
    try:
        run_child_until_ready(tmp_path, url, schema, prefix, log)
        _, batched = child_module.declare(prefix, str(log))
        flushed: list[Any] = []
        with cloaca.ComputationGraphBuilder(unique_name("graph"), graph={"collect": {"inputs": [f"{prefix}_batch"]}},
                                            reactor=batched):
            @cloaca.node
            def collect(events):
                flushed.append(events)
                return events

        runner = child_module.make_runner(url, schema, 0.05)
        try:
            firing_ids = {row[0] for row in runner._bridge.call(_firing_ids, runner, prefix)}
            assert len(firing_ids) == child_module.FIRES
            poll_until(lambda: set(read_lines(log)) == firing_ids, "every firing dispatched", 30)
        finally:
            runner.shutdown()
        assert flushed == [child_module.BATCHED]  # the persisted buffer, drained at shutdown
        assert set(read_lines(log)) == firing_ids  # at least once each, nothing else
    finally:
        if schema is not None:
            drop_postgres_schema_later(POSTGRES_URL, schema)


async def _firing_ids(runner: cloaca.DefaultRunner, prefix: str) -> list[tuple[str]]:
    firings = await runner._store.firings_after("public", f"{prefix}_reactor", None, 100)
    return [(f.id,) for f in firings]
