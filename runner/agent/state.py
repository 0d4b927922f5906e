"""What happened in a run: every tool call, every approval, and the loop detector that watches them."""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

REPEAT_HINT_AT = 3
"""The same call, with the same arguments, this many times in a row earns a corrective hint..."""
REPEAT_STOP_AT = 5
"""...and this many stops the run."""
STATE_CHANGING_TOOLS = frozenset({"apply_patch", "run_cmd"})
"""Calls after which repeating an earlier call can give a new answer."""
OSCILLATION_HINT_AT = 4
"""A-B-A-B over this many calls earns a hint..."""
OSCILLATION_STOP_AT = 6
"""...and over this many stops the run."""


def arguments_hash(arguments: dict[str, Any]) -> str:
    canonical = json.dumps(arguments, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class LoopVerdict(str, Enum):
    NONE = "none"
    HINT = "hint"
    STOP = "stop"


@dataclass
class StepRecord:
    index: int
    tool: str
    arguments: dict[str, Any]
    arguments_hash: str
    summary: str
    duration_s: float
    error: str | None = None
    error_type: str | None = None
    truncated: bool = False
    started_at: float = field(default_factory=time.time)
    outcome: str = "ok"
    """What matters about the result, in a few words: "2 passed", "1 failed", "exit 127", "denied", "error: …"."""


@dataclass
class ApprovalRecord:
    kind: str
    subject: str
    outcome: str
    """"approved" or "denied"."""
    scope: str
    """"once", "run", or "config" (resolved without asking, e.g. no TTY)."""
    at: float = field(default_factory=time.time)


@dataclass
class TestOutcome:
    command: str
    exit_code: int
    passed: int
    failed: int
    errors: int
    skipped: int
    timed_out: bool
    status: str = ""
    """The verdict of `testcmd.classify_test_run`: passed, failed, no tests found, timed out or unavailable."""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


class RunState:
    """The record of one run. Tools report here; the CLI reads it for progress and the summary."""

    def __init__(self) -> None:
        self.steps: list[StepRecord] = []
        self.approvals: list[ApprovalRecord] = []
        self.model_errors: list[str] = []
        self.output_repairs: list[list[str]] = []
        self.compactions: list[dict[str, int]] = []
        """When older tool outputs were dropped to fit the context window (session._compact)."""
        """Per model answer that needed reading (runner.agent.reader): what was repaired."""
        self.last_tests: TestOutcome | None = None
        self.stop_reason: str | None = None
        self._stop_callbacks: list[Callable[[str], None]] = []
        self._listeners: list[Callable[[StepRecord], None]] = []
        self._model_listeners: list[Callable[[str, str], None]] = []
        self._text_watched = False

    # -------------------------------------------------------------- wiring
    def on_stop(self, callback: Callable[[str], None]) -> None:
        self._stop_callbacks.append(callback)

    def on_step(self, listener: Callable[[StepRecord], None]) -> None:
        self._listeners.append(listener)

    def on_model(self, listener: Callable[[str, str], None], *, text: bool = False) -> None:
        """`listener("start", "")` when a model call begins, `listener("end", "")` when it returns or fails, and
        with `text`, `listener("text", chunk)` as the model's words arrive (the model is then read as a stream)."""
        self._model_listeners.append(listener)
        self._text_watched = self._text_watched or text

    def watching_text(self) -> bool:
        return self._text_watched

    def model_event(self, kind: str, text: str = "") -> None:
        for listener in self._model_listeners:
            listener(kind, text)

    # -------------------------------------------------------------- loops
    def check_loop(self, tool: str, digest: str) -> tuple[LoopVerdict, str]:
        """Judge the call about to be made against the calls made so far; the strictest rule that fires wins."""
        calls = [(step.tool, step.arguments_hash) for step in self.steps] + [(tool, digest)]
        verdicts: list[tuple[LoopVerdict, str]] = []
        repeats = 0
        for call in reversed(calls):
            if call != calls[-1]:
                break
            repeats += 1
        if repeats >= REPEAT_STOP_AT:
            verdicts.append((LoopVerdict.STOP, f"{tool} was called {repeats} times in a row with the same arguments"))
        elif repeats >= REPEAT_HINT_AT:
            verdicts.append((LoopVerdict.HINT, (
                f"You have called {tool} {repeats} times with the same arguments and got the same answer. "
                "Do something different: read the result above, try another tool, or give your final answer.")))
        # The same call again and again with others between (A B A C A), and nothing changed meanwhile.
        since = max((i + 1 for i, (name, _) in enumerate(calls[:-1]) if name in STATE_CHANGING_TOOLS), default=0)
        again = calls[since:].count(calls[-1])
        if again >= REPEAT_STOP_AT:
            verdicts.append((LoopVerdict.STOP, f"{tool} was called {again} times with the same arguments while "
                                               "nothing in the repo changed"))
        elif again >= REPEAT_HINT_AT:
            verdicts.append((LoopVerdict.HINT, (
                f"You have called {tool} with these arguments {again} times and nothing has changed since: the "
                "answer will be the same. Use what you already have, or give your final answer.")))
        span = _oscillation_length(calls)
        if span >= OSCILLATION_STOP_AT:
            verdicts.append((LoopVerdict.STOP, f"the run alternated between the same two calls {span} times"))
        elif span >= OSCILLATION_HINT_AT:
            verdicts.append((LoopVerdict.HINT, (
                "You are alternating between the same two calls without progress. "
                "Stop and change approach, or give your final answer.")))
        for wanted in (LoopVerdict.STOP, LoopVerdict.HINT):
            for verdict in verdicts:
                if verdict[0] is wanted:
                    return verdict
        return LoopVerdict.NONE, ""

    def stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            for callback in self._stop_callbacks:
                callback(reason)

    # -------------------------------------------------------------- records
    def record(self, step: StepRecord) -> None:
        self.steps.append(step)
        for listener in self._listeners:
            listener(step)

    def next_index(self) -> int:
        return len(self.steps) + 1

    def record_approval(self, record: ApprovalRecord) -> None:
        self.approvals.append(record)

    def tools_used(self) -> dict[str, int]:
        return dict(Counter(step.tool for step in self.steps))

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": [asdict(step) for step in self.steps],
            "approvals": [asdict(approval) for approval in self.approvals],
            "model_errors": list(self.model_errors),
            "output_repairs": [list(repairs) for repairs in self.output_repairs],
            "last_tests": asdict(self.last_tests) if self.last_tests else None,
            "stop_reason": self.stop_reason,
        }


def _oscillation_length(calls: list[tuple[str, str]]) -> int:
    """Length of the A-B-A-B... run (A != B) at the end of the call list."""
    if len(calls) < 2 or calls[-1] == calls[-2]:
        return 0
    a, b = calls[-1], calls[-2]
    length = 0
    for offset, call in enumerate(reversed(calls)):
        if call != (a if offset % 2 == 0 else b):
            break
        length += 1
    return length
