"""Bad database input (SPEC §3.1, A6, A7): unsupported URLs, files that are not SQLite
databases, unreachable paths, private in-memory databases, ignored URL query strings."""

from __future__ import annotations

import os
import sqlite3
import tempfile

import pytest

import cloaca
from cloaca import Context, DefaultRunner, DefaultRunnerConfig, WorkflowBuilder


def noop_workflow(name: str) -> None:
    with WorkflowBuilder(name):

        @cloaca.task()
        def noop(context):
            return context


@pytest.mark.parametrize("url", ["mysql://x", "redis://localhost/0", "oracle://u:p@h/db", "nonsense"])
def test_unsupported_url_scheme_is_a_value_error(url):
    with pytest.raises(ValueError) as info:
        DefaultRunner(url)
    assert url in str(info.value)


def test_unsupported_url_with_config_is_a_value_error():
    with pytest.raises(ValueError):
        DefaultRunner.with_config("mysql://x", DefaultRunnerConfig())


def test_a_file_that_is_not_sqlite_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "x.db"
    original = b"not a database" * 100
    path.write_bytes(original)
    with pytest.raises(RuntimeError) as info:
        DefaultRunner(f"sqlite:///{path}")
    assert str(path) in str(info.value)
    assert path.read_bytes() == original
    assert sorted(os.listdir(tmp_path)) == ["x.db"]  # no -wal/-shm or replacement left behind


def test_a_bare_path_to_a_non_sqlite_file_is_refused_too(tmp_path):
    path = tmp_path / "data.sqlite"
    original = bytes(range(256)) * 8
    path.write_bytes(original)
    with pytest.raises(RuntimeError) as info:
        DefaultRunner(str(path))
    assert str(path) in str(info.value)
    assert path.read_bytes() == original


def test_a_path_in_a_missing_directory_is_a_runtime_error(tmp_path):
    path = tmp_path / "no" / "such" / "dir" / "x.db"
    with pytest.raises(RuntimeError) as info:
        DefaultRunner(f"sqlite:///{path}")
    assert str(path) in str(info.value)
    assert not (tmp_path / "no").exists()


def test_an_existing_database_is_reopened_not_replaced(db_url, wf_name):
    name = wf_name()
    noop_workflow(name)
    with DefaultRunner(db_url) as first:
        run_id = first.execute(name, Context({"keep": 1})).execution_id
    with DefaultRunner(db_url) as second:
        again = second.get_execution(run_id)
    assert again is not None and again.final_context.get("keep") == 1


@pytest.mark.parametrize("url", [":memory:", "sqlite://:memory:", "sqlite:///:memory:"])
def test_memory_urls_are_private_databases(url, wf_name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a file named ':memory:' would show up here
    name = wf_name()
    noop_workflow(name)
    with DefaultRunner(url) as one, DefaultRunner(url) as two:
        mine = one.execute(name, Context()).execution_id
        assert [r["id"] for r in one.list_executions()] == [mine]
        assert two.list_executions() == []
        assert two.get_execution(mine) is None
        theirs = two.execute(name, Context()).execution_id
        assert [r["id"] for r in one.list_executions()] == [mine]
        assert [r["id"] for r in two.list_executions()] == [theirs]
    assert not os.path.exists("/:memory:")
    assert os.listdir(tmp_path) == []


def test_sqlite_url_query_is_ignored_with_a_warning(tmp_path, monkeypatch, capfd, wf_name):
    monkeypatch.chdir(tmp_path)
    name = wf_name()
    noop_workflow(name)
    with DefaultRunner("sqlite://rel.db?mode=x") as runner:
        assert runner.execute(name, Context()).status == "Completed"
    err = capfd.readouterr().err
    assert "mode=x" in err
    assert (tmp_path / "rel.db").exists()  # the query is not part of the file name
    assert not any("?" in entry for entry in os.listdir(tmp_path))
    with DefaultRunner("sqlite://rel.db") as reopened:  # the same file
        assert [r["workflow_name"] for r in reopened.list_executions()] == [name]


def test_relative_sqlite_url(tmp_path, monkeypatch, wf_name):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    name = wf_name()
    noop_workflow(name)
    with DefaultRunner("sqlite://sub/relative.db") as runner:
        runner.execute(name, Context())
    assert (tmp_path / "sub" / "relative.db").exists()


def test_a_corrupt_sqlite_database_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "corrupt.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE payload (x TEXT)")
        conn.executemany("INSERT INTO payload VALUES (?)", [("a" * 100,)] * 1000)
    conn.close()
    data = bytearray(path.read_bytes())
    for i in range(100, len(data), 7):  # keep the 100-byte header, scramble the pages
        data[i] = (data[i] * 31 + 7) & 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(RuntimeError) as info:
        DefaultRunner(str(path))
    assert str(path) in str(info.value)
    assert path.read_bytes() == bytes(data)


def test_a_directory_as_database_is_a_runtime_error(tmp_path):
    path = tmp_path / "folder.db"
    path.mkdir()
    with pytest.raises(RuntimeError) as info:
        DefaultRunner(str(path))
    assert str(path) in str(info.value)


def test_the_memory_database_file_is_deleted_at_shutdown(tmp_path, monkeypatch, wf_name):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    name = wf_name()
    noop_workflow(name)
    runner = DefaultRunner(":memory:")
    runner.execute(name, Context())
    runner.shutdown()
    assert os.listdir(scratch) == []


NOT_CREATING = DefaultRunnerConfig(create_database=False)


@pytest.mark.parametrize("form", [
    "sqlite://{abs}", "sqlite:///{abs}", "sqlite://{rel}", "sqlite://{rel}?sharing=task", "{abs}", "./{rel}",
    "{rel}", "file:{abs}", "file:{rel}", "file:{rel}?cache=shared",
])
def test_without_create_database_a_missing_sqlite_file_is_an_error_naming_it(form, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = form.format(abs=tmp_path / "missing.db", rel="missing.db")
    with pytest.raises(RuntimeError, match="No SQLite database at .*missing.db.*: no such file") as info:
        DefaultRunner.with_config(url, NOT_CREATING)
    assert str(tmp_path / "missing.db") in str(info.value)  # a relative path is shown resolved too
    assert os.listdir(tmp_path) == []  # nothing created, not even a -wal or -shm file


@pytest.mark.parametrize("url", ["{abs}", "sqlite://{rel}", "file:{rel}"])
def test_without_create_database_an_existing_database_is_opened(url, tmp_path, monkeypatch, wf_name):
    monkeypatch.chdir(tmp_path)
    name = wf_name()
    noop_workflow(name)
    url = url.format(abs=tmp_path / "there.db", rel="there.db")
    with DefaultRunner(url) as creating:
        run_id = creating.execute(name, Context()).execution_id
    with DefaultRunner.with_config(url, NOT_CREATING) as reading:
        assert [r["id"] for r in reading.list_executions()] == [run_id]
        assert reading.execute(name, Context()).status == "Completed"  # it may still write


@pytest.mark.parametrize("url", [":memory:", "sqlite://:memory:", "sqlite:///:memory:?sharing=task"])
def test_without_create_database_a_memory_database_is_still_new_and_private(url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with DefaultRunner.with_config(url, NOT_CREATING) as runner:
        assert runner.list_executions() == []
    assert os.listdir(tmp_path) == []
