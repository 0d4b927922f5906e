"""One agent session over one sandbox: builds the tools and the model, runs tasks, and reports what happened."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.agent.approval import ApprovalGate, Asker
from runner.agent.prompt import prompt_templates
from runner.agent.state import RunState, StepRecord
from runner.agent.tools import ToolContext, build_tools
from runner.textsafe import sanitize_for_terminal

if TYPE_CHECKING:
    from smolagents import Model

    from runner.config import Settings
    from runner.policy import CommandPolicy
    from runner.sandbox.base import Sandbox

MODEL_ERRORS_BEFORE_STOP = 5
"""Consecutive steps whose model output could not be used before the run gives up."""

Progress = Callable[[str], None]


@dataclass
class TaskOutcome:
    status: str
    """"completed", "stopped" (loop or repeated bad output), "max_steps", or "model_error"."""
    answer: str
    reason: str = ""
    duration_s: float = 0.0


@dataclass
class FileStat:
    path: str
    added: int
    removed: int
    binary: bool = False


@dataclass
class DiffStat:
    files: list[FileStat] = field(default_factory=list)

    @property
    def added(self) -> int:
        return sum(f.added for f in self.files)

    @property
    def removed(self) -> int:
        return sum(f.removed for f in self.files)

    def render(self) -> str:
        if not self.files:
            return "no changes"
        # A path is the agent's choice of bytes: shown escaped, as the review shows it.
        lines = [f"  {sanitize_for_terminal(f.path, single_line=True)}: "
                 + ("binary" if f.binary else f"+{f.added} -{f.removed}") for f in self.files]
        return "\n".join(lines + [f"  {len(self.files)} file(s), +{self.added} -{self.removed}"])


def diff_stat(patch: bytes) -> DiffStat:
    """Per-file added/removed line counts of a git patch, without running git.

    Counted by hunk structure (the guard's `line_counts`), so a content line such as `+++x` or `--- note` counts
    like any other and the numbers match what the review shows."""
    from runner.promote.linecounts import line_counts

    return DiffStat([FileStat(c.path, c.added, c.removed, c.binary) for c in line_counts(patch)])


COMPACT_AT = 0.75
"""Share of MODEL_NUM_CTX the last prompt may fill before older tool outputs are compacted."""
KEEP_RECENT = 2
"""Latest tool outputs kept whole."""
COMPACTED = "[compacted: an older tool output was dropped to fit the context window]"


class AgentSession:
    def __init__(
        self,
        sandbox: Sandbox,
        settings: Settings,
        *,
        asker: Asker | None = None,
        progress: Progress | None = None,
        model: Model | None = None,
        policy: CommandPolicy | None = None,
    ) -> None:
        from smolagents import LogLevel, ToolCallingAgent

        from runner.agent.model import build_model
        from runner.policy import CommandPolicy

        self.sandbox = sandbox
        self.settings = settings
        self.state = RunState()
        shown = progress or (lambda message: None)
        # Every progress line carries the model's text (thoughts, tool arguments, error messages) to the user's
        # terminal: escapes and bidi controls are neutralised here, once, for all of them.
        self.progress: Progress = lambda message: shown(sanitize_for_terminal(message, single_line=True))
        if policy is None:
            policy = CommandPolicy.from_file(Path(settings.policy_file)) if settings.policy_file \
                else CommandPolicy.default()
        gate = ApprovalGate(self.state, asker=asker, non_interactive=settings.approval_non_interactive)
        self.context = ToolContext(sandbox, self.state, settings, policy, gate)
        self.model = model or build_model(settings, self.state)
        tools = build_tools(self.context)
        if hasattr(self.model, "reader"):
            from runner.agent.reader import OutputReader

            self.model.reader = OutputReader({tool.name: set(tool.inputs) for tool in tools},
                                             on_repair=self.state.output_repairs.append)
        self.agent = ToolCallingAgent(
            tools=tools,
            model=self.model,
            prompt_templates=prompt_templates(),  # type: ignore[arg-type]
            max_steps=settings.agent_max_steps,
            verbosity_level=LogLevel.OFF,
            step_callbacks=[self._on_step],
            return_full_result=True,
            max_tool_threads=1,  # several calls in one message run in their order (propose, then apply)
        )
        self.state.on_stop(lambda reason: self.agent.interrupt())
        self.state.on_step(self._report_step)
        self._bad_outputs = 0
        self._started = time.monotonic()
        self.tracing: Any = None

    # ------------------------------------------------------------------ running
    def run(self, task: str, *, reset: bool = True) -> TaskOutcome:
        from smolagents.utils import AgentError, AgentGenerationError

        started = time.monotonic()
        self.state.stop_reason = None
        self._bad_outputs = 0
        try:
            result = self.agent.run(task, reset=reset)
        except AgentGenerationError as error:
            from runner.agent.model import explain_model_failure

            cause = error.__cause__
            reason = explain_model_failure(cause, self.settings) if cause is not None else \
                (str(error).splitlines()[0] if str(error) else type(error).__name__)
            return TaskOutcome("model_error", "", reason, time.monotonic() - started)
        except AgentError as error:
            reason = self.state.stop_reason or str(error)
            return TaskOutcome("stopped", "", reason, time.monotonic() - started)
        duration = time.monotonic() - started
        answer = "" if result.output is None else str(result.output)
        if result.state == "max_steps_error":
            return TaskOutcome("max_steps", answer, f"reached AGENT_MAX_STEPS ({self.settings.agent_max_steps})",
                               duration)
        return TaskOutcome("completed", answer, "", duration)

    # ------------------------------------------------------------------ callbacks
    def _on_step(self, step: Any, agent: Any = None) -> None:
        from smolagents.memory import ActionStep

        if not isinstance(step, ActionStep):
            return
        self._compact(step)
        thought = (step.model_output or "").strip() if isinstance(step.model_output, str) else ""
        if thought and not thought.startswith("{") and not self.state.watching_text():  # else it streamed live
            self.progress(f"model: {thought.splitlines()[0][:160]}")
        if step.error is not None:
            message = str(step.error).splitlines()[0][:240]
            self.state.model_errors.append(message)
            self.progress(f"step {step.step_number}: {message}")
            self._bad_outputs += 1
            if self._bad_outputs >= MODEL_ERRORS_BEFORE_STOP:
                self.state.stop(f"{self._bad_outputs} steps in a row produced unusable tool calls ({message})")
        else:
            self._bad_outputs = 0

    def _compact(self, step: Any) -> None:
        """Before Ollama silently cuts the start of the conversation (the task!), drop the bodies of older tool
        outputs: the task, the model's own calls and the latest KEEP_RECENT observations stay."""
        from smolagents.memory import ActionStep

        used = step.token_usage.input_tokens if step.token_usage else 0
        limit = self.settings.model_num_ctx
        if used < COMPACT_AT * limit:
            return
        older = [s for s in self.agent.memory.steps if isinstance(s, ActionStep)][:-KEEP_RECENT]
        dropped = 0
        for old in older:
            if old.observations and not old.observations.startswith(COMPACTED):
                dropped += len(old.observations)
                old.observations = f"{COMPACTED} ({len(old.observations)} characters; run the tool again if needed)"
        if dropped:
            self.state.compactions.append({"step": step.step_number, "prompt_tokens": used, "limit": limit,
                                           "dropped_chars": dropped})
            self.progress(f"context {used}/{limit} tokens: older tool outputs compacted ({dropped} characters)")

    def _report_step(self, step: StepRecord) -> None:
        arguments = ", ".join(f"{k}={_short(v)}" for k, v in step.arguments.items())
        self.progress(f"[{step.index}] {step.tool}({arguments}) {step.duration_s:.2f}s {step.outcome}")

    # ------------------------------------------------------------------ reporting
    def summary(self, outcome: TaskOutcome, patch: bytes) -> dict[str, Any]:
        tests = self.state.last_tests
        stat = diff_stat(patch)
        return {
            "status": outcome.status,
            "reason": outcome.reason,
            "answer": outcome.answer,
            "steps": len(self.state.steps),
            "tools_used": self.state.tools_used(),
            "tests": None if tests is None else {
                "command": tests.command, "ok": tests.ok, "passed": tests.passed, "failed": tests.failed,
                "errors": tests.errors, "exit_code": tests.exit_code, "status": tests.status,
            },
            "diff": {"files": [f.__dict__ for f in stat.files], "added": stat.added, "removed": stat.removed},
            "approvals": [a.__dict__ for a in self.state.approvals],
            "model_errors": list(self.state.model_errors),
            "output_repairs": len(self.state.output_repairs),
            "context_compactions": list(self.state.compactions),
            "sandbox": self.sandbox.info.to_dict(),
            "duration_s": round(outcome.duration_s, 3),
        }


def _short(value: Any) -> str:
    text = str(value).replace("\n", "\\n")
    return text if len(text) <= 40 else text[:37] + "..."
