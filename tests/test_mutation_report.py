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
