"""Context: SPEC §2.1 (value model, every member, quirks) and the A3 context hash."""

from __future__ import annotations

import collections
import datetime
import enum
import hashlib
import json

import pytest

from cloaca._context import Context
from cloaca._context import NotJsonError
from cloaca._context import canonical_json
from cloaca._context import context_hash
from cloaca._context import json_copy


class Color(enum.IntEnum):
    RED = 1


class Tag(str):
    pass


# --------------------------------------------------------------------------------------
# construction


def test_empty_constructor_and_none_give_empty_context() -> None:
    assert len(Context()) == 0
    assert len(Context(None)) == 0
    assert Context().to_dict() == {}


def test_constructor_copies_data() -> None:
    data = {"items": [1, 2], "nested": {"a": 1}}
    ctx = Context(data)
    data["items"].append(3)
    data["nested"]["a"] = 99
    data["new"] = 1
    assert ctx.to_dict() == {"items": [1, 2], "nested": {"a": 1}}


@pytest.mark.parametrize("data", [[("a", 1)], "text", 5, ("a",)])
def test_constructor_rejects_non_dict(data: object) -> None:
    with pytest.raises(TypeError, match="must be a dict"):
        Context(data)  # type: ignore[arg-type]


def test_constructor_rejects_non_str_key() -> None:
    with pytest.raises(TypeError, match="Context keys must be str, got int"):
        Context({1: "x"})  # type: ignore[dict-item]


def test_constructor_rejects_invalid_value_naming_key() -> None:
    with pytest.raises(TypeError, match="key 'b' is not JSON-serialisable: bytes"):
        Context({"a": 1, "b": b"raw"})


# --------------------------------------------------------------------------------------
# value model


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -5,
        2**63 - 1,
        -(2**63),
        1.5,
        float("nan"),
        float("inf"),
        "",
        "héllo ✓",
        [],
        [1, "a", None],
        {},
        {"a": {"b": [1, {"c": None}]}},
    ],
)
def test_json_values_are_accepted(value: object) -> None:
    ctx = Context()
    ctx.set("k", value)
    assert "k" in ctx
    stored = ctx.get("k")
    if isinstance(value, float) and value != value:
        assert stored != stored
    else:
        assert stored == value
        assert type(stored) is type(value)


def test_tuples_become_lists_recursively() -> None:
    ctx = Context({"t": (1, (2, 3), [4, (5,)])})
    assert ctx.get("t") == [1, [2, 3], [4, [5]]]
    assert type(ctx.get("t")[1]) is list


def test_subclasses_of_json_types_become_base_types() -> None:
    ctx = Context()
    ctx.set("color", Color.RED)
    ctx.set("tag", Tag("x"))
    ctx.set("ordered", collections.OrderedDict([("a", 1)]))
    assert type(ctx.get("color")) is int and ctx.get("color") == 1
    assert type(ctx.get("tag")) is str and ctx.get("tag") == "x"
    assert type(ctx.get("ordered")) is dict and ctx.get("ordered") == {"a": 1}
    assert ctx.to_json() == '{"color":1,"tag":"x","ordered":{"a":1}}'


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (datetime.datetime(2024, 1, 1), "datetime"),
        (b"bytes", "bytes"),
        ({1, 2}, "set"),
        (object(), "object"),
        (Color, "EnumType" if hasattr(enum, "EnumType") else "EnumMeta"),
    ],
)
def test_non_json_value_raises_type_error_naming_key_and_type(
    value: object, type_name: str
) -> None:
    ctx = Context()
    with pytest.raises(TypeError) as info:
        ctx.set("when", value)
    assert str(info.value) == f"Context value for key 'when' is not JSON-serialisable: {type_name}"
    assert "when" not in ctx


def test_non_json_value_nested_deeply_is_rejected() -> None:
    ctx = Context()
    with pytest.raises(TypeError, match="key 'deep' is not JSON-serialisable: datetime"):
        ctx.set("deep", {"a": [1, {"b": datetime.datetime(2024, 1, 1)}]})


def test_dict_with_non_str_key_is_rejected() -> None:
    ctx = Context()
    with pytest.raises(
        TypeError, match=r"key 'm' is not JSON-serialisable: dict key 1 \(int\) is not a str"
    ):
        ctx.set("m", {"ok": {1: "x"}})


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 2**100])
def test_int_outside_signed_64_bits_is_rejected(value: int) -> None:
    ctx = Context()
    with pytest.raises(
        TypeError, match=f"key 'big' is not JSON-serialisable: int {value} does not fit in 64 bits"
    ):
        ctx.set("big", [value])


