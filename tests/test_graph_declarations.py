"""Declaring reactors, accumulators and computation graphs (GRAPHS.md C1–C5)."""

from __future__ import annotations

import pytest

import cloaca
from cloaca._graphs import get_graph
from cloaca._reactors.definitions import get_accumulator, get_reactor, parse_duration

from conftest import unique_name


# ------------------------------------------------------------------ C1.1 public names
def test_every_graph_name_is_a_cloaca_attribute() -> None:
    names = [
        "reactor", "ComputationGraphBuilder", "node", "passthrough_accumulator",
        "stream_accumulator", "polling_accumulator", "batch_accumulator", "state_accumulator",
        "boundary_schema",
    ]
    missing = [n for n in names if not hasattr(cloaca, n)]
    assert missing == []
    assert set(names) <= set(cloaca.__all__)


# ------------------------------------------------------------------ C2 reactor
def test_reactor_decorator_sets_class_attrs_and_registers() -> None:
    name = unique_name("reactor")
    accumulators = ["alpha", "beta"]

    @cloaca.reactor(name=name, accumulators=accumulators, mode="when_all")
    class Pricing:
        pass

    assert Pricing.NAME == name
    assert Pricing.ACCUMULATORS == ["alpha", "beta"]
    assert Pricing.ACCUMULATORS is not accumulators
    assert Pricing.REACTION_MODE == "when_all"
    registered = get_reactor(name)
    assert registered is not None
    assert registered.accumulators == ("alpha", "beta")
    assert registered.mode == "when_all"


def test_reactor_mode_defaults_to_when_any() -> None:
    @cloaca.reactor(name=unique_name("reactor"), accumulators=["a"])
    class R:
        pass

    assert R.REACTION_MODE == "when_any"


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({"name": "", "accumulators": ["a"]}, ValueError, "'name' cannot be empty"),
        ({"name": "r", "accumulators": []}, ValueError, "cannot be empty"),
        ({"name": "r", "accumulators": ["a", "b", "a"]}, ValueError, "listed more than once"),
        ({"name": "r", "accumulators": ["a"], "mode": "sometimes"}, ValueError, "unknown mode"),
        ({"name": "r", "accumulators": "a"}, TypeError, "accumulators"),
    ],
)
def test_reactor_factory_rejects_bad_arguments(kwargs: dict, error: type, text: str) -> None:
    with pytest.raises(error, match=text):
        cloaca.reactor(**kwargs)


def test_reactor_arguments_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        cloaca.reactor("r", ["a"])  # type: ignore[misc]


@pytest.mark.parametrize("target", [lambda: None, object()])
def test_reactor_rejects_non_class_target(target: object) -> None:
    decorate = cloaca.reactor(name=unique_name("reactor"), accumulators=["a"])
    with pytest.raises(TypeError, match="must be applied to a class"):
        decorate(target)  # type: ignore[arg-type]


# ------------------------------------------------------------------ C3 accumulators
def test_passthrough_accumulator_decorator() -> None:
    def passthrough_src(event):
        return event

    assert cloaca.passthrough_accumulator(passthrough_src) is passthrough_src
    found = get_accumulator("passthrough_src")
    assert (found.kind, found.config, found.function) == ("passthrough", {}, passthrough_src)
    assert passthrough_src({"x": 1}) == {"x": 1}  # still directly callable


def test_stream_accumulator_decorator() -> None:
    @cloaca.stream_accumulator(type="kafka", topic="ticks", group="g1")
    def stream_src(event):
        return event

    found = get_accumulator("stream_src")
    assert found.kind == "stream"
    assert found.config == {"type": "kafka", "topic": "ticks", "group": "g1"}

    @cloaca.stream_accumulator(type="kafka", topic="ticks")
    def stream_src_nogroup(event):
        return event

    assert get_accumulator("stream_src_nogroup").config == {"type": "kafka", "topic": "ticks"}


def test_polling_accumulator_decorator() -> None:
    @cloaca.polling_accumulator(interval="250ms")
    def polling_src():
        return {"v": 1}

    found = get_accumulator("polling_src")
    assert (found.kind, found.config) == ("polling", {"interval": "250ms"})
    assert polling_src() == {"v": 1}


