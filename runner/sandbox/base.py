"""The sandbox interface. Everything above `runner.sandbox` talks to this, never to Docker.

Lifecycle (`start`, `close`) is separate from what runs inside (`exec`, `read`, `write`, `list_files`, `diff`).
Paths are always relative to the repository root inside the sandbox and are checked here, on the host, as plain
strings: they are never resolved against the host filesystem.
"""

from __future__ import annotations

import posixpath
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum
from types import TracebackType
from typing import Any, Self

from runner.errors import SandboxError, SandboxPathError

OutputCallback = Callable[[str, bytes], None]
"""Called with ("stdout" | "stderr", chunk) while a command runs."""


class SandboxMode(str, Enum):
    OVERLAY = "overlay"
    """The real tree mounted read-only with a writable overlay on top (start cost independent of repo size)."""
    COPY = "copy"
    """The tree copied into the sandbox (remote or rootless engines, Docker Desktop, root-owned repos)."""


@dataclass(frozen=True)
class SandboxInfo:
    mode: SandboxMode
    mode_reason: str
    image: str
    container_id: str
    uid: int
    gid: int
    workdir: str = "/workspace"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mode"] = self.mode.value
        return data


@dataclass
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False
    truncated: bool = False
    stdout_bytes: int = 0
    """Bytes the command wrote to stdout, including any not kept."""
    stderr_bytes: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FileTooLargeError(SandboxError):
    """A file is larger than a `read` may return; a caller can read part of it another way."""


@dataclass(frozen=True)
class FileState:
    """One path's content as git sees it: a regular file (bytes, exec bit) or a symlink (its target)."""

    kind: str
    """"file" or "symlink"."""
    data: bytes
    executable: bool = False


def normalize_path(path: str) -> str:
    """Check a repo-relative path and return it normalised ("." for the root).

    Refuses absolute paths, `..` escapes and NUL bytes: the agent names files, not places.
    """
    if not isinstance(path, str) or path == "":
        return "."
    if "\x00" in path:
        raise SandboxPathError("path contains a NUL byte")
    if path.startswith("/") or path.startswith("~"):
        raise SandboxPathError(f"absolute path {path!r} refused: use a path relative to the repository root")
    normalized = posixpath.normpath(path)
    if normalized == ".." or normalized.startswith("../"):
        raise SandboxPathError(f"path {path!r} leaves the repository: use a path inside it")
    return normalized


class Sandbox(ABC):
    """A throwaway workspace over one repository. Use as a context manager: `with sandbox: ...`."""

    @property
    @abstractmethod
    def info(self) -> SandboxInfo:
        """Mode, image and identity of the running sandbox (valid after `start`)."""

    @abstractmethod
    def start(self) -> None:
        """Create the sandbox. Idempotent."""

    @abstractmethod
    def close(self) -> None:
        """Remove everything the sandbox created. Idempotent, safe after a failed start."""

    @abstractmethod
    def exec(
        self,
        command: Sequence[str] | str,
        *,
        timeout: float | None = None,
        workdir: str = ".",
        env: dict[str, str] | None = None,
        stdin: bytes | None = None,
        on_output: OutputCallback | None = None,
        output_limit: int | None = None,
    ) -> ExecResult:
        """Run a command (argv list, or a string for `bash -c`) in the repo; never raises for a failing command."""

    @abstractmethod
    def read(self, path: str, *, max_bytes: int | None = None) -> bytes:
        """Contents of a file in the sandbox's view of the repo."""

    @abstractmethod
    def write(self, path: str, data: bytes, *, executable: bool | None = None) -> None:
        """Create or replace a file (parents created) in the sandbox's view of the repo; a symlink at the path is
        replaced by the file, never written through."""

    @abstractmethod
    def list_files(self, pattern: str = "*", *, limit: int | None = None) -> list[str]:
        """Repo-relative files matching a glob (`.gitignore` respected, `.git/` never listed), sorted."""

    @abstractmethod
    def export_files(self, paths: Sequence[str], *, original: bool = False) -> dict[str, FileState]:
        """The files and symlinks at these paths, in the sandbox's view or (original=True) as the run started.
        Paths that are absent (or directories) are left out of the result."""

    @abstractmethod
    def diff(self) -> bytes:
        """A binary git patch of everything changed since start (never `.git/`); applies with `git apply`.

        New files the repo's ignore rules match, and FIFOs, sockets and devices (which a patch cannot carry),
        are not in it: `left_out` names them after each call."""

    left_out: dict[str, list[str]] = {}  # noqa: RUF012 - replaced per instance by diff(), never mutated
    """What the last `diff()` left out: {"ignored": [...], "special": [...]}, repo-relative paths."""

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
