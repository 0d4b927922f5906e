"""Reading test runs, the cases mutation testing found untested (MUTATION.md): `--promote auto-if-verified`
writes a change only when this reading says "passed" with at least one passing test, so every count and every
verdict here is a decision, not a report.

Outputs are what the runners print (pytest, unittest, jest, eslint after jest, go, bash/dash/docker's "not found")."""

from __future__ import annotations

import pytest

from runner.testcmd import classify_test_run, detect_test_command, parse_test_counts


@pytest.mark.parametrize("marker", ["pytest.ini", "conftest.py", "tox.ini"])
def test_a_pytest_configuration_file_alone_means_pytest(marker: str) -> None:
    assert detect_test_command([marker, "src/app.py"]) == "python3 -m pytest -q"


def test_an_unreadable_package_json_goes_by_its_name_as_without_a_reader() -> None:
    # the sandbox reader gives None for a file it cannot read (over 256 KiB, not a regular file): detection then
    # goes by the file names alone, which for package.json is `npm test`
    assert detect_test_command(["package.json", "Makefile"], lambda name: None) == "npm test"
    assert detect_test_command(["package.json", "Makefile"]) == "npm test"


@pytest.mark.parametrize(("text", "command"), [
    ("{not json", "npm test"),  # npm will say what is wrong with it
    ('{"scripts": ["test"]}', "make test"),  # scripts not a table: there is no test script
    ('{"scripts": {"test": 3}}', "make test"),
    ('{"scripts": null}', "make test"),
    ('["a list"]', "npm test"),  # not an object at all: let npm say
])
def test_a_package_json_of_the_wrong_shape_is_read_without_crashing(text: str, command: str) -> None:
    assert detect_test_command(["package.json", "Makefile"], {"package.json": text}.get) == command


@pytest.mark.parametrize(("output", "expected"), [
    ("..E\n===== 2 passed, 1 error in 0.10s =====\n", {"passed": 2, "failed": 0, "errors": 1, "skipped": 0}),
    ("..EE\n===== 2 passed, 2 errors in 0.10s =====\n", {"passed": 2, "failed": 0, "errors": 2, "skipped": 0}),
    ("..xX\n===== 3 passed, 1 xfailed, 1 xpassed in 0.10s =====\n",
     {"passed": 4, "failed": 0, "errors": 0, "skipped": 1}),
])
def test_pytest_errors_and_expected_failures_are_counted_where_they_belong(output: str,
                                                                           expected: dict[str, int]) -> None:
    assert parse_test_counts(output) == expected


def test_a_unittest_run_with_expected_failures_counts_them_as_skipped_not_passed() -> None:
    output = "..sxx\n" + "-" * 70 + "\nRan 5 tests in 0.001s\n\nOK (skipped=1, expected failures=2)\n"
    assert parse_test_counts(output) == {"passed": 2, "failed": 0, "errors": 0, "skipped": 3}


@pytest.mark.parametrize(("summary", "counts"), [
    ("FAILED (failures=1=1)", {"passed": 3, "failed": 0, "errors": 0, "skipped": 0}),
    ("FAILED (failures=x, errors=1)", {"passed": 2, "failed": 0, "errors": 1, "skipped": 0}),
    ("FAILED (foo=1=2, failures=1)", {"passed": 2, "failed": 1, "errors": 0, "skipped": 0}),
    ("FAILED (failures=1,errors=1)", {"passed": 1, "failed": 1, "errors": 1, "skipped": 0}),
    ("OK (skipped=2, unexpected successes=1)", {"passed": 1, "failed": 0, "errors": 0, "skipped": 2}),
])
def test_a_unittest_summary_with_counts_that_are_not_numbers_is_read_without_crashing(summary: str,
                                                                                      counts: dict[str, int]) -> None:
    # The project's tests (or the agent's) print what they like: a `FAILED (…)` line of theirs after a `Ran N
    # tests in` line raised ValueError from int() and took the verification down with it. A count that is not
    # `name=digits` is left out; the verdict still goes by the exit code.
    output = f"Ran 3 tests in 0.01s\n\n{summary}\n"
    assert parse_test_counts(output) == counts
    assert classify_test_run("python3 -m unittest", 1, output).status == "failed"


