"""The reactor half of `DefaultRunner`: subscriptions (C11) and the live reactors (C13),
each sync method with its `a`-prefixed twin."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional

from .._context import NotJsonError, json_copy
from .._namespace import DEFAULT_TENANT
from .._result import rfc3339
from .._store.base import SubscriptionRecord
from .predicates import compile_predicate

if TYPE_CHECKING:
    from .._store import Store
    from .runtime import LiveReactors
    from .subscriptions import SubscriptionPoller


class ReactorAPI:
    """Mixed into DefaultRunner; relies on its `_call`, `_acall`, `_store`, `_subscriptions`
    and `_reactors`."""

    _store: Store
    _subscriptions: Optional[SubscriptionPoller]
    _reactors: Optional[LiveReactors]
    _call: Callable[..., Any]
    _acall: Callable[..., Awaitable[Any]]

    # ------------------------------------------------------------------ live reactors
    def push_event(self, accumulator: str, event: Any, *, tenant: Optional[str] = None) -> None:
        """Hand `event` (a JSON value) to an accumulator of `tenant` (default "public");
        returns once it is accepted (for batch and state accumulators: persisted). Blocks
        while its queue is full."""
        self._call("push_event", self._push, *_event(accumulator, event, tenant))

    async def apush_event(self, accumulator: str, event: Any, *, tenant: Optional[str] = None) -> None:
        await self._acall("apush_event", self._push, *_event(accumulator, event, tenant))

    async def _push(self, accumulator: str, event: Any, tenant: str) -> None:
        await self._live().push(accumulator, event, tenant)

    def fire_reactor(self, reactor: Any, inputs: Optional[dict[str, Any]] = None, *,
                     tenant: Optional[str] = None) -> bool:
        """Fire `tenant`'s copy of a reactor now, whatever its criteria (`inputs` replace its
        cache first); its graphs have run when this returns. False if it is paused."""
        return self._call("fire_reactor", self._fire, *_fire_arguments(reactor, inputs, tenant))

    async def afire_reactor(self, reactor: Any, inputs: Optional[dict[str, Any]] = None, *,
                            tenant: Optional[str] = None) -> bool:
        return await self._acall("afire_reactor", self._fire, *_fire_arguments(reactor, inputs, tenant))

    async def _fire(self, name: str, inputs: Optional[dict[str, Any]], tenant: str) -> bool:
        return await self._live().fire(name, inputs, tenant)

    def pause_reactor(self, reactor: Any, *, tenant: Optional[str] = None) -> None:
        """Stop `tenant`'s copy of a reactor firing (it keeps accumulating)."""
        self._call("pause_reactor", self._set_paused, _reactor_name(reactor), True, _tenant(tenant))

    async def apause_reactor(self, reactor: Any, *, tenant: Optional[str] = None) -> None:
        await self._acall("apause_reactor", self._set_paused, _reactor_name(reactor), True,
                          _tenant(tenant))

    def resume_reactor(self, reactor: Any, *, tenant: Optional[str] = None) -> None:
        """Let `tenant`'s paused copy of a reactor fire again (at once, if its criteria hold)."""
        self._call("resume_reactor", self._set_paused, _reactor_name(reactor), False, _tenant(tenant))

    async def aresume_reactor(self, reactor: Any, *, tenant: Optional[str] = None) -> None:
        await self._acall("aresume_reactor", self._set_paused, _reactor_name(reactor), False,
                          _tenant(tenant))

    async def _set_paused(self, name: str, paused: bool, tenant: str) -> None:
        await self._live().set_paused(name, paused, tenant)

    def list_reactors(self, *, tenant: Optional[str] = None) -> list[dict[str, Any]]:
        """The live reactors of `tenant` (default "public"; none for a tenant not used yet):
        name, mode, accumulators, graphs, paused, fires, last_fire_at, last_error."""
        return self._call("list_reactors", self._list_reactors, _tenant(tenant))

    async def alist_reactors(self, *, tenant: Optional[str] = None) -> list[dict[str, Any]]:
        return await self._acall("alist_reactors", self._list_reactors, _tenant(tenant))

    async def _list_reactors(self, tenant: str) -> list[dict[str, Any]]:
        return self._live().describe(tenant)

    def load_reactors(self) -> list[str]:
        """Start reactors (and bind graphs) registered since the runner started, for every
        live tenant; every loaded reactor's name."""
        return self._call("load_reactors", self._load_reactors)

    async def aload_reactors(self) -> list[str]:
        return await self._acall("aload_reactors", self._load_reactors)

    async def _load_reactors(self) -> list[str]:
        return await self._live().load()

    def _live(self) -> LiveReactors:
        if self._reactors is None:
            raise ValueError(
                "DefaultRunner: reactors are not running (DefaultRunnerConfig(enable_reactors=False))"
            )
        return self._reactors

    # ------------------------------------------------------------------ subscriptions
    def subscribe_workflow_to_reactor(self, reactor: Any, workflow: str, tenant: Optional[str] = None,
                                      *, when: Optional[str] = None) -> str:
        """Start `workflow` on every firing of `reactor` (that `when`, a CEL predicate over
        `payload`, `reactor`, `tenant`, admits); idempotent; the subscription's id."""
        return self._call("subscribe_workflow_to_reactor", self._subscribe, reactor, workflow,
                          tenant, when)

    async def asubscribe_workflow_to_reactor(self, reactor: Any, workflow: str,
                                             tenant: Optional[str] = None, *,
                                             when: Optional[str] = None) -> str:
        return await self._acall("asubscribe_workflow_to_reactor", self._subscribe, reactor,
                                 workflow, tenant, when)

    async def _subscribe(self, reactor: Any, workflow: str, tenant: Optional[str],
                         when: Optional[str]) -> str:
        prefix = "Failed to subscribe workflow to reactor"
        try:
            key = _key(reactor, workflow, tenant)
            if when is not None:
                compile_predicate(when)
            subscription_id = await self._store.upsert_subscription(
                str(uuid.uuid4()), *key, when, time.time()
            )
        except Exception as exc:
            raise ValueError(f"{prefix}: {exc}") from None
        if self._subscriptions is not None:
            self._subscriptions.subscriptions_changed()
        return subscription_id

    def unsubscribe_workflow_from_reactor(self, reactor: Any, workflow: str,
                                          tenant: Optional[str] = None) -> bool:
        """Remove a subscription; whether there was one."""
        return self._call("unsubscribe_workflow_from_reactor", self._unsubscribe, reactor,
                          workflow, tenant)

    async def aunsubscribe_workflow_from_reactor(self, reactor: Any, workflow: str,
                                                 tenant: Optional[str] = None) -> bool:
        return await self._acall("aunsubscribe_workflow_from_reactor", self._unsubscribe, reactor,
                                 workflow, tenant)

    async def _unsubscribe(self, reactor: Any, workflow: str, tenant: Optional[str]) -> bool:
        try:
            return await self._store.delete_subscription(*_key(reactor, workflow, tenant))
        except Exception as exc:
            raise ValueError(f"Failed to unsubscribe workflow from reactor: {exc}") from None

    def list_reactor_subscriptions(self, tenant: Optional[str] = None) -> list[dict[str, Any]]:
        """The enabled subscriptions of `tenant` (default "public")."""
        return self._call("list_reactor_subscriptions", self._list_subscriptions, tenant)

    async def alist_reactor_subscriptions(self, tenant: Optional[str] = None) -> list[dict[str, Any]]:
        return await self._acall("alist_reactor_subscriptions", self._list_subscriptions, tenant)

    async def _list_subscriptions(self, tenant: Optional[str]) -> list[dict[str, Any]]:
        try:
            records = await self._store.list_subscriptions(_tenant(tenant))
        except Exception as exc:
            raise ValueError(f"Failed to list reactor subscriptions: {exc}") from None
        return [_subscription_dict(r) for r in records]

    def poll_reactor_subscriptions_once(self) -> int:
        """Run one pass of the subscription poller now; how many workflows it started."""
        return self._call("poll_reactor_subscriptions_once", self._poll_subscriptions)

    async def apoll_reactor_subscriptions_once(self) -> int:
        return await self._acall("apoll_reactor_subscriptions_once", self._poll_subscriptions)

    async def _poll_subscriptions(self) -> int:
        if self._subscriptions is None:
            raise ValueError("DefaultRunner: the runner is not running")
        return await self._subscriptions.poll_once()


