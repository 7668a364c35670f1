"""The pytest plugin (SPEC A14), from a user's point of view: the suites of tests/user_suite/
are copied into a directory of their own (no conftest, no configuration) and run by pytest in
a subprocess of this venv's Python, which finds the plugin through its `pytest11` entry point.
The README's example test file (examples/test_my_workflows.py) is run the same way.

Every pytest run that the selected tests of this file judge is started at once, each in a
directory of its own, by a module fixture (a run spends most of its time starting up or
waiting, and this machine has more than one core): the file takes about as long as the
slowest runs, not the sum. Each test then waits for its own run(s)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable, Iterator

import pytest
from support import finished_process

REPO = Path(__file__).resolve().parent.parent
SUITES = Path(__file__).resolve().parent / "user_suite"
TIMEOUT_SECONDS = 180


def functions_named_test(path: Path) -> list[str]:
    """The test functions a file defines, in file order."""
    return [
        node.name for node in ast.parse(path.read_text()).body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_")
    ]


Outcome = tuple[subprocess.CompletedProcess, dict[str, str]]


def start_pytest(cwd: Path, *args: str) -> subprocess.Popen:
    """Start pytest in `cwd`: its report goes to `cwd/report.xml`, its output to files beside
    `cwd` (read by `finish_pytest`)."""
    with cwd.with_suffix(".stdout").open("w") as stdout, cwd.with_suffix(".stderr").open("w") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--junitxml={cwd / 'report.xml'}", *args],
            cwd=cwd, stdout=stdout, stderr=stderr,
        )


def finish_pytest(cwd: Path, process: subprocess.Popen) -> Outcome:
    """Wait for the pytest started in `cwd`; the outcome ("passed", "failed", "error",
    "skipped") of each test."""
    proc = finished_process(process, cwd, TIMEOUT_SECONDS)
    report = cwd / "report.xml"
    outcomes: dict[str, str] = {}
    if report.exists():
        for case in ET.parse(report).iter("testcase"):
            kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
            outcomes[case.get("name", "")] = {"failure": "failed"}.get(kinds[0], kinds[0]) if kinds else "passed"
    return proc, outcomes


def user_project(directory: Path, *suites: str) -> Path:
    """A user's project directory holding `test_<suite>.py` for each `suite_<suite>.py`."""
    directory.mkdir()
    for suite in suites:
        shutil.copy(SUITES / f"suite_{suite}.py", directory / f"test_{suite}.py")
    return directory


def assert_all_passed(proc: subprocess.CompletedProcess, outcomes: dict[str, str], expected: list[str]) -> None:
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert outcomes == {name: "passed" for name in expected}


USER_SUITES = [
    "fixtures",  # both fixtures in sync and async tests, and the leak cloaca_registry prevents
    "helpers",  # poll_trigger and run_task, and their async twins
    "clock",  # the fake clock firing cron slots
    "unrelated",  # a suite that never uses cloaca: the plugin imports nothing of it
]
SYNC_TESTS = ["test_a_sync_test_gets_a_runner_on_a_thread_of_its_own",
              "test_the_sync_tests_runner_was_shut_down_after_it"]
README_EXAMPLE = REPO / "examples" / "test_my_workflows.py"


def _leak_project(directory: Path) -> tuple[Path, tuple[str, ...]]:
    """The fixtures suite with `cloaca_registry` made a no-op."""
    project = user_project(directory, "fixtures")
    (project / "conftest.py").write_text(
        "import pytest\n\n"
        "@pytest.fixture\n"
        "def cloaca_registry():\n"
        "    from cloaca._registry import REGISTRY\n"
        "    yield REGISTRY\n"
    )
    return project, ()


def _readme_project(directory: Path) -> tuple[Path, tuple[str, ...]]:
    directory.mkdir()
    shutil.copy(README_EXAMPLE, directory / README_EXAMPLE.name)
    return directory, ()


def _suite_project(suite: str) -> Callable[[Path], tuple[Path, tuple[str, ...]]]:
    return lambda directory: (user_project(directory, suite), ())


