"""Re-verification: the change applied in a fresh sandbox built from the user's current tree, and the tests run.

The test command is the user's (SMOL_TEST_COMMAND) or detected from the current tree before the change lands;
never one the agent ran or chose. Only "passed" with at least one test counted as passing verifies a change, and
`--promote auto-if-verified` applies nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from runner.promote.apply import Plan

if TYPE_CHECKING:
    from runner.config import Settings


@dataclass
class Verification:
    status: str
    """"passed", "failed", "no tests ran" (the command succeeded but no test was counted), "no tests found",
    "timed out", "unavailable" (the runner is not in the image), "skipped" or "error". Only "passed" verifies."""
    command: str | None = None
    passed: int = 0
    failed: int = 0
    output_tail: str = ""
    note: str = ""
    source: str = ""
    """Where the command came from: SMOL_TEST_COMMAND, or detection on your current tree. Never the agent."""

    def render(self) -> str:
        origin = f" ({self.source})" if self.source else ""
        if self.status in ("passed", "failed"):
            return f"{self.status} ({self.passed} passed, {self.failed} failed) with `{self.command}`{origin}"
        text = f"{self.status}: {self.note}" if self.note else self.status
        return text + (f" with `{self.command}`{origin}" if self.command else "")


def verification_command(settings: Settings, files: list[str]) -> tuple[str | None, str]:
    """The command that verifies a change, and where it came from: the user's SMOL_TEST_COMMAND, else the one
    detected from the files of the user's current tree (before the change is applied, so the change cannot choose
    it). A command the agent ran is never used: verification must not mean what the agent says it means."""
    from runner.testcmd import detect_test_command

    if settings.smol_test_command.strip():
        return settings.smol_test_command.strip(), "SMOL_TEST_COMMAND"
    return detect_test_command(files), "detected from your tree's files"


def verify_plan(repo: Path, plan: Plan, settings: Settings) -> Verification:
    """Apply the plan in a fresh sandbox built from the current real tree and run the tests there.

    "passed" needs the command to succeed *and* at least one test to have been counted as passing."""
    from runner.sandbox.docker_sandbox import DockerSandbox
    from runner.testcmd import classify_test_run

    with DockerSandbox(repo, settings) as box:
        command, source = verification_command(settings, box.list_files("*"))
        # Deletions first, deepest first, as apply_plan does: a directory that becomes a file must be gone (and
        # emptied) before the file is written in its place.
        deleted = sorted((c.path for c in plan.changes if c.after is None), key=lambda p: (-p.count("/"), p))
        if deleted:
            box.exec(["rm", "-f", "--", *deleted])
        emptied = {str(PurePosixPath(path).parent) for path in deleted}
        for change in plan.changes:
            if change.after is None:
                continue
            if change.path in emptied:
                box.exec(["bash", "-c", '[ -d "$1" ] && [ ! -L "$1" ] && rmdir -p --ignore-fail-on-non-empty -- "$1";'
                          " true", "rmdir", change.path])
            if change.after.kind == "symlink":
                box.exec(["bash", "-c", 'mkdir -p -- "$(dirname -- "$2")" && ln -sfn -- "$1" "$2"', "link",
                          change.after.data.decode("utf-8", "surrogateescape"), change.path])
            else:
                box.write(change.path, change.after.data, executable=change.after.executable)
        if command is None:
            return Verification("no tests found", note="no test command detected; set SMOL_TEST_COMMAND",
                                source=source)
        result = box.exec(command, timeout=settings.sandbox_command_timeout)
    verdict = classify_test_run(command, result.exit_code, result.stdout + "\n" + result.stderr,
                                timed_out=result.timed_out)
    tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
    status, note = verdict.status, verdict.note
    if status == "passed" and (verdict.passed < 1 or verdict.failed or verdict.errors):
        status, note = "no tests ran", "the command succeeded but no passing test was counted in its output"
    return Verification(status, command, verdict.passed, verdict.failed, tail, note, source)



__all__ = ["Verification", "verification_command", "verify_plan"]