def _event(accumulator: Any, event: Any, tenant: Optional[str]) -> tuple[str, Any, str]:
    """(accumulator, JSON copy of the event, tenant), checked before anything is queued."""
    if not isinstance(accumulator, str):
        raise TypeError(f"push_event: accumulator must be a str, got {type(accumulator).__name__}")
    tenant = _tenant(tenant)
    try:
        return accumulator, json_copy(event), tenant
    except NotJsonError as exc:
        raise TypeError(f"push_event: the event for '{accumulator}' is not a JSON value: {exc.reason}") from None


def _reactor_name(reactor: Any) -> str:
    name = getattr(reactor, "NAME", reactor)
    if not isinstance(name, str):
        raise TypeError(f"reactor must be a reactor name or a @cloaca.reactor class, got {reactor!r}")
    return name


def _fire_arguments(reactor: Any, inputs: Optional[dict[str, Any]],
                    tenant: Optional[str]) -> tuple[str, Optional[dict[str, Any]], str]:
    name, tenant = _reactor_name(reactor), _tenant(tenant)
    if inputs is None:
        return name, None, tenant
    if not isinstance(inputs, dict):
        raise TypeError(f"fire_reactor: inputs must be a dict, got {type(inputs).__name__}")
    try:
        return name, json_copy(inputs), tenant
    except NotJsonError as exc:
        raise TypeError(f"fire_reactor: inputs are not JSON values: {exc.reason}") from None


