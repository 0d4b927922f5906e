"""Reading test runs: counts from each common runner's output, and verdicts that tell a missing runner or an
empty suite apart from a failure."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runner.testcmd import classify_test_run, detect_test_command, parse_test_counts

PYTEST = "....F.\n=========== 1 failed, 5 passed, 2 skipped in 0.12s ===========\n"
UNITTEST_OK = "....\n----------------------------------------------------------------------\nRan 4 tests in 0.001s\n\nOK\n"
UNITTEST_FAILED = ("F.E.s\n------------------------------------------------------------------\nRan 5 tests in 0.002s\n\n"
                   "FAILED (failures=1, errors=1, skipped=1)\n")
CARGO = ("running 3 tests\ntest a ... ok\ntest b ... ok\ntest c ... FAILED\n\n"
         "test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\n\n"
         "running 2 tests\n"
         "test result: ok. 2 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s\n")
GO = ("=== RUN   TestAdd\n--- PASS: TestAdd (0.00s)\n=== RUN   TestSub\n--- FAIL: TestSub (0.00s)\n"
      "    calc_test.go:9: wrong\n=== RUN   TestSkip\n--- SKIP: TestSkip (0.00s)\nFAIL\nFAIL\texample.com/calc\t0.002s\n")
JEST = "Test Suites: 1 failed, 1 total\nTests:       1 failed, 4 passed, 5 total\nSnapshots:   0 total\n"
MOCHA = "  calc\n    ✓ adds\n    1) subtracts\n\n\n  3 passing (8ms)\n  1 failing\n  2 pending\n"


@pytest.mark.parametrize(("output", "expected"), [
    pytest.param(PYTEST, {"passed": 5, "failed": 1, "errors": 0, "skipped": 2}, id="pytest"),
    pytest.param(UNITTEST_OK, {"passed": 4, "failed": 0, "errors": 0, "skipped": 0}, id="unittest-ok"),
    pytest.param(UNITTEST_FAILED, {"passed": 2, "failed": 1, "errors": 1, "skipped": 1}, id="unittest-failed"),
    pytest.param(CARGO, {"passed": 4, "failed": 1, "errors": 0, "skipped": 1}, id="cargo-two-binaries"),
    pytest.param(GO, {"passed": 1, "failed": 1, "errors": 0, "skipped": 1}, id="go-verbose"),
    pytest.param(JEST, {"passed": 4, "failed": 1, "errors": 0, "skipped": 0}, id="jest"),
    pytest.param(MOCHA, {"passed": 3, "failed": 1, "errors": 0, "skipped": 2}, id="mocha"),
    pytest.param("make: Nothing to be done for 'test'.\n", {"passed": 0, "failed": 0, "errors": 0, "skipped": 0},
                 id="nothing-recognisable"),
])
def test_counts_from_each_runner(output: str, expected: dict[str, int]) -> None:
    assert parse_test_counts(output) == expected


def test_a_missing_runner_is_unavailable_not_failed() -> None:
    verdict = classify_test_run("cargo test", 127, "bash: line 1: cargo: command not found\n")
    assert verdict.status == "unavailable" and not verdict.ok
    assert "`cargo`" in verdict.note and "sandbox_image/packages.txt" in verdict.note


@pytest.mark.parametrize(("command", "exit_code", "output", "status"), [
    pytest.param("python3 -m pytest -q", 5, "no tests ran in 0.01s\n", "no tests found", id="pytest-empty"),
    pytest.param("make test", 5, "make: *** [test] Error 5\n", "failed", id="exit-5-is-not-special-for-make"),
    pytest.param("python3 -m unittest", 0, "\nRan 0 tests in 0.000s\n\nOK\n", "no tests found",
                 id="unittest-empty"),
    pytest.param("go test -v ./...", 0, "?   \texample.com/calc\t[no test files]\n", "no tests found", id="go-empty"),
    pytest.param("go test -v ./...", 1, "?   \texample.com/a\t[no test files]\nFAIL\texample.com/b [build failed]\n",
                 "failed", id="go-build-failure-is-not-empty"),
    pytest.param("go test ./...", 0, "?   \texample.com/a\t[no test files]\nok  \texample.com/b\t0.01s\n", "passed",
                 id="go-without-v"),
    pytest.param("python3 -m pytest -q", 0, PYTEST.replace("1 failed, ", ""), "passed", id="passed"),
    pytest.param("python3 -m pytest -q", 1, PYTEST, "failed", id="failed"),
])
def test_verdicts(command: str, exit_code: int, output: str, status: str) -> None:
    assert classify_test_run(command, exit_code, output).status == status


def test_a_timeout_is_its_own_verdict() -> None:
    verdict = classify_test_run("python3 -m pytest -q", 124, "....", timed_out=True)
    assert verdict.status == "timed out" and "SANDBOX_COMMAND_TIMEOUT" in verdict.note


@pytest.mark.parametrize(("files", "command"), [
    (["src/app.py", "tests/test_app.py"], "python3 -m pytest -q"),
    (["Cargo.toml", "src/lib.rs"], "cargo test"),
    (["go.mod", "calc.go", "calc_test.go"], "go test -v ./..."),
    (["package.json", "index.js"], "npm test"),
    (["Makefile", "main.c"], "make test"),
    (["README.md"], None),
])
def test_detection(files: list[str], command: str | None) -> None:
    assert detect_test_command(files) == command


# ------------------------------------------------------------------ in the real sandbox, through the run_tests tool
def run_tests_tool(sandbox: Any, settings: Any) -> Any:
    from runner.agent.approval import ApprovalGate
    from runner.agent.state import RunState
    from runner.agent.tools import RunTests, ToolContext
    from runner.policy import CommandPolicy

    state = RunState()
    return RunTests(ToolContext(sandbox, state, settings, CommandPolicy.default(), ApprovalGate(state, asker=None)))


def test_a_makefile_suite_runs_with_counts(make_repo: Callable[..., Path], open_sandbox: Callable[..., Any],
                                           settings_factory: Callable[..., Any]) -> None:
    repo = make_repo("make-repo", dirty=False, files={
        "Makefile": "test:\n\tpython3 -m unittest discover -s checks -p '*_check.py'\n",
        "calc.py": "def add(a, b):\n    return a + b\n",
        "checks/calc_check.py": "import sys, unittest\nsys.path.insert(0, '.')\nfrom calc import add\n\n\n"
                                "class Calc(unittest.TestCase):\n    def test_add(self):\n"
                                "        self.assertEqual(add(1, 2), 3)\n\n    def test_zero(self):\n"
                                "        self.assertEqual(add(0, 0), 0)\n",
    })
    tool = run_tests_tool(open_sandbox(repo), settings_factory())
    answer = tool.forward()
    assert answer["command"] == "make test"
    assert answer["summary"].startswith("PASSED: 2 passed, 0 failed"), answer
    assert tool.ctx.state.last_tests.status == "passed"


def test_a_runner_missing_from_the_image_is_named(make_repo: Callable[..., Path], open_sandbox: Callable[..., Any],
                                                  settings_factory: Callable[..., Any]) -> None:
    from runner.agent.instrumentation import ToolError

    repo = make_repo("cargo-repo", dirty=False, files={"Cargo.toml": "[package]\nname = \"x\"\n", "src/lib.rs": ""})
    tool = run_tests_tool(open_sandbox(repo), settings_factory())
    with pytest.raises(ToolError, match="`cargo` is not available in the sandbox image") as raised:
        tool.forward()
    assert raised.value.error_type == "test_runner_missing"
    assert tool.ctx.state.last_tests.status == "unavailable"


@pytest.mark.parametrize(("files", "contents", "command"), [
    (["pyproject.toml", "checks/check_app.py"], {"pyproject.toml": "[tool.pytest.ini_options]\npython_files = "
                                                  "['check_*.py']\n"}, "python3 -m pytest -q"),
    (["setup.cfg", "src/x.py"], {"setup.cfg": "[tool:pytest]\ntestpaths = src\n"}, "python3 -m pytest -q"),
    (["noxfile.py", "src/x.py"], {"noxfile.py": "session.run('pytest')\n"}, "python3 -m pytest -q"),
    (["package.json"], {"package.json": '{"scripts": {"test": "jest"}}'}, "npm test"),
    (["package.json", "Makefile"], {"package.json": '{"scripts": {"test": "echo \\"Error: no test specified\\" '
                                                    '&& exit 1"}}'}, "make test"),
    (["package.json"], {"package.json": '{"name": "x"}'}, None),
    (["pyproject.toml", "src/x.py"], {"pyproject.toml": "[tool.ruff]\n"}, None),
])
def test_detection_reads_the_runners_configuration(files: list[str], contents: dict[str, str],
                                                   command: str | None) -> None:
    assert detect_test_command(files, contents.get) == command
    assert detect_test_command(files) in (command, "npm test", None)  # without a reader: names only, as before
