"""`smol undo` and promotion records that tell the truth (issue 14): an applied promotion is taken back exactly,
all or nothing; an earlier outcome is never overwritten; promoting an applied run says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runner.errors import ExitCode
from tests.conftest import tree_fingerprint
from tests.test_agent_e2e import BUGGY
from tests.test_trust import FIX, final, smol_run

SMOL = str(Path(sys.executable).with_name("smol"))


def smol(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([SMOL, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                            env={**os.environ, "PHOENIX_ENABLED": "false"})
    assert "Traceback" not in result.stderr, result.stderr
    return result


def shown(run_id: str) -> dict[str, Any]:
    return json.loads(smol("runs", "show", run_id, "--json").stdout)


def contents(root: Path) -> dict[str, str]:
    return {path: value.rsplit(":", 1)[0] for path, value in tree_fingerprint(root, include_git=False).items()}


@pytest.fixture
def repo(make_repo: Callable[..., Path], sandbox_image: str) -> Path:
    return make_repo("calc", files=BUGGY, dirty=False)


def test_undo_takes_back_exactly_what_was_applied_and_keeps_the_history(repo: Path) -> None:
    before = contents(repo)
    _, summary = smol_run(repo, [*FIX, final("fixed")], "--promote", "auto-if-verified")
    promotion = summary["promotion"]
    assert promotion["outcome"] == "applied" and f"`smol undo {summary['run_id']}`" in promotion["detail"]
    assert contents(repo) != before
    again = smol("promote", summary["run_id"], "--promote", "auto-if-verified")
    assert again.returncode == 0 and "promotion: already applied" in again.stdout, again.stdout
    undone = smol("undo", summary["run_id"])
    assert undone.returncode == 0, undone.stderr
    assert "1 file(s) put back" in undone.stdout
    assert contents(repo) == before  # byte for byte, modes included
    record = shown(summary["run_id"])["promotion"]
    assert record["outcome"] == "undone"
    # Every earlier outcome is still on record, in order: nothing was overwritten.
    assert [earlier["outcome"] for earlier in record["earlier"]] == ["applied", "already applied"]
    twice = smol("undo", summary["run_id"])
    assert twice.returncode == ExitCode.REFUSED and "no applied promotion to undo" in twice.stderr
    assert contents(repo) == before


def test_undo_refuses_with_nothing_written_when_a_file_changed_since(repo: Path) -> None:
    _, summary = smol_run(repo, [*FIX, final("fixed")], "--promote", "auto-if-verified")
    app = repo / "src/app.py"
    app.write_text(app.read_text() + "\n# my own line\n")
    after_edit = tree_fingerprint(repo)
    refused = smol("undo", summary["run_id"])
    assert refused.returncode == ExitCode.REFUSED
    assert "changed since it was applied: src/app.py; nothing was written" in refused.stderr
    assert tree_fingerprint(repo) == after_edit
    assert shown(summary["run_id"])["promotion"]["outcome"] == "applied"