def _tenant(tenant: Optional[str]) -> str:
    """The tenant named (None: "public"); TypeError unless a str, ValueError if empty."""
    if tenant is None:
        return DEFAULT_TENANT
    if not isinstance(tenant, str):
        raise TypeError(f"tenant must be a non-empty str, got {type(tenant).__name__} {tenant!r}")
    if not tenant:
        raise ValueError(f"tenant must be a non-empty str, got {tenant!r}")
    return tenant


def _key(reactor: Any, workflow: Any, tenant: Optional[str]) -> tuple[str, str, str]:
    """(reactor name, workflow name, tenant); a @cloaca.reactor class stands for its NAME."""
    name = getattr(reactor, "NAME", reactor)
    if not isinstance(name, str) or not name:
        raise TypeError(f"reactor must be a reactor name or a @cloaca.reactor class, got {reactor!r}")
    if not isinstance(workflow, str) or not workflow:
        raise TypeError(f"workflow must be a non-empty str, got {workflow!r}")
    return name, workflow, _tenant(tenant)


def _subscription_dict(r: SubscriptionRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "reactor_name": r.reactor_name,
        "workflow_name": r.workflow_name,
        "tenant_id": r.tenant_id,
        "enabled": r.enabled,
        "last_seen_fired_at": rfc3339(r.last_seen_fired_at),
        "created_at": rfc3339(r.created_at),
        "updated_at": rfc3339(r.updated_at),
        "predicate_expression": r.predicate_expression,
        "predicate_degraded": r.predicate_degraded,
        "predicate_error_count": r.predicate_error_count,
        "last_predicate_error": r.last_predicate_error,
        "last_predicate_error_at": rfc3339(r.last_predicate_error_at),
        "predicate_error_firing_id": r.predicate_error_firing_id,
    }
