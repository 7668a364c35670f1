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
from functools import partial
from typing import Any, Callable, Iterable, Optional, Sequence

from . import sqlite_queries as q
from .base import RunLost, check_held

Op = Callable[[sqlite3.Cursor], Any]
Outcome = tuple[bool, Any]
"""(ok, the write's result or the exception it raised)."""
TOGETHER_FROM = 16
"""Writes in a group of `Rows` from which they are applied together: below, the read of
their runs' holders and the merging cost more than they spare (measured: break-even
near 16; 64 writes together cost 0.88x applied one by one)."""


Statements = Sequence[tuple[str, Sequence[tuple[Any, ...]]]]
"""(SQL, its rows) pairs, applied in order."""


class Rows(partial):  # type: ignore[type-arg]
    """A write that is only rows for fixed statements: called with a cursor (a `partial`
    of the function that applies it alone), and, for a group applied together, described
    by `rows()`, made from the same arguments in the writer's thread.

    In a group of `Rows` alone, the rows of all writes for one statement go in one
    `executemany` (statements in the order they first appear). That is the same as
    applying them one write after the other because the writes of one group touch
    different rows, or the same rows through the same statement (whose rows keep the
    writes' order): a run's writes are made one after the other, each once the previous
    one is stored.
    """

    def rows(self) -> "tuple[Statements, Any, Optional[str], Iterable[str]]":
        """(statements, the write's result, owner, runs): with an `owner`, the write is
        refused unless `owner` still holds every run of `runs` (`RunEnded`, `RunLost`)."""
        raise NotImplementedError


def apply_rows(cur: sqlite3.Cursor, statements: Statements) -> None:
    """Apply one write's `statements` alone."""
    for sql, rows in statements:
        cur.executemany(sql, rows)


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
    if len(ops) < TOGETHER_FROM or not all(isinstance(op, Rows) for op in ops):
        return None
    described = [op.rows() for op in ops]  # type: ignore[attr-defined]
    if not _all_held(cur, described):
        return None
    merged: dict[str, list[tuple[Any, ...]]] = {}
    for statements, _, _, _ in described:
        for sql, rows in statements:
            merged.setdefault(sql, []).extend(rows)
    try:
        for sql, rows in merged.items():
            cur.executemany(sql, rows)
    except sqlite3.Error as exc:
        return [(False, exc)]
    return [(True, result) for _, result, _, _ in described]


def _all_held(cur: sqlite3.Cursor, described: list[tuple[Statements, Any, Optional[str], Iterable[str]]]) -> bool:
    """Whether every run that a write must hold is held by its owner (one read for all)."""
    wanted = [(execution_id, owner) for _, _, owner, runs in described if owner is not None for execution_id in runs]
    if not wanted:
        return True
    ids = json.dumps(list({execution_id for execution_id, _ in wanted}))
    found = {row[0]: row[1:] for row in cur.execute(q.SELECT_RUNS_OWNERS, (ids,))}
    try:
        for execution_id, owner in wanted:
            check_held(execution_id, owner, found.get(execution_id))
    except RunLost:  # (or RunEnded, one)
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
