"""Finding a repo's test command and reading a test run's result; shared by the agent and by promotion."""

from __future__ import annotations

import re

_PYTEST_COUNTS = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed)")
NO_TESTS_EXIT_CODE = 5
"""pytest's exit code when it collected nothing."""


def detect_test_command(files: list[str]) -> str | None:
    names = set(files)
    python_tests = any(re.search(r"(^|/)(test_[^/]*|[^/]*_test)\.py$", f) for f in files)
    if python_tests or {"pytest.ini", "conftest.py", "tox.ini"} & names:
        return "python3 -m pytest -q"
    if "Cargo.toml" in names:
        return "cargo test"
    if "go.mod" in names:
        return "go test ./..."
    if "package.json" in names:
        return "npm test"
    if "Makefile" in names:
        return "make test"
    return None


def parse_test_counts(output: str) -> dict[str, int]:
    """Counts from the last pytest-style summary line ("3 passed, 1 failed in 0.1s")."""
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    summary_lines = [line for line in output.splitlines() if _PYTEST_COUNTS.search(line)]
    if summary_lines:
        for number, kind in _PYTEST_COUNTS.findall(summary_lines[-1]):
            key = "errors" if kind.startswith("error") else kind
            if key in counts:
                counts[key] = int(number)
    return counts
