"""Human approval for what the policy will not decide alone. With no TTY nothing ever waits: requests resolve by
configuration (deny by default), and every decision is recorded in the run state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from runner.agent.state import ApprovalRecord, RunState

Asker = Callable[[str, str], str]
"""(kind, subject) -> "once" | "run" | "deny"."""


class ApprovalGate:
    def __init__(self, state: RunState, *, asker: Asker | None, non_interactive: Literal["deny", "approve"] = "deny"
                 ) -> None:
        self.state = state
        self.asker = asker
        self.non_interactive = non_interactive
        self._approved_for_run: set[tuple[str, str]] = set()

    def request(self, kind: str, subject: str) -> bool:
        from opentelemetry import trace

        with trace.get_tracer("smol.approval").start_as_current_span("approval") as span:
            approved = self._decide(kind, subject)
            record = self.state.approvals[-1]
            span.set_attributes({"approval.kind": kind, "approval.subject": subject[:500],
                                 "approval.outcome": record.outcome, "approval.scope": record.scope})
            return approved

    def _decide(self, kind: str, subject: str) -> bool:
        key = (kind, subject)
        if key in self._approved_for_run:
            self.state.record_approval(ApprovalRecord(kind, subject, "approved", "run"))
            return True
        if self.asker is None:
            approved = self.non_interactive == "approve"
            self.state.record_approval(ApprovalRecord(kind, subject, "approved" if approved else "denied", "config"))
            return approved
        answer = self.asker(kind, subject)
        if answer == "run":
            self._approved_for_run.add(key)
        approved = answer in ("once", "run")
        self.state.record_approval(ApprovalRecord(kind, subject, "approved" if approved else "denied",
                                                  answer if approved else "once"))
        return approved
