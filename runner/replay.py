"""Replay: re-run a recorded run's tool calls, without a model, in a fresh sandbox, and compare the diffs.

The fresh sandbox is built from the repo as it is now, with the touched paths put back to their recorded base
state, so a run whose change was already promoted still replays from where it started.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.config import Settings
    from runner.records import RunRecord


def replay_run(record: RunRecord, settings: Settings, progress: Callable[[str], None]) -> tuple[bool, bytes]:
    """(whether the replay reproduced the recorded change, the replay's diff); the sandbox is gone on return."""
    from pathlib import Path

    from runner.sandbox.docker_sandbox import DockerSandbox, check_repo

    with DockerSandbox(check_repo(Path(record.repo)), settings, progress=progress) as sandbox:
        return _replay(sandbox, record, settings, progress)


def _replay(sandbox: Any, record: RunRecord, settings: Settings,
            progress: Callable[[str], None]) -> tuple[bool, bytes]:
    from pathlib import Path

    from runner.agent.approval import ApprovalGate
    from runner.agent.checkpoint import restore_states
    from runner.agent.state import RunState
    from runner.agent.tools import ToolContext, build_tools
    from runner.policy import CommandPolicy

    restore_states(sandbox, record.base_files)
    baseline = sandbox.diff()

    approved = {(a["kind"], a["subject"]) for a in record.approvals if a["outcome"] == "approved"}
    state = RunState()
    gate = ApprovalGate(state, asker=lambda kind, subject: "once" if (kind, subject) in approved else "deny")
    policy = CommandPolicy.from_file(Path(settings.policy_file)) if settings.policy_file else CommandPolicy.default()
    tools: dict[str, Any] = {t.name: t for t in build_tools(ToolContext(sandbox, state, settings, policy, gate))}
    for step in record.steps:
        tool = tools.get(step["tool"])
        if tool is None:
            progress(f"[{step['index']}] {step['tool']}: unknown tool, skipped")
            continue
        tool(**step["arguments"])
        progress(f"[{step['index']}] {step['tool']} replayed")
    patch = sandbox.diff()
    replayed = sandbox.export_files(list(record.final_files))
    same_files = {path: replayed.get(path) for path in record.final_files} == record.final_files
    if baseline:
        # The tree moved on since the run (e.g. the change was promoted): the restored base shows up in the
        # diff, so the touched files' final states are what must match.
        return same_files, patch
    return same_files and patch == record.diff, patch
