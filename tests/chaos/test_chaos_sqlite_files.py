"""SQLite under faults of its file: a full disk, a corrupt or truncated file, a file
written by a newer cloaca.

The full disk is a small tmpfs the test mounts (skipped where mounting is not allowed) and
fills with a ballast file; freeing the ballast gives the runner room again.
"""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

import cloaca
from cloaca import Context, DefaultRunner, DefaultRunnerConfig

from _chaos import report
from support import poll_until

pytestmark = pytest.mark.chaos

WORKFLOW = "chaos_sqlite_blob"
BLOB_BYTES = 20_000
with cloaca.WorkflowBuilder(WORKFLOW):

    @cloaca.task(id="write")
    def _write(context: Context) -> Context:
        context.set("blob", "z" * int(context.get("size")))
        return context

    @cloaca.task(id="check", dependencies=["write"])
    def _check(context: Context) -> Context:
        context.set("checked", len(context.get("blob")))
        return context


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted for the test, unmounted after it."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
        capture_output=True, text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def integrity(path: Path) -> str:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def test_a_full_disk_fails_the_run_it_cannot_write_keeps_the_rest_and_recovers(small_disk: Path) -> None:
    ballast = small_disk / "ballast"
    ballast.write_bytes(b"\0" * (2 * 1024 * 1024))
    db = small_disk / "cloaca.db"
    runner = DefaultRunner.with_config(str(db), DefaultRunnerConfig(workflow_timeout_seconds=60, lease_seconds=1.0))
    try:
        committed: dict[str, int] = {}
        failure: BaseException | None = None
        for n in range(500):
            try:
                result = runner.execute(WORKFLOW, Context({"size": BLOB_BYTES, "n": n}))
            except Exception as exc:
                failure = exc
                break
            assert result.status == "Completed", result.error_message
            committed[result.execution_id] = n
        assert failure is not None, "the disk never filled up"
        assert "disk is full" in str(failure), repr(failure)
        assert committed, "the disk was full before the first run"
        with pytest.raises(Exception, match="disk is full"):  # no room for a new run either
            runner.execute(WORKFLOW, Context({"size": 0, "n": "no room"}))

        assert integrity(db) == "ok"
        for execution_id, n in committed.items():  # nothing committed is lost
            stored = runner.get_execution(execution_id)
            assert stored is not None and stored.status == "Completed"
            assert stored.final_context.get("n") == n and stored.final_context.get("checked") == BLOB_BYTES

        ballast.unlink()  # room again: the same runner works
        result = runner.execute(WORKFLOW, Context({"size": BLOB_BYTES, "n": "after"}))
        assert result.status == "Completed" and result.final_context.get("checked") == BLOB_BYTES
        unwritten = [r for r in runner.list_executions(WORKFLOW, limit=1000) if r["id"] not in committed
                     and r["id"] != result.execution_id]
        assert unwritten or "could not persist" not in str(failure)
        for row in unwritten:  # a run whose progress could not be written ends Failed, saying why
            ended = poll_until(lambda: runner.get_execution(row["id"]).status != "Running",
                               f"run {row['id']} to end once the disk has room")
            stored = runner.get_execution(row["id"])
            assert stored.status == "Failed" and "disk is full" in (stored.error_message or ""), stored
            assert ended
            assert runner.get_result(runner.retry_execution(row["id"]), timeout=60).status == "Completed"
        assert integrity(db) == "ok"
        report("sqlite-full-disk", committed_runs=len(committed), runs_stored_failed=len(unwritten),
               first_error=str(failure))
    finally:
        runner.shutdown()


# ====================================================================== damaged files
def make_database(path: Path) -> None:
    with DefaultRunner(str(path)) as runner:
        for n in range(40):
            runner.execute(WORKFLOW, Context({"size": 500, "n": n}))


def refused(path: Path) -> str:
    before = path.read_bytes()
    with pytest.raises(RuntimeError) as caught:
        DefaultRunner(str(path))
    assert path.read_bytes() == before, "the runner changed the file it refused"
    message = str(caught.value)
    assert str(path) in message
    return message


@pytest.mark.parametrize("cut", ["half", "last_page", "partial_page", "header_only"])
def test_a_truncated_database_is_refused_and_left_untouched(tmp_path: Path, cut: str) -> None:
    path = tmp_path / "cloaca.db"
    make_database(path)
    data = path.read_bytes()
    keep = {"half": len(data) // 2, "last_page": len(data) - 4096, "partial_page": len(data) - 100,
            "header_only": 100}[cut]
    path.write_bytes(data[:keep])
    assert "malformed" in refused(path)


def test_a_partly_overwritten_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "cloaca.db"
    make_database(path)
    data = bytearray(path.read_bytes())
    data[4096:8192] = b"\xff" * 4096  # a whole page of garbage after the header page
    path.write_bytes(bytes(data))
    message = refused(path)
    assert "malformed" in message or "not a database" in message, message


def test_a_database_of_a_newer_cloaca_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "cloaca.db"
    make_database(path)
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO cloaca_schema_version (version) VALUES (999)")
    conn.commit()
    conn.close()
    assert "schema version 999 is newer than this cloaca understands" in refused(path)
