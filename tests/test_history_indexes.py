"""Every filter of `list_executions` reads its page off an index, newest first, without a sort.

The plans are checked, not timings (benchmarks/bench_history.py times them on 1,000,000 runs).
On PostgreSQL the planner is told to avoid sequential scans and sorts, and to plan the
statement generically (as it does for a prepared statement run often): a sort or a filter no
index serves then still shows in the plan.
"""

from __future__ import annotations

import os
import sqlite3
import uuid

import pytest

from cloaca._store import postgres_queries, sqlite_queries
from cloaca._store.sqlite import SQLiteStore
from support import drop_postgres_schema_later

POSTGRES_URL = os.environ.get("CLOACA_TEST_POSTGRES_URL")
FILTERS = {(False, False): [], (True, False): ["wf"], (False, True): ["Failed"],
           (True, True): ["wf", "Failed"]}


@pytest.mark.asyncio
@pytest.mark.parametrize("given", list(FILTERS))
async def test_sqlite_reads_each_filter_off_an_index_in_order(tmp_path, given):
    path = str(tmp_path / "plans.db")
    store = SQLiteStore(path)
    await store.open()
    await store.close()
    conn = sqlite3.connect(path)
    try:
        plan = conn.execute("EXPLAIN QUERY PLAN " + sqlite_queries.LIST_EXECUTIONS[given],
                            FILTERS[given] + [100, 0]).fetchall()
    finally:
        conn.close()
    details = [row[3] for row in plan]
    assert len(details) == 1 and "USING INDEX ix_executions_" in details[0], details
    if any(given):
        assert "SEARCH" in details[0], details  # the filter is the index's prefix
    assert not any("TEMP B-TREE" in d for d in details), details  # no sort


@pytest.mark.asyncio
@pytest.mark.parametrize("given", list(FILTERS))
async def test_postgres_reads_each_filter_off_an_index_in_order(given):
    if not POSTGRES_URL:
        pytest.skip("CLOACA_TEST_POSTGRES_URL is not set")
    import asyncpg

    from cloaca._store.postgres import PostgresStore

    schema = f"cloaca_plans_{uuid.uuid4().hex[:12]}"
    store = PostgresStore(POSTGRES_URL, schema=schema)
    try:
        await store.open()
        await store.close()
        conn = await asyncpg.connect(POSTGRES_URL, server_settings={
            "search_path": schema, "enable_seqscan": "off", "enable_sort": "off",
            "enable_bitmapscan": "off", "plan_cache_mode": "force_generic_plan"})
        try:
            await conn.execute(f"PREPARE history AS {postgres_queries.LIST_EXECUTIONS[given]}")
            arguments = ", ".join(f"'{value}'" for value in FILTERS[given] + ["100", "0"])
            plan = [row[0] for row in await conn.fetch(f"EXPLAIN EXECUTE history({arguments})")]
        finally:
            await conn.close()
    finally:
        await store.close()
        drop_postgres_schema_later(POSTGRES_URL, schema)
    text = "\n".join(plan)
    assert "Index Scan using ix_executions_" in text and "Sort" not in text, text
    if any(given):
        assert "Index Cond" in text and "Filter" not in text, text
