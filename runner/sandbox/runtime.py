"""What runs inside a started sandbox (SWE-ReX's Runtime): exec, read, write, list, export, diff.

The deployment starts the containers and hands a `DockerRuntime` the box; everything here goes through the
engine facade, so a failure of the engine arrives as one of our own errors, never as docker-py's.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runner.errors import SandboxError, UsageError
from runner.sandbox.base import (
    ExecResult,
    FileState,
    FileTooLargeError,
    OutputCallback,
    SandboxInfo,
    SandboxMode,
    normalize_path,
)
from runner.sandbox.engine import Engine
from runner.sandbox.layout import BASE, BASE_ENV, HELPER_ENV, HELPERS, PYTHON, SCRATCH, WORKSPACE
from runner.sandbox.output import HeadTailBuffer
from runner.sandbox.tarstate import EXPORT_SCRIPT, read_file_states

if TYPE_CHECKING:
    from runner.config import Settings

log = logging.getLogger(__name__)

HOST_GRACE_S = 10.0
"""How long past its own deadline a command may take before the host steps in."""

LEFT_OUT_KINDS = ("ignored", "special", "git")
"""What smol-diff leaves out of a patch: new files the ignore rules match; FIFOs, sockets and devices; `.git` in
any spelling git refuses (`.GIT`, `git~1`, `.git.`) and nested repositories, when something in them changed."""


def _tracer() -> Any:
    from opentelemetry import trace

    return trace.get_tracer("smol.sandbox")


@dataclass
class RawResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    duration_s: float
    timed_out: bool
    truncated: bool
    stdout_bytes: int
    stderr_bytes: int
    notes: list[str]


def parse_left_out(report: bytes) -> dict[str, list[str]]:
    """smol-diff's stderr: NUL-terminated `kind<TAB>path` records (`more<TAB>kind<TAB>count` lines are counts)."""
    left_out: dict[str, list[str]] = {kind: [] for kind in LEFT_OUT_KINDS}
    for record in report.split(b"\0"):
        kind, tab, path = record.partition(b"\t")
        name = kind.decode(errors="replace")
        if tab and path and name in left_out:
            left_out[name].append(path.decode("utf-8", "surrogateescape"))
    return left_out


