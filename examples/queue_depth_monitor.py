"""The queue-depth example of tutorial 07 (Event Triggers), runnable as shipped.

The trigger and the workflow are the tutorial's code. Added to make it run:
  * `get_queue_depth()`, a simulated queue whose depth follows a fixed script, so that the
    same overflow ({"queue_depth": 150, "threshold": 100}) is seen on three polls in a row;
  * a simulated processing time in `drain_queue`, longer than the poll interval;
  * the poll interval is "1s" instead of the tutorial's "5s", so the demo takes seconds;
  * a `main()` that runs a DefaultRunner for a bounded time and prints what happened.

With `allow_concurrent=True` the three identical fires all start a run while the previous
ones are still draining: the summary shows several runs in flight at once, sharing one
context hash. (With `allow_concurrent=False` only the first of them would run.)

    python examples/queue_depth_monitor.py
"""

import cloaca
import random  # Simulating queue depth check
import threading
import time

# =============================================================================
# A simulated queue (in real code: Redis LLEN, RabbitMQ queue.declare, SQS attributes...)
# =============================================================================

SCRIPTED_DEPTHS = [80, 150, 150, 150, 60, 240]  # one value per poll, then quiet
_polls = 0


def get_queue_depth():
    """The depth seen by the next poll: the script above, then a quiet queue."""
    global _polls
    _polls += 1
    if _polls <= len(SCRIPTED_DEPTHS):
        return SCRIPTED_DEPTHS[_polls - 1]
    return random.randint(0, 50)


# =============================================================================
# The tutorial's trigger and workflow
# =============================================================================

@cloaca.trigger(
    workflow="queue_handler",
    poll_interval="1s",  # the tutorial uses "5s"; shorter keeps the demo short
    allow_concurrent=True  # Allow parallel processing
)
def queue_depth_trigger():
    """Fire when queue depth exceeds threshold."""
    # In real code, check actual queue (Redis, RabbitMQ, etc.)
    queue_depth = get_queue_depth()  # Your queue check function
    threshold = 100

    if queue_depth > threshold:
        ctx = cloaca.Context({
            "queue_depth": queue_depth,
            "threshold": threshold
        })
        return cloaca.TriggerResult.fire(ctx)

    return cloaca.TriggerResult.skip()

# Workflow for queue processing
with cloaca.WorkflowBuilder("queue_handler") as builder:
    builder.description("Handle queue overflow")

    @cloaca.task(id="drain_queue")
    def drain_queue(context):
        depth = context.get("queue_depth", 0)
        print(f"Draining {depth} messages from queue")
        # Process queue messages...
        with _draining_lock:
            _draining[0] += 1
            _peak[0] = max(_peak[0], _draining[0])
        time.sleep(DRAIN_SECONDS)  # simulated work, longer than the poll interval
        with _draining_lock:
            _draining[0] -= 1
        context.set("messages_processed", depth)
        return context


# =============================================================================
# Run it for a bounded time
# =============================================================================

DRAIN_SECONDS = 2.5
RUN_SECONDS = len(SCRIPTED_DEPTHS) + 0.5  # one poll per second
_draining_lock = threading.Lock()
_draining = [0]  # drain_queue runs in progress
_peak = [0]  # most drain_queue runs seen in progress at once


def main():
    print("Queue depth monitor (allow_concurrent=True)")
    runner = cloaca.DefaultRunner(":memory:")
    try:
        schedule = runner.get_trigger_schedule("queue_depth_trigger")
        print(f"Polling every {schedule['poll_interval_ms']}ms, "
              f"allow_concurrent={schedule['allow_concurrent']}")
        time.sleep(RUN_SECONDS)

        # Stop polling, then let the runs in flight finish.
        runner.set_trigger_enabled("queue_depth_trigger", False)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(
            e["status"] in ("Pending", "Running")
            for e in runner.list_executions(workflow_name="queue_handler")
        ):
            time.sleep(0.1)

        history = runner.get_trigger_execution_history("queue_depth_trigger")
        print(f"\nTrigger fired {len(history)} times (oldest first):")
        for fire in reversed(history):
            result = runner.get_execution(fire["workflow_execution_id"])
            print(f"  context {fire['context_hash']}: "
                  f"{result.final_context.get('messages_processed')} messages processed, "
                  f"{result.status}")
        print(f"Most drain_queue runs in flight at once: {_peak[0]}")
    finally:
        runner.shutdown()
    print("\nQueue depth monitor demo complete!")


if __name__ == "__main__":
    main()
