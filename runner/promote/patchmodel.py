"""What a patch says about one file (`FileChange`), the file modes git can write, and the reader's error.

Shared by the reader (patchread), the guard and the review summary, none of which needs the others' internals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from runner.errors import SmolError

REGULAR = "100644"
EXECUTABLE = "100755"
SYMLINK = "120000"
GITLINK = "160000"
KNOWN_MODES = frozenset({REGULAR, EXECUTABLE, SYMLINK, GITLINK})
"""The only modes a git tree entry for a file can have; anything else in a patch is forged or corrupt."""

ChangeKind = Literal["added", "modified", "deleted", "renamed", "copied", "mode_change"]


class PatchParseError(SmolError, ValueError):
    """The patch is not a well-formed git patch. The message is one line and names the offending patch line."""

    exit_code = 8  # the same code as any other promotion failure


@dataclass
class FileChange:
    """One `diff --git` block of the patch."""

    old_path: str | None
    """Repo-relative path before the change (None for an added file). Non-UTF-8 bytes are surrogate-escaped."""
    new_path: str | None
    """Repo-relative path after the change (None for a deleted file)."""
    kind: ChangeKind
    old_mode: str | None = None
    """Six octal digits as git prints them ("100644", "100755", "120000", "160000"), None when the patch does
    not say (an added file, or a pure rename/copy: git prints no mode when nothing about the file changed)."""
    new_mode: str | None = None
    binary: bool = False
    added_lines: int = 0
    removed_lines: int = 0
    symlink_target: str | None = None
    """For an added or modified symlink, its new target when the patch shows all of it; otherwise None."""
    size_bytes: int = 0
    """Bytes of this block in the patch."""
    similarity: int | None = None
    """Percent similarity of a rename or copy."""

    @property
    def path(self) -> str:
        """The path the change leaves behind (the old path for a deletion)."""
        return self.new_path if self.new_path is not None else (self.old_path or "")


__all__ = ["EXECUTABLE", "GITLINK", "KNOWN_MODES", "REGULAR", "SYMLINK", "ChangeKind", "FileChange",
           "PatchParseError"]
