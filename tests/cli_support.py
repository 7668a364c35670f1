"""Driving the installed `cloaca` console script from the CLI tests.

The app the commands load is `tests/cli_app.py` (`--app tests.cli_app`, run from the
checkout's root). The test process never imports it: its workflows and triggers would join
the process-wide registry of every other test.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
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


def cloaca(*args: str, env: Optional[dict[str, str]] = None, timeout: float = 60.0,
           command: Optional[list[str]] = None) -> subprocess.CompletedProcess[str]:
    """Run `cloaca ARGS...` to its end; its exit code, stdout and stderr."""
    if not SCRIPT.exists():
        pytest.fail(f"the console script {SCRIPT} is not installed (pip install -e .)")
    return subprocess.run(
        (command or [str(SCRIPT)]) + list(args), cwd=ROOT, env=env or cli_env(),
        capture_output=True, text=True, timeout=timeout,
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
