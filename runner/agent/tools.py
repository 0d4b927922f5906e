"""The agent's 14 tools. Each acts only through the sandbox interface: reads see the sandbox's view (the agent's
own edits included) and writes land in the sandbox, never in the real tree.

Tool names and required parameters are a contract with the prompt and with users' expectations.
Every `forward` returns a dict or raises ToolError; `instrument` turns both into text for the model.
"""

from __future__ import annotations

from typing import Any, ClassVar

from smolagents import Tool

from runner.agent.instrumentation import ToolError
from runner.agent.state import TestOutcome
from runner.agent.toolbase import (  # noqa: F401 - re-exported: the names importers use
    MAX_TEXT_BYTES,
    SNIPPET_CONTEXT_LINES,
    TOOL_TIMEOUT_S,
    PendingPatch,
    SandboxTool,
    ToolContext,
    _optional,
    config_reader,
)
from runner.agent.tools_edit import (  # noqa: F401
    ApplyPatch,
    ProposePatch,
    ProposePatchUnified,
    ShowPatch,
    current_text,
    located_edit,
)
from runner.agent.tools_read import (  # noqa: F401
    GitDiff,
    GitLog,
    GitStatus,
    ListFiles,
    ReadFile,
    ReadFileSnippet,
    RepoInfo,
    RgSearch,
)
from runner.testcmd import classify_test_run, detect_test_command


# ------------------------------------------------------------------------------------------- commands
class RunCmd(SandboxTool):
    name = "run_cmd"
    description = "Run one shell command."
    inputs: ClassVar[dict[str, dict[str, Any]]] = {
        "command": {"type": "string", "description": "command"},
    }

    def forward(self, command: str) -> dict[str, Any]:
        argv = authorise(self.ctx, command)
        result = self.ctx.sandbox.exec(argv, timeout=self.ctx.settings.sandbox_command_timeout)
        return _command_result(result)


def authorise(ctx: ToolContext, command: str) -> str:
    """Policy first; REQUIRE_APPROVAL goes to the gate. The command then runs as the very shell line the policy
    analysed (globs and quoting included), inside the sandbox."""
    from runner.policy import Decision

    verdict = ctx.policy.evaluate(command)
    if verdict.decision is Decision.DENY:
        raise ToolError(f"command denied by policy: {verdict.reason}", error_type="policy_denied",
                        recovery="Use a simpler, single command without pipes or redirections, or another tool.")
    if verdict.decision is Decision.REQUIRE_APPROVAL and not ctx.gate.request("command", command):
        raise ToolError(f"command needs approval and was not approved ({verdict.reason})",
                        error_type="approval_denied",
                        recovery="Do the work with allowed commands (tests, linters, read-only tools) or other tools.")
    return command


def _command_result(result: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"exit_code": result.exit_code}
    if result.timed_out:
        out["timed_out"] = "yes: the command was stopped"
    out["stdout"] = result.stdout
    out["stderr"] = result.stderr
    if result.truncated:
        out["note"] = "output was very long; only its beginning and end are shown"
    return out


class RunTests(SandboxTool):
    name = "run_tests"
    description = "Run the tests; pass/fail counts."
    inputs: ClassVar[dict[str, dict[str, Any]]] = {"command": _optional("string", "override")}

    def forward(self, command: str | None = None) -> dict[str, Any]:
        # The agent's own command is judged by the policy on every call and never remembered: neither a later
        # run_tests() nor the re-verification before promotion ever runs a command the agent chose.
        if command:
            chosen = argv = authorise(self.ctx, command)
        else:
            found = self.ctx.test_command or detect_test_command(self.ctx.sandbox.list_files("*"),
                                                                 config_reader(self.ctx.sandbox))
            if not found:
                raise ToolError("no test command detected", error_type="no_tests",
                                recovery="Pass command, e.g. run_tests(command='python3 -m pytest -q').")
            chosen = argv = found
        result = self.ctx.sandbox.exec(argv, timeout=float(self.ctx.settings.sandbox_command_timeout))
        verdict = classify_test_run(chosen, result.exit_code, result.stdout + "\n" + result.stderr,
                                    timed_out=result.timed_out)
        self.ctx.state.last_tests = TestOutcome(chosen, result.exit_code, verdict.passed, verdict.failed,
                                                verdict.errors, verdict.skipped, result.timed_out, verdict.status)
        summary = (f"{verdict.status.upper()}: {verdict.passed} passed, {verdict.failed} failed, "
                   f"{verdict.errors} errors")
        if verdict.status == "unavailable":
            raise ToolError(verdict.note, error_type="test_runner_missing",
                            recovery="Run the tests another way with run_cmd, or finish and say the tests could "
                                     "not run in the sandbox.")
        answer = {"summary": summary, "command": chosen, **_command_result(result)}
        if verdict.note:
            answer["note"] = verdict.note
        return answer


class FinalAnswer(Tool):
    """smolagents' final_answer with a shorter schema: every token of the tool list is paid on every call."""

    name = "final_answer"
    description = "Finish with a short summary."
    inputs: ClassVar[dict[str, dict[str, Any]]] = {"answer": {"type": "string", "description": "summary"}}
    output_type = "string"

    def forward(self, answer: str) -> str:
        return answer


TOOL_CLASSES: tuple[type[SandboxTool], ...] = (
    RepoInfo, ListFiles, RgSearch, ReadFile, ReadFileSnippet, GitStatus, GitDiff, GitLog,
    ProposePatchUnified, ProposePatch, ShowPatch, ApplyPatch, RunCmd, RunTests,
)


def build_tools(context: ToolContext) -> list[Tool]:
    from runner.agent.instrumentation import instrument

    tools: list[Tool] = [instrument(cls(context), context.state, context.settings) for cls in TOOL_CLASSES]
    return [*tools, FinalAnswer()]
