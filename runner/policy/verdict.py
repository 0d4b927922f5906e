"""Verdicts: the three decisions, the result of judging one command and the helpers that combine results."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


class Decision(enum.Enum):
    """What may happen to a command, from most to least permissive."""

    ALLOW = "allow"
    REQUIRE_APPROVAL = "require_approval"
    DENY = "deny"

    @property
    def strictness(self) -> int:
        """0 for ALLOW, 1 for REQUIRE_APPROVAL, 2 for DENY: when several verdicts apply, the highest wins."""
        return _STRICTNESS[self]


_STRICTNESS = {Decision.ALLOW: 0, Decision.REQUIRE_APPROVAL: 1, Decision.DENY: 2}


@dataclass(frozen=True)
class PolicyResult:
    """The verdict on one command.

    `reason` is one human-readable sentence fit to show the user and the model; `rule` names what decided
    (`default:…` for built-in rules, `structure:…` for shape findings, `<file>#<n>` for a policy-file rule,
    `fallback:unknown-command` when nothing matched).
    """

    decision: Decision
    reason: str
    rule: str

    @property
    def allowed(self) -> bool:
        return self.decision is Decision.ALLOW


def approve(reason: str, rule: str) -> PolicyResult:
    """A REQUIRE_APPROVAL result."""
    return PolicyResult(Decision.REQUIRE_APPROVAL, reason, rule)


def deny(reason: str, rule: str) -> PolicyResult:
    """A DENY result."""
    return PolicyResult(Decision.DENY, reason, rule)


def strictest(results: Iterable[PolicyResult]) -> PolicyResult | None:
    """The strictest result; on a tie the first one, so callers list the most telling reason first."""
    best: PolicyResult | None = None
    for result in results:
        if best is None or result.decision.strictness > best.decision.strictness:
            best = result
    return best


def quote(text: str, limit: int = 80) -> str:
    """`text` in backticks for a reason string, shortened so one reason stays one readable line."""
    text = " ".join(text.split())
    return f"`{text if len(text) <= limit else text[: limit - 1] + '…'}`"


def one_line(text: object) -> str:
    """Any text folded onto one line (error messages are one line)."""
    return " ".join(str(text).split())
