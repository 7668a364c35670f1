"""Helpers for testing workflows with pytest (SPEC A14).

Installing cloaca also installs a pytest plugin (module `cloaca_pytest`) with the fixtures
`cloaca_runner`, `cloaca_registry` and `cloaca_clock`; the functions here work in any test:

- `poll_trigger(name)` / `apoll_trigger`: poll a registered trigger once, without a runner;
- `run_task(workflow_name, task_id, context)` / `arun_task`: run one task body once;
- `FakeClock`: a clock for a runner's cron scheduler that moves only when the test says so;
- `wait_for_executions(runner, ...)` / `await_for_executions`: wait until runs exist;
- `isolated_registry()`: forget the declarations made inside a `with` block.
"""

from ._clock import FakeClock
from ._direct import apoll_trigger, arun_task, poll_trigger, run_task
from ._isolation import isolated_registry
from ._waiting import await_for_executions, wait_for_executions

__all__ = [
    "FakeClock",
    "apoll_trigger",
    "arun_task",
    "await_for_executions",
    "isolated_registry",
    "poll_trigger",
    "run_task",
    "wait_for_executions",
]