def test_batch_accumulator_decorator() -> None:
    @cloaca.batch_accumulator(flush_interval="1s", max_buffer_size=10)
    def batch_src(events):
        return events

    found = get_accumulator("batch_src")
    assert (found.kind, found.config) == ("batch", {"flush_interval": "1s", "max_buffer_size": "10"})

    @cloaca.batch_accumulator(flush_interval="2s")
    def batch_src_unbounded(events):
        return events

    assert get_accumulator("batch_src_unbounded").config == {"flush_interval": "2s"}


def test_state_accumulator_decorator_registers_state_with_capacity() -> None:
    @cloaca.state_accumulator(capacity=5)
    def state_src(window):
        return window

    found = get_accumulator("state_src")
    assert (found.kind, found.config, found.capacity) == ("state", {"capacity": "5"}, 5)


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: cloaca.polling_accumulator(), TypeError),  # type: ignore[call-arg]
        (lambda: cloaca.polling_accumulator(interval=5), TypeError),  # type: ignore[arg-type]
        (lambda: cloaca.stream_accumulator(type="kafka"), TypeError),  # type: ignore[call-arg]
        (lambda: cloaca.batch_accumulator(flush_interval="1s", max_buffer_size=-1), OverflowError),
        (lambda: cloaca.batch_accumulator(flush_interval="1s", max_buffer_size="3"), TypeError),  # type: ignore[arg-type]
        (lambda: cloaca.state_accumulator(capacity="3"), TypeError),  # type: ignore[arg-type]
        (lambda: cloaca.state_accumulator(capacity=True), TypeError),
    ],
)
def test_accumulator_decorators_reject_bad_configuration(make, error: type) -> None:
    with pytest.raises(error):
        make()


def test_undecorated_accumulator_name_is_a_passthrough() -> None:
    assert get_accumulator(unique_name("never_decorated")).kind == "passthrough"


def test_boundary_schema_stacks_above_an_accumulator() -> None:
    @cloaca.boundary_schema(price=float)
    @cloaca.passthrough_accumulator
    def schema_src(event):
        return event

    assert schema_src(3) == 3
    assert get_accumulator("schema_src").kind == "passthrough"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), (" 5s ", 5.0), ("2m", 120.0), ("1h", 3600.0), ("5", None), ("1.5s", None),
     ("fast", None)],
)
def test_duration_strings(text: str, seconds) -> None:
    assert parse_duration(text) == seconds


# ------------------------------------------------------------------ C4 builder
def _reactor(accumulators: list[str]) -> type:
    @cloaca.reactor(name=unique_name("reactor"), accumulators=accumulators)
    class R:
        pass

    return R


def test_bundled_react_kwarg_rejected() -> None:
    with pytest.raises(ValueError, match="CLOACI-I-0101"):
        cloaca.ComputationGraphBuilder("g", graph={"a": {}}, react={"mode": "when_any"})


def test_reactor_kwarg_must_be_decorated_class() -> None:
    class Plain:
        pass

    with pytest.raises(TypeError, match="@cloaca.reactor"):
        cloaca.ComputationGraphBuilder("g", graph={"a": {}}, reactor=Plain)


def test_trigger_less_graph_builds() -> None:
    name = unique_name("graph")
    builder = cloaca.ComputationGraphBuilder(name, graph={"only": {}})
    assert builder.NAME == name
    assert repr(builder) == f"ComputationGraphBuilder(name='{name}', nodes=1)"
    with builder as entered:
        assert entered is builder

        @cloaca.node
        def only(ctx):
            return 1

    graph = get_graph(name)
    assert graph is not None and graph.reactor is None and list(graph.functions) == ["only"]


@pytest.mark.parametrize(
    ("topology", "error"),
    [
        ({"a": {"inputs": ("x",)}}, TypeError),
        ({"a": {"inputs": "x"}}, TypeError),
        ({"a": ["not", "a", "dict"]}, TypeError),
        ({"a": {"routes": ["b"]}}, TypeError),
        ({"a": {"next": 3}}, TypeError),
    ],
)
def test_malformed_topology_rejected(topology: dict, error: type) -> None:
    with pytest.raises(error, match="'a'"):
        cloaca.ComputationGraphBuilder("g", graph=topology)


