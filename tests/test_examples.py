"""The examples in examples/ run as shipped (`python examples/<name>.py` from the repository
root) and print what they should."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_SCRIPTS = ("first_workflow",)  # started with the other examples (example_support.py)


def module_constant(path: Path, name: str):
    """A literal assigned at module level in `path`, read without running the module."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} not found in {path}")


def test_first_workflow_example(example_runs):
    proc = example_runs.finished("first_workflow")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()

    orders = module_constant(REPO / "examples" / "first_workflow.py", "ORDERS")
    totals: dict[str, float] = {}
    for order in orders:
        totals[order["customer"]] = totals.get(order["customer"], 0) + order["amount"]
    top = sorted(totals, key=lambda c: (-totals[c], c))[:3]
    revenue = sum(order["amount"] for order in orders)

    assert lines[0] == "Workflow 'first_workflow' finished: Completed"
    assert lines[1] == "Tasks:"
    task_lines = sorted(line.split() for line in lines[2:6])
    assert task_lines == [
        ["fetch_orders", "Completed"],
        ["rank_customers", "Completed"],
        ["summarize_sales", "Completed"],
        ["write_report", "Completed"],
    ]
    assert lines[6:] == [
        "Report:",
        f"  Orders: {len(orders)}",
        f"  Revenue: {revenue:.2f} EUR",
        f"  Top customers: {', '.join(top)}",
        "Runs recorded in the database: 1",
    ]
