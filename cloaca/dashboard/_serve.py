"""`serve`: the dashboard on its own, in uvicorn (what `cloaca dashboard` calls)."""

from __future__ import annotations

import sys
from typing import Union

from .._runner import DefaultRunner
from ._app import create_app

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def serve(runner_or_url: Union[DefaultRunner, str], host: str = "127.0.0.1", port: int = 8765,
          allow_actions: bool = False) -> None:
    """Serve the dashboard until interrupted; binds the loopback interface unless `host` says otherwise."""
    import uvicorn

    app = create_app(runner_or_url, allow_actions=allow_actions)
    shown = f"[{host}]" if ":" in host else host
    actions = "enabled" if allow_actions else "disabled (read-only)"
    print(f"cloaca dashboard on http://{shown}:{port}/ (actions {actions})", file=sys.stderr)
    if host not in LOOPBACK:
        print(f"warning: bound to {host}: the dashboard is reachable from other machines "
              "and has no authentication", file=sys.stderr)
    uvicorn.run(app, host=host, port=port, log_level="warning")
