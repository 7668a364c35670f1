"""The app that the CLI tests pass to `cloaca --app tests.cli_app`.

Its triggers and slow task work with files in the directory named by `CLI_TEST_DIR`
(they do nothing without it, so importing this module in the test process is harmless):
- `<dir>/inbox`: the `inbox` trigger consumes it and fires `cli_greet` with its text as `name`;
- `<dir>/slow_inbox`: the `slow_inbox` trigger consumes it and fires `cli_slow`;
- `<dir>/fan_inbox`: the `fan_inbox` trigger consumes it and fires `cli_fan`;
- `cli_slow`'s task appends its pid to `<dir>/slow_started`, then waits for `<dir>/release`.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Callable, Optional

import cloaca


def _dir() -> Optional[Path]:
    value = os.environ.get("CLI_TEST_DIR")
    return Path(value) if value else None


with cloaca.WorkflowBuilder("cli_greet") as builder:
    builder.description("Say hello")

    @cloaca.task(id="hello")
    def hello(context: cloaca.Context) -> cloaca.Context:
        print(f"greeting {context.get('name', 'world')}")  # --json output must stay clean
        context.set("message", f"hello, {context.get('name', 'world')}")
        return context

    @cloaca.task(id="shout", dependencies=["hello"])
    async def shout(context: cloaca.Context) -> cloaca.Context:
        context.set("message", context.get("message").upper())
        return context


with cloaca.WorkflowBuilder("cli_fails") as builder:
    builder.description("Fail, with a traceback")

    @cloaca.task(id="prepare")
    def prepare(context: cloaca.Context) -> cloaca.Context:
        context.set("prepared", True)
        return context

    @cloaca.task(id="explode", dependencies=["prepare"], retry_attempts=1)
    def explode(context: cloaca.Context) -> cloaca.Context:
        raise RuntimeError("the disk is full")


with cloaca.WorkflowBuilder("cli_slow") as builder:
    builder.description("One task that waits to be released")

    @cloaca.task(id="wait_for_release")
    async def wait_for_release(context: cloaca.Context) -> cloaca.Context:
        where = _dir()
        if where is not None:
            with open(where / "slow_started", "a") as marker:
                marker.write(f"{os.getpid()}\n")
            while not (where / "release").exists():
                await asyncio.sleep(0.05)
        context.set("released_in", os.getpid())
        return context


with cloaca.WorkflowBuilder("cli_fan") as builder:
    builder.description("Four parts in parallel, then a join: each part records its process")

    def _part(index: int) -> None:
        @cloaca.task(id=f"part_{index}")
        def part(context: cloaca.Context) -> cloaca.Context:
            time.sleep(0.3)
            context.set(f"pid_{index}", os.getpid())
            return context

    for _index in range(4):
        _part(_index)

    @cloaca.task(id="join", dependencies=[f"part_{i}" for i in range(4)])
    def join(context: cloaca.Context) -> cloaca.Context:
        return context


def _consume(name: str) -> Optional[str]:
    where = _dir()
    if where is None:
        return None
    path = where / name
    try:
        text = path.read_text()
        path.unlink()
    except FileNotFoundError:
        return None
    return text.strip()


def _file_trigger(file_name: str, key: str) -> Callable[[], cloaca.TriggerResult]:
    """A poll that consumes `<dir>/<file_name>` and fires with its text as `key`."""

    def poll() -> cloaca.TriggerResult:
        text = _consume(file_name)
        if text is None:
            return cloaca.TriggerResult.skip()
        return cloaca.TriggerResult.fire(cloaca.Context({key: text}))

    return poll


inbox = cloaca.trigger(workflow="cli_greet", name="inbox", poll_interval="100ms")(
    _file_trigger("inbox", "name"))
slow_inbox = cloaca.trigger(workflow="cli_slow", name="slow_inbox", poll_interval="100ms")(
    _file_trigger("slow_inbox", "ticket"))
fan_inbox = cloaca.trigger(workflow="cli_fan", name="fan_inbox", poll_interval="100ms")(
    _file_trigger("fan_inbox", "batch"))
