"""scripts/mutation_report.py's "wording only" rule: which surviving mutants are left out of the kill rate as
changes to a message's prose. A string that is compared with text decides something and must never be excused."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("mutation_report",
                                               Path(__file__).parent.parent / "scripts" / "mutation_report.py")
assert _spec is not None and _spec.loader is not None
report = importlib.util.module_from_spec(_spec)
sys.modules["mutation_report"] = report
_spec.loader.exec_module(report)


@pytest.mark.parametrize(("old", "new", "wording"), [
    ('    raise ValueError("text after a quoted name")', '    raise ValueError("XXtext after a quoted nameXX")', True),
    ('    raise ValueError("text after a quoted name")', '    raise ValueError("TEXT AFTER A QUOTED NAME")', True),
    ('    return approve("`&` starts a background job", "structure:background")',
     '    return approve("`&` starts a background job", "XXstructure:backgroundXX")', False),  # a rule name
    ('    if "No such file or directory" in output:', '    if "no such file or directory" in output:', False),
    ('    if "No such file or directory" not in output:', '    if "XXNo such file or directoryXX" not in output:',
     False),
    ('    return text == "no test specified at all"', '    return text == "XXno test specified at allXX"', False),
    ('    if key in "one two three four":', '    if key in "XXone two three fourXX":', False),
    ('    x = "three word text"', '    x = "XXthree word textXX"', False),  # too short to be prose
    ('    opts = "-a -b -c -d"', '    opts = "XX-a -b -c -dXX"', False),  # an option list
    ('    raise ValueError("a b c d") or f(1)', '    raise ValueError("XXa b c dXX") or f(2)', False),  # more changed
])
def test_only_prose_that_no_decision_reads_is_wording(old: str, new: str, wording: bool) -> None:
    assert report.is_wording([f"-{old}", f"+{new}"]) is wording


def _entries(*pairs: tuple[str, str]) -> dict[str, tuple[str, str]]:
    return {name: (digest, "why") for name, digest in pairs}


F = "runner.policy.tools.x_analyse_git__mutmut_"


def test_an_entry_follows_its_change_when_an_edit_shifts_the_numbers() -> None:
    # Two lines added above: 17 -> 19 and 19 -> 21; the new 17 is another change, which must not stay excused.
    entries = _entries((F + "17", "aaaa"), (F + "19", "bbbb"))
    undecided = {F + "17": "cccc", F + "19": "aaaa", F + "21": "bbbb"}
    assert report.renumbered(entries, undecided) == {F + "17": F + "19", F + "19": F + "21"}


def test_an_entry_that_still_matches_stays_and_claims_its_name() -> None:
    entries = _entries((F + "3", "aaaa"), (F + "9", "aaaa"))
    undecided = {F + "3": "aaaa", F + "9": "cccc", F + "12": "aaaa"}
    assert report.renumbered(entries, undecided) == {F + "9": F + "12"}


@pytest.mark.parametrize("undecided", [
    {F + "5": "zzzz"},  # the change is gone or killed now: judge again
    {F + "5": "aaaa", F + "8": "aaaa"},  # two candidates for one entry: which one is not knowable
    {"runner.policy.tools.x_analyse_find__mutmut_1": "aaaa"},  # same change in another function
])
def test_an_entry_without_one_exact_match_is_left_stale(undecided: dict[str, str]) -> None:
    assert report.renumbered(_entries((F + "1", "aaaa")), undecided) == {}


def test_renaming_applies_all_moves_at_once_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "equivalents.txt"
    path.write_text(f"# {F}17 in a comment stays\n{F}17 aaaa first reason\n{F}19 bbbb second reason\n"
                    f"{F}190 cccc other\n")
    report.rename_entries(path, {F + "17": F + "19", F + "19": F + "21"})
    assert path.read_text() == (f"# {F}17 in a comment stays\n{F}19 aaaa first reason\n{F}21 bbbb second reason\n"
                                f"{F}190 cccc other\n")


def test_an_entry_never_moves_onto_an_entry_that_stays() -> None:
    # 19 is stale with no match of its own: moving 17 onto it would list 19 twice, so both wait for a person
    entries = _entries((F + "17", "aaaa"), (F + "19", "bbbb"), (F + "4", "dddd"))
    undecided = {F + "19": "aaaa", F + "4": "eeee", F + "6": "dddd"}
    assert report.renumbered(entries, undecided) == {F + "4": F + "6"}


_changed_spec = importlib.util.spec_from_file_location(
    "mutation_changed", Path(__file__).parent.parent / "scripts" / "mutation_changed.py")
assert _changed_spec is not None and _changed_spec.loader is not None
changed_module = importlib.util.module_from_spec(_changed_spec)
_changed_spec.loader.exec_module(changed_module)

BEFORE = '''LIMIT = 3


def kept(x):
    return x + 1


def edited(x):
    return x * 2


class Reader:
    def read(self):
        return LIMIT
'''


@pytest.mark.parametrize(("after", "globs"), [
    (BEFORE.replace("return x + 1", "return x + 1  # a comment only"), []),
    (BEFORE.replace("x * 2", "x * 3"), ["m.x_edited__mutmut_*"]),
    (BEFORE.replace("return LIMIT", "return LIMIT - 1"), ["m.xǁReaderǁread__mutmut_*"]),
    (BEFORE + "\n\ndef added(y):\n    return y\n", ["m.x_added__mutmut_*"]),
    (BEFORE.replace("def edited(x):\n    return x * 2\n", ""), ["m.x_edited__mutmut_*"]),  # its old mutants go
    (BEFORE.replace("LIMIT = 3", "LIMIT = 4"), ["m.*"]),  # every function may read a changed constant
    (BEFORE.replace("class Reader:", "class Reader(dict):"), ["m.*"]),
])
def test_only_the_functions_whose_code_changed_are_measured_again(after: str, globs: list[str]) -> None:
    assert changed_module.changed(BEFORE, after, "m") == globs


def test_a_module_added_or_removed_is_measured_whole() -> None:
    assert changed_module.changed(None, BEFORE, "m") == ["m.*"]
    assert changed_module.changed(BEFORE, None, "m") == ["m.*"]
    assert changed_module.module_name("runner/policy/__init__.py") == "runner.policy"


def test_an_update_keeps_the_results_of_unchanged_functions_only() -> None:
    results = ("    m.x_kept__mutmut_1: killed\n    m.x_kept__mutmut_2: not checked\n"
               "    m.x_edited__mutmut_1: survived\n    m.x_other__mutmut_1: not checked\n")
    earlier = "    m.x_kept__mutmut_2: survived\n    m.x_other__mutmut_1: killed\n    m.x_edited__mutmut_2: killed\n"
    assert changed_module.carried(results, earlier, ["m.x_edited__mutmut_*"]) == (
        "    m.x_kept__mutmut_2: survived\n    m.x_other__mutmut_1: killed\n    m.x_kept__mutmut_1: killed\n", [])


def test_an_update_runs_what_no_run_has_checked_yet() -> None:
    # an interrupted run: its unchecked mutants are run by name, its checked ones kept
    results = "# rev abc1234 seconds 99\n    m.x_a__mutmut_1: killed\n    m.x_a__mutmut_2: not checked\n" \
              "    m.x_b__mutmut_1: not checked\n    m.x_c__mutmut_1: no tests\n"
    assert changed_module.carried(results, "", ["m.x_b__mutmut_*"]) == (
        "    m.x_a__mutmut_1: killed\n    m.x_c__mutmut_1: no tests\n", ["m.x_a__mutmut_2"])
