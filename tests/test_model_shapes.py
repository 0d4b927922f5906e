"""The small-model corpus (tests/model_shapes.py) through the real agent loop: the scripted model answers in each
shape, the real engine and git run the tools. Every shape must reach the fix without a wasted step, and the reader's
repairs are recorded with the run. Ambiguous output ends in one specific hint, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runner.agent.reader import OutputReader, ReadError
from tests.fake_ollama import Answer, FakeOllama, final, tool
from tests.model_shapes import ARGS, NEW, SHAPES, Shape
from tests.test_agent_e2e import BUGGY

SMOL = str(Path(sys.executable).with_name("smol"))


def run_shape(repo: Path, answer: Answer) -> tuple[dict[str, Any], FakeOllama]:
    """The shape's answer proposes the fix; the model then applies it (unless the shape already did) and ends."""
    applies_itself = "apply_patch" in json.dumps(answer)
    script: list[Answer] = [answer] + ([] if applies_itself else [tool("apply_patch", patch_id="p1")]) \
        + [final("fixed add")]
    with FakeOllama(script) as fake:
        env = {**os.environ, "MODEL_API_BASE": fake.url, "PHOENIX_ENABLED": "false"}
        result = subprocess.run([SMOL, "run", "Fix add", "--repo", str(repo), "--json", "--promote", "never"],
                                env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout), fake


def reached_the_fix_cleanly(summary: dict[str, Any]) -> bool:
    """The fix is in the change and no step was wasted on a format error."""
    files = [f["path"] for f in summary["diff"]["files"]]
    return summary["status"] == "completed" and files == ["src/app.py"] and not summary["model_errors"] \
        and summary["tools_used"].get("propose_patch") == 1 and summary["tools_used"].get("apply_patch") == 1


@pytest.fixture
def repo(make_repo: Callable[..., Path], sandbox_image: str) -> Path:
    return make_repo("calc", files=BUGGY, dirty=False)


def test_the_corpus_is_large_and_labelled() -> None:
    assert len(SHAPES) >= 25
    assert len({shape.name for shape in SHAPES}) == len(SHAPES)
    assert all(shape.source and shape.family for shape in SHAPES)


@pytest.mark.parametrize("shape", SHAPES, ids=[shape.name for shape in SHAPES])
def test_each_shape_reaches_the_fix_without_a_wasted_step(repo: Path, shape: Shape) -> None:
    summary, _ = run_shape(repo, shape.answer)
    assert reached_the_fix_cleanly(summary), summary
    # What the reader repaired is recorded with the run (a clean native call needs no repair).
    repaired = summary["output_repairs"]
    assert (repaired == 0) if shape.name == "native call" else (repaired >= 1), (shape.name, repaired)
    shown = subprocess.run([SMOL, "runs", "show", summary["run_id"]], capture_output=True, text=True,
                           env={**os.environ, "PHOENIX_ENABLED": "false"}, check=True).stdout
    assert (f"output repairs: {repaired}" in shown) if repaired else ("output repairs" not in shown)


def test_an_unreadable_answer_gets_one_specific_hint_then_the_run_goes_on(repo: Path) -> None:
    summary, fake = run_shape(repo, {"content": '{"nme": "propose_patch", "argz": 1}'})
    assert summary["status"] == "completed"
    assert "no tool call could be read" in summary["model_errors"][0]
    # What the model is told next: the reader's one line (the tools that exist, the form of a call).
    told = "\n".join(str(m.get("content")) for m in fake.requests[1]["messages"])
    hint = next(line for line in told.splitlines() if "no tool call could be read" in line)
    assert "propose_patch" in hint and '"arguments"' in hint and len(hint) < 600, hint
    assert "Traceback" not in told


# ---------------------------------------------------------------- the reader alone: strict where it matters
TOOLS = {"propose_patch": {"path", "old_text", "new_text"}, "read_file": {"path"}, "read_file_snippet": {"path"},
         "apply_patch": {"patch_id"}, "run_cmd": {"command"}, "final_answer": {"answer"}}


def reader() -> OutputReader:
    return OutputReader(TOOLS)


def test_an_ambiguous_tool_name_is_refused_with_the_names_that_exist() -> None:
    with pytest.raises(ReadError, match="there is no tool 'read'.*read_file, read_file_snippet"):
        reader().read_text('{"name": "read", "arguments": {"path": "a"}}')


