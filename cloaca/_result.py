"""`WorkflowResult`: what `execute` returns and `get_execution` reads back."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Callable, Optional, Union

from ._context import Context
from ._sealed import Sealed


def rfc3339(timestamp: Optional[float]) -> Optional[str]:
    """A POSIX timestamp as RFC 3339 text in UTC (`2025-01-01T12:00:00.123456+00:00`)."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="microseconds")


class WorkflowResult(Sealed):
    """The outcome of one workflow execution (read-only)."""

    __slots__ = (
        "_status", "_start", "_end", "_final_context", "_error",
        "_execution_id", "_workflow_name", "_task_results", "_input_context",
    )

    _how_to_get_one = "DefaultRunner.execute returns it"

    @classmethod
    def _create(
        cls,
        *,
        execution_id: str,
        workflow_name: str,
        status: str,
        start: float,
        end: Optional[float],
        final_context_json: str,
        error_message: Optional[str],
        task_results: Union[list[dict[str, Any]], Callable[[], list[dict[str, Any]]]],
        input_context_json: str = "{}",
    ) -> WorkflowResult:
        result = object.__new__(cls)
        result._execution_id = execution_id
        result._workflow_name = workflow_name
        result._status = status
        result._start = start
        result._end = end
        result._final_context = final_context_json
        result._error = error_message
        result._task_results = task_results
        result._input_context = input_context_json
        return result

    @property
    def status(self) -> str:
        """"Completed" or "Failed" once finished; "Running"/"Pending" while in flight."""
        return self._status

    @property
    def start_time(self) -> str:
        return rfc3339(self._start)  # type: ignore[return-value]

    @property
    def end_time(self) -> Optional[str]:
        return rfc3339(self._end)

    @property
    def final_context(self) -> Context:
        """A fresh copy of the output of the task that finished last (or of the input)."""
        return Context._from_trusted(json.loads(self._final_context))

    @property
    def input_context(self) -> Context:
        """A fresh copy of the context the run started with."""
        return Context._from_trusted(json.loads(self._input_context))

    @property
    def error_message(self) -> Optional[str]:
        return self._error

    @property
    def execution_id(self) -> str:
        return self._execution_id

    @property
    def workflow_name(self) -> str:
        return self._workflow_name

    @property
    def duration_seconds(self) -> Optional[float]:
        return None if self._end is None else self._end - self._start

    @property
    def task_results(self) -> list[dict[str, Any]]:
        """Per task: task_name, status, start_time, end_time, attempt_count, error_message."""
        if callable(self._task_results):  # built on first use: most callers read the status only
            self._task_results = self._task_results()
        return [dict(r) for r in self._task_results]

    def __repr__(self) -> str:
        error = "None" if self._error is None else self._error
        return f"WorkflowResult(status={self._status}, error={error})"
