"""`cloaca runs ...`: list, show, start, cancel and retry workflow runs."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import click

from .. import Context, DefaultRunner, WorkflowResult
from . import output
from .main import Cli, Failure, one_line, pass_cli, refused


def _now() -> datetime:
    return datetime.now(timezone.utc)


@click.group()
def runs() -> None:
    """Inspect, start, cancel and retry workflow runs."""


# ---------------------------------------------------------------------- list / show
@runs.command("list")
@click.option("--workflow", "-w", metavar="NAME", help="Only runs of this workflow.")
@click.option("--status", "-s", metavar="STATUS", help="Only runs in this status (e.g. Failed).")
@click.option("--limit", "-n", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True)
@pass_cli
def list_runs(cli: Cli, workflow: Optional[str], status: Optional[str], limit: int,
              offset: int) -> None:
    """Runs, newest first."""
    runner = cli.runner()
    with refused(usage=True):
        rows = runner.list_executions(workflow_name=workflow, status=status, limit=limit,
                                      offset=offset)
    cli.show(rows, lambda: output.table(
        ("ID", "WORKFLOW", "STATUS", "STARTED", "DURATION", "ERROR"),
        ([r["id"], r["workflow_name"], output.status(r["status"]), output.when(r["started_at"]),
          output.between(r["started_at"], r["completed_at"], _now), output.clip(r["error_message"])]
         for r in rows),
        empty="No runs.",
    ))


@runs.command("show")
@click.argument("execution_id", metavar="ID")
@pass_cli
def show_run(cli: Cli, execution_id: str) -> None:
    """A run: its tasks, statuses, attempts, durations, errors, tracebacks and final context."""
    runner = cli.runner()
    show_result(cli, existing_run(runner, execution_id))


def existing_run(runner: DefaultRunner, execution_id: str) -> WorkflowResult:
    result = runner.get_execution(execution_id)
    if result is None:
        raise Failure(f"no run with id '{execution_id}' in this database")
    return result


def result_document(result: WorkflowResult) -> dict[str, Any]:
    """The JSON form of a WorkflowResult (SPEC A12)."""
    return {
        "execution_id": result.execution_id,
        "workflow_name": result.workflow_name,
        "status": result.status,
        "start_time": result.start_time,
        "end_time": result.end_time,
        "duration_seconds": result.duration_seconds,
        "error_message": result.error_message,
        "final_context": result.final_context.to_dict(),
        "task_results": result.task_results,
    }


def show_result(cli: Cli, result: WorkflowResult) -> None:
    cli.show(result_document(result), lambda: describe(result))


def describe(result: WorkflowResult) -> str:
    """A run in full, for a person."""
    header = output.fields([
        ("Run", result.execution_id),
        ("Workflow", result.workflow_name),
        ("Status", output.status(result.status)),
        ("Started", output.when(result.start_time)),
        ("Ended", output.when(result.end_time)),
        ("Duration", output.between(result.start_time, result.end_time, _now)),
        ("Error", result.error_message or output.NONE),
    ])
    tasks = result.task_results
    task_table = output.table(
        ("TASK", "STATUS", "ATTEMPTS", "STARTED", "DURATION", "ERROR"),
        ([t["task_name"], output.status(t["status"]), str(t["attempt_count"]),
          output.when(t["start_time"]),
          output.between(t["start_time"], t["end_time"], _now) if t["start_time"] else output.NONE,
          output.clip(t["error_message"], 50)]
         for t in tasks),
        empty="No tasks.",
    )
    sections = [header, task_table]
    for t in tasks:
        if t["status"] == "Failed" or t.get("traceback"):
            title = output.paint(
                f"Task '{t['task_name']}' {t['status']} (attempt {t['attempt_count']}):", "red", bold=True)
            detail = [title, t["error_message"], t.get("traceback")]
            sections.append("\n".join(filter(None, detail)).rstrip())
    context = json.dumps(result.final_context.to_dict(), indent=2, ensure_ascii=False)
    sections.append(output.paint("Final context:", None, bold=True) + "\n" + context)
    return "\n\n".join(sections)


# ---------------------------------------------------------------------- start / wait
def parse_context(_ctx: click.Context, _param: click.Parameter, value: Optional[str]) -> dict[str, Any]:
    """`--context`: a JSON object, inline or `@file.json`."""
    if value is None:
        return {}
    text = value
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text()
        except OSError as exc:
            raise click.BadParameter(f"cannot read {value[1:]}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"must be a JSON object, got {type(data).__name__}")
    return data


wait_option = click.option(
    "--wait", is_flag=True,
    help="Wait for the run to end and print its result (exit 1 unless it Completed).")
timeout_option = click.option(
    "--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
    help="With --wait: give up waiting after this long (exit 1; the run goes on).")


@runs.command("start")
@click.argument("workflow")
@click.option("--context", "-c", "context", callback=parse_context, metavar="JSON",
              help="Input context: a JSON object, or @file.json.")
@wait_option
@timeout_option
@pass_cli
def start_run(cli: Cli, workflow: str, context: dict[str, Any], wait: bool,
              timeout: Optional[float]) -> None:
    """Start a run of WORKFLOW and print its id (the workflow must be declared by an --app)."""
    runner = cli.runner(creates=True)
    try:
        execution_id = runner.submit(workflow, Context(context))
    except ValueError as exc:
        hint = "" if cli.apps else " (no --app module was given: name the one declaring it)"
        raise Failure(one_line(exc) + hint) from None
    finish(cli, runner, execution_id, wait, timeout)


def finish(cli: Cli, runner: DefaultRunner, execution_id: str, wait: bool,
           timeout: Optional[float]) -> None:
    """Print the run's id, or (--wait) its result, exiting 1 unless it Completed."""
    if not wait:
        cli.show({"execution_id": execution_id}, lambda: execution_id)
        return
    try:
        result = runner.get_result(execution_id, timeout=timeout)
    except TimeoutError as exc:
        raise Failure(one_line(exc)) from None
    show_result(cli, result)
    if result.status != "Completed":
        click.get_current_context().exit(1)


# ---------------------------------------------------------------------- cancel / retry
@runs.command("cancel")
@click.argument("execution_id", metavar="ID")
@pass_cli
def cancel_run(cli: Cli, execution_id: str) -> None:
    """Cancel a run that has not ended (wherever it runs)."""
    runner = cli.runner()
    existing_run(runner, execution_id)
    with refused():
        cancelled = runner.cancel(execution_id)
    status = existing_run(runner, execution_id).status
    cli.show(
        {"execution_id": execution_id, "cancelled": cancelled, "status": status},
        lambda: f"Cancelled run {execution_id}." if cancelled
        else f"Run {execution_id} had already ended ({status}); nothing to cancel.",
    )


@runs.command("retry")
@click.argument("execution_id", metavar="ID")
@wait_option
@timeout_option
@pass_cli
def retry_run(cli: Cli, execution_id: str, wait: bool, timeout: Optional[float]) -> None:
    """Resume a Failed or Cancelled run under the same id (completed tasks are kept).

    Without the --app declaring its workflow, the run is reopened (Pending) for a worker
    that has it."""
    runner = cli.runner()
    existing_run(runner, execution_id)
    with refused():
        resumed = runner.retry_execution(execution_id)
    reopened = existing_run(runner, resumed)
    if reopened.status == "Pending":
        click.echo(f"Run {resumed} reopened: it waits for a worker that has workflow "
                   f"'{reopened.workflow_name}'.", err=True)
    finish(cli, runner, resumed, wait, timeout)