def test_a_bare_ok_line_without_a_unittest_summary_is_not_read_as_unittest() -> None:
    # a test that prints "OK" on a line of its own, in a pytest run
    output = "OK\n.....\n===== 5 passed in 0.10s =====\n"
    assert parse_test_counts(output) == {"passed": 5, "failed": 0, "errors": 0, "skipped": 0}
    output = "FAILED (failures=1)\n.....\n===== 5 passed in 0.10s =====\n"
    assert parse_test_counts(output)["passed"] == 5


def test_jests_summary_wins_over_a_linter_run_after_it() -> None:
    # `"test": "jest && eslint ."`: eslint's "3 errors" comes last, but the tests are jest's line
    output = ("Test Suites: 1 passed, 1 total\nTests:       4 passed, 4 total\nSnapshots:   0 total\n\n"
              "/src/a.js\n  1:1  error  'x' is not defined  no-undef\n\n✖ 3 problems (3 errors, 0 warnings)\n")
    assert parse_test_counts(output) == {"passed": 4, "failed": 0, "errors": 0, "skipped": 0}


@pytest.mark.parametrize("output", [
    "bash: line 1: pytest: command not found\n",
    "/bin/sh: 1: pytest: not found\n",
    'OCI runtime exec failed: exec: "pytest": executable file not found in $PATH\n',
    "/bin/sh: 1: exec: ./run-tests: No such file or directory\n",
])
def test_each_shells_way_of_saying_the_runner_is_missing(output: str) -> None:
    verdict = classify_test_run("pytest -q", 127, output)
    assert verdict.status == "unavailable", verdict
    assert "`pytest` is not available in the sandbox image" in verdict.note


def test_the_missing_program_is_read_from_a_command_shlex_cannot_split() -> None:
    # an unbalanced quote: the first word is still the program that dash says is missing
    verdict = classify_test_run("pytest -k 'a", 127, "/bin/sh: 1: pytest: not found\n")
    assert verdict.status == "unavailable", verdict


@pytest.mark.parametrize(("exit_code", "output"), [
    (127, "Traceback (most recent call last):\nSystemExit: 127\n"),  # the suite chose the exit code
    (126, "tests failed\n"),
    (1, "E   AssertionError: command not found\n===== 1 failed in 0.1s =====\n"),  # the phrase, from a test
    (2, "ERROR: file or directory not found: tests/x.py\n"),
])
def test_a_failure_is_not_called_a_missing_runner(exit_code: int, output: str) -> None:
    assert classify_test_run("python3 -m pytest -q", exit_code, output).status == "failed"


def test_an_empty_command_is_read_without_crashing() -> None:
    assert classify_test_run("", 127, "sh: 1: : not found\n").status == "unavailable"


@pytest.mark.parametrize(("command", "output", "status"), [
    ("npx jest", "No tests found, exiting with code 0\n", "no tests found"),
    ("go test ./...", "?   \texample.com/a\t[no test files]\n", "no tests found"),
    # a build failure ignored by make (`-go test`) is not "no tests": something ran and failed
    ("make test", "?   \texample.com/a\t[no test files]\nFAIL\texample.com/b [build failed]\n", "passed"),
])
def test_no_tests_is_told_apart_only_where_the_runner_says_so(command: str, output: str, status: str) -> None:
    verdict = classify_test_run(command, 0, output)
    assert verdict.status == status
    assert verdict.note == "" and not verdict.ok if status != "passed" else verdict.passed == 0


def test_a_passed_or_failed_verdict_carries_no_note() -> None:
    # the note is shown after the verdict; a run that passed or failed needs none
    for code in (0, 1):
        assert classify_test_run("python3 -m pytest -q", code, "===== 1 passed in 0.1s =====\n").note == ""
