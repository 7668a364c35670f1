"""The SQLite store's group transaction: the writes of one group applied in one
`BEGIN IMMEDIATE` transaction, a failing write undoing only its own changes.

A write is a callable of a cursor (`Op`). Writes that are only rows for fixed statements
(a run created, a run's progress saved) are `Rows`: a group made of them alone is applied
with one `executemany` per statement for the whole group, not a few calls per write, which
is most of the Python work of a group of runs starting or ending together.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Callable, Iterable, Optional, Sequence

from . import sqlite_queries as q
from .base import RunEnded, RunLost

Op = Callable[[sqlite3.Cursor], Any]
Outcome = tuple[bool, Any]
"""(ok, the write's result or the exception it raised)."""
UNFINISHED = ("Pending", "Running")
TOGETHER_FROM = 16
"""Writes in a group of `Rows` from which they are applied together: below, the read of
their runs' holders and the merging cost more than they spare (measured: break-even
near 16; 64 writes together cost 0.88x applied one by one)."""


Statements = Sequence[tuple[str, Sequence[tuple[Any, ...]]]]
"""(SQL, its rows) pairs, applied in order."""


class Rows:
    """A write of the rows that `statements()` makes, returning `result`; with an `owner`,
    refused unless `owner` still holds every run that `runs()` names (`RunEnded`,
    `RunLost`). Rows and run ids are made when the write is applied, in the writer's thread.

    In a group of `Rows` alone, the rows of all writes for one statement go in one
    `executemany` (statements in the order they first appear). That is the same as
    applying them one write after the other because the writes of one group touch
    different rows, or the same rows through the same statement (whose rows keep the
    writes' order): a run's writes are made one after the other, each once the previous
    one is stored.
    """

    __slots__ = ("statements", "result", "owner", "runs")

    def __init__(
        self, statements: Callable[[], Statements], result: Any = None,
        owner: Optional[str] = None, runs: Callable[[], Iterable[str]] = tuple,
    ) -> None:
        self.statements = statements
        self.result = result
        self.owner = owner
        self.runs = runs

    def __call__(self, cur: sqlite3.Cursor) -> Any:
        """Applied alone."""
        if self.owner is not None:
            for execution_id in self.runs():
                row = cur.execute(q.SELECT_RUN_OWNER, (execution_id,)).fetchone()
                check_held(execution_id, self.owner, row)
        for sql, rows in self.statements():
            cur.executemany(sql, rows)
        return self.result


def check_held(execution_id: str, owner: str, row: Optional[tuple[Any, Any]]) -> None:
    """Raise unless the run whose (owner, status) is `row` is unfinished and held by `owner`."""
    if row is not None and row[1] not in UNFINISHED:
        raise RunEnded(execution_id, row[1])
    if row is None or row[0] != owner:
        raise RunLost(execution_id)


def run_group(conn: sqlite3.Connection, ops: list[Op]) -> list[Outcome]:
    """Apply `ops` in one transaction; an outcome per op, a failing op undoing only its own
    writes.

    Optimistic: the ops run back to back (or `Rows` together); only if one raises is the
    transaction rolled back and the group replayed with each op in a savepoint (two
    statements per op spared in the usual case, where nothing fails).
    """
    cur = conn.cursor()
    cur.execute("BEGIN IMMEDIATE")
    try:
        outcomes = _together(cur, ops) or _apply(cur, ops, isolated=False)
        if not outcomes[-1][0]:
            cur.execute("ROLLBACK")
            if len(ops) == 1:  # nothing to isolate it from: the rollback was its savepoint
                return outcomes
            cur.execute("BEGIN IMMEDIATE")
            outcomes = _apply(cur, ops, isolated=True)
        cur.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            cur.execute("ROLLBACK")
        raise
    return outcomes


def _together(cur: sqlite3.Cursor, ops: list[Op]) -> Optional[list[Outcome]]:
    """A group of `Rows` alone applied with one `executemany` per statement: every op's
    outcome, or a failed last outcome if a statement failed (the caller rolls back and
    isolates them). None, with nothing written, for a smaller group, one with other writes,
    or one where a write would be refused (they are then applied one by one, which says
    which)."""
    if len(ops) < TOGETHER_FROM or not all(type(op) is Rows for op in ops):
        return None
    group: list[Rows] = ops  # type: ignore[assignment]
    if not _all_held(cur, group):
        return None
    merged: dict[str, list[tuple[Any, ...]]] = {}
    for op in group:
        for sql, rows in op.statements():
            merged.setdefault(sql, []).extend(rows)
    try:
        for sql, rows in merged.items():
            cur.executemany(sql, rows)
    except sqlite3.Error as exc:
        return [(False, exc)]
    return [(True, op.result) for op in group]


def _all_held(cur: sqlite3.Cursor, group: list[Rows]) -> bool:
    """Whether every run that a write of `group` must hold is held by its owner (one read)."""
    wanted = [(execution_id, op.owner) for op in group if op.owner is not None for execution_id in op.runs()]
    if not wanted:
        return True
    ids = json.dumps(list({execution_id for execution_id, _ in wanted}))
    found = {row[0]: row[1:] for row in cur.execute(q.SELECT_RUNS_OWNERS, (ids,))}
    for execution_id, owner in wanted:
        row = found.get(execution_id)
        if row is None or row[1] not in UNFINISHED or row[0] != owner:
            return False
    return True


def _apply(cur: sqlite3.Cursor, ops: list[Op], isolated: bool) -> list[Outcome]:
    """Each op's outcome, each in a savepoint when `isolated`; otherwise they stop at the
    first that raises (the caller rolls back)."""
    outcomes: list[Outcome] = []
    for op in ops:
        if isolated:
            cur.execute("SAVEPOINT op")
        try:
            outcomes.append((True, op(cur)))
        except Exception as exc:
            outcomes.append((False, exc))
            if not isolated:
                break
            cur.execute("ROLLBACK TO op")
        if isolated:
            cur.execute("RELEASE op")
    return outcomes