def test_circular_value_is_rejected_with_type_error() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(TypeError, match="key 'loop' is not JSON-serialisable: nested too deeply"):
        Context().set("loop", loop)


@pytest.mark.parametrize("key", [1, None, ("a",)])
def test_non_str_key_is_rejected_by_every_writer(key: object) -> None:
    ctx = Context({"a": 1})
    for write in (ctx.set, ctx.insert, ctx.update, ctx.__setitem__):
        with pytest.raises(TypeError, match="Context keys must be str"):
            write(key, 1)  # type: ignore[arg-type]


def test_json_copy_and_not_json_error() -> None:
    original = {"a": (1, [2])}
    copied = json_copy(original)
    assert copied == {"a": [1, [2]]}
    assert copied is not original
    with pytest.raises(NotJsonError) as info:
        json_copy([datetime.time()])
    assert info.value.reason == "time"
    assert isinstance(info.value, TypeError)


# --------------------------------------------------------------------------------------
# members


def test_get_returns_value_or_default() -> None:
    ctx = Context({"a": 1})
    assert ctx.get("a") == 1
    assert ctx.get("missing") is None
    assert ctx.get("missing", "fallback") == "fallback"


def test_get_quirk_present_none_returns_none_not_default() -> None:
    ctx = Context({"n": None})
    assert ctx.get("n", "fallback") is None


def test_set_inserts_and_overwrites() -> None:
    ctx = Context()
    ctx.set("a", 1)
    ctx.set("a", [2])
    assert ctx.to_dict() == {"a": [2]}


def test_insert_new_key_and_duplicate_raises_value_error() -> None:
    ctx = Context()
    ctx.insert("a", 1)
    assert ctx.get("a") == 1
    with pytest.raises(ValueError, match="Key already exists"):
        ctx.insert("a", 2)
    assert ctx.get("a") == 1


def test_insert_duplicate_of_none_valued_key_raises() -> None:
    ctx = Context({"n": None})
    with pytest.raises(ValueError, match="Key already exists: 'n'"):
        ctx.insert("n", 1)


def test_update_existing_and_missing_raises_key_error() -> None:
    ctx = Context({"a": 1})
    ctx.update("a", 2)
    assert ctx.get("a") == 2
    with pytest.raises(KeyError, match="Key not found"):
        ctx.update("missing", 1)
    assert "missing" not in ctx


def test_remove_returns_value_and_missing_returns_none() -> None:
    ctx = Context({"a": [1], "b": 2})
    assert ctx.remove("a") == [1]
    assert "a" not in ctx
    assert ctx.remove("a") is None
    assert ctx.to_dict() == {"b": 2}


def test_to_dict_is_a_deep_copy() -> None:
    ctx = Context({"a": {"b": [1]}})
    out = ctx.to_dict()
    out["a"]["b"].append(2)
    out["c"] = 3
    assert ctx.to_dict() == {"a": {"b": [1]}}


def test_reads_never_alias_stored_data() -> None:
    ctx = Context({"a": {"b": [1]}})
    ctx.get("a")["b"].append(2)
    ctx["a"]["b"].append(3)
    assert ctx.to_dict() == {"a": {"b": [1]}}


def test_stored_values_do_not_alias_caller_objects() -> None:
    value = {"b": [1]}
    ctx = Context()
    ctx.set("a", value)
    value["b"].append(2)
    assert ctx.get("a") == {"b": [1]}


def test_update_from_dict_sets_every_pair() -> None:
    ctx = Context({"a": 1, "b": 2})
    ctx.update_from_dict({"b": 20, "c": 30})
    assert ctx.to_dict() == {"a": 1, "b": 20, "c": 30}


def test_update_from_dict_is_all_or_nothing() -> None:
    ctx = Context({"a": 1})
    with pytest.raises(TypeError, match="key 'bad' is not JSON-serialisable: set"):
        ctx.update_from_dict({"a": 2, "bad": {1}})
    assert ctx.to_dict() == {"a": 1}


def test_update_from_dict_rejects_non_dict() -> None:
    with pytest.raises(TypeError, match="must be a dict"):
        Context().update_from_dict([("a", 1)])  # type: ignore[arg-type]


def test_to_json_is_compact_object_text() -> None:
    ctx = Context({"a": 1, "b": [True, None], "c": "é"})
    text = ctx.to_json()
    assert json.loads(text) == {"a": 1, "b": [True, None], "c": "é"}
    assert " " not in text
    assert "é" in text


