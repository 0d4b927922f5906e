"""The run is never silent (issue 14): a live "model thinking… N s" line on a terminal, a periodic line in logs,
and step lines that say what matters ("1 failed", "exit 127", "denied") instead of "ok"."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.agent.instrumentation import outcome_of
from runner.live import CLEAR_LINE, LiveStatus
from tests.fake_ollama import FakeOllama, final, tool
from tests.test_agent_e2e import BUGGY
from tests.test_promotion_e2e import Terminal


def test_a_terminal_gets_one_status_line_redrawn_in_place_and_cleared() -> None:
    out = io.StringIO()
    live = LiveStatus(out, interactive=True)
    live.model_event("start")
    time.sleep(1.3)
    live.line("smol: [1] run_tests() 0.20s 1 failed")
    live.model_event("end")
    live.close()
    text = out.getvalue()
    assert CLEAR_LINE + "smol: model thinking… 0 s" in text
    assert CLEAR_LINE + "smol: model thinking… 1 s" in text
    # The progress line starts on a cleared line, and nothing is left drawn at the end.
    assert CLEAR_LINE + "smol: [1] run_tests() 0.20s 1 failed\n" in text
    assert text.endswith(CLEAR_LINE) or text.endswith("\n")
    assert "\n" not in text.replace("smol: [1] run_tests() 0.20s 1 failed\n", "")


def test_a_log_gets_a_plain_line_now_and_then_and_nothing_after_the_model_answered() -> None:
    out = io.StringIO()
    live = LiveStatus(out, interactive=False, quiet_every=0.2)
    live.model_event("start")
    time.sleep(0.75)
    live.model_event("end")
    shown = out.getvalue()
    time.sleep(0.5)
    live.close()
    assert "\r" not in shown and "\x1b" not in shown
    lines = shown.splitlines()
    assert 2 <= len(lines) <= 4, lines
    assert all(re.fullmatch(r"smol: model thinking… \d+ s", line) for line in lines), lines
    assert out.getvalue() == shown  # silent once the model answered


@pytest.mark.parametrize(("tool_name", "result", "expected"), [
    ("run_tests", {"summary": "FAILED: 3 passed, 1 failed, 0 errors", "exit_code": 1}, "3 passed, 1 failed"),
    ("run_tests", {"summary": "PASSED: 4 passed, 0 failed, 0 errors", "exit_code": 0}, "4 passed"),
    ("run_tests", {"summary": "NO TESTS FOUND: 0 passed, 0 failed, 0 errors", "exit_code": 5}, "no tests found"),
    ("run_cmd", {"exit_code": 127, "stdout": "", "stderr": "x: not found"}, "exit 127"),
    ("run_cmd", {"exit_code": 124, "timed_out": "yes: the command was stopped"}, "timed out"),
    ("run_cmd", {"error": "command denied by policy: rm", "error_type": "policy_denied"}, "denied"),
    ("run_cmd", {"error": "needs approval", "error_type": "approval_denied"}, "not approved"),
    ("read_file", {"error": "no such file", "error_type": "not_found"}, "error: not_found"),
    ("read_file", {"content": "x"}, "ok"),
])
def test_step_outcomes_say_what_matters(tool_name: str, result: dict[str, object], expected: str) -> None:
    assert outcome_of(tool_name, result) == expected


def test_a_slow_model_shows_a_live_timer_and_step_results_on_a_terminal(
        make_repo: Callable[..., Path], sandbox_image: str, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo("calc", files=BUGGY, dirty=False)
    script = [{"delay": 2.5, **tool("run_tests")}, tool("run_cmd", command="ls does-not-exist"), final("looked")]
    with FakeOllama(script) as fake:
        monkeypatch.setenv("MODEL_API_BASE", fake.url)
        term = Terminal("run", "Look at the tests", "--repo", str(repo), "--promote", "never")
        term.expect("status: completed", timeout=300)
        assert term.wait() == 0
    shown = term.output.decode(errors="replace")
    assert re.search(r"model thinking… [12] s", shown), shown[-2000:]
    assert re.search(r"\[1\] run_tests\(\) [\d.]+s (\d+ passed, )?\d+ failed", shown), shown[-2000:]
    assert re.search(r"\[2\] run_cmd\(command=ls does-not-exist\) [\d.]+s exit 2", shown), shown[-2000:]


def test_the_models_words_stream_to_a_terminal_with_escapes_neutralised(
        make_repo: Callable[..., Path], sandbox_image: str, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo("calc", files=BUGGY, dirty=False)
    thinking = "Let me look at the failing test first.\x1b]52;c;ZXZpbA==\x07 Then I fix add."
    script = [{"content": thinking, **tool("run_tests")}, final("looked")]
    with FakeOllama(script) as fake:
        monkeypatch.setenv("MODEL_API_BASE", fake.url)
        term = Terminal("run", "Look at the tests", "--repo", str(repo), "--promote", "never")
        term.expect("status: completed", timeout=300)
        assert term.wait() == 0
        assert all(request.get("stream") for request in fake.requests), "a watched model is read as a stream"
    shown = term.output.decode(errors="replace")
    assert "smol: model ▸ Let me look at the failing test first." in shown, shown[-2000:]
    assert "\x1b]52" not in shown and "\x07" not in shown  # no clipboard write reaches the terminal
    assert re.search(r"\[1\] run_tests\(\) [\d.]+s (\d+ passed, )?\d+ failed", shown), shown[-2000:]


def test_without_a_terminal_the_model_is_not_streamed(make_repo: Callable[..., Path], sandbox_image: str) -> None:
    import json
    import os
    import subprocess
    import sys

    repo = make_repo("calc", files=BUGGY, dirty=False)
    with FakeOllama([{"content": "thinking", **tool("git_log")}, final("done")]) as fake:
        env = {**os.environ, "MODEL_API_BASE": fake.url, "PHOENIX_ENABLED": "false"}
        result = subprocess.run([str(Path(sys.executable).with_name("smol")), "run", "x", "--repo", str(repo),
                                 "--json", "--promote", "never"], capture_output=True, text=True, env=env,
                                stdin=subprocess.DEVNULL, timeout=300)
        assert json.loads(result.stdout)["status"] == "completed"
        assert not any(request.get("stream") for request in fake.requests)
    assert "▸" not in result.stderr
