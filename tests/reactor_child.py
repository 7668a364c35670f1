"""Child process of tests/test_reactor_kill.py: fires a reactor, buffers a batch, then waits
to be SIGKILLed.

    python reactor_child.py DB_URL SCHEMA|- PREFIX LOG_PATH READY_PATH

It subscribes `<PREFIX>_wf` to `<PREFIX>_reactor`, fires the reactor 5 times (pushing to
`<PREFIX>_feed`), dispatching the first 2 firings by a manual subscription pass, pushes 3
events into the batch accumulator `<PREFIX>_batch`, then writes READY_PATH and sleeps. The
parent imports `declare` so that both declare the very same reactors and workflow.
"""

from __future__ import annotations

import sys
import time
from typing import Optional

import cloaca
from durability_child import append_line

FIRES = 5
DISPATCHED_BY_CHILD = 2
BATCHED = ["e0", "e1", "e2"]


def declare(prefix: str, log_path: str) -> tuple[type, type]:
    """The reactors (fed, batched) and the workflow that logs the firing id it started from."""
    cloaca.batch_accumulator(flush_interval="1h", max_buffer_size=100)(_named(f"{prefix}_batch"))

    @cloaca.reactor(name=f"{prefix}_reactor", accumulators=[f"{prefix}_feed"])
    class Fed:
        pass

    @cloaca.reactor(name=f"{prefix}_batcher", accumulators=[f"{prefix}_batch"])
    class Batched:
        pass

    with cloaca.WorkflowBuilder(f"{prefix}_wf"):
        @cloaca.task(id="log_firing")
        def log_firing(ctx):
            append_line(log_path, ctx.get("reactor_firing_id"))
            return ctx

    return Fed, Batched


def _named(name: str):
    def body(events):
        return events

    body.__name__ = name
    return body


def make_runner(url: str, schema: Optional[str], poll_seconds: float) -> cloaca.DefaultRunner:
    config = cloaca.DefaultRunnerConfig(reactor_poll_interval_seconds=poll_seconds, lease_seconds=1.0)
    if schema is None:
        return cloaca.DefaultRunner.with_config(url, config)
    return cloaca.DefaultRunner(url, _config=config, _schema=schema)


def main() -> None:
    url, schema, prefix, log_path, ready_path = sys.argv[1:6]
    fed, _ = declare(prefix, log_path)
    runner = make_runner(url, None if schema == "-" else schema, 3600)
    runner.subscribe_workflow_to_reactor(fed, f"{prefix}_wf")
    for n in range(FIRES):
        runner.push_event(f"{prefix}_feed", {"n": n})
        while [r["fires"] for r in runner.list_reactors() if r["name"] == fed.NAME] != [n + 1]:
            time.sleep(0.01)
        if n + 1 == DISPATCHED_BY_CHILD:
            runner.poll_reactor_subscriptions_once()
    for event in BATCHED:
        runner.push_event(f"{prefix}_batch", event)
    append_line(ready_path, "ready")
    time.sleep(600)


if __name__ == "__main__":
    main()
