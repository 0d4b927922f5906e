"""An in-memory Sandbox for fast tests of the layers above the sandbox (tools, instrumentation), in the spirit of
httpx's MockTransport: files live in a dict, and `exec` is answered by a handler you pass in.

It isolates nothing and runs nothing. The sandbox itself and every end-to-end test use DockerSandbox.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Sequence

from runner.errors import SandboxError
from runner.sandbox.base import (
    ExecResult,
    FileState,
    OutputCallback,
    Sandbox,
    SandboxInfo,
    SandboxMode,
    normalize_path,
)

ExecHandler = Callable[[list[str], bytes | None], ExecResult]


def _unhandled(argv: list[str], stdin: bytes | None) -> ExecResult:
    return ExecResult(exit_code=127, stdout="", stderr=f"{argv[0]}: no handler in MemorySandbox\n", duration_s=0.0)


class MemorySandbox(Sandbox):
    def __init__(self, files: dict[str, bytes] | None = None, handler: ExecHandler = _unhandled) -> None:
        self.files = {normalize_path(path): data for path, data in (files or {}).items()}
        self._original = dict(self.files)
        self.handler = handler
        self.commands: list[list[str]] = []
        self._info: SandboxInfo | None = None

    @property
    def info(self) -> SandboxInfo:
        if self._info is None:
            raise SandboxError("the sandbox is not started")
        return self._info

    def start(self) -> None:
        self._info = SandboxInfo(SandboxMode.COPY, "in memory (tests only)", "memory", "memory", 1000, 1000)

    def close(self) -> None:
        self._info = None

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
        argv = ["bash", "-c", command] if isinstance(command, str) else list(command)
        self.commands.append(argv)
        return self.handler(argv, stdin)

    def read(self, path: str, *, max_bytes: int | None = None) -> bytes:
        key = normalize_path(path)
        if key not in self.files:
            raise SandboxError(f"cannot read {key}: No such file or directory")
        return self.files[key]

    def write(self, path: str, data: bytes, *, executable: bool | None = None) -> None:
        self.files[normalize_path(path)] = data

    def list_files(self, pattern: str = "*", *, limit: int | None = None) -> list[str]:
        glob = pattern or "*"
        names = sorted(p for p in self.files
                       if fnmatch.fnmatch(p, glob) or ("/" not in glob and fnmatch.fnmatch(p.rsplit("/", 1)[-1], glob))
                       or (glob.startswith("**/") and fnmatch.fnmatch(p, glob[3:])))
        return names[:limit] if limit is not None else names

    def export_files(self, paths: Sequence[str], *, original: bool = False) -> dict[str, FileState]:
        source = self._original if original else self.files
        return {normalize_path(p): FileState("file", source[normalize_path(p)]) for p in paths
                if normalize_path(p) in source}

    def diff(self) -> bytes:
        chunks: list[str] = []
        for path in sorted(set(self._original) | set(self.files)):
            before, after = self._original.get(path), self.files.get(path)
            if before == after:
                continue
            old = (before or b"").decode(errors="replace").splitlines(keepends=True)
            new = (after or b"").decode(errors="replace").splitlines(keepends=True)
            chunks.append(f"diff --git a/{path} b/{path}\n")
            chunks.extend(difflib.unified_diff(old, new, f"a/{path}" if before is not None else "/dev/null",
                                               f"b/{path}" if after is not None else "/dev/null"))
        return "".join(chunks).encode()
