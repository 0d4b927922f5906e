"""Finding a repo's test command and reading a test run's result; shared by the agent and by promotion.

The counts come from what the common runners print (pytest, unittest, cargo, go, jest/vitest, mocha); a runner
that is not in the sandbox image is reported as such, not as a failed run, and "no tests" is told apart from a
failure only where the runner says so.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass

NO_TESTS_EXIT_CODE = 5
"""pytest's exit code when it collected nothing."""
COMMAND_NOT_FOUND = 127
NOT_EXECUTABLE = 126

_COUNT_WORDS = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|passing|failing|pending|ignored)\b")
_CARGO_RESULT = re.compile(r"^test result: \w+\. (.*)$", re.MULTILINE)
_UNITTEST_RAN = re.compile(r"^Ran (\d+) tests? in ", re.MULTILINE)
_UNITTEST_COUNT = re.compile(r"(?:^|,)\s*([a-z][a-z ]*?)=(\d+)\s*(?=,|$)")
"""One `name=N` of unittest's `FAILED (failures=1, errors=2, skipped=3, expected failures=1)`."""
_UNITTEST_VERDICT = re.compile(r"^(OK|FAILED)(?: \((.*)\))?\s*$", re.MULTILINE)
_GO_CASE = re.compile(r"^\s*--- (PASS|FAIL|SKIP): ", re.MULTILINE)
_JEST_TESTS = re.compile(r"^Tests:\s+(.*)$", re.MULTILINE)


Reader = Callable[[str], "str | None"]
"""Reads a repo file's text (None when it cannot): lets detection look inside the runners' configuration."""

_PYTEST_CONFIG = (("pyproject.toml", "[tool.pytest.ini_options]"), ("setup.cfg", "[tool:pytest]"),
                  ("tox.ini", "[pytest]"), ("tox.ini", "pytest"), ("noxfile.py", "pytest"))
_NPM_DEFAULT_TEST = "no test specified"
"""What `npm init` puts in scripts.test: a script that only fails."""


def detect_test_command(files: list[str], read: Reader | None = None) -> str | None:
    """The command that runs the repo's tests, from its file names and, given `read`, its runners' configuration
    (pytest settings in pyproject.toml/setup.cfg/tox.ini, a tox or nox session running pytest, package.json's
    test script). With a prepared environment, `python3` is the environment's (its venv comes first on PATH)."""
    names = set(files)
    python_tests = any(re.search(r"(^|/)(test_[^/]*|[^/]*_test)\.py$", f) for f in files)
    if python_tests or {"pytest.ini", "conftest.py", "tox.ini"} & names:
        return "python3 -m pytest -q"
    if read is not None and any(name in names and marker in (read(name) or "") for name, marker in _PYTEST_CONFIG):
        return "python3 -m pytest -q"
    if "Cargo.toml" in names:
        return "cargo test"
    if "go.mod" in names:
        return "go test -v ./..."
    if "package.json" in names and (read is None or _npm_has_tests(read("package.json"))):
        return "npm test"
    if "Makefile" in names:
        return "make test"
    return None


def _npm_has_tests(text: str | None) -> bool:
    if text is None:  # the reader could not read it (too large, not a file): go by the name, as without a reader
        return True
    try:
        scripts = json.loads(text).get("scripts") or {}
    except (ValueError, AttributeError):
        return True  # unreadable: let npm say what is wrong
    test = scripts.get("test") if isinstance(scripts, dict) else None
    return isinstance(test, str) and _NPM_DEFAULT_TEST not in test


