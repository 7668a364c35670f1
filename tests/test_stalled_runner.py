"""A runner that stalls past its lease on a shared SQLite file loses its run (SPEC A4).

Two runners on one database file, each with its own loop thread, as two processes would
be. The first blocks its whole loop inside a task (no lease renewal) until the second has
taken the run over and re-run that task; when it wakes, its late writes are refused and its
`execute()` returns the run as the second runner ended it.
"""

from __future__ import annotations

import threading

import cloaca
from cloaca import Context, DefaultRunner, DefaultRunnerConfig

from support import poll_until

WORKFLOW = "stalled_runner_wf"
calls: list[int] = []
second_attempt_started = threading.Event()

with cloaca.WorkflowBuilder(WORKFLOW):

    @cloaca.task(id="stall")
    async def _stall(context: Context) -> Context:
        calls.append(threading.get_ident())
        if len(calls) == 1:
            second_attempt_started.wait(60)  # blocks the loop: no lease renewal
            context.set("by", "first attempt")
        else:
            second_attempt_started.set()
            context.set("by", "second attempt")
        return context

    @cloaca.task(id="after", dependencies=["stall"])
    async def _after(context: Context) -> Context:
        context.set("after_saw", context.get("by"))
        return context


def test_a_stalled_runner_loses_its_run_to_the_runner_that_took_it_over(tmp_path):
    url = str(tmp_path / "shared.db")
    config = DefaultRunnerConfig(lease_seconds=0.5, enable_cron_scheduling=False)
    stalled = DefaultRunner(url, _config=config)
    rescuer = DefaultRunner(url, _config=config)
    try:
        result = stalled.execute(WORKFLOW, Context({}))
        assert calls == [stalled._bridge.loop_thread_id, rescuer._bridge.loop_thread_id]
        assert result.status == "Completed", result.error_message
        assert result.final_context.get("after_saw") == "second attempt"
        attempts = {t["task_name"].rsplit("::", 1)[-1]: t["attempt_count"] for t in result.task_results}
        assert attempts == {"stall": 2, "after": 1}
        # The stalled runner's late result changed nothing once its attempt ended.
        poll_until(lambda: not stalled._engine._bodies, "the stalled attempt to end")
        stored = rescuer.get_execution(result.execution_id)
        assert stored.final_context.get("after_saw") == "second attempt"
        assert {t["task_name"].rsplit("::", 1)[-1]: t["attempt_count"] for t in stored.task_results} == attempts
    finally:
        second_attempt_started.set()
        stalled.shutdown()
        rescuer.shutdown()