class DockerRuntime:
    """Commands and files in one running box. Serialised by the sandbox's lock: one exec at a time."""

    def __init__(self, engine: Engine, box: str, info: SandboxInfo, settings: Settings,
                 lock: threading.RLock | None = None, *, image_env: dict[str, str] | None = None) -> None:
        self.engine = engine
        self.image_env = dict(image_env or {})
        """A prepared environment's variables (its venv on PATH, …): the commands' own, never the helpers'."""
        self.box = box
        self.info = info
        self.settings = settings
        self._lock = lock or threading.RLock()
        self._oom_kills = 0
        """Processes the box's memory limit had killed at the last sweep (a new container starts at 0)."""
        self.left_out: dict[str, list[str]] = {}

    # ------------------------------------------------------------------ running commands
    def _exec_env(self, extra: dict[str, str] | None) -> dict[str, str]:
        env = {**BASE_ENV, **self.image_env}
        for name in self.settings.env_allowlist:
            if name in os.environ:
                env[name] = os.environ[name]
        env.update(extra or {})
        return env

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
        if not argv:
            raise UsageError("no command given")
        deadline = float(timeout or self.settings.sandbox_command_timeout)
        wrapped = [f"{HELPERS}/smol-exec", f"{deadline:g}", *argv]
        memory_kill: bool | None = None
        swept = False
        with self._lock, _tracer().start_as_current_span("sandbox.exec") as span:
            raw = self._exec_raw(
                wrapped, timeout=deadline, workdir=workdir, env=self._exec_env(env), stdin=stdin,
                on_output=on_output, output_limit=output_limit or self.settings.sandbox_output_limit,
            )
            timed_out = raw.timed_out or (raw.exit_code in (124, 137) and raw.duration_s >= deadline - 0.05)
            if not raw.timed_out and (raw.exit_code > 128 or raw.exit_code < 0):
                # A death by signal may be the wrapper's own, before its final sweep ran (the command can kill
                # it: same uid). An exit status of 128 or less comes from a wrapper that finished, sweep included.
                memory_kill, swept = self._sweep(), True
            span.set_attributes({"exec.command": argv[0], "exec.exit_code": raw.exit_code,
                                 "exec.duration_ms": round(raw.duration_s * 1000, 3), "exec.timed_out": timed_out,
                                 "exec.truncated": raw.truncated, "exec.swept": swept})
        return ExecResult(
            exit_code=raw.exit_code,
            stdout=raw.stdout.decode("utf-8", errors="replace"),
            stderr=raw.stderr.decode("utf-8", errors="replace"),
            duration_s=raw.duration_s,
            timed_out=timed_out,
            truncated=raw.truncated,
            stdout_bytes=raw.stdout_bytes,
            stderr_bytes=raw.stderr_bytes,
            notes=[*raw.notes, *_exec_notes(raw.exit_code, timed_out, deadline, memory_kill)],
        )

    def _exec_raw(
        self,
        argv: list[str],
        *,
        timeout: float,
        workdir: str = ".",
        env: dict[str, str] | None = None,
        stdin: bytes | None = None,
        on_output: OutputCallback | None = None,
        output_limit: int,
        user: str | None = None,
        cwd: str | None = None,
    ) -> RawResult:
        """Run argv in the box; `cwd` (absolute) overrides `workdir` (repo-relative)."""
        if cwd is None:
            directory = normalize_path(workdir)
            cwd = WORKSPACE if directory == "." else f"{WORKSPACE}/{directory}"
        identity = user or f"{self.info.uid}:{self.info.gid}"
        with self._lock:
            started = time.monotonic()
            exec_id = self.engine.exec_create(self.box, argv, user=identity, environment=env or self._exec_env(None),
                                              workdir=cwd, stdin=stdin is not None)
            buffers = {1: HeadTailBuffer(output_limit), 2: HeadTailBuffer(output_limit)}
            notes: list[str] = []
            timed_out = False
            try:
                for stream, chunk in self.engine.exec_stream(exec_id, stdin=stdin,
                                                             deadline=started + timeout + HOST_GRACE_S):
                    # Streamed output is bounded like kept output: the head now, the tail at the end.
                    shown = buffers[stream if stream in buffers else 1].write(chunk)
                    if on_output is not None and shown:
                        on_output("stderr" if stream == 2 else "stdout", shown)
            except TimeoutError:
                timed_out = True
                notes.append("the host stopped a command that outlived its deadline")
                self._reap()
            if on_output is not None:
                for stream, name in ((1, "stdout"), (2, "stderr")):
                    rest = buffers[stream].rest()
                    if rest:
                        on_output(name, rest)
            exit_code = self.engine.exec_exit_code(exec_id)
            if exit_code is None:
                exit_code = 124 if timed_out else -1
            duration = time.monotonic() - started
        return RawResult(
            exit_code=exit_code,
            stdout=buffers[1].getvalue(),
            stderr=buffers[2].getvalue(),
            duration_s=duration,
            timed_out=timed_out,
            truncated=buffers[1].truncated or buffers[2].truncated,
            stdout_bytes=buffers[1].total,
            stderr_bytes=buffers[2].total,
            notes=notes,
        )

    def _reap(self) -> None:
        """End every process of the sandbox user; restart the container if even that cannot run."""
        try:
            exec_id = self.engine.exec_create(self.box, ["kill", "-KILL", "-1"],
                                              user=f"{self.info.uid}:{self.info.gid}",
                                              environment=dict(HELPER_ENV), workdir="/")
            for _ in self.engine.exec_stream(exec_id, stdin=None, deadline=time.monotonic() + 30):
                pass
            if self.engine.exec_exit_code(exec_id) in (0, 1):
                return
        except (SandboxError, TimeoutError):
            pass
        log.warning("restarting the sandbox container to stop a runaway command")
        self.engine.restart_container(self.box, timeout=1)
        self._oom_kills = 0  # a restarted container has a fresh memory cgroup

    def _sweep(self) -> bool | None:
        """End every process of the sandbox user, from outside the command's wrapper (which the command may have
        killed before its own sweep). Returns whether the memory limit killed a process since the last sweep
        (None when the engine does not say)."""
        try:
            raw: RawResult | None = self._exec_raw([f"{HELPERS}/smol-exec", "--sweep"], timeout=30, cwd="/",
                                                   env=dict(HELPER_ENV), output_limit=4096)
        except SandboxError:
            raw = None
        if raw is None or raw.exit_code != 0 or raw.timed_out:
            self._reap()
            return None
        _, _, count = raw.stdout.decode(errors="replace").strip().partition("oom_kill ")
        if not count.isdigit():
            return None
        kills, previous = int(count), self._oom_kills
        self._oom_kills = kills
        return kills > previous

    # ------------------------------------------------------------------ files
    def read(self, path: str, *, max_bytes: int | None = None) -> bytes:
        target = normalize_path(path)
        limit = max_bytes or self.settings.sandbox_max_diff_bytes
        result = self._exec_raw(["cat", "--", target], timeout=60, env=dict(HELPER_ENV), output_limit=limit)
        if result.exit_code != 0:
            message = result.stderr.decode(errors="replace").strip().removeprefix("cat: ")
            raise SandboxError(f"cannot read {target}: {message}")
        if result.truncated:
            raise FileTooLargeError(f"{target} is larger than {limit} bytes")
        return result.stdout

    def write(self, path: str, data: bytes, *, executable: bool | None = None) -> None:
        target = normalize_path(path)
        if target == ".":
            raise SandboxError("cannot write to the repository root; name a file")
        # A symlink at the path is replaced, never written through: the path is what changes (as git sees it),
        # and a link out of the repo would otherwise take the bytes elsewhere and leave the link in place.
        script = 'mkdir -p -- "$(dirname -- "$1")" && { [ ! -L "$1" ] || rm -f -- "$1"; } && cat > "$1"'
        if executable is not None:
            script += ' && chmod ' + ('+x' if executable else '-x') + ' -- "$1"'
        result = self._exec_raw(["bash", "-c", script, "write", target], timeout=60, stdin=data,
                                env=dict(HELPER_ENV), output_limit=64 * 1024)
        if result.exit_code != 0:
            raise SandboxError(f"cannot write {target}: {result.stderr.decode(errors='replace').strip()}")

    def list_files(self, pattern: str = "*", *, limit: int | None = None) -> list[str]:
        # No config file and no global excludes: only the repo's own ignore files decide what is listed.
        # The last matching glob wins: `!.git` comes after the pattern, or `*` would list .git/ again.
        argv = ["rg", "--no-config", "--no-ignore-global", "--files", "--hidden", "--sort", "path",
                "--glob", pattern or "*", "--glob", "!.git"]
        result = self._exec_raw(argv, timeout=120, env=dict(HELPER_ENV), output_limit=64 * 1024**2)
        errors = result.stderr.decode(errors="replace").strip()
        # A directory or file nobody may read (a repo can hold one, mode 000) is left out, as git leaves it: rg
        # then exits 2 but still lists everything else. Any other error fails.
        unreadable = result.exit_code == 2 and all(line.endswith("Permission denied (os error 13)")
                                                   for line in errors.splitlines())
        if result.exit_code not in (0, 1) and not unreadable:
            raise SandboxError(f"listing files failed: {errors}")
        names = result.stdout.decode("utf-8", errors="replace").splitlines()
        return names[:limit] if limit is not None else names

    def export_files(self, paths: Sequence[str], *, original: bool = False) -> dict[str, FileState]:
        names = [normalize_path(path) for path in paths]
        if not names:
            return {}
        listing = b"".join(name.encode("utf-8", "surrogateescape") + b"\0" for name in names)
        argv = [*PYTHON, "-c", EXPORT_SCRIPT, BASE if original else WORKSPACE]
        result = self._exec_raw(argv, timeout=600, stdin=listing, env=dict(HELPER_ENV), cwd="/",
                                output_limit=self.settings.sandbox_max_diff_bytes + 1)
        if result.exit_code != 0 or result.truncated:
            raise SandboxError(f"exporting files failed: {result.stderr.decode(errors='replace').strip()[:300]}")
        return read_file_states(result.stdout)

    def diff(self) -> bytes:
        argv = [*PYTHON, f"{HELPERS}/smol-diff", BASE, WORKSPACE]
        if self.info.mode is SandboxMode.OVERLAY:
            argv.append(f"{SCRATCH}/upper")
        limit = self.settings.sandbox_max_diff_bytes
        with _tracer().start_as_current_span("sandbox.diff") as span:
            result = self._exec_raw(argv, timeout=600, env=dict(HELPER_ENV), cwd="/", output_limit=limit + 1)
            span.set_attributes({"diff.bytes": result.stdout_bytes, "diff.exit_code": result.exit_code})
        if result.exit_code != 0:
            raise SandboxError(f"computing the diff failed: {result.stderr.decode(errors='replace').strip()}")
        if result.truncated:
            raise SandboxError(f"the change is larger than SANDBOX_MAX_DIFF_BYTES ({limit} bytes); raise it to see it")
        self.left_out = parse_left_out(result.stderr)
        return result.stdout


def _exec_notes(exit_code: int, timed_out: bool, deadline: float, memory_kill: bool | None) -> list[str]:
    """What a person needs to know about how a command ended, beyond its exit status."""
    if timed_out:
        return [f"timed out after {deadline:g}s; everything the command started was stopped"]
    if exit_code == 137:
        if memory_kill:
            return ["killed (SIGKILL): the sandbox memory limit (SANDBOX_MEMORY) was reached"]
        if memory_kill is None:
            return ["killed (SIGKILL): by the sandbox memory limit (SANDBOX_MEMORY) or from inside the sandbox"]
        return ["killed (SIGKILL) from inside the sandbox, not by the memory limit"]
    if memory_kill:
        return ["the sandbox memory limit (SANDBOX_MEMORY) killed a process during this command"]
    return []