def test_graph_must_be_a_dict() -> None:
    with pytest.raises(TypeError, match="'graph' must be a dict"):
        cloaca.ComputationGraphBuilder("g", graph=[("a", {})])  # type: ignore[arg-type]


def test_routes_win_over_next() -> None:
    name = unique_name("graph")
    with cloaca.ComputationGraphBuilder(name, graph={"r": {"routes": {"x": "t"}, "next": "u"},
                                                     "t": {}, "u": {}}):
        @cloaca.node
        def r(ctx):
            return ("x", 1)

        @cloaca.node
        def t(v):
            return v

        @cloaca.node
        def u(ctx):
            return "u"

    assert get_graph(name).nodes["r"].kind == "routing"


# ------------------------------------------------------------------ C5 node / with block
def test_node_outside_builder_errors() -> None:
    with pytest.raises(ValueError, match="inside a ComputationGraphBuilder"):
        @cloaca.node
        def stray():
            return 1


def test_node_returns_function_unchanged() -> None:
    name = unique_name("graph")
    with cloaca.ComputationGraphBuilder(name, graph={"same": {}}):
        def same(ctx):
            return 7

        assert cloaca.node(same) is same


def test_missing_node_errors() -> None:
    name = unique_name("graph")
    with pytest.raises(AttributeError, match=f"{name}.*'b'"):
        with cloaca.ComputationGraphBuilder(name, graph={"a": {"next": "b"}, "b": {}}):
            @cloaca.node
            def a(ctx):
                return 1
    assert get_graph(name) is None


def test_orphan_node_errors() -> None:
    name = unique_name("graph")
    with pytest.raises(ValueError, match="'extra'"):
        with cloaca.ComputationGraphBuilder(name, graph={"a": {}}):
            @cloaca.node
            def a(ctx):
                return 1

            @cloaca.node
            def extra():
                return 2
    assert get_graph(name) is None


def test_trigger_less_rejects_cache_inputs() -> None:
    with pytest.raises(ValueError, match="trigger-less"):
        with cloaca.ComputationGraphBuilder(unique_name("graph"), graph={"a": {"inputs": ["src"]}}):
            @cloaca.node
            def a(src):
                return src


def test_split_form_unknown_accumulator_rejected() -> None:
    r = _reactor(["known"])
    with pytest.raises(ValueError, match=f"(?s)'unknown'.*{r.NAME}"):
        with cloaca.ComputationGraphBuilder(unique_name("graph"), graph={"a": {"inputs": ["unknown"]}},
                                            reactor=r):
            @cloaca.node
            def a(src):
                return src


def test_body_error_propagates_and_registers_nothing() -> None:
    name = unique_name("graph")
    with pytest.raises(KeyError, match="boom"):
        with cloaca.ComputationGraphBuilder(name, graph={"a": {}}):
            raise KeyError("boom")
    assert get_graph(name) is None
    with pytest.raises(ValueError, match="inside a ComputationGraphBuilder"):
        cloaca.node(lambda: None)  # the active slot was cleared


def test_reentering_a_builder_rebuilds_and_reregisters() -> None:
    name = unique_name("graph")
    builder = cloaca.ComputationGraphBuilder(name, graph={"root": {}})
    with builder:
        @cloaca.node
        def root(ctx):
            return "first"

    assert builder.execute({}) == "first"
    with builder:
        @cloaca.node
        def root(ctx):  # noqa: F811 - the redefinition is the point
            return "second"

    assert builder.execute({}) == "second"


def test_same_node_name_twice_last_wins() -> None:
    name = unique_name("graph")
    builder = cloaca.ComputationGraphBuilder(name, graph={"n": {}})
    with builder:
        @cloaca.node
        def n(ctx):
            return "old"

        @cloaca.node
        def n(ctx):  # noqa: F811
            return "new"

    assert builder.execute({}) == "new"
