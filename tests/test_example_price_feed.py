"""examples/price_feed.py runs as shipped and prints what it should (GRAPHS.md issue item 4)."""

from __future__ import annotations

EXAMPLE_SCRIPTS = ("price_feed",)  # started with the other examples (example_support.py)

EXPECTED = """\
Price feed
  graph: ok     trade 100.50 vs 100.00 (+50 bps)
  graph: ALERT  trade 103.00 vs 100.00 (+300 bps)
  graph: ok     trade 99.00 vs 100.00 (-100 bps)
  graph: ALERT  trade 104.50 vs 100.00 (+450 bps)
Reactor fired 4 times; handle_alert ran 2 times (when: payload.trades.price > payload.reference_price.price * 1.02):
  escalated trade 103.00 on XNYS
  escalated trade 104.50 on XNYS
"""


def test_price_feed_example_routes_and_filters(example_runs) -> None:
    result = example_runs.finished("price_feed", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout == EXPECTED
