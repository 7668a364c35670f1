"""A price feed: live reactors, a computation graph, and a subscribed workflow.

  * `reference_price` is a polling accumulator: every 100 ms it reads a reference price
    (simulated here; in real code an HTTP quote, a database row ...);
  * `trades` is a stream accumulator fed by `runner.push_event(...)` (in real code: a
    message consumer, a websocket handler, a FastAPI endpoint ...);
  * the `PriceFeed` reactor fires `when_all`: once both have delivered since its last fire;
  * its graph compares the trade with the reference and routes to one of two terminals,
    `quote_ok` or `spread_alert`;
  * the workflow `handle_alert` is subscribed to the reactor with a CEL `when` filter: it
    runs only for firings whose trade is more than 2 % above the reference.

    python examples/price_feed.py
"""

import time

import cloaca

REFERENCE = 100.0
TRADES = [100.5, 103.0, 99.0, 104.5]


# =============================================================================
# Accumulators and the reactor
# =============================================================================

@cloaca.polling_accumulator(interval="100ms")
def reference_price():
    """The reference quote (simulated: constant)."""
    return {"price": REFERENCE}


@cloaca.stream_accumulator(type="websocket", topic="trades")
def trades(event):
    """Each pushed trade, normalised."""
    return {"price": float(event["price"]), "venue": event.get("venue", "unknown")}


@cloaca.reactor(name="price_feed", accumulators=["reference_price", "trades"], mode="when_all")
class PriceFeed:
    pass


# =============================================================================
# The graph the reactor fires
# =============================================================================

with cloaca.ComputationGraphBuilder(
    "price_spread",
    reactor=PriceFeed,
    graph={
        "compare": {
            "inputs": ["reference_price", "trades"],
            "routes": {"alert": "spread_alert", "ok": "quote_ok"},
        },
        "spread_alert": {},
        "quote_ok": {},
    },
):
    @cloaca.node
    def compare(reference, trade):
        spread_bps = round((trade["price"] - reference["price"]) / reference["price"] * 10_000)
        quote = {"trade": trade["price"], "reference": reference["price"], "spread_bps": spread_bps}
        return ("alert", quote) if spread_bps > 200 else ("ok", quote)

    @cloaca.node
    def spread_alert(quote):
        print(f"  graph: ALERT  trade {quote['trade']:.2f} vs {quote['reference']:.2f} "
              f"({quote['spread_bps']:+d} bps)")
        return quote

    @cloaca.node
    def quote_ok(quote):
        print(f"  graph: ok     trade {quote['trade']:.2f} vs {quote['reference']:.2f} "
              f"({quote['spread_bps']:+d} bps)")
        return quote


# =============================================================================
# The workflow subscribed to the reactor
# =============================================================================

with cloaca.WorkflowBuilder("handle_alert") as builder:
    builder.description("Escalate trades far above the reference price")

    @cloaca.task(id="escalate")
    def escalate(context):
        trade = context.get("trades")
        context.set("escalated", f"trade {trade['price']:.2f} on {trade['venue']}")
        return context


ALERT_WHEN = "payload.trades.price > payload.reference_price.price * 1.02"


def wait_for(condition, seconds=30.0):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the price feed did not make progress")
        time.sleep(0.02)


def fires(runner):
    return next(r["fires"] for r in runner.list_reactors() if r["name"] == "price_feed")


def main():
    print("Price feed")
    config = cloaca.DefaultRunnerConfig(reactor_poll_interval_seconds=0.1)
    with cloaca.DefaultRunner.with_config(":memory:", config) as runner:
        runner.subscribe_workflow_to_reactor("price_feed", "handle_alert", when=ALERT_WHEN)
        for number, price in enumerate(TRADES, start=1):
            runner.push_event("trades", {"price": price, "venue": "XNYS"})
            wait_for(lambda: fires(runner) == number)  # when_all: the next poll completes it

        def alerts():
            return [e for e in runner.list_executions(workflow_name="handle_alert")
                    if e["status"] == "Completed"]

        wait_for(lambda: len(alerts()) == 2)
        time.sleep(0.3)  # one more subscription pass: nothing else is dispatched
        escalated = sorted(runner.get_execution(e["id"]).final_context.get("escalated")
                           for e in runner.list_executions(workflow_name="handle_alert"))
        print(f"Reactor fired {fires(runner)} times; "
              f"handle_alert ran {len(escalated)} times (when: {ALERT_WHEN}):")
        for line in escalated:
            print(f"  escalated {line}")


if __name__ == "__main__":
    main()
