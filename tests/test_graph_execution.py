"""Running computation graphs: order, arguments, routing, skips, errors, `execute` (C6, C7)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable

import pytest

import cloaca

from conftest import unique_name


def _reactor(*accumulators: str) -> type:
    @cloaca.reactor(name=unique_name("reactor"), accumulators=list(accumulators))
    class R:
        pass

    return R


def build(topology: dict, functions: list[Callable[..., Any]], reactor: Any = None) -> cloaca.ComputationGraphBuilder:
    """A registered graph of `topology` whose nodes are `functions` (matched by __name__)."""
    builder = cloaca.ComputationGraphBuilder(unique_name("graph"), graph=topology, reactor=reactor)
    with builder:
        for function in functions:
            cloaca.node(function)
    return builder


def recorder() -> tuple[list[tuple[str, tuple]], Callable[[str, Any], Callable[..., Any]]]:
    """(calls, make): `make(name, result)` is a node named `name` that records its arguments."""
    calls: list[tuple[str, tuple]] = []

    def make(name: str, result: Any = None) -> Callable[..., Any]:
        def function(*args: Any) -> Any:
            calls.append((name, args))
            return result(*args) if callable(result) else result

        function.__name__ = name
        return function

    return calls, make


# ------------------------------------------------------------------ C6.1 order
def test_order_prefers_the_greatest_ready_name() -> None:
    calls, make = recorder()
    r = _reactor("src")
    g = build({"a": {"next": "b"}, "b": {}, "c": {}}, [make("a", 1), make("b", 2), make("c", 3)], r)
    g.execute({})
    assert [name for name, _ in calls] == ["c", "a", "b"]


def test_two_independent_roots_run_greatest_first() -> None:
    calls, make = recorder()
    g = build({"a": {}, "b": {}}, [make("a", "A"), make("b", "B")], _reactor("s"))
    assert g.execute({}) == "A"  # the last terminal that ran
    assert [name for name, _ in calls] == ["b", "a"]


def test_nodes_on_a_cycle_never_run() -> None:
    calls, make = recorder()
    g = build({"x": {"next": "y"}, "y": {"next": "x"}, "z": {}},
              [make("x"), make("y"), make("z", "done")], _reactor("s"))
    assert g.execute({}) == "done"
    assert [name for name, _ in calls] == ["z"]


# ------------------------------------------------------------------ C6.2 arguments
def test_linear_graph_executes() -> None:
    r = _reactor("orderbook")

    def entry(book):
        return {"mid": (book["bid"] + book["ask"]) / 2}

    def enrich(value):
        return dict(value, enriched=True)

    def output(value):
        return {"result": value}

    g = build({"entry": {"inputs": ["orderbook"], "next": "enrich"}, "enrich": {"next": "output"},
               "output": {}}, [entry, enrich, output], r)
    assert g.execute({"orderbook": {"bid": 99.0, "ask": 101.0}}) == {
        "result": {"mid": 100.0, "enriched": True}
    }


def test_inputs_in_declared_order_then_missing_as_none() -> None:
    calls, make = recorder()
    r = _reactor("a", "b", "c")
    g = build({"n": {"inputs": ["c", "a", "b"]}}, [make("n", "ok")], r)
    g.execute({"a": 1, "c": [3], "unused": "x"})
    assert calls == [("n", ([3], 1, None))]


def test_root_without_inputs_outside_context_mode_gets_no_argument() -> None:
    calls, make = recorder()
    g = build({"n": {}}, [make("n", 1)], _reactor("s"))
    g.execute({"s": 5})
    assert calls == [("n", ())]


def test_inputs_come_before_edge_values_and_fan_in_follows_declaration_order() -> None:
    calls, make = recorder()
    r = _reactor("s")
    g = build(
        {"zeta": {"next": "m"}, "alpha": {"next": "m"}, "m": {"inputs": ["s"]}},
        [make("zeta", "Z"), make("alpha", "A"), make("m", "out")], r,
    )
    g.execute({"s": "S"})
    assert calls[-1] == ("m", ("S", "Z", "A"))  # declaration order, not execution order


def test_values_between_nodes_are_the_original_objects_and_inputs_are_copies() -> None:
    marker = object()
    seen: list[Any] = []
    original = {"k": [1, 2]}

    def first(value):
        value["k"].append(3)  # mutates execute()'s copy, not the caller's dict
        return marker

    def second(value):
        seen.append(value)
        return None

    g = build({"first": {"inputs": ["s"], "next": "second"}, "second": {}}, [first, second],
              _reactor("s"))
    g.execute({"s": original})
    assert seen == [marker] and seen[0] is marker
    assert original == {"k": [1, 2]}


def test_trigger_less_execute_passes_the_inputs_as_a_context() -> None:
    def root(ctx):
        return {"got": ctx.get("x"), "kind": type(ctx).__name__}

    g = build({"root": {}}, [root])
    assert g.execute({"x": 5}) == {"got": 5, "kind": "Context"}


def test_trigger_less_root_taking_no_argument_still_runs() -> None:
    def root():
        return "plain"

    assert build({"root": {}}, [root]).execute({"x": 1}) == "plain"


# ------------------------------------------------------------------ C6.3 routing
def _signal_graph(calls_make):
    calls, make = calls_make

    def decision(book):
        spread = book["ask"] - book["bid"]
        if spread < 1:
            return ("Signal", {"spread": spread})
        return ("NoAction", {"reason": "wide spread"})

    g = build(
        {"decision": {"inputs": ["orderbook"], "routes": {"Signal": "signal_handler",
                                                          "NoAction": "audit_logger"}},
         "signal_handler": {}, "audit_logger": {}},
        [decision, make("signal_handler", lambda v: {"executed": True, "spread": v["spread"]}),
         make("audit_logger", lambda v: {"logged": True, "reason": v["reason"]})],
        _reactor("orderbook"),
    )
    return calls, g


def test_routing_graph_executes_signal_path() -> None:
    calls, g = _signal_graph(recorder())
    assert g.execute({"orderbook": {"bid": 100.0, "ask": 100.5}}) == {"executed": True, "spread": 0.5}
    assert [name for name, _ in calls] == ["signal_handler"]


def test_routing_graph_executes_no_action_path() -> None:
    calls, g = _signal_graph(recorder())
    assert g.execute({"orderbook": {"bid": 100.0, "ask": 110.0}}) == {"logged": True, "reason": "wide spread"}
    assert [name for name, _ in calls] == ["audit_logger"]


def test_unknown_variant_skips_every_route_target() -> None:
    calls, make = recorder()
    g = build({"r": {"routes": {"x": "tx", "y": "ty"}}, "tx": {}, "ty": {}},
              [make("r", ("z", 1)), make("tx", "X"), make("ty", "Y")], _reactor("s"))
    assert g.execute({}) is None
    assert [name for name, _ in calls] == ["r"]


@pytest.mark.parametrize(
    ("returned", "text"),
    [(["x", 1], "must return a \\(variant_name, value\\) tuple"), (("x",), "length 1, expected 2"),
     ((1, 2), "first element must be a string")],
)
def test_routing_node_must_return_a_pair(returned: Any, text: str) -> None:
    _, make = recorder()
    g = build({"r": {"routes": {"x": "t"}}, "t": {}}, [make("r", returned), make("t", 1)], _reactor("s"))
    with pytest.raises(ValueError, match=f"graph execution failed: routing node 'r' .*{text}"):
        g.execute({})


def test_target_reached_by_two_variants_of_one_router_is_skipped() -> None:
    calls, make = recorder()
    g = build({"r": {"routes": {"x": "t", "y": "t"}}, "t": {}}, [make("r", ("x", 1)), make("t", "T")],
              _reactor("s"))
    assert g.execute({}) is None
    assert [name for name, _ in calls] == ["r"]


# ------------------------------------------------------------------ C6.4 skips
def test_skips_propagate_downstream_of_an_unselected_branch() -> None:
    calls, make = recorder()
    g = build({"r": {"routes": {"x": "a", "y": "b"}}, "a": {"next": "a2"}, "a2": {}, "b": {}},
              [make("r", ("y", "p")), make("a", "A"), make("a2", "A2"), make("b", "B")], _reactor("s"))
    assert g.execute({}) == "B"
    assert [name for name, _ in calls] == ["r", "b"]


def test_diamond_merge_receives_the_one_delivered_value() -> None:
    calls, make = recorder()
    g = build({"r": {"routes": {"x": "a", "y": "b"}}, "a": {"next": "m"}, "b": {"next": "m"}, "m": {}},
              [make("r", ("x", 1)), make("a", lambda v: v + 10), make("b", lambda v: v + 20),
               make("m", lambda v: {"merged": v})], _reactor("s"))
    assert g.execute({}) == {"merged": 11}
    assert calls[-1] == ("m", (11,))


# ------------------------------------------------------------------ C6.5 / C7 results
def test_execute_returns_only_the_last_terminal() -> None:
    _, make = recorder()
    g = build({"t1": {}, "t2": {}}, [make("t1", "one"), make("t2", "two")], _reactor("s"))
    assert g.execute({}) == "one"  # t2 runs first (greatest name), t1 last


def test_terminal_output_is_converted_to_json() -> None:
    _, make = recorder()
    g = build({"t": {}}, [make("t", {"pair": (1, 2)})], _reactor("s"))
    assert g.execute({}) == {"pair": [1, 2]}


def test_terminal_output_that_is_not_json_fails() -> None:
    _, make = recorder()
    g = build({"t": {}}, [make("t", {1, 2})], _reactor("s"))
    with pytest.raises(ValueError, match="graph execution failed: terminal 't' result conversion failed"):
        g.execute({})


# ------------------------------------------------------------------ C6.6 errors
def test_node_exception_aborts_the_run() -> None:
    calls, make = recorder()

    def middle(v):
        raise ZeroDivisionError("no spread")

    g = build({"a": {"next": "middle"}, "middle": {"next": "z"}, "z": {}},
              [make("a", 1), middle, make("z", "Z")], _reactor("s"))
    with pytest.raises(ValueError, match="^graph execution failed: node 'middle' failed: ZeroDivisionError: no spread"):
        g.execute({})
    assert [name for name, _ in calls] == ["a"]


def test_undeclared_target_fails_when_executed() -> None:
    _, make = recorder()
    g = build({"a": {"next": "ghost"}}, [make("a", 1)], _reactor("s"))
    with pytest.raises(ValueError, match="node 'ghost' not found in topology"):
        g.execute({})


# ------------------------------------------------------------------ C7 execute contract
def test_execute_requires_a_dict_of_json() -> None:
    g = build({"t": {}}, [recorder()[1]("t", 1)], _reactor("s"))
    with pytest.raises(TypeError):
        g.execute([1])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        g.execute({"s": object()})


def test_execute_before_the_with_block_errors() -> None:
    builder = cloaca.ComputationGraphBuilder(unique_name("graph"), graph={"t": {}})
    with pytest.raises(ValueError, match="not built yet"):
        builder.execute({})


def test_execute_runs_whatever_is_registered_under_the_name() -> None:
    name = unique_name("graph")
    first = cloaca.ComputationGraphBuilder(name, graph={"t": {}})
    with first:
        cloaca.node(recorder()[1]("t", "first"))
    second = cloaca.ComputationGraphBuilder(name, graph={"t": {}})
    with second:
        cloaca.node(recorder()[1]("t", "second"))
    assert first.execute({}) == "second"


def test_accumulator_function_feeds_execute_like_tutorial_10() -> None:
    @cloaca.passthrough_accumulator
    def pricing(event):
        return {"mid": (event["bid"] + event["ask"]) / 2}

    @cloaca.reactor(name=unique_name("pricing_reactor"), accumulators=["pricing"])
    class PricingReactor:
        pass

    def quote(p):
        return {"quote": p["mid"]}

    g = build({"quote": {"inputs": ["pricing"]}}, [quote], PricingReactor)
    results = [g.execute({"pricing": pricing({"bid": b, "ask": b + 2})}) for b in (10, 20, 30)]
    assert results == [{"quote": 11.0}, {"quote": 21.0}, {"quote": 31.0}]


# ------------------------------------------------------------------ aexecute
@pytest.mark.asyncio
async def test_aexecute_awaits_async_nodes_and_runs_sync_nodes_in_threads() -> None:
    loop_thread = threading.get_ident()
    threads: dict[str, int] = {}

    async def fetch(book):
        threads["fetch"] = threading.get_ident()
        await asyncio.sleep(0)
        return book["bid"]

    def scale(value):
        threads["scale"] = threading.get_ident()
        return {"scaled": value * 2}

    g = build({"fetch": {"inputs": ["book"], "next": "scale"}, "scale": {}}, [fetch, scale],
              _reactor("book"))
    assert await g.aexecute({"book": {"bid": 21}}) == {"scaled": 42}
    assert threads["fetch"] == loop_thread
    assert threads["scale"] != loop_thread


@pytest.mark.asyncio
async def test_aexecute_reports_node_errors_like_execute() -> None:
    async def broken(_):
        raise RuntimeError("down")

    g = build({"broken": {"inputs": ["s"]}}, [broken], _reactor("s"))
    with pytest.raises(ValueError, match="graph execution failed: node 'broken' failed: RuntimeError: down"):
        await g.aexecute({"s": 1})


def test_sync_execute_runs_an_async_node_to_completion() -> None:
    async def slow(_):
        await asyncio.sleep(0)
        return "awaited"

    assert build({"slow": {"inputs": ["s"]}}, [slow], _reactor("s")).execute({"s": 1}) == "awaited"


def test_missing_input_routes_to_the_audit_branch_like_tutorial_11() -> None:
    def decide(book):
        if book is None:
            return ("NoAction", {"reason": "no order book data"})
        return ("Signal", book)

    def audit(v):
        return {"logged": True, "reason": v["reason"]}

    def execute_signal(v):
        return {"executed": True, "message": f"bought at {v['ask']}"}

    g = build({"decide": {"inputs": ["orderbook"], "routes": {"NoAction": "audit", "Signal": "execute_signal"}},
               "audit": {}, "execute_signal": {}}, [decide, audit, execute_signal], _reactor("orderbook"))
    assert g.execute({}) == {"logged": True, "reason": "no order book data"}
    assert g.execute({"orderbook": {"ask": 101}}) == {"executed": True, "message": "bought at 101"}
