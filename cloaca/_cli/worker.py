"""`cloaca --app MODULE worker`: serve the app's workflows until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Optional
from urllib.parse import urlsplit, urlunsplit

import click

from .. import DefaultRunner, DefaultRunnerConfig
from .main import Cli, one_line, opening_database, pass_cli

log = logging.getLogger("cloaca.cli")


def redacted(url: str) -> str:
    """`url` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@click.command()
@click.option("--max-concurrent-tasks", type=click.IntRange(min=1), metavar="N",
              help="Sync task bodies running at once (default 4).")
@click.option("--lease-seconds", type=click.FloatRange(min=0, min_open=True), metavar="S",
              help="Lease on running work; another worker takes it over this long after a "
                   "crash (default 5).")
@click.option("--shutdown-grace", type=click.FloatRange(min=0, min_open=True), metavar="S",
              help="On SIGINT/SIGTERM, how long running tasks may finish (default 10).")
@pass_cli
def worker(cli: Cli, max_concurrent_tasks: Optional[int], lease_seconds: Optional[float],
           shutdown_grace: Optional[float]) -> None:
    """Keep the --app modules' triggers polling, cron schedules firing and interrupted runs
    resuming, until SIGINT or SIGTERM (then shut down gracefully and exit 0)."""
    if not cli.apps:
        raise click.UsageError("the worker needs --app MODULE (the module declaring the workflows)")
    url = cli.url()
    try:
        config = DefaultRunnerConfig(
            max_concurrent_tasks=max_concurrent_tasks, lease_seconds=lease_seconds,
            shutdown_grace_seconds=shutdown_grace,
        )
    except ValueError as exc:
        raise click.UsageError(one_line(exc)) from None
    asyncio.run(_serve(url, config, cli.apps))


async def _serve(url: str, config: DefaultRunnerConfig, apps: tuple[str, ...]) -> None:
    stop = asyncio.Event()
    signals = _on_signals(stop)
    with opening_database():
        runner = await DefaultRunner.with_config(url, config).astart()
    log.info("worker %d serving %s (apps: %s); stop with Ctrl-C or SIGTERM",
             os.getpid(), redacted(url), ", ".join(apps))
    try:
        await stop.wait()
        log.info("shutting down (running tasks get %gs to finish)", config.shutdown_grace_seconds)
    finally:
        await runner.ashutdown()
        for signum in signals:
            asyncio.get_running_loop().remove_signal_handler(signum)
    log.info("worker %d stopped", os.getpid())


def _on_signals(stop: asyncio.Event) -> list[int]:
    """SIGINT/SIGTERM set `stop`; a second one ends the process at once (leases then expire
    and another worker takes the work over)."""
    loop = asyncio.get_running_loop()
    handled = [signal.SIGINT, signal.SIGTERM]

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: exiting without waiting", signal.Signals(signum).name)
            os._exit(128 + signum)
        stop.set()

    for signum in handled:
        loop.add_signal_handler(signum, on_signal, signum)
    return handled
