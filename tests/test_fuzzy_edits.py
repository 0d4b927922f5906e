"""Edits that survive small-model sloppiness (issue 11), never at the wrong place: runner.agent.fuzzy alone, then
propose_patch / propose_patch_unified through the real agent loop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.agent.fuzzy import EditError, apply_edit
from tests.fake_ollama import FakeOllama, final, tool

SMOL = str(Path(sys.executable).with_name("smol"))
CODE = "class Calc:\n    def add(self, a, b):\n        return a - b\n\n    def sub(self, a, b):\n        return a - b\n"


def test_exact_text_is_used_as_it_is() -> None:
    edit = apply_edit(CODE, "    def add(self, a, b):\n        return a - b",
                      "    def add(self, a, b):\n        return a + b")
    assert edit.how == "exact" and "return a + b" in edit.updated and edit.updated.count("a - b") == 1


def test_trailing_whitespace_drift_is_forgiven() -> None:
    edit = apply_edit(CODE, "    def add(self, a, b):   \n        return a - b  ", "    def add(self, a, b):\n"
                                                                                   "        return a + b")
    assert edit.how == "ignoring trailing whitespace"
    assert edit.updated == CODE.replace("def add(self, a, b):\n        return a - b",
                                        "def add(self, a, b):\n        return a + b")


def test_indentation_drift_is_forgiven_and_the_replacement_reindented() -> None:
    edit = apply_edit(CODE, "def add(self, a, b):\n    return a - b", "def add(self, a, b):\n    return a + b")
    assert edit.how == "ignoring indentation"
    assert edit.updated == CODE.replace("def add(self, a, b):\n        return a - b",
                                        "def add(self, a, b):\n        return a + b")


def test_crlf_files_keep_their_line_endings() -> None:
    crlf = CODE.replace("\n", "\r\n")
    edit = apply_edit(crlf, "    def add(self, a, b):\n        return a - b", "    def add(self, a, b):\n"
                                                                             "        return a + b")
    assert edit.how == "with the file's CRLF line endings"
    assert edit.updated == crlf.replace("return a - b\r\n\r\n    def sub", "return a + b\r\n\r\n    def sub")
    assert "\n" not in edit.updated.replace("\r\n", "")
    drifted = apply_edit(crlf, "def add(self, a, b):\n    return a - b", "def add(self, a, b):\n    return a + b")
    assert drifted.updated.count("\r\n") == crlf.count("\r\n") and "return a + b\r\n" in drifted.updated


def test_a_close_match_is_taken_only_when_it_stands_alone() -> None:
    typo = "    def add(self, a, b):\n        return a-b"  # the spacing of the file is not the model's
    edit = apply_edit(CODE, typo, "    def add(self, a, b):\n        return a + b")
    assert edit.how.startswith("by a close match") and "return a + b" in edit.updated
    assert edit.updated.count("return a - b") == 1  # sub() untouched


@pytest.mark.parametrize("old_text", [
    "return a - b",                                   # exact, twice
    "        return a - b   ",                        # ignoring trailing whitespace, twice
    "return a - b\n",                                 # ignoring indentation, twice
])
def test_two_candidate_locations_are_refused(old_text: str) -> None:
    with pytest.raises(EditError) as error:
        apply_edit(CODE, old_text, "return a + b")
    assert error.value.kind == "ambiguous_match"
    assert "2 times" in str(error.value) or "2 places" in str(error.value)  # what the model is told


def test_a_close_match_near_two_places_is_refused() -> None:
    twins = "def f():\n    return 1\n\ndef g():\n    return 1\n"
    with pytest.raises(EditError) as error:
        apply_edit(twins, "def h():\n    return 1", "def h():\n    return 2")
    assert error.value.kind == "ambiguous_match"


def test_nothing_alike_is_no_match() -> None:
    with pytest.raises(EditError) as error:
        apply_edit(CODE, "def multiply(x, y):\n    return x * y", "x")
    assert error.value.kind == "no_match"


# ---------------------------------------------------------------- through the real loop
INDENTED = {"src/calc.py": CODE, "tests/test_calc.py": "from src.calc import Calc\n\n\ndef test_add():\n"
                                                        "    assert Calc().add(1, 2) == 3\n",
            "src/__init__.py": "", "tests/__init__.py": ""}


def run(repo: Path, script: list[dict[str, object]]) -> tuple[dict[str, object], FakeOllama]:
    with FakeOllama(script) as fake:
        env = {**os.environ, "MODEL_API_BASE": fake.url, "PHOENIX_ENABLED": "false"}
        result = subprocess.run([SMOL, "run", "Fix add", "--repo", str(repo), "--json", "--promote", "never"],
                                env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout), fake


def test_an_unindented_old_text_fixes_the_method_and_says_how(make_repo: Callable[..., Path],
                                                               sandbox_image: str) -> None:
    repo = make_repo("calc", files=INDENTED, dirty=False)
    summary, fake = run(repo, [tool("propose_patch", path="src/calc.py", old_text="def add(self, a, b):\n"
                                    "    return a - b", new_text="def add(self, a, b):\n    return a + b"),
                               tool("apply_patch", patch_id="p1"), tool("run_tests"), final("fixed")])
    assert summary["tests"]["ok"] is True, summary  # indented right: the module still imports and passes
    told = "\n".join(str(m.get("content")) for m in fake.requests[1]["messages"])
    assert "with old_text found ignoring indentation: check the hunk below" in told


def test_a_unified_diff_with_wrong_line_numbers_applies_by_content(make_repo: Callable[..., Path],
                                                                     sandbox_image: str) -> None:
    repo = make_repo("calc", files=INDENTED, dirty=False)
    wrong = ("--- a/src/calc.py\n+++ b/src/calc.py\n@@ -40,9 +40,9 @@\n     def add(self, a, b):\n"
             "-        return a - b\n+        return a + b\n")
    summary, _ = run(repo, [tool("propose_patch_unified", diff=wrong), tool("apply_patch", patch_id="p1"),
                            tool("run_tests"), final("fixed")])
    assert summary["tests"]["ok"] is True, summary
    assert not summary["model_errors"]


def test_hunks_are_read_by_content_and_new_or_deleted_files_are_not() -> None:
    from runner.agent.fuzzy import hunk_edits

    diff = ("--- a/x.sql\n+++ b/x.sql\n@@ -9,3 +9,3 @@\n select 1;\n--- a comment removed\n+-- a comment kept\n"
            "@@ -99 +99 @@\n-old\n+new\n")
    assert hunk_edits(diff) == [("x.sql", "select 1;\n-- a comment removed", "select 1;\n-- a comment kept"),
                                ("x.sql", "old", "new")]
    assert hunk_edits("--- /dev/null\n+++ b/new.py\n@@ -0,0 +1 @@\n+x\n") is None
    assert hunk_edits("--- a/gone.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n") is None
    assert hunk_edits("not a diff") is None
