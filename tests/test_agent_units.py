"""Pure units of the agent layer: loop detection, the instrumentation wrapper, truncation, diff stats, prompt."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
from smolagents import Tool

from runner.agent.approval import ApprovalGate
from runner.agent.instrumentation import ToolError, instrument, truncate_text
from runner.agent.session import diff_stat
from runner.agent.state import LoopVerdict, RunState, StepRecord, arguments_hash
from runner.config import load_settings


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    monkeypatch.chdir(tmp_path)
    return load_settings(truncation_max_chars=300, truncation_max_lines=10, validation_max_chars=100)


class Echo(Tool):
    name = "echo"
    description = "echo"
    inputs: ClassVar[dict[str, dict[str, Any]]] = {
        "path": {"type": "string", "description": "p"},
        "count": {"type": "integer", "description": "n", "nullable": True},
    }
    output_type = "string"

    def forward(self, path: str, count: int | None = None) -> dict[str, Any]:
        if path == "fail":
            raise ToolError("it failed", error_type="scripted", recovery="do the other thing")
        if path == "crash":
            raise RuntimeError("boom")
        return {"path": path, "content": "\n".join(f"line {i}" for i in range(count or 1))}


def record(state: RunState, tool: str, args: dict[str, Any]) -> None:
    state.record(StepRecord(state.next_index(), tool, args, arguments_hash(args), "", 0.0))


def test_repeats_hint_then_stop() -> None:
    state = RunState()
    verdicts = []
    for _ in range(5):
        verdicts.append(state.check_loop("read_file", arguments_hash({"path": "a"}))[0])
        record(state, "read_file", {"path": "a"})
    assert verdicts == [LoopVerdict.NONE, LoopVerdict.NONE, LoopVerdict.HINT, LoopVerdict.HINT, LoopVerdict.STOP]
    assert state.check_loop("read_file", arguments_hash({"path": "b"}))[0] is LoopVerdict.NONE


def test_oscillation_hint_then_stop() -> None:
    state = RunState()
    verdicts = []
    for index in range(6):
        args = {"path": "a"} if index % 2 == 0 else {"path": "b"}
        verdicts.append(state.check_loop("read_file", arguments_hash(args))[0])
        record(state, "read_file", args)
    assert verdicts[:3] == [LoopVerdict.NONE] * 3
    assert verdicts[3] is LoopVerdict.HINT and verdicts[5] is LoopVerdict.STOP


def test_the_same_read_with_others_between_is_a_loop_until_something_changes() -> None:
    state = RunState()
    verdicts = []
    for other in ("b", "c", "d", "e", "f"):  # A B A C A D A E A F: A five times, nothing changed
        verdicts.append(state.check_loop("read_file", arguments_hash({"path": "a"}))[0])
        record(state, "read_file", {"path": "a"})
        record(state, "read_file", {"path": other})
    assert verdicts == [LoopVerdict.NONE, LoopVerdict.NONE, LoopVerdict.HINT, LoopVerdict.HINT, LoopVerdict.STOP]
    # After an edit, the same read (or the same test run) may well answer differently.
    fresh = RunState()
    for _ in range(6):
        assert fresh.check_loop("run_tests", arguments_hash({}))[0] is LoopVerdict.NONE
        record(fresh, "run_tests", {})
        record(fresh, "read_file", {"path": "a"})
        record(fresh, "apply_patch", {"patch_id": f"p{_}"})


def test_a_stopped_call_is_not_made(settings: Any) -> None:
    calls: list[str] = []

    class Counting(Tool):
        name = "read_file"
        description = "d"
        inputs: ClassVar[dict[str, dict[str, Any]]] = {"path": {"type": "string", "description": "p"}}
        output_type = "string"

        def forward(self, path: str) -> dict[str, Any]:
            calls.append(path)
            return {"content": "same"}

    state = RunState()
    tool = instrument(Counting(), state, settings)
    outputs = [tool.forward(path="a") for _ in range(5)]
    assert len(calls) == 4, "the fifth identical call must not run"
    assert "loop_detected" in outputs[-1] and state.stop_reason is not None


def test_progress_is_not_a_loop() -> None:
    state = RunState()
    for index in range(12):
        args = {"path": f"file{index}.py"}
        assert state.check_loop("read_file", arguments_hash(args))[0] is LoopVerdict.NONE
        record(state, "read_file", args)


def test_wrapper_keeps_the_signature_and_normalises_everything(settings: Any) -> None:
    import inspect

    state = RunState()
    tool = instrument(Echo(), state, settings)
    assert list(inspect.signature(tool.forward).parameters) == ["path", "count"]
    assert tool(path="a.txt") == "path: a.txt\ncontent: line 0"
    failed = tool(path="fail")
    assert "error: it failed" in failed and "error_type: scripted" in failed
    assert "recovery_suggestion: do the other thing" in failed
    crashed = tool(path="crash")
    assert "error_type: internal_error" in crashed and "boom" in crashed
    refused = tool(path="../secret")
    assert "error_type: invalid_path" in refused
    too_long = tool(path="x" * 101)
    assert "error_type: input_too_large" in too_long
    long_output = tool(path="many", count=500)
    assert "output truncated" in long_output and "line 0" in long_output and "line 499" in long_output
    assert [s.error_type for s in state.steps] == [None, "scripted", "internal_error", "invalid_path",
                                                    "input_too_large", None]
    assert state.steps[-1].truncated is True


def test_stop_verdict_calls_back(settings: Any) -> None:
    state = RunState()
    stopped: list[str] = []
    state.on_stop(stopped.append)
    tool = instrument(Echo(), state, settings)
    outputs = [tool(path="same") for _ in range(5)]
    assert "hint:" in outputs[2]
    assert "stopped:" in outputs[4]
    assert stopped and "5 times in a row" in stopped[0]


def test_truncation_keeps_head_and_tail(settings: Any) -> None:
    text = "\n".join(f"row {i}" for i in range(1000))
    rendered = truncate_text(text, settings)
    assert rendered.truncated and rendered.text.startswith("row 0") and rendered.text.endswith("row 999")
    assert len(rendered.text) < 600
    assert truncate_text("short", settings).truncated is False


def test_approval_without_a_tty_never_waits() -> None:
    state = RunState()
    assert ApprovalGate(state, asker=None).request("command", "pip install x") is False
    assert ApprovalGate(state, asker=None, non_interactive="approve").request("command", "pip install x") is True
    answers = iter(["run"])
    gate = ApprovalGate(state, asker=lambda kind, subject: next(answers))
    assert gate.request("command", "npm ci") and gate.request("command", "npm ci")
    assert [(a.outcome, a.scope) for a in state.approvals] == [("denied", "config"), ("approved", "config"),
                                                               ("approved", "run"), ("approved", "run")]


def test_diff_stat() -> None:
    patch = (b"diff --git a/x.py b/x.py\nindex 1..2 100644\n--- a/x.py\n+++ b/x.py\n@@ -1 +1,2 @@\n-a\n+b\n+c\n"
             b"diff --git a/img.png b/img.png\nnew file mode 100644\nGIT binary patch\nliteral 1\n")
    stat = diff_stat(patch)
    assert [(f.path, f.added, f.removed, f.binary) for f in stat.files] == [("x.py", 2, 1, False),
                                                                          ("img.png", 0, 0, True)]


def test_system_prompt_and_schemas_stay_within_the_budget() -> None:
    from runner.agent.prompt import PROMPT_BUDGET_TOKENS, prompt_token_counts
    from runner.sandbox.memory import MemorySandbox

    counts = prompt_token_counts(MemorySandbox())
    assert counts["tools"] == 15  # the 14 tools of the contract and final_answer
    total = counts["system_prompt"] + counts["schemas"]
    assert total <= PROMPT_BUDGET_TOKENS, f"{total} tokens: shorten a description before adding one"
    assert counts["default_system_prompt"] > 2 * counts["system_prompt"]


def test_the_model_has_one_retry_loop_not_two() -> None:
    from runner.agent.model import RETRIES, build_model
    from runner.config import load_settings

    model = build_model(load_settings())
    assert model.retryer.max_attempts == 1  # smolagents' own loop is off; ours retries RETRIES times
    assert RETRIES == 2
