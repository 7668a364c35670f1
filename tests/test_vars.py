"""var / var_or: SPEC §2.6."""

from __future__ import annotations

import pytest

from cloaca._vars import var
from cloaca._vars import var_or


def test_var_reads_prefixed_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOACINA_VAR_api_url", "https://example.test")
    assert var("api_url") == "https://example.test"


def test_var_uses_name_verbatim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOACINA_VAR_Mixed", "m")
    monkeypatch.delenv("CLOACINA_VAR_MIXED", raising=False)
    assert var("Mixed") == "m"
    with pytest.raises(KeyError):
        var("MIXED")


def test_var_unset_raises_key_error_naming_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLOACINA_VAR_missing_one", raising=False)
    with pytest.raises(KeyError) as info:
        var("missing_one")
    message = info.value.args[0]
    assert "'missing_one'" in message
    assert "CLOACINA_VAR_missing_one" in message


def test_var_empty_value_is_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOACINA_VAR_empty", "")
    assert var("empty") == ""
    assert var_or("empty", "fallback") == ""


def test_var_or_returns_value_or_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOACINA_VAR_set", "value")
    monkeypatch.delenv("CLOACINA_VAR_unset", raising=False)
    assert var_or("set", "fallback") == "value"
    assert var_or("unset", "fallback") == "fallback"


def test_unprefixed_variable_is_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("plain_name", "x")
    monkeypatch.delenv("CLOACINA_VAR_plain_name", raising=False)
    assert var_or("plain_name", "fallback") == "fallback"


def test_non_str_name_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="variable name must be a str"):
        var(1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="variable name must be a str"):
        var_or(None, "d")  # type: ignore[arg-type]
