"""`cloaca cron ...`: list, add, enable, disable and delete cron schedules; read their history."""

from __future__ import annotations

from typing import Any

import click

from .. import DefaultRunner
from . import output
from .main import Cli, pass_cli, refused


@click.group()
def cron() -> None:
    """List, add, enable, disable and delete cron schedules; read their history."""


@cron.command("list")
@click.option("--enabled-only", is_flag=True, help="Only enabled schedules.")
@click.option("--limit", "-n", type=click.IntRange(min=1), default=100, show_default=True)
@pass_cli
def list_schedules(cli: Cli, enabled_only: bool, limit: int) -> None:
    """Cron schedules, newest first."""
    rows = cli.runner().list_cron_schedules(enabled_only=enabled_only, limit=limit)
    cli.show(rows, lambda: output.table(
        ("ID", "WORKFLOW", "EXPRESSION", "TIMEZONE", "ENABLED", "NEXT RUN", "LAST RUN"),
        ([r["id"], r["workflow_name"], r["cron_expression"], r["timezone"],
          output.yes_no(r["enabled"]), output.when(r["next_run_at"]), output.when(r["last_run_at"])]
         for r in rows),
        empty="No cron schedules.",
    ))


@cron.command("add")
@click.argument("workflow")
@click.argument("expression")
@click.option("--timezone", "-z", "tz", default="UTC", show_default=True, metavar="TZ",
              help="IANA time zone the expression is read in.")
@click.option("--catchup", type=click.Choice(["skip", "run_all"]), default="skip", show_default=True,
              help="Slots missed while no worker ran: skip them, or run them all.")
@pass_cli
def add_schedule(cli: Cli, workflow: str, expression: str, tz: str, catchup: str) -> None:
    """Run WORKFLOW on cron EXPRESSION (e.g. '*/5 * * * *'); prints the schedule's id."""
    runner = cli.runner(creates=True)
    with refused(usage=True):
        schedule_id = runner.register_cron_workflow(workflow, expression, tz, catchup)
    cli.show(runner.get_cron_schedule(schedule_id), lambda: schedule_id)


def _existing(runner: DefaultRunner, schedule_id: str) -> dict[str, Any]:
    with refused():
        return runner.get_cron_schedule(schedule_id)


def _set_enabled(cli: Cli, schedule_id: str, enabled: bool) -> None:
    runner = cli.runner()
    _existing(runner, schedule_id)
    runner.set_cron_schedule_enabled(schedule_id, enabled)
    cli.show(_existing(runner, schedule_id),
             lambda: f"Cron schedule {schedule_id} {'enabled' if enabled else 'disabled'}.")


@cron.command("enable")
@click.argument("schedule_id", metavar="ID")
@pass_cli
def enable_schedule(cli: Cli, schedule_id: str) -> None:
    """Resume firing schedule ID (its next run is the next slot from now)."""
    _set_enabled(cli, schedule_id, True)


@cron.command("disable")
@click.argument("schedule_id", metavar="ID")
@pass_cli
def disable_schedule(cli: Cli, schedule_id: str) -> None:
    """Stop firing schedule ID."""
    _set_enabled(cli, schedule_id, False)


@cron.command("delete")
@click.argument("schedule_id", metavar="ID")
@pass_cli
def delete_schedule(cli: Cli, schedule_id: str) -> None:
    """Delete schedule ID (the runs it started stay)."""
    runner = cli.runner()
    _existing(runner, schedule_id)
    runner.delete_cron_schedule(schedule_id)
    cli.show({"id": schedule_id, "deleted": True},
             lambda: f"Deleted cron schedule {schedule_id}.")


@cron.command("history")
@click.argument("schedule_id", metavar="ID")
@click.option("--limit", "-n", type=click.IntRange(min=1), default=20, show_default=True)
@pass_cli
def schedule_history(cli: Cli, schedule_id: str, limit: int) -> None:
    """The slots schedule ID fired (or skipped), newest first."""
    runner = cli.runner()
    _existing(runner, schedule_id)
    rows = runner.get_cron_execution_history(schedule_id, limit=limit)
    cli.show(rows, lambda: output.table(
        ("SCHEDULED", "CLAIMED", "OUTCOME", "RUN", "ERROR"),
        ([output.when(r["scheduled_time"]), output.when(r["claimed_at"]),
          output.status(r.get("outcome")), r["workflow_execution_id"] or output.NONE,
          output.clip(r.get("error"), 50)]
         for r in rows),
        empty=f"Cron schedule {schedule_id} has not fired.",
    ))
