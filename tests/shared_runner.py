"""`runner` shared by a test module: one runner per backend for all of the module's tests,
instead of conftest's runner per test. For modules whose tests each execute workflows of
their own and look only at their results; such a module imports the fixture:

    from shared_runner import module_runner  # noqa: F401 - the module's `runner`
"""

from __future__ import annotations

from typing import Iterator

import pytest

from cloaca import DefaultRunner
from conftest import private_runner


@pytest.fixture(name="runner", scope="module", params=["sqlite", "postgres"])
def module_runner(request: pytest.FixtureRequest) -> Iterator[DefaultRunner]:
    """One runner per backend, shared by the importing module's tests (see private_runner)."""
    with private_runner(request.param) as r:
        yield r