def test_an_argument_that_maps_to_no_parameter_is_refused() -> None:
    with pytest.raises(ReadError, match="read_file has no argument 'lines': its arguments are path"):
        reader().read_text('{"name": "read_file", "arguments": {"path": "a", "lines": "1-3"}}')


def test_an_alias_next_to_its_parameter_is_refused_not_guessed() -> None:
    with pytest.raises(ReadError, match="got 'path' twice"):
        reader().read_text('{"name": "read_file", "arguments": {"path": "a", "file_path": "b"}}')


def test_prose_is_the_final_answer_and_json_garbage_is_not() -> None:
    reading = reader().read_text("The tests pass now; add() adds.")
    assert [(c.name, c.arguments) for c in reading.calls] == [("final_answer",
                                                               {"answer": "The tests pass now; add() adds."})]
    with pytest.raises(ReadError):
        reader().read_text("{not json at all")


def test_a_final_answer_next_to_other_calls_runs_them_first() -> None:
    reading = reader().read_text(json.dumps([{"name": "apply_patch", "arguments": {"patch_id": "p1"}},
                                             {"name": "final_answer", "arguments": {"answer": "done"}}]))
    assert [c.name for c in reading.calls] == ["apply_patch", "final_answer"]  # the model drops the final later


def test_the_xml_format_keeps_multiline_values_exactly() -> None:
    text = next(s for s in SHAPES if s.name == "qwen3-coder XML").answer["content"]
    reading = reader().read_text(text)
    assert reading.calls[0].arguments == ARGS
    assert reading.calls[0].arguments["new_text"] == NEW


# ---------------------------------------------------------------- a run longer than the context window
def test_a_run_past_the_context_window_compacts_older_outputs_and_finishes(
        make_repo: Callable[..., Path], sandbox_image: str) -> None:
    from runner.agent.session import COMPACTED

    files = {**BUGGY, **{f"docs/big{i}.txt": "".join(f"line {n} of a long document {i}\n" for n in range(400))
                         for i in range(8)}}
    repo = make_repo("calc", files=files, dirty=False)
    reads: list[Answer] = [{**tool("read_file", path=f"docs/big{i}.txt"), "count_prompt": True} for i in range(8)]
    script = [*reads, {**tool("propose_patch", path="src/app.py", old_text="def add(a, b):\n    return a - b",
                              new_text="def add(a, b):\n    return a + b"), "count_prompt": True},
              {**tool("apply_patch", patch_id="p1"), "count_prompt": True}, final("fixed add")]
    with FakeOllama(script) as fake:
        env = {**os.environ, "MODEL_API_BASE": fake.url, "PHOENIX_ENABLED": "false", "MODEL_NUM_CTX": "4096"}
        result = subprocess.run([SMOL, "run", "Fix add in src/app.py", "--repo", str(repo), "--json", "--promote",
                                 "never"], env=env, capture_output=True, text=True, timeout=300,
                                stdin=subprocess.DEVNULL)
    summary = json.loads(result.stdout)
    assert summary["status"] == "completed" and summary["diff"]["files"][0]["path"] == "src/app.py", summary
    compactions = summary["context_compactions"]
    assert compactions and all(c["limit"] == 4096 and c["prompt_tokens"] >= 0.75 * 4096 for c in compactions)
    last = json.dumps(fake.requests[-1]["messages"])
    assert COMPACTED in last and "Fix add in src/app.py" in last  # older outputs gone, the task kept
    assert len(last) // 4 < 4096, "the prompt stays inside the window"
    shown = subprocess.run([SMOL, "runs", "show", summary["run_id"]], capture_output=True, text=True,
                           env={**os.environ, "PHOENIX_ENABLED": "false"}, check=True).stdout
    assert f"context compacted {len(compactions)} time(s)" in shown


def test_prose_that_announces_a_step_is_not_taken_as_the_final_answer() -> None:
    for plan in ("Let me read src/app.py first.", "I'll run the tests now.", "First I need to see the failing test."):
        with pytest.raises(ReadError, match="called no tool"):
            reader().read_text(plan)
    done = reader().read_text("Fixed: add() now adds, and both tests pass.")
    assert done.calls[0].name == "final_answer"
