"""One wrapper around every tool: validate inputs, run, normalise errors, truncate output, record, trace.

The wrapper replaces `tool.forward` but keeps its signature (smolagents validates calls against it), and it
never raises: whatever goes wrong becomes a structured error with a recovery suggestion the model can act on.
"""

from __future__ import annotations

import functools
import inspect
import re
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from runner.agent.state import LoopVerdict, RunState, StepRecord, arguments_hash
from runner.errors import DockerUnavailableError, SandboxError, SandboxPathError

if TYPE_CHECKING:
    from smolagents import Tool

    from runner.config import Settings

tracer = trace.get_tracer("smol.tools")

PATH_ARGUMENTS = frozenset({"path"})
FREE_TEXT_ARGUMENTS = frozenset({"diff", "old_text", "new_text"})
"""Arguments that are file content: they may span many lines (within VALIDATION_MAX_CHARS)."""


class ToolError(Exception):
    """A failure the model can recover from; `recovery` names the next useful step."""

    def __init__(self, message: str, *, error_type: str, recovery: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.recovery = recovery

    def to_dict(self) -> dict[str, Any]:
        return {"error": str(self), "error_type": self.error_type, "recovery_suggestion": self.recovery}


@dataclass
class Rendered:
    text: str
    truncated: bool


def validate_arguments(arguments: dict[str, Any], settings: Settings) -> None:
    """Refuse oversized, multi-line or escaping arguments before anything runs."""
    for name, value in arguments.items():
        if not isinstance(value, str):
            continue
        if len(value) > settings.validation_max_chars:
            raise ToolError(
                f"argument {name!r} has {len(value)} characters; the limit is {settings.validation_max_chars}",
                error_type="input_too_large",
                recovery="Split the work into smaller pieces (smaller edits, narrower patterns).",
            )
        lines = value.count("\n") + 1
        if name in FREE_TEXT_ARGUMENTS and lines > settings.validation_max_lines:
            raise ToolError(
                f"argument {name!r} has {lines} lines; the limit is {settings.validation_max_lines}",
                error_type="input_too_large",
                recovery="Make smaller patches: one function or one hunk at a time.",
            )
        if name in PATH_ARGUMENTS:
            check_relative_path(value)


def check_relative_path(path: str) -> None:
    from runner.sandbox.base import normalize_path

    try:
        normalize_path(path)
    except SandboxPathError as error:
        raise ToolError(str(error), error_type="invalid_path",
                        recovery="Use a path relative to the repository root, e.g. 'src/app.py'.") from None


def truncate_text(text: str, settings: Settings) -> Rendered:
    """Keep the head and the tail within TRUNCATION_MAX_LINES / _MAX_CHARS and say how to see the rest."""
    lines = text.splitlines()
    max_lines, max_chars = settings.truncation_max_lines, settings.truncation_max_chars
    if len(lines) <= max_lines and len(text) <= max_chars:
        return Rendered(text, False)
    head_lines = lines[: max_lines // 2]
    tail_lines = lines[-(max_lines - len(head_lines)):] if len(lines) > max_lines else []
    if not tail_lines:
        head_lines = lines
    head, tail = "\n".join(head_lines), "\n".join(tail_lines)
    half = max_chars // 2
    if len(head) > half:
        head = head[:half]
    if len(tail) > max_chars - len(head):
        tail = tail[-(max_chars - len(head)):]
    omitted = max(len(text) - len(head) - len(tail), 0)
    note = (f"\n[... output truncated: {omitted} characters of {len(text)} omitted. "
            "To see more, narrow the request: read_file with start_line/end_line, a more specific "
            "rg_search pattern, or a filtered command ...]\n")
    return Rendered(head + note + tail, True)


def render(result: dict[str, Any]) -> str:
    """A compact, readable form for small models: `key: value` lines, multi-line values as blocks."""
    parts: list[str] = []
    for key, value in result.items():
        if value is None or value == "" or value == []:
            continue
        if isinstance(value, list):
            value = "\n".join(str(item) for item in value)
        elif isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        text = str(value)
        if "\n" in text:
            parts.append(f"{key}:\n{text.rstrip()}")
        else:
            parts.append(f"{key}: {text}")
    return "\n".join(parts)


def _summary(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"error: {result['error']}"[:200]
    for key in ("summary", "status", "result"):
        if key in result:
            return str(result[key]).splitlines()[0][:200] if str(result[key]) else ""
    return render(result).splitlines()[0][:200] if result else ""


_ERROR_OUTCOMES = {"policy_denied": "denied", "approval_denied": "not approved", "loop_detected": "stopped: loop"}


def outcome_of(tool: str, result: dict[str, Any]) -> str:
    """The few words a person watching the run needs: not "ok" for a failed test run or a command that exited 1."""
    if "error" in result:
        kind = str(result.get("error_type") or "error")
        return _ERROR_OUTCOMES.get(kind, f"error: {kind}")
    if tool == "run_tests" and "summary" in result:
        verdict, _, counts = str(result["summary"]).partition(": ")
        passed, failed, errors = (int(n) for n in re.findall(r"\d+", counts)[:3]) if counts else (0, 0, 0)
        shown = [f"{n} {what}" for n, what in ((passed, "passed"), (failed, "failed"), (errors, "errors")) if n]
        return ", ".join(shown) if verdict.lower() in ("passed", "failed") and shown else verdict.lower()
    if "exit_code" in result:
        return "timed out" if result.get("timed_out") else f"exit {result['exit_code']}"
    return "ok"


def _engine_gone(error: BaseException) -> DockerUnavailableError | None:
    """The engine's disappearance behind an error, even one a tool turned into a ToolError on its way up."""
    link: BaseException | None = error
    for _ in range(6):
        if link is None or isinstance(link, DockerUnavailableError):
            return link
        link = link.__cause__ or link.__context__
    return None


def _normalise(error: BaseException) -> dict[str, Any]:
    gone = _engine_gone(error)
    if gone is not None:
        return {"error": str(gone), "error_type": "docker_unavailable",
                "stopped": "The run is being stopped: the Docker engine went away."}
    if isinstance(error, ToolError):
        return error.to_dict()
    if isinstance(error, SandboxPathError):
        return {"error": str(error), "error_type": "invalid_path",
                "recovery_suggestion": "Use a path relative to the repository root; list_files shows what exists."}
    if isinstance(error, SandboxError):
        return {"error": str(error), "error_type": "sandbox_error",
                "recovery_suggestion": "Check the path or command; list_files and repo_info show what exists."}
    return {"error": f"{type(error).__name__}: {error}", "error_type": "internal_error",
            "recovery_suggestion": "Try a different tool or simpler arguments."}


def instrument(tool: Tool, state: RunState, settings: Settings) -> Tool:
    """Wrap `tool.forward` in place and return the tool."""
    original: Callable[..., dict[str, Any]] = tool.forward
    signature = inspect.signature(original)
    name = tool.name

    @functools.wraps(original)
    def forward(*args: Any, **kwargs: Any) -> str:
        bound = signature.bind(*args, **kwargs)
        arguments = {key: value for key, value in bound.arguments.items() if value is not None}
        digest = arguments_hash(arguments)
        started = time.monotonic()
        # Under the smolagents instrumentation the current span is this call's TOOL span: annotate it.
        # Without it, open a TOOL span of our own.
        current = trace.get_current_span()
        scope = nullcontext(current) if current.is_recording() else tracer.start_as_current_span(
            name, attributes={"openinference.span.kind": "TOOL", "tool.name": name})
        with scope as span:
            verdict, reason = state.check_loop(name, digest)
            if verdict is LoopVerdict.STOP:
                # The call that would repeat the loop once more is not made at all.
                result: dict[str, Any] = {"error": f"not run: {reason}", "error_type": "loop_detected",
                                          "recovery_suggestion": "Give your final answer with what you have.",
                                          "stopped": f"The run is being stopped: {reason}."}
            else:
                try:
                    validate_arguments(arguments, settings)
                    result = original(*bound.args, **bound.kwargs)
                except BaseException as error:  # noqa: BLE001 - the model gets every failure as data
                    if isinstance(error, KeyboardInterrupt | SystemExit):
                        raise
                    result = _normalise(error)
                    gone = _engine_gone(error)
                    if gone is not None:  # no later step can work: the run ends, and says why
                        state.stop(str(gone))
            if verdict is LoopVerdict.HINT:
                result["hint"] = reason
            rendered = truncate_text(render(result), settings)
            duration = time.monotonic() - started
            span.set_attributes({
                "tool.name": name,
                "tool.args_hash": digest,
                "tool.input_size": sum(len(str(v)) for v in arguments.values()),
                "tool.output_size": len(rendered.text),
                "tool.duration_ms": round(duration * 1000, 3),
                "tool.truncated": rendered.truncated,
                "tool.loop_verdict": verdict.value,
            })
            if "error" in result:
                span.set_attribute("tool.error_type", str(result.get("error_type")))
                span.set_attribute("tool.recovery_hint", str(result.get("recovery_suggestion")))
        state.record(StepRecord(
            index=state.next_index(), tool=name, arguments=arguments, arguments_hash=digest,
            summary=_summary(result), duration_s=duration, error=result.get("error"),
            error_type=result.get("error_type"), truncated=rendered.truncated, outcome=outcome_of(name, result),
        ))
        if verdict is LoopVerdict.STOP:
            state.stop(reason)
        return rendered.text

    tool.forward = forward  # type: ignore[method-assign]
    return tool
