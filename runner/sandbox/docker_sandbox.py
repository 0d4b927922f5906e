"""The Docker implementation of the sandbox: a deployment (lifecycle: `deployment.py`) and, once started, its
runtime (what runs inside: `runtime.py`), behind the one `Sandbox` interface everything above uses."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.sandbox.base import ExecResult, FileState, OutputCallback, Sandbox, SandboxInfo
from runner.sandbox.deployment import DockerDeployment, check_repo
from runner.sandbox.engine import Engine
from runner.sandbox.runtime import DockerRuntime

if TYPE_CHECKING:
    from runner.config import Settings

__all__ = ["DockerSandbox", "check_repo"]


def _tracer() -> Any:
    from opentelemetry import trace

    return trace.get_tracer("smol.sandbox")


class DockerSandbox(Sandbox):
    def __init__(
        self,
        repo: Path | str,
        settings: Settings,
        *,
        engine: Engine | None = None,
        image: str | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self.deployment = DockerDeployment(repo, settings, engine=engine, image=image, progress=progress,
                                           lock=self._lock)
        self.repo = self.deployment.repo
        self.settings = settings

    # ------------------------------------------------------------------ lifecycle
    @property
    def session(self) -> str:
        return self.deployment.session

    @property
    def warm_spare(self) -> bool:
        """Whether this sandbox started on a spare made ahead of time (one container start instead of two)."""
        return self.deployment.warm_spare

    @property
    def info(self) -> SandboxInfo:
        return self.deployment.info

    @property
    def runtime(self) -> DockerRuntime:
        """What runs inside; a SandboxError before `start` and after `close`."""
        return self.deployment.runtime

    def start(self) -> None:
        with self._lock, _tracer().start_as_current_span("sandbox.start") as span:
            self.deployment.start()
            span.set_attributes({"sandbox.mode": self.info.mode.value, "sandbox.image": self.info.image,
                                 "sandbox.mode_reason": self.info.mode_reason, "sandbox.session": self.session,
                                 "sandbox.warm_spare": self.warm_spare})

    def close(self) -> None:
        self.deployment.stop()

    def prepare_spare(self) -> bool:
        """Make, in the background, the first half of the next overlay sandbox over this repo (see `spares`)."""
        return self.deployment.prepare_spare()

    # ------------------------------------------------------------------ inside
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
        return self.runtime.exec(command, timeout=timeout, workdir=workdir, env=env, stdin=stdin,
                                 on_output=on_output, output_limit=output_limit)

    def read(self, path: str, *, max_bytes: int | None = None) -> bytes:
        return self.runtime.read(path, max_bytes=max_bytes)

    def write(self, path: str, data: bytes, *, executable: bool | None = None) -> None:
        self.runtime.write(path, data, executable=executable)

    def list_files(self, pattern: str = "*", *, limit: int | None = None) -> list[str]:
        return self.runtime.list_files(pattern, limit=limit)

    def export_files(self, paths: Sequence[str], *, original: bool = False) -> dict[str, FileState]:
        return self.runtime.export_files(paths, original=original)

    def diff(self) -> bytes:
        runtime = self.runtime
        patch = runtime.diff()
        self.left_out = runtime.left_out
        return patch
