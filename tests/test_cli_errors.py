"""Bad input to the `cloaca` command: one line on stderr naming the problem, a non-zero exit
(2 for usage errors), no traceback, nothing written."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from cli_support import (
    APP,
    ROOT,
    SCRIPT,
    as_json,
    cli_env,
    cloaca,
    cloaca_process,
    create_database,
    ok,
    one_line_error,
)


def test_the_database_comes_from_db_or_the_environment(tmp_path: Path) -> None:
    one_line_error(cloaca("runs", "list"), 2, "no database given", "--db", "CLOACA_DATABASE_URL")
    url = f"sqlite:///{tmp_path}/env.db"
    one_line_error(cloaca("runs", "list", env=cli_env(CLOACA_DATABASE_URL=url)), 1, f"{tmp_path}/env.db")
    create_database(url)
    assert as_json(cloaca("--json", "runs", "list", env=cli_env(CLOACA_DATABASE_URL=url))) == []


def test_an_unsupported_or_malformed_url_is_a_usage_error(tmp_path: Path) -> None:
    one_line_error(cloaca("--db", "mysql://db.example/x", "runs", "list"), 2,
                   "--db", "Unsupported database URL 'mysql://db.example/x'")
    one_line_error(cloaca("--db", f"sqlite:{tmp_path}/x.db", "runs", "list"), 2, "--db", "sqlite:")
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_server_is_named_without_its_password() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Through the console script: an error is one line on stderr, from the real entry point too.
    line = one_line_error(
        cloaca_process("--db", f"postgresql://someone:s3cret@127.0.0.1:{port}/nowhere", "runs", "list"),
        1, "nowhere", f"127.0.0.1:{port}",
    )
    assert "s3cret" not in line


def test_a_corrupt_database_file_is_reported_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.db"
    garbage = b"this is not a SQLite database\n" * 200
    path.write_bytes(garbage)
    for args in (("runs", "list"), ("cron", "list"), ("triggers", "list")):
        one_line_error(cloaca("--db", f"sqlite:///{path}", *args), 1, str(path))
    assert path.read_bytes() == garbage
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.db"]


SCHEDULE_ID = "0c7c5a52-6d0e-4a43-9f51-2a7d1b1e8a43"
# The commands that read, or change what is already there: none of them creates a database.
EXISTING_DATABASE_COMMANDS = [
    ("runs", "list"), ("runs", "show", "0000-nope"), ("runs", "cancel", "0000-nope"),
    ("runs", "retry", "0000-nope"),
    ("triggers", "list"), ("triggers", "history", "inbox"), ("triggers", "enable", "inbox"),
    ("triggers", "disable", "inbox"),
    ("cron", "list"), ("cron", "history", SCHEDULE_ID), ("cron", "enable", SCHEDULE_ID),
    ("cron", "disable", SCHEDULE_ID), ("cron", "delete", SCHEDULE_ID),
] + ([("dashboard",)] if importlib.util.find_spec("cloaca.dashboard") and importlib.util.find_spec("uvicorn")
     else [])


def test_a_mistyped_sqlite_path_is_an_error_and_no_file_is_created(tmp_path: Path) -> None:
    missing = tmp_path / "typo.db"
    for args in EXISTING_DATABASE_COMMANDS:
        one_line_error(cloaca("--db", f"sqlite://{missing}", *args), 1,
                       f"No SQLite database at '{missing}'", "no such file")
    # With the app loaded too (its triggers' schedules would be recorded in a new file).
    one_line_error(cloaca("--db", f"sqlite://{missing}", "--app", APP, "--json", "triggers", "list"), 1,
                   str(missing), "no such file")
    assert list(tmp_path.iterdir()) == []


def test_every_form_of_sqlite_url_names_the_missing_file(tmp_path: Path) -> None:
    relative = os.path.relpath(tmp_path, ROOT)  # (the commands run in ROOT)
    forms = [f"sqlite://{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db", f"sqlite://{relative}/c.db",
             f"sqlite://{tmp_path}/d.db?sharing=task", f"{tmp_path}/e.db", f"{relative}/f.db",
             f"file:{tmp_path}/g.db", f"file:{relative}/h.db?cache=shared"]
    for url, name in zip(forms, "abcdefgh"):
        one_line_error(cloaca("--db", url, "runs", "list"), 1, "No SQLite database at", f"{tmp_path}/{name}.db",
                       "no such file")
    assert list(tmp_path.iterdir()) == []
    # A private in-memory database is new each time: nothing to refuse, nothing left behind.
    for url in (":memory:", "sqlite://:memory:"):
        assert ok(cloaca("--db", url, "runs", "list")).stdout.strip() == "No runs."


def test_commands_that_add_something_create_the_database(tmp_path: Path) -> None:
    db = f"sqlite://{tmp_path}/new.db"
    schedule_id = ok(cloaca("--db", db, "cron", "add", "cli_greet", "0 9 * * *")).stdout.strip()
    assert [s["id"] for s in as_json(cloaca("--db", db, "--json", "cron", "list"))] == [schedule_id]
    started = as_json(cloaca("--db", f"{tmp_path}/other.db", "--app", APP, "--json", "runs", "start", "cli_greet",
                             "--wait"))
    assert started["status"] == "Completed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.db", "other.db"]


def test_unknown_run_ids_are_reported(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/db.db"
    create_database(db)
    for command in ("show", "cancel", "retry"):
        one_line_error(cloaca("--db", db, "runs", command, "0000-nope"), 1, "no run with id '0000-nope'")


def test_bad_context_json_is_a_usage_error_and_opens_no_database(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/db.db"
    one_line_error(cloaca("--db", db, "--app", APP, "runs", "start", "cli_greet", "--context", "{name: 1}"),
                   2, "--context", "not valid JSON")
    one_line_error(cloaca("--db", db, "--app", APP, "runs", "start", "cli_greet", "--context", "[1, 2]"),
                   2, "--context", "must be a JSON object")
    one_line_error(cloaca("--db", db, "runs", "start", "cli_greet", "--context", f"@{tmp_path}/missing.json"),
                   2, "--context", "missing.json")
    assert not (tmp_path / "db.db").exists()


def test_a_missing_or_broken_app_module_is_reported_before_the_database_is_opened(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/db.db"
    one_line_error(cloaca("--db", db, "--app", "no_such_app_module", "runs", "list"), 2,
                   "--app", "no module named 'no_such_app_module'")
    one_line_error(cloaca("--db", db, "--app", f"{tmp_path}/absent.py", "runs", "list"), 2,
                   "--app", "absent.py")
    broken = tmp_path / "broken_app.py"
    broken.write_text("import cloaca\n\nraise KeyError('SETTING_X')\n")
    one_line_error(cloaca("--db", db, "--app", str(broken), "runs", "list"), 1,
                   "broken_app.py", "KeyError", "SETTING_X")
    missing_dependency = tmp_path / "needs_dep.py"
    missing_dependency.write_text("import not_installed_dependency\n")
    one_line_error(cloaca("--db", db, "--app", str(missing_dependency), "runs", "list"), 1,
                   "needs_dep.py", "not_installed_dependency")
    assert not (tmp_path / "db.db").exists()


def test_command_line_mistakes_are_usage_errors(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/db.db"
    one_line_error(cloaca("--db", db, "runs", "frobnicate"), 2, "frobnicate", "cloaca runs --help")
    one_line_error(cloaca("--db", db, "runs", "list", "--limit", "0"), 2, "--limit")
    one_line_error(cloaca("--db", db, "runs", "show"), 2, "ID")
    one_line_error(cloaca("--db", db, "worker"), 2, "--app")
    # The worker sets its signal handlers before it opens the database: a process of its own.
    one_line_error(cloaca_process("--db", "mysql://x/y", "--app", APP, "worker"), 2, "--db", "mysql://x/y")
    assert not (tmp_path / "db.db").exists()


def test_python_dash_m_cloaca_is_the_same_command(tmp_path: Path) -> None:
    import sys

    result = cloaca_process("--help", command=[sys.executable, "-m", "cloaca"])
    assert result.returncode == 0
    for command in ("runs", "triggers", "cron", "worker", "dashboard"):
        assert command in result.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_dashboard_serves_on_localhost_or_says_it_is_not_there(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/db.db"
    if importlib.util.find_spec("cloaca.dashboard") is None:
        one_line_error(cloaca("--db", db, "dashboard"), 1, "dashboard is not available")
        return
    port = _free_port()
    create_database(db)
    process = subprocess.Popen([str(SCRIPT), "--db", db, "dashboard", "--port", str(port)], cwd=ROOT,
                               env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in banner and "binds 127.0.0.1" in banner
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/runs", timeout=5) as reply:
                    assert reply.status == 200
                    break
            except urllib.error.HTTPError:
                raise
            except OSError:  # not listening yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(timeout=30)
