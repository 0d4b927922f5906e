"""Command policy: may a shell command the agent proposes run in the sandbox?

Every command gets one of three decisions: ALLOW (run it), REQUIRE_APPROVAL (a human must say yes first)
or DENY (never run it). The sandbox is the containment; this policy is the second line that keeps a model
from deleting the tree, reaching the network or poking at the container runtime without anybody seeing it.

How a command is judged
-----------------------
1. Raw checks: control or invisible formatting characters (which could make the command look different to
   the human approving it) and any mention of a container-runtime socket are DENY (analysis.py).
2. tree-sitter-bash parses the command; the tree is reduced to simple commands through an allow-list of node
   types (parse.py, words.py). Any syntax error (an ERROR or MISSING node) and any construct the reduction does
   not model is DENY: parsing fails closed. Here-documents are read by bash's rules (heredoc.py), because the
   grammar misreads some of them.
3. Every simple command is judged on its own and the strictest verdict wins, so `pytest; rm -rf /` is DENY.
4. Shapes whose effect the policy cannot fully see - expansions (`$VAR`, `$(…)`, backticks), redirections to
   files, here-docs, `VAR=x cmd`, wrappers (`env`, `timeout`, `nice`, `nohup`, `xargs`, `exec`, …), nested
   shells (`bash -c`, `eval`, `source`), `python -c`, `find -exec`, `git -c`, `rg --pre`, background jobs,
   subshells, control structures, functions - add *structural findings*: at least REQUIRE_APPROVAL, DENY when
   clearly escape-shaped. The wrapped or nested command is judged as well (commands.py, tools.py), so
   `timeout 5 rm -rf /`, `bash -c 'rm -rf /'`, `$(rm -rf /)` and `sh <<EOF` programs are DENY.
5. What is left is a plain argv, matched against the rules (rules.py: defaults plus the user's policy file).
   The strictest matching rule wins; when no rule matches, the command is unknown and needs approval.
6. ALLOW additionally requires that shlex (`punctuation_chars=True`) reads every simple command as exactly the
   same tokens: two independent readings must agree before anything runs unasked.
7. A bug in the policy itself (an unexpected exception) is DENY too: it is logged with its traceback on the
   `runner.policy` logger and the reason says an internal error occurred.

Policy files (policyfile.py) hold `[[rule]]` tables. The STRICTEST matching rule wins across the defaults and the
file (DENY > REQUIRE_APPROVAL > ALLOW): a file can tighten anything, but it can only loosen what the defaults leave
to the "unknown command" fallback, never a default DENY, a default REQUIRE_APPROVAL or a structural finding.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from runner.policy.analysis import MAX_NESTING
from runner.policy.analysis import Evaluator as _Evaluator
from runner.policy.policyfile import PolicyFileError, load_rules
from runner.policy.rules import Rule, default_rules
from runner.policy.verdict import Decision, PolicyResult, deny, one_line

__all__ = ["MAX_NESTING", "CommandPolicy", "Decision", "PolicyFileError", "PolicyResult", "Rule", "default_rules"]

log = logging.getLogger(__name__)


class CommandPolicy:
    """Decides ALLOW / REQUIRE_APPROVAL / DENY for shell commands: the defaults plus optional extra rules.

    The strictest matching rule wins, so extra rules tighten freely but can only loosen commands the
    defaults do not know; they can never loosen a default DENY (see the module docstring).
    """

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        self._extra = tuple(rules)
        self._defaults = default_rules()
        self._evaluator = _Evaluator((*self._defaults, *self._extra))

    @classmethod
    def default(cls) -> CommandPolicy:
        """The built-in rules only."""
        return cls()

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> CommandPolicy:
        """The built-in rules plus the `[[rule]]` tables of a TOML policy file; raises PolicyFileError."""
        return cls(load_rules(Path(path)))

    @property
    def rules(self) -> tuple[Rule, ...]:
        """Every rule in force: the defaults, then the extra ones."""
        return self._evaluator.rules

    def evaluate(self, command: str) -> PolicyResult:
        """Judge one shell command line. Never raises: anything unexpected is a DENY (fail closed), logged."""
        if not isinstance(command, str):
            return deny(f"the command is not text but {type(command).__name__}; only a shell command line can be "
                        "judged", "parse-error")
        try:
            return self._evaluator.command(command, depth=0)
        except Exception as error:  # a policy check must fail closed rather than crash the agent loop
            log.exception("command policy: internal error while judging %r; the command is denied", command[:300])
            detail = one_line(f"{type(error).__name__}: {error}")[:200]
            return deny(f"internal error in the command policy ({detail}); the command is denied because the "
                        "policy fails closed", "internal-error")

    def __repr__(self) -> str:
        return f"CommandPolicy({len(self._defaults)} default rules + {len(self._extra)} extra)"