def test_from_json_parses_an_object() -> None:
    ctx = Context.from_json('{"a": 1, "b": {"c": [1.5, null]}}')
    assert ctx.to_dict() == {"a": 1, "b": {"c": [1.5, None]}}
    assert isinstance(ctx, Context)


@pytest.mark.parametrize("text", ["[1, 2]", "42", '"s"', "null", "{not json", "", '{"a": 1'])
def test_from_json_rejects_non_object_or_invalid(text: str) -> None:
    with pytest.raises(ValueError, match="Failed to deserialize from JSON"):
        Context.from_json(text)


def test_from_json_rejects_int_beyond_64_bits() -> None:
    with pytest.raises(ValueError, match="Failed to deserialize from JSON"):
        Context.from_json('{"a": 18446744073709551616}')


def test_from_json_rejects_non_str() -> None:
    with pytest.raises(TypeError, match="expects a str"):
        Context.from_json(b"{}")  # type: ignore[arg-type]


def test_json_round_trip() -> None:
    original = Context({"a": [1, {"b": "c"}], "d": None, "e": 2.5})
    assert Context.from_json(original.to_json()).to_dict() == original.to_dict()


def test_len_and_contains() -> None:
    ctx = Context({"a": 1, "n": None})
    assert len(ctx) == 2
    assert "a" in ctx
    assert "n" in ctx  # a key holding None counts as present
    assert "z" not in ctx


def test_getitem_returns_value() -> None:
    assert Context({"a": [1]})["a"] == [1]
    assert Context({"f": False})["f"] is False
    assert Context({"z": 0})["z"] == 0


def test_getitem_missing_raises_key_error_with_message() -> None:
    with pytest.raises(KeyError) as info:
        Context()["nope"]
    assert info.value.args[0] == "Key not found: 'nope'"


def test_getitem_quirk_none_value_raises_key_error() -> None:
    with pytest.raises(KeyError) as info:
        Context({"n": None})["n"]
    assert info.value.args[0] == "Key not found: 'n'"


def test_setitem_is_set() -> None:
    ctx = Context({"a": 1})
    ctx["a"] = 2
    ctx["b"] = (3,)
    assert ctx.to_dict() == {"a": 2, "b": [3]}
    with pytest.raises(TypeError, match="key 'c' is not JSON-serialisable"):
        ctx["c"] = object()


def test_delitem_removes_and_missing_raises_key_error() -> None:
    ctx = Context({"a": 1, "n": None})
    del ctx["a"]
    del ctx["n"]
    assert len(ctx) == 0
    with pytest.raises(KeyError) as info:
        del ctx["a"]
    assert info.value.args[0] == "Key not found: 'a'"


def test_repr_is_context_of_json_text() -> None:
    assert repr(Context()) == "Context({})"
    assert repr(Context({"a": [1, None]})) == 'Context({"a":[1,null]})'


def test_no_iteration_mapping_views_copy_or_value_equality() -> None:
    ctx = Context({"a": 1})
    with pytest.raises(TypeError):
        iter(ctx)
    for name in ("keys", "items", "values", "copy"):
        assert not hasattr(ctx, name)
    assert ctx != Context({"a": 1})
    assert ctx == ctx


# --------------------------------------------------------------------------------------
# engine-internal helpers


def test_from_trusted_wraps_without_copying() -> None:
    data = {"a": [1]}
    ctx = Context._from_trusted(data)
    assert ctx._data_view() is data
    data["b"] = 2
    assert ctx.to_dict() == {"a": [1], "b": 2}


def test_data_view_is_the_internal_dict() -> None:
    ctx = Context({"a": 1})
    view = ctx._data_view()
    assert view == {"a": 1}
    assert view is ctx._data_view()


# --------------------------------------------------------------------------------------
# canonical JSON and context hash (SPEC A3)


def test_canonical_json_sorts_keys_compactly_and_keeps_unicode() -> None:
    assert (
        canonical_json({"b": 1, "a": {"d": [1, 2], "c": "é"}}) == '{"a":{"c":"é","d":[1,2]},"b":1}'
    )


def test_context_hash_is_first_16_hex_of_sha256_of_canonical_json() -> None:
    data = {"b": 1, "a": "x"}
    expected = hashlib.sha256('{"a":"x","b":1}'.encode()).hexdigest()[:16]
    assert context_hash(data) == expected
    assert len(expected) == 16


def test_context_hash_ignores_key_order_and_distinguishes_values() -> None:
    assert context_hash({"a": 1, "b": 2}) == context_hash({"b": 2, "a": 1})
    assert context_hash({"a": 1}) != context_hash({"a": 2})
    assert context_hash({"a": 1}) != context_hash({"a": 1.0})
