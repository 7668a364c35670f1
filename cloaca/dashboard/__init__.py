"""A web dashboard for cloaca: runs and their DAGs, triggers and cron schedules.

Install the `dashboard` extra (Starlette, Jinja2, uvicorn). `create_app(runner_or_url)` returns
an ASGI app to mount in an application (`app.mount("/cloaca", create_app(runner))`);
`serve(url)` runs it with uvicorn, on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

from ._app import create_app
from ._serve import serve

__all__ = ["create_app", "serve"]
