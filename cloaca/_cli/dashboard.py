"""`cloaca dashboard`: serve the web dashboard (`cloaca.dashboard`) with uvicorn."""

from __future__ import annotations

import click

from .main import Cli, Failure, pass_cli

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@click.option("--allow-actions", is_flag=True,
              help="Offer cancel, retry and enable/disable buttons (off: read-only).")
@pass_cli
def dashboard(cli: Cli, host: str, port: int, allow_actions: bool) -> None:
    """Serve the web dashboard of the database's runs, triggers and cron schedules."""
    try:
        import uvicorn

        from ..dashboard import create_app
    except ImportError as exc:
        raise Failure(
            f"the dashboard is not available here ({exc}); install the 'dashboard' extra"
        ) from None
    app = create_app(cli.runner(), allow_actions=allow_actions)
    shown = f"[{host}]" if ":" in host else host
    where = "only this machine can reach it" if host in _LOOPBACK else "reachable from the network"
    click.echo(f"cloaca dashboard on http://{shown}:{port}/ (binds {host}: {where}); "
               "Ctrl-C stops it")
    uvicorn.run(app, host=host, port=port, log_level="warning")
