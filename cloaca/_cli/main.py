"""The `cloaca` command: global options, the runner it opens, and how errors are reported.

Every command is a thin layer over `DefaultRunner`'s public methods. A command opens a
runner on the database for its own duration only; it does not take over other processes'
interrupted runs, fire cron schedules nor run reactors (that is the `worker`'s job).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, NoReturn, Optional, TextIO

import click

from .. import DefaultRunner, DefaultRunnerConfig
from .._config import operator_config
from . import output

COMMAND_GRACE_SECONDS = 1.0
"""How long a command's runner lets task bodies it started run on at exit; what is still
running then is released to the workers (at-least-once), so commands return promptly."""

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
log = logging.getLogger("cloaca.cli")


class Failure(click.ClickException):
    """The command could not be carried out (exit 1): unknown id, database unreachable..."""

    exit_code = 1


@dataclass
class Cli:
    """What the global options decided, shared by every command."""

    database_url: Optional[str]
    apps: tuple[str, ...]
    json: bool
    stdout: TextIO
    """The real standard output (in --json mode, anything else printed goes to stderr)."""

    def url(self) -> str:
        if not self.database_url:
            raise click.UsageError("no database given: pass --db URL or set CLOACA_DATABASE_URL")
        return self.database_url

    def runner(self, creates: bool = False) -> DefaultRunner:
        """A runner on the database for this command, shut down when the command ends.

        Only a command that `creates` something (a run, a schedule) creates a SQLite database
        that does not exist; the others, which read or change what is there, refuse it (a
        mistyped path is an error naming it, not a new empty file)."""
        config = operator_config(COMMAND_GRACE_SECONDS)
        config.create_database = creates
        runner = open_runner(self.url(), config)
        click.get_current_context().call_on_close(runner.shutdown)
        return runner

    def show(self, document: Any, human: Callable[[], str]) -> None:
        """Print `document` as JSON with --json, else the text `human()` makes."""
        if self.json:
            output.emit_json(document, self.stdout)
        else:
            click.echo(human())


pass_cli = click.make_pass_decorator(Cli)


def open_runner(url: str, config: DefaultRunnerConfig) -> DefaultRunner:
    """A started runner, or a one-line error naming what is wrong with the database."""
    with opening_database():
        return DefaultRunner.with_config(url, config)


@contextlib.contextmanager
def opening_database() -> Iterator[None]:
    """A malformed URL is a usage error (exit 2); a database that cannot be opened, a
    failure (exit 1)."""
    try:
        yield
    except ValueError as exc:
        raise click.BadParameter(one_line(exc), param_hint="'--db'") from None
    except RuntimeError as exc:
        raise Failure(one_line(exc).removeprefix("Failed to create DefaultRunner: ")) from None


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


@contextlib.contextmanager
def refused(usage: bool = False) -> Iterator[None]:
    """Turn the runner's ValueError (bad input, refused operation) into a one-line error:
    a usage error (exit 2) when the input is malformed, else a failure (exit 1)."""
    try:
        yield
    except ValueError as exc:
        if usage:
            raise click.UsageError(one_line(exc)) from None
        raise Failure(one_line(exc)) from None


def import_app(name: str) -> None:
    """Import a module (dotted name, or path to a .py file) that declares workflows/triggers."""
    if name.endswith(".py"):
        path = Path(name)
        if not path.is_file():
            raise click.BadParameter(f"no file '{name}'", param_hint="'--app'")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        load: Callable[[], Any] = lambda: spec.loader.exec_module(module)  # type: ignore[union-attr]
    else:
        load = lambda: importlib.import_module(name)  # noqa: E731
    try:
        load()
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise click.BadParameter(
                f"no module named '{name}' (searched the current directory and sys.path)",
                param_hint="'--app'",
            ) from None
        raise Failure(f"--app module '{name}' failed to import: {_described(exc)}") from None
    except Exception as exc:
        log.debug("importing --app module %s failed", name, exc_info=True)
        raise Failure(f"--app module '{name}' failed to import: {_described(exc)}") from None


def _described(exc: BaseException) -> str:
    where = ""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is not None:
        where = f" ({tb.tb_frame.f_code.co_filename}:{tb.tb_lineno})"
    return f"{type(exc).__name__}: {one_line(exc)}{where}"


class _WithoutTracebacks(logging.Formatter):
    """Log lines without the tracebacks attached to them (a command shows a failed task's
    traceback in its result; `--log-level DEBUG` brings them back)."""

    def formatException(self, ei: Any) -> str:
        return ""


def configure_logging(level: str, tracebacks: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    formatter = logging.Formatter if tracebacks else _WithoutTracebacks
    handler.setFormatter(formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level), handlers=[handler])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", "database_url", envvar="CLOACA_DATABASE_URL", metavar="URL",
              help="Database URL (default: $CLOACA_DATABASE_URL).")
@click.option("--app", "apps", multiple=True, metavar="MODULE",
              help="Module (or .py file) declaring workflows and triggers; repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output: one JSON document.")
@click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False), default=None,
              help="Log level on stderr (default: INFO for worker, else WARNING).")
@click.pass_context
def cli(ctx: click.Context, database_url: Optional[str], apps: tuple[str, ...], as_json: bool,
        log_level: Optional[str]) -> None:
    """Inspect and operate cloaca runs, triggers and cron schedules; run a worker."""
    serving = ctx.invoked_subcommand == "worker"
    level = (log_level or ("INFO" if serving else "WARNING")).upper()
    configure_logging(level, tracebacks=serving or level == "DEBUG")
    real_stdout = sys.stdout
    if as_json:
        # User code (imports, task bodies) printing must not break the JSON document.
        ctx.with_resource(contextlib.redirect_stdout(sys.stderr))
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in apps:
        import_app(name)
    ctx.obj = Cli(database_url, apps, as_json, real_stdout)


def report(exc: click.ClickException) -> None:
    """One line on stderr; usage errors name the help to read."""
    message = f"Error: {exc.format_message()}"
    if isinstance(exc, click.UsageError) and exc.ctx is not None:
        message += f" (see '{exc.ctx.command_path} --help')"
    click.echo(message, err=True)


def main(argv: Optional[list[str]] = None) -> NoReturn:
    """Entry point of the console script and of `python -m cloaca`."""
    try:
        code = cli.main(args=argv, prog_name="cloaca", standalone_mode=False)
    except click.ClickException as exc:
        report(exc)
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        # The reader went away (`cloaca runs list | head -3`): stop quietly, as `head` expects.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    except click.Abort:
        click.echo("Error: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug or an unforeseen failure: still one line, no traceback
        log.debug("unexpected error", exc_info=True)
        click.echo(f"Error: {_described(exc)}", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
