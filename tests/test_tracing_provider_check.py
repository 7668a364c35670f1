"""Whether an OpenTelemetry SDK is installed is asked at most once a second, and again at
every runner start (asking costs a few µs; it was asked at every run)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("opentelemetry.trace")

from opentelemetry import trace  # noqa: E402

from cloaca._engine import observe  # noqa: E402


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The provider the API reports (a proxy: no SDK) and how often it was asked."""
    state: dict[str, Any] = {"provider": trace.ProxyTracerProvider(), "asked": 0}

    def get_tracer_provider() -> Any:
        state["asked"] += 1
        return state["provider"]

    monkeypatch.setattr(observe._trace, "get_tracer_provider", get_tracer_provider)
    monkeypatch.setattr(observe, "_provider_seen", False)
    monkeypatch.setattr(observe, "_no_provider_until", 0.0)
    return state


def test_no_sdk_is_asked_about_once_however_many_runs(provider):
    assert [observe.spans_on() for _ in range(1000)] == [False] * 1000
    assert provider["asked"] == 1


def test_an_sdk_installed_later_is_seen_at_the_next_runner_start(provider):
    assert observe.spans_on() is False
    provider["provider"] = trace.NoOpTracerProvider()  # an application installs one
    assert observe.spans_on() is False  # within the second: not asked again
    observe.Observer()  # a runner starts
    assert observe.spans_on() is True


def test_an_sdk_installed_later_is_seen_within_the_recheck_time(provider, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(observe.time, "monotonic", lambda: now[0])
    assert observe.spans_on() is False
    provider["provider"] = trace.NoOpTracerProvider()
    now[0] += observe.PROVIDER_RECHECK_SECONDS / 2
    assert observe.spans_on() is False
    now[0] += observe.PROVIDER_RECHECK_SECONDS
    assert observe.spans_on() is True
