"""The dashboard in a real headless Chromium (Debian's `chromium`, driven by playwright).

The run page's screenshot is written under the test's tmp dir; with CLOACA_DASHBOARD_SCREENSHOT
set (e.g. to docs/dashboard.png) the same picture is also written there, for the README.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("starlette")
pytest.importorskip("jinja2")
uvicorn = pytest.importorskip("uvicorn")
playwright_sync = pytest.importorskip("playwright.sync_api")

from support import poll_until  # noqa: E402

import cloaca  # noqa: E402
from cloaca import Context, DefaultRunner  # noqa: E402
from cloaca.dashboard import create_app  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOT_ENV = "CLOACA_DASHBOARD_SCREENSHOT"

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"{CHROMIUM} is absent (apt-get install chromium)")


def declare_etl(name: str) -> None:
    """A small ETL DAG whose `validate` step fails (so the page shows every colour it has)."""
    with cloaca.WorkflowBuilder(name):
        @cloaca.task(id="fetch_orders")
        def fetch_orders(ctx: Context) -> Context:
            ctx.set("orders", [{"id": 1, "total": 19.9}, {"id": 2, "total": 5.0}])
            return ctx

        @cloaca.task(id="enrich_customers", dependencies=["fetch_orders"])
        def enrich_customers(ctx: Context) -> Context:
            ctx.set("customers", {"1": "ada", "2": "grace"})
            return ctx

        @cloaca.task(id="validate", dependencies=["fetch_orders"], retry_attempts=2, retry_delay_ms=10)
        def validate(ctx: Context) -> Context:
            raise ValueError("order 2: total below the minimum of 10.0")

        @cloaca.task(id="load_warehouse", dependencies=["enrich_customers", "validate"])
        def load_warehouse(ctx: Context) -> Context:
            ctx.set("loaded", 2)
            return ctx

        @cloaca.task(id="notify", dependencies=["load_warehouse"])
        def notify(ctx: Context) -> Context:
            return ctx


def declare_gated(name: str, gate: threading.Event) -> None:
    with cloaca.WorkflowBuilder(name):
        @cloaca.task(id="wait_for_gate")
        def wait_for_gate(ctx: Context) -> Context:
            gate.wait(60)
            return ctx

        @cloaca.task(id="after_gate", dependencies=["wait_for_gate"])
        def after_gate(ctx: Context) -> Context:
            return ctx


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, DefaultRunner]]:
    """(base URL, runner): the dashboard of a fresh runner, served by uvicorn on a free port."""
    runner = DefaultRunner(f"sqlite:///{tmp_path}/browser.db")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(runner), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        poll_until(lambda: server.started, "uvicorn to start")
        yield f"http://127.0.0.1:{port}", runner
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        runner.shutdown()


def save_run_page_screenshot(page: Any, path: Path) -> Path:
    """Screenshot the whole run page to `path` (also to $CLOACA_DASHBOARD_SCREENSHOT when set)."""
    page.set_viewport_size({"width": 1200, "height": 900})
    # caret="initial": hiding the caret would inject a <style> that our CSP (rightly) refuses.
    page.screenshot(path=str(path), full_page=True, caret="initial")
    extra = os.environ.get(SCREENSHOT_ENV)
    if extra:
        Path(extra).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, extra)
    return path


def test_the_dashboard_in_chromium(served: tuple[str, DefaultRunner],
                                   tmp_path: Path) -> None:
    base, runner = served
    # Fixed names: they appear in the README's screenshot.
    etl, gated, gate = "nightly_orders_etl", "dashboard_browser_gated", threading.Event()
    declare_etl(etl)
    declare_gated(gated, gate)
    finished = runner.execute(etl, Context({"date": "2026-11-30", "region": "eu-west"}))
    background = threading.Thread(target=runner.execute, args=(gated, Context({})), daemon=True)
    background.start()
    running_id = poll_until(
        lambda: [r["id"] for r in runner.list_executions(workflow_name=gated, status="Running")],
        "the gated run to start")[0]

    problems: list[str] = []
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))

            page.goto(base + "/")
            rows = page.locator("table.runs tbody tr")
            assert rows.count() == 2
            assert page.locator(f'a[href="/runs/{finished.execution_id}"]').count() == 1
            assert page.locator(f'a[href="/runs/{running_id}"]').count() == 1

            page.goto(f"{base}/runs/{running_id}")
            names = page.locator("svg.dag text.name").all_text_contents()
            assert sorted(names) == ["after_gate", "wait_for_gate"]
            assert page.locator("svg.dag g.node.s-running").count() == 1
            gate.set()  # the run proceeds; the page must follow without a reload
            page.wait_for_selector("svg.dag g.node.s-completed >> nth=1", timeout=20_000)
            assert page.locator("h1 .badge").text_content() == "Completed"
            assert page.locator("body").get_attribute("data-refresh") == "0"

            page.goto(f"{base}/runs/{finished.execution_id}")
            names = page.locator("svg.dag text.name").all_text_contents()
            assert sorted(names) == sorted(
                ["fetch_orders", "enrich_customers", "validate", "load_warehouse", "notify"])
            assert page.locator("svg.dag path.edge").count() == 5
            assert page.locator("svg.dag g.node.s-failed").count() == 1
            shot = save_run_page_screenshot(page, tmp_path / "run-page.png")
        finally:
            browser.close()
    background.join(10)
    assert problems == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000  # a drawn page, not a blank one
