"""Cron scheduling: workflows that run by themselves, on a timetable.

Three schedules with a seconds field (a sixth, leading field) so that the demo shows a
few runs within seconds:

    health_check   every 2 seconds                    "*/2 * * * * *"
    sales_report   every 3 seconds                    "*/3 * * * * *"
    data_sync      an *instance* with parameters,     "1/2 * * * * *"  (odd seconds)
                   source=warehouse-eu, batch_size=500

Each run prints a line as it happens, with the slot it was scheduled for (every run's
context carries `scheduled_time`, `schedule_id`, `schedule_timezone` and
`schedule_expression`; an instance's parameters arrive as plain context keys). After about
7 seconds the schedules are paused, and the demo prints each schedule, its execution
history and the overall statistics, then shuts down.

    python examples/cron_scheduling.py              # about 7 s
    python examples/cron_scheduling.py --seconds 12
"""

import argparse
import asyncio
import os
import tempfile
import time
from datetime import datetime, timezone

import cloaca


def hhmmss(rfc3339: str) -> str:
    """The local wall time (HH:MM:SS) of an RFC 3339 timestamp."""
    return datetime.fromisoformat(rfc3339).astimezone().strftime("%H:%M:%S")


def announce(context, what: str) -> None:
    print(f"  [{hhmmss(context.get('scheduled_time'))}] {what}", flush=True)


# ---------------------------------------------------------------- workflows
with cloaca.WorkflowBuilder("health_check") as builder:
    builder.description("Probe the services the application depends on")

    @cloaca.task()
    async def probe_services(context):
        await asyncio.sleep(0.01)  # stands in for a few HTTP pings
        context.set("services", {"database": "up", "queue": "up", "api": "up"})
        return context

    @cloaca.task(dependencies=[probe_services])
    def report_health(context):
        services = context.get("services")
        healthy = sum(1 for state in services.values() if state == "up")
        announce(context, f"health_check   {healthy}/{len(services)} services up")
        return context


with cloaca.WorkflowBuilder("sales_report") as builder:
    builder.description("Aggregate the latest sales into a short report")

    @cloaca.task()
    def gather_sales(context):
        context.set("sales", [120.0, 75.5, 42.25, 310.0])
        return context

    @cloaca.task(dependencies=[gather_sales])
    def render_report(context):
        sales = context.get("sales")
        announce(context, f"sales_report   {len(sales)} orders, total {sum(sales):.2f}")
        return context


with cloaca.WorkflowBuilder("data_sync") as builder:
    builder.description("Copy a batch of records from a configured source")

    @cloaca.task()
    async def sync_batch(context):
        source, batch_size = context.get("source"), context.get("batch_size")
        await asyncio.sleep(0.01)  # stands in for the copy
        announce(context, f"data_sync      {batch_size} records from {source}")
        return context


# ---------------------------------------------------------------- the demo
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=7.0, help="how long to let the schedules run")
    seconds = parser.parse_args().seconds

    print("Cron Scheduling Demo")
    print("=" * 50)
    started = datetime.now(timezone.utc)

    # The database lives in a temporary directory removed at the end: the demo leaves no files.
    with tempfile.TemporaryDirectory(prefix="cloaca-cron-") as directory, \
            cloaca.DefaultRunner(f"sqlite:///{os.path.join(directory, 'cron.db')}") as runner:
        schedules = {
            "health_check": runner.register_cron_workflow("health_check", "*/2 * * * * *", "UTC"),
            "sales_report": runner.register_cron_workflow("sales_report", "*/3 * * * * *", "UTC"),
            "data_sync": runner.register_workflow_instance(
                "data_sync", "warehouse_eu", "1/2 * * * * *", "UTC",
                cloaca.Context({"source": "warehouse-eu", "batch_size": 500}),
            ),
        }
        print("\nRegistered schedules:")
        for schedule in runner.list_cron_schedules():
            print(f"  {schedule['workflow_name']:<14} {schedule['cron_expression']:<15} "
                  f"next run {hhmmss(schedule['next_run_at'])}")

        print(f"\nRunning for {seconds:g} seconds:")
        time.sleep(seconds)

        for schedule_id in schedules.values():
            runner.set_cron_schedule_enabled(schedule_id, False)
        time.sleep(0.5)  # let the last runs finish
        print("\nSchedules paused.")

        print("\nExecution history:")
        for name, schedule_id in schedules.items():
            schedule = runner.get_cron_schedule(schedule_id)
            history = runner.get_cron_execution_history(schedule_id)
            ran = [row for row in history if row["workflow_execution_id"]]
            slots = ", ".join(hhmmss(row["scheduled_time"]) for row in reversed(ran))
            print(f"  {name:<14} {len(ran)} runs (enabled={schedule['enabled']}, "
                  f"last run {hhmmss(schedule['last_run_at'])}): {slots}")

        stats = runner.get_cron_execution_stats(started)
        print("\nStatistics since the demo started:")
        print(f"  total executions:      {stats['total_executions']}")
        print(f"  successful executions: {stats['successful_executions']}")
        print(f"  lost executions:       {stats['lost_executions']}")
        print(f"  success rate:          {stats['success_rate']:.1f}%")

    print("\nDemo complete!")


if __name__ == "__main__":
    main()
