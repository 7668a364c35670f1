"""`cloaca triggers ...`: list triggers, enable or disable them, read their history."""

from __future__ import annotations

from typing import Any

import click

from .. import DefaultRunner
from . import output
from .main import Cli, Failure, pass_cli


@click.group()
def triggers() -> None:
    """List triggers, enable or disable them, read their history."""


@triggers.command("list")
@click.option("--enabled-only", is_flag=True, help="Only enabled triggers.")
@click.option("--limit", "-n", type=click.IntRange(min=1), default=100, show_default=True)
@pass_cli
def list_triggers(cli: Cli, enabled_only: bool, limit: int) -> None:
    """Trigger schedules known to the database."""
    rows = cli.runner().list_trigger_schedules(enabled_only=enabled_only, limit=limit)
    cli.show(rows, lambda: output.table(
        ("TRIGGER", "WORKFLOW", "EVERY", "CONCURRENT", "ENABLED", "LAST POLL"),
        ([r["trigger_name"], r["workflow_name"], output.milliseconds(r["poll_interval_ms"]),
          output.yes_no(r["allow_concurrent"]), output.yes_no(r["enabled"]),
          output.when(r["last_poll_at"])]
         for r in rows),
        empty="No triggers.",
    ))


def _existing(runner: DefaultRunner, name: str) -> dict[str, Any]:
    schedule = runner.get_trigger_schedule(name)
    if schedule is None:
        raise Failure(f"no trigger named '{name}' in this database")
    return schedule


def _set_enabled(cli: Cli, name: str, enabled: bool) -> None:
    runner = cli.runner()
    _existing(runner, name)
    runner.set_trigger_enabled(name, enabled)
    cli.show(_existing(runner, name),
             lambda: f"Trigger '{name}' {'enabled' if enabled else 'disabled'}.")


@triggers.command("enable")
@click.argument("name")
@pass_cli
def enable_trigger(cli: Cli, name: str) -> None:
    """Resume polling trigger NAME (in every runner; survives restarts)."""
    _set_enabled(cli, name, True)


@triggers.command("disable")
@click.argument("name")
@pass_cli
def disable_trigger(cli: Cli, name: str) -> None:
    """Stop polling trigger NAME (in every runner; survives restarts)."""
    _set_enabled(cli, name, False)


@triggers.command("history")
@click.argument("name")
@click.option("--limit", "-n", type=click.IntRange(min=1), default=20, show_default=True)
@pass_cli
def trigger_history(cli: Cli, name: str, limit: int) -> None:
    """The runs trigger NAME fired, newest first."""
    runner = cli.runner()
    _existing(runner, name)
    rows = runner.get_trigger_execution_history(name, limit=limit)
    cli.show(rows, lambda: output.table(
        ("FIRED", "RUN", "ENDED", "CONTEXT HASH"),
        ([output.when(r["started_at"]), r["workflow_execution_id"] or output.NONE,
          output.when(r["completed_at"]), r["context_hash"] or output.NONE]
         for r in rows),
        empty=f"Trigger '{name}' has not fired.",
    ))
