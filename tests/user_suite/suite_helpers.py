"""A user's suite: poll_trigger and run_task (and their async twins) on what the
application declared at import time. Run by test_testing_plugin.py as `test_helpers.py`."""

import asyncio

import pytest

import cloaca
from cloaca.testing import apoll_trigger, arun_task, poll_trigger, run_task

INBOX = []
BROKEN = ConnectionError("mail server unreachable")
REFUSED = PermissionError("no refunds on Sundays")

with cloaca.WorkflowBuilder("refunds"):

    @cloaca.task(id="check")
    def check(ctx):
        if ctx.get("day") == "Sunday":
            raise REFUSED
        ctx.set("approved", ctx.get("amount") < 100)  # returns None: in-place changes count

    @cloaca.task(id="pay", dependencies=["check"])
    async def pay(ctx):
        await asyncio.sleep(0)
        return cloaca.Context({"paid": ctx.get("amount") if ctx.get("approved") else 0})


@cloaca.trigger(name="refund_requested", workflow="refunds", poll_interval="10s")
def refund_requested():
    if not INBOX:
        return cloaca.TriggerResult.skip()
    return cloaca.TriggerResult.fire(cloaca.Context(INBOX.pop(0)))


@cloaca.trigger(name="mail_check", workflow="refunds", poll_interval="10s")
async def mail_check():
    raise BROKEN


def test_a_sync_trigger_polled_once():
    assert poll_trigger("refund_requested").is_skip_result()
    INBOX.append({"amount": 30})
    fired = poll_trigger("refund_requested")
    assert fired.is_fire_result() and fired.context.get("amount") == 30


def test_an_async_triggers_error_reaches_the_test_unchanged():
    with pytest.raises(ConnectionError) as raised:
        poll_trigger("mail_check")
    assert raised.value is BROKEN


def test_a_sync_task_body_changing_its_context_in_place():
    assert run_task("refunds", "check", {"amount": 30}).to_dict() == {"amount": 30, "approved": True}


def test_a_task_bodys_error_reaches_the_test_unchanged():
    with pytest.raises(PermissionError) as raised:
        run_task("refunds", "check", cloaca.Context({"amount": 1, "day": "Sunday"}))
    assert raised.value is REFUSED


@pytest.mark.asyncio
async def test_the_async_twins_in_an_async_test():
    assert (await arun_task("refunds", "pay", {"amount": 30, "approved": True})).to_dict() == {"paid": 30}
    INBOX.append({"amount": 500})
    assert (await apoll_trigger("refund_requested")).context.get("amount") == 500
    with pytest.raises(ConnectionError):
        await apoll_trigger("mail_check")
