"""The `cloaca` command line (console script `cloaca`, and `python -m cloaca`)."""

from .cron import cron
from .dashboard import dashboard
from .main import cli, main
from .runs import runs
from .triggers import triggers
from .worker import worker

for _command in (runs, triggers, cron, worker, dashboard):
    cli.add_command(_command)

__all__ = ["cli", "main"]
