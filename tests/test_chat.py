"""`smol chat` as a REPL (issue 14): /help, /diff, /undo, /tests and /exit are handled locally — never sent to
the model — on a real terminal, with the real sandbox and a scripted model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import tree_fingerprint
from tests.fake_ollama import FakeOllama, final, tool
from tests.test_agent_e2e import BUGGY
from tests.test_promotion_e2e import Terminal


def test_slash_commands_are_local_and_undo_takes_back_exactly_the_last_task(
        make_repo: Callable[..., Path], sandbox_image: str, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo("calc", files=BUGGY, dirty=False)
    before = tree_fingerprint(repo)
    script = [tool("propose_patch", path="NOTES.md", old_text="", new_text="first task\n"),
              tool("apply_patch", patch_id="p1"), final("notes written"),
              tool("propose_patch", path="src/app.py", old_text="def add(a, b):\n    return a - b",
                   new_text="def add(a, b):\n    return a + b"),
              tool("apply_patch", patch_id="p2"), final("add fixed")]
    with FakeOllama(script) as fake:
        monkeypatch.setenv("MODEL_API_BASE", fake.url)
        term = Terminal("chat", "--repo", str(repo), "--promote", "never", "--no-verify")
        term.expect("task> ")
        term.send("/help\n")
        term.expect("/undo    take back")
        term.send("/undo\n")
        term.expect("nothing to undo")
        term.send("write notes\n")
        term.expect("[completed] notes written")
        term.send("fix add\n")
        term.expect("[completed] add fixed")
        term.send("/diff\n")
        term.expect("2 file(s), +2 -1")
        term.send("/tests\n")
        term.expect("tests: passed (")
        term.send("/undo\n")
        term.expect("undone: the sandbox holds the change as it was before the last task")
        term.send("/diff\n")
        term.expect("1 file(s), +1 -0")
        term.send("/tests\n")
        term.expect("tests: failed (")
        term.send("/frobnicate\n")
        term.expect("unknown command /frobnicate: /help lists them")
        term.send("/exit\n")
        term.expect("run: ")
        assert term.wait() == 0
        # Two tasks and their tool calls reached the model; not one slash command did.
        sent = [message.get("content") for request in fake.requests for message in request.get("messages", [])
                if message.get("role") == "user"]
    assert not any("/help" in str(text) or "/diff" in str(text) or "/frobnicate" in str(text) for text in sent)
    shown = term.output.decode(errors="replace")
    after_exit = shown[shown.rindex("run: "):]
    assert "NOTES.md" in after_exit and "src/app.py" not in after_exit  # the undone task is not in the change
    assert tree_fingerprint(repo) == before  # --promote never: the tree is untouched
