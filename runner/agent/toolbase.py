"""What every agent tool shares: the context it acts through (sandbox, run state, settings, policy, approval gate,
pending patches), the base class, and the limits. Tools act only through the sandbox interface."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from smolagents import Tool

from runner.errors import SmolError
from runner.testcmd import Reader

if TYPE_CHECKING:
    from runner.agent.approval import ApprovalGate
    from runner.agent.state import RunState
    from runner.config import Settings
    from runner.policy import CommandPolicy
    from runner.sandbox.base import Sandbox

TOOL_TIMEOUT_S = 60.0
MAX_TEXT_BYTES = 8 * 1024 * 1024
"""The largest file the text tools take whole; read_file reads line ranges of larger ones."""
SNIPPET_CONTEXT_LINES = 5


def config_reader(sandbox: Any) -> Reader:
    """Reads a runner's configuration file in the sandbox for test-command detection (None when it cannot)."""

    def read(path: str) -> str | None:
        try:
            return bytes(sandbox.read(path, max_bytes=256 * 1024)).decode("utf-8", "replace")
        except SmolError:  # missing, too large, not a file: detection goes by the file names alone
            return None

    return read


@dataclass
class PendingPatch:
    id: str
    kind: str
    """"unified" or "replace"."""
    diff: str
    path: str | None = None
    old_text: str | None = None
    new_text: str | None = None
    applied: bool = False
    apply_with: str = "git"


@dataclass
class ToolContext:
    sandbox: Sandbox
    state: RunState
    settings: Settings
    policy: CommandPolicy
    gate: ApprovalGate
    patches: dict[str, PendingPatch] = field(default_factory=dict)
    test_command: str | None = None
    """The user's SMOL_TEST_COMMAND (set from the settings); never a command the agent proposed."""

    def __post_init__(self) -> None:
        if self.test_command is None and self.settings.smol_test_command.strip():
            self.test_command = self.settings.smol_test_command.strip()

    def new_patch_id(self) -> str:
        return f"p{len(self.patches) + 1}"


class SandboxTool(Tool):
    output_type = "string"
    inputs: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, context: ToolContext) -> None:
        self.ctx = context
        super().__init__()

    def run(self, command: list[str] | str, *, timeout: float = TOOL_TIMEOUT_S, stdin: bytes | None = None) -> Any:
        return self.ctx.sandbox.exec(command, timeout=timeout, stdin=stdin)


def _optional(kind: str, description: str) -> dict[str, Any]:
    return {"type": kind, "description": description, "nullable": True}

