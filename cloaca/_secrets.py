"""Secrets for `Context.secret` (GRAPHS.md C10): the runner's source, wrapped in a resolver.

`DefaultRunner(..., secrets=...)` takes: None (environment variables `CLOACINA_SECRETS_<name>`
holding a JSON object of string fields), a mapping name -> fields, a callable name -> fields
or None, an object with `resolve(name)` and/or `async aresolve(name)`, or False (no secrets:
every lookup raises RuntimeError, as upstream's embedded runner).
"""

from __future__ import annotations

import inspect
import json
import os
import re
from collections.abc import Mapping
from typing import Any, Callable, Iterable, Optional

import anyio
import anyio.to_thread

from ._bridge import from_worker_thread

SECRET_REFS_KEY = "__cloacina_secret_refs__"
ENV_PREFIX = "CLOACINA_SECRETS_"

NOT_CONFIGURED = "secrets backend not configured for this execution scope"


class EnvironmentSecrets:
    """Secrets from environment variables `CLOACINA_SECRETS_<name>` (JSON objects)."""

    def resolve(self, name: str) -> Optional[dict[str, str]]:
        for variable in (ENV_PREFIX + name, ENV_PREFIX + re.sub(r"[^0-9A-Za-z]", "_", name).upper()):
            text = os.environ.get(variable)
            if text is not None:
                try:
                    return json.loads(text)  # type: ignore[no-any-return]
                except ValueError as exc:
                    raise RuntimeError(f"secret backend error: {variable} is not JSON ({exc})") from None
        return None


class SecretResolver:
    """Resolves names through a source; checks grants and the shape of what comes back."""

    def __init__(self, source: Any, granted: Optional[Iterable[str]] = None) -> None:
        self._sync, self._async = _lookups(source)
        self._granted = None if granted is None else frozenset(granted)

    def resolve(self, name: str) -> dict[str, str]:
        """The fields of secret `name` (blocking; from a worker thread an async source is run
        on the loop)."""
        self._check_granted(name)
        if self._sync is not None:
            return _checked(name, _guarded(self._sync, name))
        assert self._async is not None
        try:
            found, error = from_worker_thread(_outcome, self._async, name)
        except RuntimeError as exc:  # not in a worker thread of the loop
            raise RuntimeError(
                "secret backend error: this secret source is async; use 'await ctx.asecret(...)' "
                f"({exc})"
            ) from None
        if error is not None:
            raise error
        return _checked(name, found)

    async def aresolve(self, name: str) -> dict[str, str]:
        """The fields of secret `name`; a sync source runs in a worker thread."""
        self._check_granted(name)
        if self._async is not None:
            return _checked(name, await _aguarded(self._async, name))
        assert self._sync is not None
        return _checked(name, await anyio.to_thread.run_sync(_guarded, self._sync, name))

    def _check_granted(self, name: str) -> None:
        if self._granted is not None and name not in self._granted:
            raise PermissionError(f"secret not granted: {name}")


def resolver_for(source: Any, granted: Optional[Iterable[str]] = None) -> Optional[SecretResolver]:
    """The resolver a runner attaches to contexts, or None for `secrets=False`."""
    if source is False:
        return None
    return SecretResolver(EnvironmentSecrets() if source is None else source, granted)


def _lookups(source: Any) -> tuple[Optional[Callable[[str], Any]], Optional[Callable[[str], Any]]]:
    if isinstance(source, Mapping):
        return source.get, None
    sync = getattr(source, "resolve", None)
    asynchronous = getattr(source, "aresolve", None)
    if sync is not None or asynchronous is not None:
        return sync, asynchronous
    if callable(source):
        return (None, source) if inspect.iscoroutinefunction(source) else (source, None)
    raise TypeError(
        "secrets= must be None (environment variables), False, a mapping of name -> fields, a "
        f"callable, or an object with resolve()/aresolve(); got {type(source).__name__}"
    )


def _backend_error(exc: Exception) -> Exception:
    """What a source's exception becomes: not-found and not-granted kept, others wrapped."""
    if isinstance(exc, (KeyError, PermissionError)):
        return exc
    if isinstance(exc, RuntimeError) and str(exc).startswith("secret backend error"):
        return exc
    return RuntimeError(f"secret backend error: {type(exc).__name__}: {exc}")


def _guarded(lookup: Callable[[str], Any], name: str) -> Any:
    try:
        return lookup(name)
    except Exception as exc:
        raise _backend_error(exc) from None


async def _aguarded(lookup: Callable[[str], Any], name: str) -> Any:
    try:
        return await lookup(name)
    except Exception as exc:
        raise _backend_error(exc) from None


async def _outcome(lookup: Callable[[str], Any], name: str) -> tuple[Any, Optional[Exception]]:
    try:
        return await _aguarded(lookup, name), None
    except Exception as exc:
        return None, exc


def _checked(name: str, found: Any) -> dict[str, str]:
    if found is None:
        raise KeyError(f"secret not found: {name}")
    if not isinstance(found, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in found.items()
    ):
        raise RuntimeError(
            f"secret backend error: secret '{name}' must be an object of string fields"
        )
    return dict(found)


def aliased(data: Mapping[str, Any], name: str) -> str:
    """The secret name `name` stands for in a context (its `__cloacina_secret_refs__` map)."""
    refs = data.get(SECRET_REFS_KEY)
    if isinstance(refs, dict) and isinstance(refs.get(name), str):
        return refs[name]  # type: ignore[no-any-return]
    return name


def field_of(name: str, fields: dict[str, str], field: str) -> str:
    """One field of a resolved secret; KeyError naming the secret and the field if absent."""
    if field not in fields:
        raise KeyError(f"secret '{name}' has no field '{field}'")
    return fields[field]
