"""Tasks: the `TaskDefinition` the engine runs, and the `TaskHandle` a task may ask for.

`@cloaca.task` (which makes definitions and registers them) is in `_declare.py`.
"""

from __future__ import annotations

import inspect
import sys
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Optional, Protocol, Union

import anyio
import anyio.to_thread

from ._bridge import from_worker_thread
from ._namespace import TaskNamespace
from ._retry import RetryPolicy
from ._sealed import Sealed

SuccessCallback = Callable[..., Any]
FailureCallback = Callable[..., Any]
DeferCondition = Callable[[], Union[bool, Awaitable[bool]]]


# --------------------------------------------------------------------------------------
# Definitions


@dataclass(frozen=True)
class TaskDefinition:
    """A registered task: its function and everything the engine needs to run it."""

    namespace: TaskNamespace
    function: Callable[..., Any]
    dependencies: tuple[str, ...]
    retry_policy: RetryPolicy
    trigger_rule: dict[str, Any]
    on_success: Optional[SuccessCallback]
    on_failure: Optional[FailureCallback]
    wants_handle: bool
    is_async: bool
    invokes: Optional[str] = None
    """Name of the trigger-less computation graph run after the body (looked up at each run)."""
    post_invocation: Optional[Callable[..., Any]] = None

    @property
    def id(self) -> str:
        return self.namespace.task_id

    @property
    def full_name(self) -> str:
        return str(self.namespace)


# --------------------------------------------------------------------------------------
# TaskHandle


class SlotControl(Protocol):
    """What a handle needs from the engine: give back and take again an executor slot."""

    @property
    def held(self) -> bool: ...

    async def release(self) -> None: ...

    async def acquire(self) -> None: ...


class TaskHandle(Sealed):
    """Execution control handed to tasks whose second parameter is `handle`/`task_handle`."""

    __slots__ = ("_slot", "_consumed", "sub_status")
    _how_to_get_one = "the runner injects it"

    @classmethod
    def _create(cls, slot: SlotControl) -> TaskHandle:
        handle = object.__new__(cls)
        handle._slot = slot
        handle._consumed = False
        handle.sub_status = "Active"
        return handle

    def _consume(self) -> None:
        self._consumed = True

    def is_slot_held(self) -> bool:
        """Whether the task currently holds an executor slot."""
        return not self._consumed and self._slot.held

    def defer_until(self, condition: Callable[[], bool], poll_interval_ms: int = 1000) -> None:
        """Release the slot, poll `condition` every `poll_interval_ms` until it is True, re-take it.

        For sync task bodies (they run in worker threads). Async bodies use `defer_until_async`.
        """
        self._check_usable(poll_interval_ms)
        try:
            from_worker_thread(self._slot.release)
        except RuntimeError as exc:
            raise ValueError(
                "defer_until failed: call it from a sync task body; async tasks use "
                f"'await handle.defer_until_async(...)' ({exc})"
            ) from None
        self.sub_status = "Deferred"
        try:
            while True:
                time.sleep(poll_interval_ms / 1000)
                if self._consumed:
                    raise ValueError("defer_until failed: TaskHandle has already been consumed")
                if _condition_met(condition):
                    break
        finally:
            from_worker_thread(self._slot.acquire)
            self.sub_status = "Active"

    async def defer_until_async(
        self, condition: DeferCondition, poll_interval_ms: int = 1000
    ) -> None:
        """Awaitable `defer_until` for `async def` tasks; `condition` may be sync or async."""
        self._check_usable(poll_interval_ms)
        await self._slot.release()
        self.sub_status = "Deferred"
        try:
            while True:
                await anyio.sleep(poll_interval_ms / 1000)
                if inspect.iscoroutinefunction(condition):
                    met = await _async_condition_met(condition)
                else:
                    met = await anyio.to_thread.run_sync(_condition_met, condition)
                if met:
                    break
        finally:
            await self._slot.acquire()
            self.sub_status = "Active"

    def _check_usable(self, poll_interval_ms: int) -> None:
        if self._consumed:
            raise ValueError("defer_until failed: TaskHandle has already been consumed")
        if not isinstance(poll_interval_ms, int) or poll_interval_ms < 0:
            raise ValueError(
                f"defer_until failed: poll_interval_ms must be a non-negative int, got {poll_interval_ms!r}"
            )

    def __repr__(self) -> str:
        return f"TaskHandle(sub_status={self.sub_status})"


def _report_condition_error(exc: Exception) -> bool:
    # A broken condition counts as "not yet", as upstream; it is reported, not raised.
    print(f"cloaca: defer_until condition raised {type(exc).__name__}: {exc}", file=sys.stderr)
    return False


def _condition_met(condition: Callable[[], Any]) -> bool:
    try:
        return condition() is True
    except Exception as exc:
        return _report_condition_error(exc)


async def _async_condition_met(condition: Callable[[], Awaitable[Any]]) -> bool:
    try:
        return (await condition()) is True
    except Exception as exc:
        return _report_condition_error(exc)
