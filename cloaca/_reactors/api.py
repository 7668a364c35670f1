"""The reactor half of `DefaultRunner`: subscriptions (C11) and the live reactors (C13),
each sync method with its `a`-prefixed twin."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional

from ..result import rfc3339
from ..store.base import SubscriptionRecord
from .predicates import compile_predicate
from .subscriptions import DEFAULT_TENANT

if TYPE_CHECKING:
    from ..store import Store
    from .subscriptions import SubscriptionPoller


class ReactorAPI:
    """Mixed into DefaultRunner; relies on its `_call`, `_acall`, `_store` and `_subscriptions`."""

    _store: Store
    _subscriptions: Optional[SubscriptionPoller]
    _call: Callable[..., Any]
    _acall: Callable[..., Awaitable[Any]]

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
            return await self._store.upsert_subscription(
                str(uuid.uuid4()), *key, when, time.time()
            )
        except Exception as exc:
            raise ValueError(f"{prefix}: {exc}") from None

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


def _tenant(tenant: Optional[str]) -> str:
    if tenant is None:
        return DEFAULT_TENANT
    if not isinstance(tenant, str) or not tenant:
        raise TypeError(f"tenant must be a non-empty str, got {tenant!r}")
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
