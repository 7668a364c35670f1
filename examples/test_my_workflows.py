"""A complete test file for an application's workflows (README, "Testing your workflows").

Run it with `python -m pytest examples/test_my_workflows.py`: installing cloaca installs
the pytest plugin, so the `cloaca_*` fixtures need no conftest. Async tests use
pytest-asyncio (strict mode: `@pytest.mark.asyncio`).

The declarations below stand for the application's own module, imported by the tests:
what is declared at import time stays registered for every test.
"""

from datetime import datetime, timezone

import pytest

import cloaca
from cloaca.testing import await_for_executions, poll_trigger, run_task, wait_for_executions

# ---------------------------------------------------------------- the application
PENDING_ORDERS: list[dict] = []

with cloaca.WorkflowBuilder("orders"):

    @cloaca.task(id="price")
    def price(ctx):
        ctx.set("total", sum(line["qty"] * line["unit_price"] for line in ctx.get("lines")))
        return ctx

    @cloaca.task(id="invoice", dependencies=["price"])
    async def invoice(ctx):
        if ctx.get("total") <= 0:
            raise ValueError("nothing to invoice")
        ctx.set("invoice", f"INV-{ctx.get('order_id')}")
        return ctx


@cloaca.trigger(workflow="orders", name="new_order", poll_interval="5s")
def new_order():
    if not PENDING_ORDERS:
        return cloaca.TriggerResult.skip()
    return cloaca.TriggerResult.fire(cloaca.Context(PENDING_ORDERS.pop(0)))


with cloaca.WorkflowBuilder("nightly_report"):

    @cloaca.task(id="report")
    def report(ctx):
        ctx.set("report_for", ctx.get("scheduled_time"))
        return ctx


# ---------------------------------------------------------------- one task, one poll
def test_price_adds_up_the_lines():
    out = run_task("orders", "price", {"lines": [{"qty": 2, "unit_price": 5}, {"qty": 1, "unit_price": 3}]})
    assert out.get("total") == 13


def test_invoice_refuses_an_empty_order():
    with pytest.raises(ValueError, match="nothing to invoice"):
        run_task("orders", "invoice", {"order_id": 7, "total": 0})


def test_the_trigger_fires_once_per_pending_order():
    PENDING_ORDERS.append({"order_id": 1, "lines": []})
    fired = poll_trigger("new_order")
    assert fired.is_fire_result() and fired.context.get("order_id") == 1
    assert poll_trigger("new_order").is_skip_result()


# ---------------------------------------------------------------- whole runs
def test_an_order_runs_end_to_end(cloaca_runner):
    ctx = cloaca.Context({"order_id": 42, "lines": [{"qty": 3, "unit_price": 10}]})
    result = cloaca_runner.execute("orders", ctx)
    assert result.status == "Completed"
    assert result.final_context.get("invoice") == "INV-42"


@pytest.mark.asyncio
async def test_an_order_runs_on_the_tests_event_loop(cloaca_runner):
    ctx = cloaca.Context({"order_id": 43, "lines": [{"qty": 1, "unit_price": 1}]})
    result = await cloaca_runner.aexecute("orders", ctx)
    assert result.final_context.get("invoice") == "INV-43"


def test_a_workflow_declared_in_a_test_is_gone_after_it(cloaca_registry):
    with cloaca.WorkflowBuilder("scratch"):

        @cloaca.task(id="only")
        def only(ctx):
            return ctx

    assert "scratch" in cloaca_registry.workflow_names()  # removed when the test ends


# ---------------------------------------------------------------- cron, without sleeping
def test_the_nightly_report_fires_at_two(cloaca_runner, cloaca_clock):
    cloaca_clock.set(datetime(2026, 3, 1, 1, 59, tzinfo=timezone.utc))
    cloaca_runner.register_cron_workflow("nightly_report", "0 2 * * *", "UTC")

    cloaca_clock.advance(60)  # 02:00: the slot is due, the scheduler fires it at once

    (run,) = wait_for_executions(cloaca_runner, "nightly_report", status="Completed")
    result = cloaca_runner.get_execution(run["id"])
    assert result.final_context.get("report_for").startswith("2026-03-01T02:00:00")


@pytest.mark.asyncio
async def test_two_nights_fire_two_reports(cloaca_runner, cloaca_clock):
    cloaca_clock.set(datetime(2026, 3, 1, 1, 59, tzinfo=timezone.utc))
    await cloaca_runner.aregister_cron_workflow("nightly_report", "0 2 * * *", "UTC")

    for nights in (1, 2):
        cloaca_clock.advance(24 * 3600)  # a day later: that night's 02:00 slot fires
        runs = await await_for_executions(cloaca_runner, "nightly_report", count=nights,
                                          status="Completed")

    results = [await cloaca_runner.aget_execution(run["id"]) for run in runs]
    reported = sorted(result.final_context.get("report_for")[:13] for result in results)
    assert reported == ["2026-03-01T02", "2026-03-02T02"]
