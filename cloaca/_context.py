"""`Context`: the JSON-valued key/value bag that tasks pass along a workflow."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Optional

from ._secrets import NOT_CONFIGURED, SecretResolver, aliased, field_of

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


class NotJsonError(TypeError):
    """A value outside the JSON value model; `reason` says which part and why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def json_copy(value: Any) -> Any:
    """A deep copy of `value` as plain JSON types; `NotJsonError` if it is not a JSON value.

    Tuples become lists and subclasses of the JSON types become the base types.
    """
    try:
        return _checked_copy(value)
    except RecursionError:
        raise NotJsonError("nested too deeply (or circular)") from None


def _checked_copy(value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is float or kind is bool or value is None:
        return value
    if kind is int:
        if _INT64_MIN <= value <= _INT64_MAX:
            return value
        raise NotJsonError(f"int {value} does not fit in 64 bits")
    if kind is dict:
        return {_checked_key(k): _checked_copy(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [_checked_copy(item) for item in value]
    return _checked_subclass_copy(value)


def _checked_subclass_copy(value: Any) -> Any:
    # Slow path: subclasses of the JSON types (IntEnum, OrderedDict, ...) become base types.
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return _checked_copy(int(value))
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, dict):
        return {_checked_key(k): _checked_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_checked_copy(item) for item in value]
    raise NotJsonError(type(value).__name__)


def _checked_key(key: Any) -> str:
    if type(key) is str:
        return key
    if isinstance(key, str):
        return str.__str__(key)
    raise NotJsonError(f"dict key {key!r} ({type(key).__name__}) is not a str")


def _clone(value: Any) -> Any:
    """A deep copy of already-validated JSON data."""
    kind = type(value)
    if kind is dict:
        return {k: _clone(v) for k, v in value.items()}
    if kind is list:
        return [_clone(item) for item in value]
    return value


def _stored_value(key: str, value: Any) -> Any:
    try:
        return json_copy(value)
    except NotJsonError as exc:
        raise TypeError(
            f"Context value for key {key!r} is not JSON-serialisable: {exc.reason}"
        ) from None


def _checked_context_key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"Context keys must be str, got {type(key).__name__}")
    return str.__str__(key)


def _checked_items(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise TypeError(f"Context data must be a dict, got {type(data).__name__}")
    return {
        checked: _stored_value(checked, value)
        for checked, value in ((_checked_context_key(k), v) for k, v in data.items())
    }


def _json_text(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _key_not_found(key: Any) -> KeyError:
    return KeyError(f"Key not found: '{key}'")


class Context:
    """A mutable mapping from `str` keys to JSON values; reads never alias stored data."""

    __slots__ = ("_data", "_secrets")
    __iter__ = None  # not iterable, as upstream (no keys()/items() either)

    def __init__(self, data: Optional[dict[str, Any]] = None) -> None:
        self._data: dict[str, Any] = {} if data is None else _checked_items(data)
        self._secrets: Optional[SecretResolver] = None

    @classmethod
    def _from_trusted(cls, data: dict[str, Any], secrets: Optional[SecretResolver] = None) -> Context:
        """Wrap an already-validated dict without copying it (engine-internal); `secrets` is
        the resolver `secret()` uses (never part of the data)."""
        context = cls.__new__(cls)
        context._data = data
        context._secrets = secrets
        return context

    # ------------------------------------------------------------------ secrets
    def secret(self, name: str) -> dict[str, str]:
        """The fields of secret `name` (through the runner's secret source)."""
        return self._resolver().resolve(aliased(self._data, name))

    def secret_field(self, name: str, field: str) -> str:
        """One field of secret `name`."""
        resolved = aliased(self._data, name)
        return field_of(resolved, self._resolver().resolve(resolved), field)

    async def asecret(self, name: str) -> dict[str, str]:
        """Async `secret`, for `async def` tasks and nodes."""
        return await self._resolver().aresolve(aliased(self._data, name))

    async def asecret_field(self, name: str, field: str) -> str:
        """Async `secret_field`."""
        resolved = aliased(self._data, name)
        return field_of(resolved, await self._resolver().aresolve(resolved), field)

    def _resolver(self) -> SecretResolver:
        if self._secrets is None:
            raise RuntimeError(NOT_CONFIGURED)
        return self._secrets

    def _data_view(self) -> dict[str, Any]:
        """The internal dict itself, for engine-internal read-only use."""
        return self._data

    def get(self, key: str, default: Any = None) -> Any:
        """The value under `key` if present (even if it is None), else `default`."""
        data = self._data
        if key in data:
            return _clone(data[key])
        return default

    def set(self, key: str, value: Any) -> None:
        """Insert or overwrite `key`."""
        key = _checked_context_key(key)
        self._data[key] = _stored_value(key, value)

    def insert(self, key: str, value: Any) -> None:
        """Add a new `key`; ValueError if it already exists."""
        key = _checked_context_key(key)
        if key in self._data:
            raise ValueError(f"Key already exists: '{key}'")
        self._data[key] = _stored_value(key, value)

    def update(self, key: str, value: Any) -> None:
        """Overwrite an existing `key`; KeyError if it is missing."""
        key = _checked_context_key(key)
        if key not in self._data:
            raise _key_not_found(key)
        self._data[key] = _stored_value(key, value)

    def remove(self, key: str) -> Optional[Any]:
        """Remove `key` and return its value; None if it was missing."""
        return _clone(self._data.pop(key, None))

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the data as plain Python objects."""
        copied: dict[str, Any] = _clone(self._data)
        return copied

    def update_from_dict(self, data: dict[str, Any]) -> None:
        """`set` every pair of `data`; nothing is stored if one value is invalid."""
        self._data.update(_checked_items(data))

    def to_json(self) -> str:
        """The data as JSON object text."""
        return _json_text(self._data)

    @staticmethod
    def from_json(json_str: str) -> Context:
        """A Context parsed from JSON object text; ValueError if it is not a valid JSON object."""
        if not isinstance(json_str, str):
            raise TypeError(f"Context.from_json expects a str, got {type(json_str).__name__}")
        try:
            data = json.loads(json_str)
        except ValueError as exc:
            raise ValueError(f"Failed to deserialize from JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(
                f"Failed to deserialize from JSON: expected an object, got {type(data).__name__}"
            )
        try:
            return Context._from_trusted(_checked_items(data))
        except TypeError as exc:
            raise ValueError(f"Failed to deserialize from JSON: {exc}") from None

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __getitem__(self, key: str) -> Any:
        value = self._data.get(key)
        if value is None:  # upstream quirk: a key holding None reads as missing
            raise _key_not_found(key)
        return _clone(value)

    def __setitem__(self, key: str, value: Any) -> None:
        self.set(key, value)

    def __delitem__(self, key: str) -> None:
        if key not in self._data:
            raise _key_not_found(key)
        del self._data[key]

    def __repr__(self) -> str:
        return f"Context({self.to_json()})"


def canonical_json(data: dict[str, Any]) -> str:
    """Canonical JSON text of `data`: sorted keys, compact separators, raw UTF-8."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def context_hash(data: dict[str, Any]) -> str:
    """First 16 hex digits of the SHA-256 of `canonical_json(data)` (trigger de-duplication)."""
    return hashlib.sha256(canonical_json(data).encode("utf-8")).hexdigest()[:16]
