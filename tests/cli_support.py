"""Driving the `cloaca` command from the CLI tests.

`cloaca(ARGS...)` runs the command in this process (its `main`, as the console script
calls it), which takes milliseconds where starting a process takes most of a second;
`cloaca_process(ARGS...)` runs the installed console script in a process of its own, for
what needs one (exit on a signal, a terminal, the entry point itself). Both give a
`CompletedProcess`: exit code, stdout, stderr.

In process, a command sees the environment it would be given (`cli_env`), writes to
stdout and stderr of its own (not terminals), logs to that stderr as the console script
does, and leaves nothing behind: declarations its `--app` modules made are forgotten, the
modules unloaded, logging put back; a thread it left running is waited for, as a process's
exit would, and fails the test if it goes on.

The app the commands load is `tests/cli_app.py` (`--app tests.cli_app`, run from the
checkout's root). Only a command's own run imports it, and it is forgotten afterwards: its
workflows and triggers must not join the process-wide registry of every other test.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import threading
import uuid
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional
from urllib.parse import urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).parent / "cloaca"
APP = "tests.cli_app"
POSTGRES_URL = os.environ.get("CLOACA_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", "postgres"]


def cli_env(test_dir: Optional[Path] = None, **extra: str) -> dict[str, str]:
    """The environment of a `cloaca` subprocess: no colour settings nor database inherited."""
    env = {k: v for k, v in os.environ.items() if k not in ("CLOACA_DATABASE_URL", "NO_COLOR")}
    if test_dir is not None:
        env["CLI_TEST_DIR"] = str(test_dir)
    env.update(extra)
    return env


def cloaca_process(*args: str, env: Optional[dict[str, str]] = None, timeout: float = 60.0,
                   command: Optional[list[str]] = None) -> subprocess.CompletedProcess[str]:
    """Run `cloaca ARGS...` (the installed console script, or `command`) in a process of its
    own to its end; its exit code, stdout and stderr."""
    if not SCRIPT.exists():
        pytest.fail(f"the console script {SCRIPT} is not installed (pip install -e .)")
    return subprocess.run(
        (command or [str(SCRIPT)]) + list(args), cwd=ROOT, env=env or cli_env(),
        capture_output=True, text=True, timeout=timeout,
    )


def _app_modules(args: tuple[str, ...]) -> set[str]:
    """The names under which `--app` imports the modules that `args` name."""
    names = set()
    for flag, value in zip(args, args[1:]):
        if flag == "--app":
            names.add(Path(value).stem if value.endswith(".py") else value)
    return names


@contextlib.contextmanager
def _isolated(env: dict[str, Optional[str]]) -> Iterator[tuple[io.BytesIO, io.BytesIO]]:
    """Standard streams of a command's own (no input; stdout and stderr, UTF-8, neither a
    terminal) and the environment changed by `env` (None: unset), as in a process started
    with pipes; what it wrote is in the two BytesIO."""
    saved_streams = sys.stdin, sys.stdout, sys.stderr
    saved_env = {key: os.environ.get(key) for key in env}
    stdout, stderr = io.BytesIO(), io.BytesIO()
    sys.stdin = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    sys.stdout = io.TextIOWrapper(stdout, encoding="utf-8", write_through=True)
    sys.stderr = io.TextIOWrapper(stderr, encoding="utf-8", errors="backslashreplace", write_through=True)
    try:
        _set_environment(env)
        yield stdout, stderr
    finally:
        _set_environment(saved_env)
        sys.stdin, sys.stdout, sys.stderr = saved_streams


def _set_environment(values: dict[str, Optional[str]]) -> None:
    """Set these environment variables (None: unset)."""
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


# Python's default warning filters, which a process started without -W or PYTHONWARNINGS
# shows on its stderr (pytest's own filters apply in this process).
_DEFAULT_IGNORED = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


def cloaca(*args: str, env: Optional[dict[str, str]] = None,
           timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run `cloaca ARGS...` in this process to its end, with the environment `env` (default
    `cli_env()`) and the checkout's root as working directory; its exit code, stdout and
    stderr, as `cloaca_process` gives them. A worker that gets as far as serving needs a
    process of its own (it sets signal handlers, which only a main thread can)."""
    from cloaca._cli import main
    from cloaca.testing import isolated_registry

    env = env if env is not None else cli_env()
    overrides: dict[str, Optional[str]] = {k: None for k in os.environ if k not in env}
    overrides.update(env)
    apps = _app_modules(args)
    modules_before = set(sys.modules)
    threads_before = set(threading.enumerate())
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_path, saved_cwd = sys.path[:], os.getcwd()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            main(list(args))
        except SystemExit as exc:
            outcome["code"] = exc.code
        except BaseException as exc:  # main reports every error itself: this is a bug
            outcome["error"] = exc

    with isolated_registry(), _isolated(overrides) as (stdout, stderr):
        # The console script's logging.basicConfig installs its handler only on a root
        # logger without one (pytest's capture has one).
        root.handlers = []
        os.chdir(ROOT)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.resetwarnings()
                warnings.simplefilter("default")
                for category in _DEFAULT_IGNORED:
                    warnings.simplefilter("ignore", category)
                thread = threading.Thread(target=run, name=f"cloaca {' '.join(args)}", daemon=True)
                thread.start()
                thread.join(timeout)
                if thread.is_alive():
                    pytest.fail(f"cloaca {' '.join(args)} did not end within {timeout:g}s")
            for shown in caught:
                sys.stderr.write(warnings.formatwarning(shown.message, shown.category, shown.filename,
                                                        shown.lineno, shown.line))
            sys.stdout.flush()
            sys.stderr.flush()
            outcome["stdout"], outcome["stderr"] = stdout.getvalue().decode(), stderr.getvalue().decode()
        finally:
            for handler in root.handlers:
                if handler not in saved_handlers:
                    handler.close()
            root.handlers, root.level = saved_handlers, saved_level
            sys.path[:] = saved_path
            os.chdir(saved_cwd)
            for name in set(sys.modules) - modules_before:
                if name in apps or name.split(".")[0] in {a.split(".")[0] for a in apps}:
                    del sys.modules[name]
    if "error" in outcome:
        raise outcome["error"]
    # A process ends once its last non-daemon thread does: a thread the command left running
    # would hold up its exit.
    for left in set(threading.enumerate()) - threads_before:
        if not left.daemon:
            left.join(timeout)
            assert not left.is_alive(), f"cloaca {' '.join(args)} left thread {left.name} running"
    code = outcome["code"]
    return subprocess.CompletedProcess(
        ["cloaca", *args], code if isinstance(code, int) else (0 if code is None else 1),
        outcome["stdout"], outcome["stderr"],
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
    return result


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    """The one JSON document a successful `--json` command printed."""
    return json.loads(ok(result).stdout)


def one_line_error(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    """Assert `result` failed with exit `code` and one line on stderr naming `fragments`."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------------- databases
def create_database(url: str) -> None:
    """Make the (empty) cloaca database `url` names, as a worker would: the commands that
    only read or change what is there refuse a SQLite file that does not exist."""
    from cloaca._store import store_for_url

    async def create() -> None:
        store = store_for_url(url)
        await store.open()
        await store.close()

    asyncio.run(create())


def _postgres_admin(statement: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def _with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + database))


def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A fresh database's URL: a SQLite file, or a PostgreSQL database dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path}/cloaca.db"
        return
    if not POSTGRES_URL:
        pytest.skip("CLOACA_TEST_POSTGRES_URL is not set")
    name = f"cloaca_cli_{uuid.uuid4().hex[:12]}"
    _postgres_admin(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(POSTGRES_URL, name)
    finally:
        _postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
