"""The store contract under random operation sequences (hypothesis), against a model.

A sequence of run operations (create, write task rows, finish, cancel, reset for retry)
is applied to a real store and to a plain-dict model; after each operation the store's
answer, and every run read back, must match the model, and `list_executions` must list
the model's runs newest first under every filter and page. Runs on SQLite and, with
CLOACA_TEST_POSTGRES_URL, on PostgreSQL (one schema per test, dropped after it).
A last property sends generated contexts through a runner and reads them back intact.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import drop_postgres_schema_later
from test_properties import contexts, same_json

from cloaca import Context, DefaultRunner
from cloaca._store.base import ExecutionRecord, Store, TaskRecord, WorkSharing

POSTGRES_URL = os.environ.get("CLOACA_TEST_POSTGRES_URL")
TASKS = ("a", "b", "c")
OPEN = ("Pending", "Running")
T0 = 1_700_000_000.0

RUN = st.integers(0, 5)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("create"), RUN),
        st.tuples(st.just("progress"), RUN, st.sampled_from(TASKS),
                  st.sampled_from(["Ready", "Running", "Completed", "Failed", "Skipped"])),
        st.tuples(st.just("finish"), RUN, st.sampled_from(["Completed", "Failed"])),
        st.tuples(st.just("cancel"), RUN),
        st.tuples(st.just("retry"), RUN),
    ),
    max_size=25,
)


@dataclass
class ModelRun:
    status: str = "Running"
    tasks: dict[str, str] = field(default_factory=lambda: {t: "NotStarted" for t in TASKS})
    started_at: float = 0.0


class Model:
    """What the store must hold: run statuses and task statuses."""

    def __init__(self) -> None:
        self.runs: dict[str, ModelRun] = {}


@pytest.fixture(params=["sqlite", "postgres"])
def make_store(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Any]:
    """`make_store()`: an unopened store on a database of the test's own; each call
    (each example) gets one that is empty."""
    if request.param == "sqlite":
        count = iter(range(10**6))
        yield lambda: __import__("cloaca._store.sqlite", fromlist=["SQLiteStore"]).SQLiteStore(
            str(tmp_path / f"model-{next(count)}.db"))
        return
    if not POSTGRES_URL:
        pytest.skip("CLOACA_TEST_POSTGRES_URL is not set")
    from cloaca._store.postgres import PostgresStore

    schemas: list[str] = []

    def make() -> Store:
        schemas.append(f"cloaca_model_{uuid.uuid4().hex[:12]}")
        return PostgresStore(POSTGRES_URL, schema=schemas[-1])

    yield make
    for schema in schemas:
        drop_postgres_schema_later(POSTGRES_URL, schema)


async def apply(store: Store, model: Model, op: tuple[Any, ...], ids: dict[int, str], clock: list[float]) -> None:
    kind, n = op[0], op[1]
    clock[0] += 1.0
    now = clock[0]
    run_id = ids.setdefault(n, f"run-{n}-{uuid.uuid4().hex[:6]}")
    known = model.runs.get(run_id)
    if kind == "create":
        if known is not None:
            return  # ids are unique: creating twice is not part of the contract
        record = ExecutionRecord(run_id, "wf", "v1", "Running", json.dumps({"n": n}), now)
        assert await store.create_execution(record, [TaskRecord(run_id, t, "NotStarted") for t in TASKS], "me", now + 60)
        model.runs[run_id] = ModelRun(started_at=now)
    elif kind == "progress":
        if known is None or known.status not in OPEN:
            return  # steps are written only for open runs
        task, status = op[2], op[3]
        await store.save_progress([TaskRecord(run_id, task, status, attempt=1, started_at=now)], None, "me")
        known.tasks[task] = status
    elif kind == "finish":
        if known is None or known.status not in OPEN:
            return
        record = ExecutionRecord(run_id, "wf", "v1", op[2], json.dumps({"n": n}), known.started_at,
                                 final_context="{}", completed_at=now)
        await store.save_progress([], record, "me")
        known.status = op[2]
    elif kind == "cancel":
        answer = await store.cancel_execution(run_id, now)
        if known is None:
            assert answer is None
        elif known.status not in OPEN:
            assert answer is False
        else:
            assert answer is True
            known.status = "Cancelled"
            for task, status in known.tasks.items():
                if status in ("NotStarted", "Ready", "Running"):
                    known.tasks[task] = "Cancelled"
    elif kind == "retry":
        if known is None:
            assert await store.reset_for_retry(run_id, "me", now, now + 60) is None
        elif known.status not in ("Failed", "Cancelled"):
            with pytest.raises(ValueError, match=known.status):
                await store.reset_for_retry(run_id, "me", now, now + 60)
        else:
            reopened = await store.reset_for_retry(run_id, "me", now, now + 60)
            # Shared by task, Pending until its first step (which this model never writes).
            reopened_as = "Running" if store.work_sharing is WorkSharing.BY_RUN else "Pending"
            assert reopened is not None and reopened.execution.status == reopened_as
            known.status = reopened_as
            for task, status in known.tasks.items():
                if status in ("Failed", "Skipped", "Cancelled"):
                    known.tasks[task] = "NotStarted"


async def check(store: Store, model: Model) -> None:
    for run_id, expected in model.runs.items():
        stored = await store.get_run(run_id)
        assert stored is not None, run_id
        assert stored.execution.status == expected.status
        assert {t.task_name: t.status for t in stored.tasks} == expected.tasks
    newest_first = sorted(model.runs, key=lambda i: model.runs[i].started_at, reverse=True)
    for status in (None, "Pending", "Running", "Completed", "Failed", "Cancelled"):
        wanted = [i for i in newest_first if status is None or model.runs[i].status == status]
        assert [e.id for e in await store.list_executions("wf", status, 1000, 0)] == wanted
        assert [e.id for e in await store.list_executions(None, status, 2, 1)] == wanted[1:3]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations)
def test_random_run_operations_match_the_model(make_store: Any, ops: list[tuple[Any, ...]]) -> None:
    async def scenario() -> None:
        store = make_store()
        await store.open()
        try:
            model, ids, clock = Model(), {}, [T0]
            for op in ops:
                await apply(store, model, op, ids, clock)
            await check(store, model)
        finally:
            await store.close()

    asyncio.run(scenario())


_runner: Optional[DefaultRunner] = None


def shared_runner() -> DefaultRunner:
    global _runner
    if _runner is None:
        import cloaca

        with cloaca.WorkflowBuilder("property_identity"):
            cloaca.task(id="same")(lambda context: context)
        _runner = DefaultRunner(":memory:")
    return _runner


@pytest.fixture(scope="module", autouse=True)
def _shutdown_shared_runner() -> Iterator[None]:
    yield
    if _runner is not None:
        _runner.shutdown()


@settings(max_examples=20, deadline=None)
@given(contexts)
def test_a_context_comes_back_intact_from_a_run(data: dict[str, Any]) -> None:
    result = shared_runner().execute("property_identity", Context(data))
    assert result.status == "Completed"
    assert same_json(result.final_context.to_dict(), data)