# Each pytest run: how to make its project directory, and pytest's arguments.
RUNS: dict[str, Callable[[Path], tuple[Path, tuple[str, ...]]]] = {
    **{f"suite-{suite}": _suite_project(suite) for suite in USER_SUITES},
    "leak": _leak_project,
    "no-asyncio": lambda d: (user_project(d, "fixtures"), ("-p", "no:asyncio", "-k", " or ".join(SYNC_TESTS))),
    "no-cloaca": lambda d: (user_project(d, "fixtures"), ("-p", "no:cloaca", "-k", SYNC_TESTS[0])),
    "readme": _readme_project,
}
# The runs that each test of this file judges (by its parameters).
RUNS_OF_TEST: dict[str, Callable[..., list[str]]] = {
    "test_a_users_suite_passes_with_no_configuration": lambda suite: [f"suite-{suite}"],
    "test_the_leak_tests_really_depend_on_the_fixture": lambda: ["leak"],
    "test_sync_tests_need_no_pytest_asyncio_and_the_plugin_can_be_turned_off": lambda: ["no-asyncio", "no-cloaca"],
    "test_the_readmes_example_test_file_passes": lambda: ["readme"],
}


class PytestRuns:
    """Pytest runs started at once, each in a project directory of its own under `base`."""

    def __init__(self, base: Path, keys: list[str]) -> None:
        self.base = base
        self.started: dict[str, tuple[Path, subprocess.Popen]] = {}
        self.finished: dict[str, Outcome] = {}
        for key in keys:
            self._start(key)

    def _start(self, key: str) -> None:
        cwd, args = RUNS[key](self.base / key)
        self.started[key] = (cwd, start_pytest(cwd, *args))

    def project(self, key: str) -> Path:
        return self.started[key][0]

    def outcome(self, key: str) -> Outcome:
        """The run's outcome, once it has ended (started now if it was not)."""
        if key not in self.started:
            self._start(key)
        if key not in self.finished:
            self.finished[key] = finish_pytest(*self.started[key])
        return self.finished[key]

    def stop(self) -> None:
        for _, process in self.started.values():
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def pytest_runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PytestRuns]:
    """Every run that the session's selected tests of this module judge, started at once."""
    keys: list[str] = []
    for item in request.session.items:
        runs_of = RUNS_OF_TEST.get(getattr(item, "originalname", ""))
        if runs_of is None or getattr(item, "module", None) is not request.module:
            continue
        callspec = getattr(item, "callspec", None)
        keys += [key for key in runs_of(**(callspec.params if callspec else {})) if key not in keys]
    runs = PytestRuns(tmp_path_factory.mktemp("user_projects"), keys)
    try:
        yield runs
    finally:
        runs.stop()


# ====================================================================== the user's suites
@pytest.mark.parametrize("suite", USER_SUITES)
def test_a_users_suite_passes_with_no_configuration(pytest_runs, suite):
    proc, outcomes = pytest_runs.outcome(f"suite-{suite}")
    project = pytest_runs.project(f"suite-{suite}")
    assert_all_passed(proc, outcomes, functions_named_test(project / f"test_{suite}.py"))


def test_the_leak_tests_really_depend_on_the_fixture(pytest_runs):
    """The same suite with `cloaca_registry` made a no-op: the declarations leak, and exactly
    the tests that check they do not fail (so the suite above proves what it claims)."""
    proc, outcomes = pytest_runs.outcome("leak")
    assert proc.returncode == 1
    assert {name for name, outcome in outcomes.items() if outcome == "failed"} == {
        "test_with_the_fixture_they_are_gone_after_the_test",
        "test_what_the_async_test_declared_is_gone",
        "test_the_live_runner_stopped_polling_it_after_that_test",
        "test_that_runner_forgot_them_after_the_test",
    }


# ====================================================================== staying out of the way
def test_sync_tests_need_no_pytest_asyncio_and_the_plugin_can_be_turned_off(pytest_runs):
    proc, outcomes = pytest_runs.outcome("no-asyncio")
    assert_all_passed(proc, outcomes, SYNC_TESTS)

    proc, outcomes = pytest_runs.outcome("no-cloaca")
    assert proc.returncode == 1 and outcomes == {SYNC_TESTS[0]: "error"}
    assert "fixture 'cloaca_runner' not found" in proc.stdout


# ====================================================================== the README's example
def test_the_readmes_example_test_file_passes(pytest_runs):
    proc, outcomes = pytest_runs.outcome("readme")
    assert_all_passed(proc, outcomes, functions_named_test(README_EXAMPLE))
    readme = (REPO / "README.md").read_text()
    assert README_EXAMPLE.read_text().strip() in readme  # the README shows the file as it is
