"""A finished session becomes a run record: what the agent did, its change, and the base and final states of every
path the change touches (what promotion later checks against the reviewed patch)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.agent.session import AgentSession, TaskOutcome
    from runner.records import RunRecord, RunStore


def record_run(session: AgentSession, task: str, repo: Path, outcome: TaskOutcome, patch: bytes,
               summary: dict[str, Any]) -> tuple[RunRecord, RunStore]:
    from runner.promote.flow import capture_files
    from runner.records import RunRecord, RunStore, new_run_id

    settings = session.settings
    base_files, final_files = capture_files(session.sandbox, patch) if patch else ({}, {})
    store = RunStore(settings.runs_db or None)
    steps = session.state.to_dict()
    record = RunRecord(
        id=new_run_id(), created_at=time.time(), task=task, repo=str(repo), base_state=base_state(repo),
        model=settings.model_id, status=outcome.status, reason=outcome.reason, answer=outcome.answer,
        steps=steps["steps"], approvals=steps["approvals"], summary=summary,
        diff=patch, base_files=base_files, final_files=final_files,
    )
    store.save(record)
    return record, store


def base_state(repo: Path) -> dict[str, Any]:
    """The commit the run started from. Only `rev-parse`: host-side git never runs filters or hooks here."""
    from runner.promote.apply import GIT_ENV, SAFE_GIT

    head = subprocess.run([*SAFE_GIT, "-c", f"safe.directory={repo}", "-C", str(repo), "rev-parse", "HEAD"],
                          capture_output=True, text=True, env=GIT_ENV)
    return {"vcs": "git", "head": head.stdout.strip()} if head.returncode == 0 else {"vcs": "none"}
