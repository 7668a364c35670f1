"""Your first cloaca workflow: a small data pipeline, runnable as shipped.

    fetch_orders ──▶ summarize_sales ──┐
          │                            ├──▶ write_report
          └───────▶ rank_customers ────┘

`fetch_orders` is an `async def` task (awaited on the runner's event loop, as real I/O
would be); the others are plain functions (run in worker threads). The two middle tasks
run concurrently; `write_report` receives the merge of both their outputs. The run is
persisted in a SQLite file in a temporary directory.

    python examples/first_workflow.py
"""

import asyncio
import os
import tempfile

import cloaca

# What a real pipeline would fetch from an API or a database.
ORDERS = [
    {"id": 1, "customer": "acme", "amount": 120.00},
    {"id": 2, "customer": "globex", "amount": 75.50},
    {"id": 3, "customer": "acme", "amount": 42.25},
    {"id": 4, "customer": "initech", "amount": 310.00},
    {"id": 5, "customer": "umbrella", "amount": 18.75},
    {"id": 6, "customer": "globex", "amount": 99.99},
]

with cloaca.WorkflowBuilder("first_workflow") as builder:
    builder.description("Fetch orders, summarize them two ways, write a report")

    @cloaca.task()
    async def fetch_orders(context):
        await asyncio.sleep(0.01)  # stands in for an HTTP call or a database query
        context.set("orders", ORDERS)
        return context

    @cloaca.task(dependencies=[fetch_orders])
    def summarize_sales(context):
        orders = context.get("orders")
        context.set("order_count", len(orders))
        context.set("revenue", round(sum(order["amount"] for order in orders), 2))
        return context

    @cloaca.task(dependencies=[fetch_orders])
    def rank_customers(context):
        totals = {}
        for order in context.get("orders"):
            totals[order["customer"]] = totals.get(order["customer"], 0) + order["amount"]
        ranking = sorted(totals.items(), key=lambda item: (-item[1], item[0]))
        context.set("top_customers", [customer for customer, _ in ranking[:3]])
        return context

    @cloaca.task(dependencies=[summarize_sales, rank_customers])
    def write_report(context):
        # Both branches' outputs arrive merged into this task's context.
        currency = context.get("currency")
        context.set("report", [
            f"Orders: {context.get('order_count')}",
            f"Revenue: {context.get('revenue'):.2f} {currency}",
            f"Top customers: {', '.join(context.get('top_customers'))}",
        ])
        return context


def main():
    with tempfile.TemporaryDirectory() as directory:
        database = os.path.join(directory, "first_workflow.db")
        with cloaca.DefaultRunner(f"sqlite:///{database}") as runner:
            result = runner.execute("first_workflow", cloaca.Context({"currency": "EUR"}))

            print(f"Workflow 'first_workflow' finished: {result.status}")
            print("Tasks:")
            for task in result.task_results:
                short_name = task["task_name"].rsplit("::", 1)[-1]
                print(f"  {short_name:<16} {task['status']}")
            print("Report:")
            for line in result.final_context.get("report"):
                print(f"  {line}")
            print(f"Runs recorded in the database: {len(runner.list_executions())}")


if __name__ == "__main__":
    main()
