"""The pytest plugin (SPEC A14), from a user's point of view: the suites of tests/user_suite/
are copied into a directory of their own (no conftest, no configuration) and run by pytest in
a subprocess of this venv's Python, which finds the plugin through its `pytest11` entry point.
The README's example test file (examples/test_my_workflows.py) is run the same way."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SUITES = Path(__file__).resolve().parent / "user_suite"
TIMEOUT_SECONDS = 180


def functions_named_test(path: Path) -> list[str]:
    """The test functions a file defines, in file order."""
    return [
        node.name for node in ast.parse(path.read_text()).body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_")
    ]


def run_pytest(cwd: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    """Run pytest in `cwd`; the outcome ("passed", "failed", "error", "skipped") of each test."""
    report = cwd / "report.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--junitxml={report}", *args],
        cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_SECONDS,
    )
    outcomes: dict[str, str] = {}
    if report.exists():
        for case in ET.parse(report).iter("testcase"):
            kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
            outcomes[case.get("name", "")] = {"failure": "failed"}.get(kinds[0], kinds[0]) if kinds else "passed"
    return proc, outcomes


def user_project(tmp_path: Path, *suites: str) -> Path:
    """A user's project directory holding `test_<suite>.py` for each `suite_<suite>.py`."""
    for suite in suites:
        shutil.copy(SUITES / f"suite_{suite}.py", tmp_path / f"test_{suite}.py")
    return tmp_path


def assert_all_passed(proc: subprocess.CompletedProcess, outcomes: dict[str, str], expected: list[str]) -> None:
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert outcomes == {name: "passed" for name in expected}


# ====================================================================== the user's suites
@pytest.mark.parametrize("suite", [
    "fixtures",  # both fixtures in sync and async tests, and the leak cloaca_registry prevents
    "helpers",  # poll_trigger and run_task, and their async twins
    "clock",  # the fake clock firing cron slots
    "unrelated",  # a suite that never uses cloaca: the plugin imports nothing of it
])
def test_a_users_suite_passes_with_no_configuration(tmp_path, suite):
    project = user_project(tmp_path, suite)
    proc, outcomes = run_pytest(project)
    assert_all_passed(proc, outcomes, functions_named_test(project / f"test_{suite}.py"))


def test_the_leak_tests_really_depend_on_the_fixture(tmp_path):
    """The same suite with `cloaca_registry` made a no-op: the declarations leak, and exactly
    the tests that check they do not fail (so the suite above proves what it claims)."""
    project = user_project(tmp_path, "fixtures")
    (project / "conftest.py").write_text(
        "import pytest\n\n"
        "@pytest.fixture\n"
        "def cloaca_registry():\n"
        "    from cloaca._registry import REGISTRY\n"
        "    yield REGISTRY\n"
    )
    proc, outcomes = run_pytest(project)
    assert proc.returncode == 1
    assert {name for name, outcome in outcomes.items() if outcome == "failed"} == {
        "test_with_the_fixture_they_are_gone_after_the_test",
        "test_what_the_async_test_declared_is_gone",
        "test_the_live_runner_stopped_polling_it_after_that_test",
        "test_that_runner_forgot_them_after_the_test",
    }


# ====================================================================== staying out of the way
def test_sync_tests_need_no_pytest_asyncio_and_the_plugin_can_be_turned_off(tmp_path):
    project = user_project(tmp_path, "fixtures")
    sync_tests = ["test_a_sync_test_gets_a_runner_on_a_thread_of_its_own",
                  "test_the_sync_tests_runner_was_shut_down_after_it"]
    proc, outcomes = run_pytest(project, "-p", "no:asyncio", "-k", " or ".join(sync_tests))
    assert_all_passed(proc, outcomes, sync_tests)

    proc, outcomes = run_pytest(project, "-p", "no:cloaca", "-k", sync_tests[0])
    assert proc.returncode == 1 and outcomes == {sync_tests[0]: "error"}
    assert "fixture 'cloaca_runner' not found" in proc.stdout


# ====================================================================== the README's example
def test_the_readmes_example_test_file_passes(tmp_path):
    example = REPO / "examples" / "test_my_workflows.py"
    shutil.copy(example, tmp_path / example.name)
    proc, outcomes = run_pytest(tmp_path)
    assert_all_passed(proc, outcomes, functions_named_test(example))
    readme = (REPO / "README.md").read_text()
    assert example.read_text().strip() in readme  # the README shows the file as it is