def parse_test_counts(output: str) -> dict[str, int]:
    """Passed / failed / errors / skipped from a test run's output, whichever known runner printed it."""
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}

    def add(kind: str, number: int) -> None:
        key = {"passing": "passed", "failing": "failed", "pending": "skipped", "ignored": "skipped",
               "error": "errors", "xfailed": "skipped", "xpassed": "passed"}.get(kind, kind)
        if key in counts:
            counts[key] += number

    cargo = _CARGO_RESULT.findall(output)
    if cargo:  # one summary per test binary: they add up
        for line in cargo:
            for number, kind in _COUNT_WORDS.findall(line):
                add(kind, int(number))
        return counts
    ran = _UNITTEST_RAN.findall(output)
    verdicts = _UNITTEST_VERDICT.findall(output)
    if ran and verdicts:
        total = int(ran[-1])
        # the test program's own output can hold any `FAILED (…)` line: a count that is not `name=digits` is
        # left out rather than crash the verdict
        details = {name: int(number) for name, number in _UNITTEST_COUNT.findall(verdicts[-1][1])}
        failed, errors = details.get("failures", 0), details.get("errors", 0)
        skipped = details.get("skipped", 0) + details.get("expected failures", 0)
        counts.update(passed=max(total - failed - errors - skipped, 0), failed=failed, errors=errors,
                      skipped=skipped)
        return counts
    go_cases = _GO_CASE.findall(output)
    if go_cases:
        for verdict in go_cases:
            add({"PASS": "passed", "FAIL": "failed", "SKIP": "skipped"}[verdict], 1)
        return counts
    jest = _JEST_TESTS.findall(output)
    summary_lines = jest[-1:] or [line for line in output.splitlines() if _COUNT_WORDS.search(line)]
    if not summary_lines:
        return counts
    if jest or not any(re.search(r"\d+ (passing|failing)\b", line) for line in summary_lines):
        for number, kind in _COUNT_WORDS.findall(summary_lines[-1]):
            add(kind, int(number))
        return counts
    # mocha prints "N passing", "M failing" and "K pending" on lines of their own
    for line in output.splitlines():
        match = re.match(r"^\s*(\d+) (passing|failing|pending)\b", line)
        if match:
            add(match.group(2), int(match.group(1)))
    return counts


@dataclass(frozen=True)
class TestVerdict:
    """What a test run says: "passed", "failed", "no tests found", "timed out" or "unavailable"."""

    status: str
    passed: int
    failed: int
    errors: int
    skipped: int
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "passed"


def classify_test_run(command: str, exit_code: int, output: str, *, timed_out: bool = False) -> TestVerdict:
    counts = parse_test_counts(output)
    if timed_out:
        return TestVerdict(status="timed out", **counts, note="the test run hit SANDBOX_COMMAND_TIMEOUT")
    if exit_code in (COMMAND_NOT_FOUND, NOT_EXECUTABLE) and _runner_missing(command, output):
        program = _program(command)
        return TestVerdict(status="unavailable", **counts, note=(
            f"`{program}` is not available in the sandbox image: add its Debian package to "
            "sandbox_image/packages.txt and run `smol image build`, or set SANDBOX_IMAGE to an image that has it"))
    if _no_tests(command, exit_code, output, counts):
        return TestVerdict(status="no tests found", **counts, note="")
    return TestVerdict(status="passed" if exit_code == 0 else "failed", **counts, note="")


def _program(command: str) -> str:
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    return words[0] if words else command


def _runner_missing(command: str, output: str) -> bool:
    program = _program(command)
    return "command not found" in output or "No such file or directory" in output or \
        f"{program}: not found" in output or "executable file not found" in output


def _no_tests(command: str, exit_code: int, output: str, counts: dict[str, int]) -> bool:
    if any(counts.values()):
        return False
    if "pytest" in command and exit_code == NO_TESTS_EXIT_CODE:
        return True
    if exit_code == 0 and re.search(r"^Ran 0 tests? in ", output, re.MULTILINE):
        return True
    if exit_code != 0:
        return False
    if "No tests found" in output:
        return True
    # go: every package says "[no test files]" and none ran ("ok  pkg" lines mean tests ran, even without -v)
    return "no test files" in output and not re.search(r"^(ok|FAIL)\s", output, re.MULTILINE)
