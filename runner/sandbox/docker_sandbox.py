"""The Docker implementation of the sandbox.

Overlay mode (local engine): a tmpfs volume, capped at SANDBOX_DISK, holds the overlay's upper and work
directories plus a symlink to the repo; a second volume is the overlay itself (lowerdir = the real tree, read by
the daemon). The sandbox sees the tree exactly as the user has it and writes only to memory; the host tree is never
written. Start cost does not depend on the repo size, and the diff only looks at what the upper layer holds.

Copy mode (remote/rootless engines, Docker Desktop, root-owned repos): the tree is tarred into a tmpfs volume, and
a second, root-owned copy is kept as the baseline for the diff.

In both modes a tiny "keeper" container holds the tmpfs volume mounted, so the sandbox container can be restarted
(the last resort after a runaway command) without losing the work. Every object carries the `smol.sandbox` label;
`smol gc` finds what a killed process left behind by that label.
"""

from __future__ import annotations

import io
import logging
import os
import posixpath
import select
import socket
import stat
import struct
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from runner.errors import ImageError, SandboxError, SmolError, UsageError
from runner.sandbox import labels, spares
from runner.sandbox.base import (
    ExecResult,
    FileState,
    FileTooLargeError,
    OutputCallback,
    Sandbox,
    SandboxInfo,
    SandboxMode,
    normalize_path,
)
from runner.sandbox.engine import EngineFacts, connect
from runner.sandbox.output import HeadTailBuffer

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container

    from runner.config import Settings

log = logging.getLogger(__name__)


def _tracer() -> Any:
    from opentelemetry import trace

    return trace.get_tracer("smol.sandbox")

WORKSPACE = "/workspace"
BASE = "/sandbox/base"
SCRATCH = "/sandbox/scratch"
HOME = "/home/sandbox"
HELPERS = "/opt/smol/bin"
HOST_GRACE_S = 10.0
"""How long past its own deadline a command may take before the host steps in."""

_BASE_ENV = {
    "PATH": f"{HELPERS}:/usr/local/bin:/usr/bin:/bin",
    "HOME": HOME,
    "USER": "sandbox",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "GIT_OPTIONAL_LOCKS": "0",
    "GIT_CONFIG_COUNT": "1",
    "GIT_CONFIG_KEY_0": "safe.directory",
    "GIT_CONFIG_VALUE_0": "*",
    "GIT_PAGER": "cat",
    "PAGER": "cat",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTEST_ADDOPTS": "-p no:cacheprovider",
}

_HELPER_ENV = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/nonexistent",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
}
"""The whole environment of the commands smol itself runs in the sandbox (read, write, list, export, diff, sweep):
nothing from SANDBOX_ENV_ALLOWLIST, no PYTHON* variables, and a HOME that does not exist, so no file the agent
can write ($HOME/.gitconfig, a .pth or usercustomize in the user site, rc files) is consulted."""

PYTHON = ["/usr/bin/python3", "-I", "-S"]
"""How helpers in Python run: isolated (no script directory or cwd on sys.path, no user site, PYTHON* ignored) and
without site (nothing of site-packages either); with `/` as their working directory, never the repo."""


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


class _FallBack(Exception):
    """Overlay mode cannot work here; copy mode should be used instead, for the reason given."""


class DockerSandbox(Sandbox):
    def __init__(
        self,
        repo: Path | str,
        settings: Settings,
        *,
        client: DockerClient | None = None,
        image: str | None = None,
        progress: Any = None,
    ) -> None:
        self.repo = Path(repo)
        self.settings = settings
        self._client = client
        self._image = image
        self._progress = progress or (lambda message: log.info("%s", message))
        self.session = uuid.uuid4().hex[:12]
        self._labels = labels.for_session(self.session)
        self._containers: list[Container] = []
        self._volumes: list[str] = []
        self._mountpoints: dict[str, str] = {}
        self._box: Container | None = None
        self._info: SandboxInfo | None = None
        self._lock = threading.RLock()
        self._closed = False
        self._owns_client = False
        self._oom_kills = 0
        """Processes the box's memory limit had killed at the last sweep (a new container starts at 0)."""
        self.warm_spare = False
        """Whether this sandbox started on a spare made ahead of time (one container start instead of two)."""

    # ------------------------------------------------------------------ lifecycle
    @property
    def client(self) -> DockerClient:
        if self._client is None:
            self._client = connect()
            self._owns_client = True
        return self._client

    @property
    def info(self) -> SandboxInfo:
        if self._info is None:
            raise SandboxError("the sandbox is not started")
        return self._info

    def start(self) -> None:
        with self._lock, _tracer().start_as_current_span("sandbox.start") as span:
            self._start()
            span.set_attributes({"sandbox.mode": self.info.mode.value, "sandbox.image": self.info.image,
                                 "sandbox.mode_reason": self.info.mode_reason, "sandbox.session": self.session,
                                 "sandbox.warm_spare": self.warm_spare})

    def _start(self) -> None:
        with self._lock:
            if self._info is not None:
                return
            if self._closed:
                raise SandboxError("this sandbox was closed; create a new one")
            repo = check_repo(self.repo)
            image = self._ensure_image()
            uid, gid, identity_note = self._identity(repo)
            obstacle = self._overlay_obstacle(repo, uid)
            if obstacle is None:
                try:
                    self._start_overlay(repo, image, uid, gid)
                    self._info = SandboxInfo(SandboxMode.OVERLAY, "the real tree, read-only, with a writable overlay",
                                             image, self._box_id(), uid, gid)
                    return
                except _FallBack as reason:
                    if self.settings.sandbox_mode == "overlay":
                        raise SandboxError(f"overlay mode is not possible: {reason}; set SANDBOX_MODE=auto") from None
                    self._remove_all()
                    obstacle = str(reason)
            self._start_copy(repo, image, uid, gid)
            why = obstacle + (f"; {identity_note}" if identity_note else "")
            self._info = SandboxInfo(SandboxMode.COPY, why, image, self._box_id(), uid, gid)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._remove_all()
            self._box = None
            if self._owns_client and self._client is not None:
                self._client.close()
                self._client, self._owns_client = None, False

    def _box_id(self) -> str:
        assert self._box is not None
        return self._box.id

    def _remove_all(self) -> None:
        if self._containers or self._volumes:
            remove_objects(self.client, self._containers, self._volumes)
        self._containers.clear()
        self._volumes.clear()

    # ------------------------------------------------------------------ start helpers
    def _ensure_image(self) -> str:
        from runner.sandbox.image import build_image, image_exists, resolve_image

        tag = self._image or resolve_image(self.settings)
        if image_exists(self.client, tag):
            return tag
        if self.settings.sandbox_image or self._image:
            raise ImageError(f"the sandbox image {tag} is not present: pull or build it, or unset SANDBOX_IMAGE")
        if not self.settings.sandbox_auto_build:
            raise ImageError(f"the sandbox image {tag} is not built: run `smol image build`")
        self._progress(f"the sandbox image {tag} is missing; building it now")
        return build_image(self.client, self.settings, self._progress)

    def _identity(self, repo: Path) -> tuple[int, int, str]:
        """The uid:gid commands run as: the host user, or, when that is root, the repo's owner; never root."""
        owner = repo.stat()
        if os.geteuid() != 0:
            return os.geteuid(), os.getegid(), ""
        if owner.st_uid != 0:
            return owner.st_uid, owner.st_gid, ""
        uid = self.settings.sandbox_uid
        return uid, uid, f"the repo is owned by root and the sandbox never runs as root (uid {uid})"

    def _overlay_obstacle(self, repo: Path, uid: int) -> str | None:
        if self.settings.sandbox_mode == "copy":
            return "SANDBOX_MODE=copy"
        obstacle = EngineFacts(self.client).overlay_obstacle()
        if obstacle is None and repo.stat().st_uid != uid:
            obstacle = f"the repo is owned by uid {repo.stat().st_uid}, not by the sandbox user {uid}"
        if obstacle and self.settings.sandbox_mode == "overlay":
            raise SandboxError(f"overlay mode is not possible: {obstacle}; set SANDBOX_MODE=auto")
        return obstacle

    def _hardening(self, uid: int, gid: int) -> dict[str, Any]:
        settings = self.settings
        tmp = settings.sandbox_tmp_size
        return {
            "detach": True,
            "init": True,
            "user": f"{keeper_uid(uid)}:{keeper_uid(uid)}",
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "read_only": True,
            "network_mode": "bridge" if settings.sandbox_network else "none",
            "pids_limit": settings.sandbox_pids,
            "mem_limit": settings.sandbox_memory,
            "memswap_limit": settings.sandbox_memory,
            "nano_cpus": int(settings.sandbox_cpus * 1e9),
            "tmpfs": {
                "/tmp": f"rw,nosuid,nodev,size={tmp},mode=1777",
                HOME: f"rw,nosuid,nodev,size={tmp},uid={uid},gid={gid},mode=0700",
            },
            "hostname": "sandbox",
            "working_dir": WORKSPACE,
            "environment": {},
        }

    def _volume(self, role: str, driver_opts: dict[str, str] | None = None) -> str:
        name = f"smol-{self.session}-{role}"
        volume = self.client.volumes.create(name, driver="local", driver_opts=driver_opts or {},
                                            labels=labels.with_role(self._labels, role))
        self._volumes.append(name)
        self._mountpoints[name] = volume.attrs.get("Mountpoint") or self.client.api.inspect_volume(name)["Mountpoint"]
        return name

    def _tmpfs_volume(self, role: str, uid: int, gid: int, mode: int) -> str:
        options = f"size={self.settings.sandbox_disk},uid={uid},gid={gid},mode={mode & 0o7777:o}"
        return self._volume(role, {"type": "tmpfs", "device": "tmpfs", "o": options})

    def _create(self, image: str, role: str, mounts: list[Any], **options: Any) -> Container:
        import docker.errors

        try:
            container = self.client.containers.create(
                image, ["sleep", "infinity"], name=f"smol-{self.session}-{role}",
                labels=labels.with_role(self._labels, role), mounts=mounts, **options,
            )
        except docker.errors.APIError as error:
            raise SandboxError(f"creating the sandbox failed: {error.explanation or error}") from None
        self._containers.append(container)
        return container

    def _start_container(self, container: Container, role: str) -> None:
        import docker.errors

        try:
            container.start()
        except docker.errors.APIError as error:
            text = str(error.explanation or error)
            if role == "box" and ("mount" in text or "overlay" in text or "no such file" in text.lower()):
                raise _FallBack(f"the engine could not mount the overlay ({text.splitlines()[0][:160]})") from None
            raise SandboxError(f"starting the sandbox failed: {text}") from None

    def _run(self, image: str, role: str, mounts: list[Any], **options: Any) -> Container:
        container = self._create(image, role, mounts, **options)
        self._start_container(container, role)
        return container

    def _keeper_options(self, uid: int, gid: int) -> dict[str, Any]:
        options = self._hardening(uid, gid)
        options.update(mem_limit=64 * 1024**2, memswap_limit=64 * 1024**2, pids_limit=16,
                       nano_cpus=100_000_000, network_mode="none", tmpfs={})
        return options

    def _keeper(self, image: str, uid: int, gid: int, volume: str, base: str | None = None) -> Container:
        from docker.types import Mount

        mounts = [Mount("/keep", volume, type="volume", no_copy=True)]
        if base is not None:
            mounts.append(Mount("/base", base, type="volume", no_copy=True))
        return self._run(image, "keeper", mounts, **self._keeper_options(uid, gid))

    def _start_overlay(self, repo: Path, image: str, uid: int, gid: int) -> None:
        import docker.errors

        spare = spares.POOL.take(self._spare_key(image, uid, gid))
        if spare is not None:
            assert isinstance(spare, Spare)
            try:
                self._start_overlay_on(repo, image, uid, gid, spare)
                return
            except (SandboxError, docker.errors.APIError) as error:
                # The spare went stale (its keeper died, the engine restarted): start from scratch instead.
                log.info("the warm spare could not be used (%s); starting without it", error)
                self._remove_all()
                self._new_session()
        self._start_overlay_on(repo, image, uid, gid, None)

    def _start_overlay_on(self, repo: Path, image: str, uid: int, gid: int, spare: Spare | None) -> None:
        from concurrent.futures import ThreadPoolExecutor

        from docker.types import Mount

        root = repo.stat()
        if spare is not None:
            self._adopt(spare)
            scratch = spare.scratch
        else:
            scratch = self._tmpfs_volume("scratch", uid, gid, 0o700)
        mountpoint = self._mountpoints[scratch]
        overlay = self._volume("overlay", {
            "type": "overlay", "device": "overlay",
            # redirect_dir/metacopy off: every changed path is a real entry in the upper layer, which the diff
            # reads; a renamed directory must not become a redirect that hides its files.
            "o": f"lowerdir={mountpoint}/lower,upperdir={mountpoint}/upper,workdir={mountpoint}/work,"
                 "redirect_dir=off,metacopy=off",
        })
        box_mounts = [
            Mount(WORKSPACE, overlay, type="volume", no_copy=True),
            Mount(SCRATCH, scratch, type="volume", read_only=True, no_copy=True),
            Mount(BASE, str(repo), type="bind", read_only=True),
        ]
        if spare is not None:
            keeper = self.client.containers.prepare_model({"Id": spare.keeper_id})
            self._containers.append(keeper)
            box = self._create(image, "box", box_mounts, **self._hardening(uid, gid))
        else:
            keeper_mounts = [Mount("/keep", scratch, type="volume", no_copy=True)]
            # Both containers are created at once; only the starts must wait for each other.
            with ThreadPoolExecutor(max_workers=2) as pool:
                keeper_future = pool.submit(self._create, image, "keeper", keeper_mounts,
                                            **self._keeper_options(uid, gid))
                box_future = pool.submit(self._create, image, "box", box_mounts, **self._hardening(uid, gid))
                keeper, box = keeper_future.result(), box_future.result()
            self._start_container(keeper, "keeper")
        layout = io.BytesIO()
        with tarfile.open(fileobj=layout, mode="w") as archive:
            for name, mode in (("upper", root.st_mode), ("work", 0o700)):
                entry = tarfile.TarInfo(name)
                entry.type, entry.mode, entry.uid, entry.gid = tarfile.DIRTYPE, mode & 0o7777, uid, gid
                entry.mtime = int(root.st_mtime)
                archive.addfile(entry)
            # A symlink keeps commas, colons and spaces of the repo path out of the mount options.
            link = tarfile.TarInfo("lower")
            link.type, link.linkname = tarfile.SYMTYPE, str(repo)
            archive.addfile(link)
        _put_archive(keeper, "/keep", layout.getvalue(), "preparing the overlay")
        self._start_container(box, "box")
        self._box = box
        if not self._daemon_sees(box, root, f"{uid}:{gid}"):
            raise _FallBack("the engine sees a different tree at the repo path")

    # ------------------------------------------------------------------ warm spares
    def prepare_spare(self) -> bool:
        """Make, in the background, the first half of the next overlay sandbox over this repo (see `spares`).

        For callers that know another sandbox follows. Does nothing when that sandbox would not use overlay mode or
        the image is not built yet. True when a spare is on its way.
        """
        try:
            repo = check_repo(self.repo)
            image = self._image or _resolve_image(self.settings)
            uid, gid, _ = self._identity(repo)
            if self._overlay_obstacle(repo, uid) is not None or not _image_exists(self.client, image):
                return False
            key = self._spare_key(image, uid, gid)
        except SmolError as error:
            log.debug("no spare: %s", error)
            return False
        settings = self.settings
        return spares.POOL.prepare(key, lambda: _make_spare(repo, settings, image, uid, gid),
                                   lambda spare: _discard_spare(spare))  # type: ignore[arg-type]

    def _spare_key(self, image: str, uid: int, gid: int) -> spares.SpareKey:
        return spares.SpareKey(str(self.client.api.base_url), image, uid, gid, int(self.settings.sandbox_disk))

    def _adopt(self, spare: Spare) -> None:
        self.session = spare.session
        self._labels = labels.for_session(spare.session)
        self._volumes.append(spare.scratch)
        self._mountpoints[spare.scratch] = spare.mountpoint
        self.warm_spare = True

    def _new_session(self) -> None:
        self.session = uuid.uuid4().hex[:12]
        self._labels = labels.for_session(self.session)
        self.warm_spare = False

    def _daemon_sees(self, box: Container, root: os.stat_result, user: str) -> bool:
        """Whether the daemon mounted the very directory we stat (it may run elsewhere, e.g. in a VM)."""
        import base64
        import json
        from datetime import datetime

        try:
            response = self.client.api.head(self.client.api._url("/containers/{0}/archive", box.id),
                                              params={"path": BASE})
            response.raise_for_status()
            seen = json.loads(base64.b64decode(response.headers["X-Docker-Container-Path-Stat"]))
            stamp = str(seen["mtime"])
            whole, _, fraction = stamp.partition(".")
            digits = "".join(ch for ch in fraction if ch.isdigit())
            zone = fraction[len(digits):] or "Z"
            moment = datetime.fromisoformat(whole + zone.replace("Z", "+00:00"))
            seen_ns = int(moment.timestamp()) * 10**9 + int((digits + "0" * 9)[:9])
            return seen_ns == root.st_mtime_ns and (int(seen["mode"]) & 0o777) == (root.st_mode & 0o777)
        except Exception:  # noqa: BLE001 - an engine without this API gets the slower check
            listing = self._exec_raw(["ls", "-A1", BASE], timeout=30, user=user,
                                     output_limit=1 << 20)
            return listing.exit_code == 0 and sorted(listing.stdout.decode(errors="surrogateescape").splitlines()) \
                == sorted(os.listdir(self.repo))

    def _start_copy(self, repo: Path, image: str, uid: int, gid: int) -> None:
        """The tree twice: the workspace (the sandbox user's, on a tmpfs capped at SANDBOX_DISK) and the baseline
        for the diff, owned by the keeper's uid with no write bit for anyone else, mounted read-only in the box.

        Relative symlinks that lead out of the tree (`up -> ..`) are refused by the engine's archive extraction;
        they are made afterwards, as links, by the owner of each tree: the same link text in both, so the diff sees
        no change."""
        from docker.types import Mount

        self._progress(f"copying {repo} into the sandbox")
        workspace = self._tmpfs_volume("workspace", uid, gid, repo.stat().st_mode)
        base = self._volume("base")
        keeper = self._keeper(image, uid, gid, workspace, base)
        # The base volume is /sandbox, read-only; the baseline is its directory `base`, made by the archive and
        # so owned by the keeper's uid (a volume's own root belongs to root and cannot be re-owned that way).
        mounts = [Mount(WORKSPACE, workspace, type="volume", no_copy=True),
                  Mount(posixpath.dirname(BASE), base, type="volume", read_only=True, no_copy=True)]
        self._box = self._run(image, "box", mounts, **self._hardening(uid, gid))
        owner = keeper_uid(uid)
        with tempfile.TemporaryFile() as working, tempfile.TemporaryFile() as baseline:
            size, outside = write_tree_archives(repo, working, baseline, uid, gid, base_owner=owner)
            if size > self.settings.sandbox_disk:
                raise SandboxError(
                    f"the repo holds {size >> 20} MiB, more than SANDBOX_DISK allows in copy mode: raise SANDBOX_DISK"
                )
            for archive, target in ((working, "/keep"), (baseline, "/base")):
                archive.seek(0)
                _put_archive(keeper, target, archive, "copying the repo into the sandbox")
        if outside:
            listing = b"".join(name.encode("utf-8", "surrogateescape") + b"\0" + link + b"\0"
                               for name, link in outside)
            for container, root, user in ((keeper, f"/base/{BASE_DIR}", f"{owner}:{owner}"),
                                          (self._box, WORKSPACE, f"{uid}:{gid}")):
                made, output = _exec_plain(container, [*PYTHON, "-c", _LINK_SCRIPT, root], listing, user)
                if made != 0:
                    last = output.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
                    raise SandboxError(f"copying the repo into the sandbox failed: could not recreate "
                                       f"{len(outside)} symlink(s) that lead out of the repo ({last[0][:200]})")

    # ------------------------------------------------------------------ running commands
    def _exec_env(self, extra: dict[str, str] | None) -> dict[str, str]:
        env = dict(_BASE_ENV)
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
        notes = list(raw.notes)
        if timed_out:
            notes.append(f"timed out after {deadline:g}s; everything the command started was stopped")
        elif raw.exit_code == 137:
            if memory_kill:
                notes.append("killed (SIGKILL): the sandbox memory limit (SANDBOX_MEMORY) was reached")
            elif memory_kill is None:
                notes.append("killed (SIGKILL): by the sandbox memory limit (SANDBOX_MEMORY) or from inside the "
                             "sandbox")
            else:
                notes.append("killed (SIGKILL) from inside the sandbox, not by the memory limit")
        elif memory_kill:
            notes.append("the sandbox memory limit (SANDBOX_MEMORY) killed a process during this command")
        return ExecResult(
            exit_code=raw.exit_code,
            stdout=raw.stdout.decode("utf-8", errors="replace"),
            stderr=raw.stderr.decode("utf-8", errors="replace"),
            duration_s=raw.duration_s,
            timed_out=timed_out,
            truncated=raw.truncated,
            stdout_bytes=raw.stdout_bytes,
            stderr_bytes=raw.stderr_bytes,
            notes=notes,
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
        import docker.errors

        if self._box is None:
            raise SandboxError("the sandbox is not started")
        if cwd is None:
            directory = normalize_path(workdir)
            cwd = WORKSPACE if directory == "." else f"{WORKSPACE}/{directory}"
        identity = user or f"{self.info.uid}:{self.info.gid}"
        with self._lock:
            started = time.monotonic()
            try:
                exec_id = self.client.api.exec_create(
                    self._box.id, argv, stdout=True, stderr=True, stdin=stdin is not None, tty=False,
                    user=identity, environment=env or self._exec_env(None), workdir=cwd,
                )["Id"]
                sock = self.client.api.exec_start(exec_id, socket=True)
            except docker.errors.APIError as error:
                raise SandboxError(f"running a command in the sandbox failed: {error.explanation or error}") from None
            raw_socket: socket.socket = getattr(sock, "_sock", sock)
            buffers = {1: HeadTailBuffer(output_limit), 2: HeadTailBuffer(output_limit)}
            host_deadline = started + timeout + HOST_GRACE_S
            notes: list[str] = []
            timed_out = False
            try:
                if stdin is not None:
                    raw_socket.sendall(stdin)
                    raw_socket.shutdown(socket.SHUT_WR)
                for stream, chunk in _frames(raw_socket, host_deadline):
                    # Streamed output is bounded like kept output: the head now, the tail at the end.
                    shown = buffers[stream if stream in buffers else 1].write(chunk)
                    if on_output is not None and shown:
                        on_output("stderr" if stream == 2 else "stdout", shown)
            except TimeoutError:
                timed_out = True
                notes.append("the host stopped a command that outlived its deadline")
                self._reap()
            finally:
                try:
                    sock.close()
                except OSError:
                    pass
            if on_output is not None:
                for stream, name in ((1, "stdout"), (2, "stderr")):
                    rest = buffers[stream].rest()
                    if rest:
                        on_output(name, rest)
            exit_code = self._exit_code(exec_id, timed_out)
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

    def _exit_code(self, exec_id: str, timed_out: bool) -> int:
        for _ in range(100):
            state = self.client.api.exec_inspect(exec_id)
            if not state.get("Running") and state.get("ExitCode") is not None:
                return int(state["ExitCode"])
            time.sleep(0.02)
        return 124 if timed_out else -1

    def _reap(self) -> None:
        """End every process of the sandbox user; restart the container if even that cannot run."""
        import docker.errors

        assert self._box is not None
        try:
            result = self._box.exec_run(["kill", "-KILL", "-1"], user=f"{self.info.uid}:{self.info.gid}")
            if result.exit_code in (0, 1):
                return
        except docker.errors.APIError:
            pass
        log.warning("restarting the sandbox container to stop a runaway command")
        self._box.restart(timeout=1)
        self._oom_kills = 0  # a restarted container has a fresh memory cgroup

    def _sweep(self) -> bool | None:
        """End every process of the sandbox user, from outside the command's wrapper (which the command may have
        killed before its own sweep). Returns whether the memory limit killed a process since the last sweep
        (None when the engine does not say)."""
        try:
            raw = self._exec_raw([f"{HELPERS}/smol-exec", "--sweep"], timeout=30, cwd="/", env=dict(_HELPER_ENV),
                                 output_limit=4096)
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
        result = self._exec_raw(["cat", "--", target], timeout=60, env=dict(_HELPER_ENV), output_limit=limit)
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
                                env=dict(_HELPER_ENV), output_limit=64 * 1024)
        if result.exit_code != 0:
            raise SandboxError(f"cannot write {target}: {result.stderr.decode(errors='replace').strip()}")

    def list_files(self, pattern: str = "*", *, limit: int | None = None) -> list[str]:
        # No config file and no global excludes: only the repo's own ignore files decide what is listed.
        # The last matching glob wins: `!.git` comes after the pattern, or `*` would list .git/ again.
        argv = ["rg", "--no-config", "--no-ignore-global", "--files", "--hidden", "--sort", "path",
                "--glob", pattern or "*", "--glob", "!.git"]
        result = self._exec_raw(argv, timeout=120, env=dict(_HELPER_ENV), output_limit=64 * 1024**2)
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
        argv = [*PYTHON, "-c", _EXPORT_SCRIPT, BASE if original else WORKSPACE]
        result = self._exec_raw(argv, timeout=600, stdin=listing, env=dict(_HELPER_ENV), cwd="/",
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
            result = self._exec_raw(argv, timeout=600, env=dict(_HELPER_ENV), cwd="/", output_limit=limit + 1)
            span.set_attributes({"diff.bytes": result.stdout_bytes, "diff.exit_code": result.exit_code})
        if result.exit_code != 0:
            raise SandboxError(f"computing the diff failed: {result.stderr.decode(errors='replace').strip()}")
        if result.truncated:
            raise SandboxError(f"the change is larger than SANDBOX_MAX_DIFF_BYTES ({limit} bytes); raise it to see it")
        self.left_out = parse_left_out(result.stderr)
        return result.stdout


_EXPORT_SCRIPT = """
import os, sys, tarfile
root = sys.argv[1].encode()
with tarfile.open(fileobj=sys.stdout.buffer, mode="w|", format=tarfile.PAX_FORMAT) as archive:
    for name in sys.stdin.buffer.read().split(b"\\0"):
        path = os.path.join(root, name)
        if name and (os.path.islink(path) or os.path.isfile(path)):
            archive.add(os.fsdecode(path), arcname=name.decode("utf-8", "surrogateescape"), recursive=False)
"""


LEFT_OUT_KINDS = ("ignored", "special", "git")
"""What smol-diff leaves out of a patch: new files the ignore rules match; FIFOs, sockets and devices; `.git` in
any spelling git refuses (`.GIT`, `git~1`, `.git.`) and nested repositories, when something in them changed."""


def parse_left_out(report: bytes) -> dict[str, list[str]]:
    """smol-diff's stderr: NUL-terminated `kind<TAB>path` records (`more<TAB>kind<TAB>count` lines are counts)."""
    left_out: dict[str, list[str]] = {kind: [] for kind in LEFT_OUT_KINDS}
    for record in report.split(b"\0"):
        kind, tab, path = record.partition(b"\t")
        name = kind.decode(errors="replace")
        if tab and path and name in left_out:
            left_out[name].append(path.decode("utf-8", "surrogateescape"))
    return left_out


def read_file_states(archive: bytes) -> dict[str, FileState]:
    """Parse an export tar in memory; nothing is ever extracted to the host filesystem."""
    states: dict[str, FileState] = {}
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
        for member in tar:
            if member.issym():
                states[member.name] = FileState("symlink", member.linkname.encode("utf-8", "surrogateescape"))
            elif member.isreg():
                handle = tar.extractfile(member)
                data = handle.read() if handle is not None else b""
                states[member.name] = FileState("file", data, bool(member.mode & 0o100))
    return states


@dataclass(frozen=True)
class Spare:
    """A tmpfs volume already mounted by its running keeper; the sandbox that takes it adopts its session."""

    session: str
    scratch: str
    mountpoint: str
    keeper_id: str


def _make_spare(repo: Path, settings: Settings, image: str, uid: int, gid: int) -> Spare:
    maker = DockerSandbox(repo, settings, image=image)
    try:
        scratch = maker._tmpfs_volume("scratch", uid, gid, 0o700)
        keeper = maker._keeper(image, uid, gid, scratch)
        spare = Spare(maker.session, scratch, maker._mountpoints[scratch], keeper.id)
        maker._containers.clear()
        maker._volumes.clear()  # from here on the spare, not the maker, owns them
        return spare
    finally:
        maker.close()


def _discard_spare(spare: Spare) -> None:
    client = connect()
    try:
        remove_objects(client, [client.containers.prepare_model({"Id": spare.keeper_id})], [spare.scratch])
    finally:
        client.close()


def remove_objects(client: DockerClient, containers: Sequence[Container], volumes: Sequence[str]) -> None:
    """Remove containers, then the volumes they held; what cannot be removed is left for `smol gc`, with a warning."""
    import docker.errors

    for container in reversed(containers):
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as error:
            log.warning("could not remove container %s: %s", container.short_id, error)
    for name in reversed(volumes):
        for attempt in range(5):
            try:
                client.volumes.get(name).remove(force=True)
                break
            except docker.errors.NotFound:
                break
            except docker.errors.APIError as error:
                if attempt == 4:
                    log.warning("could not remove volume %s: %s (run `smol gc`)", name, error)
                time.sleep(0.1 * (attempt + 1))


def _resolve_image(settings: Settings) -> str:
    from runner.sandbox.image import resolve_image

    return resolve_image(settings)


def _image_exists(client: DockerClient, tag: str) -> bool:
    from runner.sandbox.image import image_exists

    return image_exists(client, tag)


def keeper_uid(uid: int) -> int:
    """The uid the containers' own processes run as: never the sandbox user, so its `kill -1` cannot reach them."""
    return 65534 if uid != 65534 else 65533


def check_repo(repo: Path) -> Path:
    """The repo path, resolved, or a UsageError that says what to pass instead."""
    if not repo.exists():
        raise UsageError(f"repo path {str(repo)!r} does not exist: pass --repo with an existing directory")
    if not repo.is_dir():
        raise UsageError(f"repo path {str(repo)!r} is a file, not a directory: pass the repository's directory")
    resolved = repo.resolve()
    if not os.access(resolved, os.R_OK | os.X_OK):
        raise UsageError(f"repo path {str(resolved)!r} is not readable: check its permissions")
    return resolved


def _frames(raw: socket.socket, deadline: float) -> Iterator[tuple[int, bytes]]:
    """Docker's multiplexed stream: 8-byte headers (stream, 0, 0, 0, size) followed by the payload."""
    pending = bytearray()
    while True:
        while len(pending) >= 8:
            stream, size = struct.unpack(">BxxxL", pending[:8])
            if len(pending) < 8 + size:
                break
            payload = bytes(pending[8:8 + size])
            del pending[:8 + size]
            yield stream, payload
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        ready, _, _ = select.select([raw], [], [], min(remaining, 1.0))
        if not ready:
            continue
        chunk = raw.recv(1 << 16)
        if not chunk:
            return
        pending += chunk


def write_tree_archives(repo: Path, working: BinaryIO, baseline: BinaryIO, uid: int, gid: int, *,
                        base_owner: int = 0) -> tuple[int, list[tuple[str, bytes]]]:
    """Tar the tree twice: owned by the sandbox user (its workspace), and owned by `base_owner` with no write bit
    for group or others, under BASE_DIR (the baseline: the sandbox user can read it, never write it).

    Returns the bytes of file content and the relative symlinks that lead out of the tree, (path, link text) each:
    the engine refuses to extract those, so they are left out of both archives for the caller to make.
    FIFOs, sockets and devices are skipped: they cannot be copied meaningfully.
    """
    total = 0
    outside: list[tuple[str, bytes]] = []
    with tarfile.open(fileobj=working, mode="w", format=tarfile.PAX_FORMAT) as work_tar, \
            tarfile.open(fileobj=baseline, mode="w", format=tarfile.PAX_FORMAT) as base_tar:
        top = base_tar.gettarinfo(str(repo), BASE_DIR)
        top.uid, top.gid, top.uname, top.gname, top.mode = base_owner, base_owner, "", "", 0o755
        base_tar.addfile(top)  # a directory of the volume, so that its owner too is the baseline's
        for dirpath, dirnames, filenames in os.walk(repo):
            dirnames.sort()
            for name in [*dirnames, *sorted(filenames)]:
                full = os.path.join(dirpath, name)
                arcname = os.path.relpath(full, repo)
                st = os.lstat(full)
                if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                    continue
                if stat.S_ISLNK(st.st_mode) and _leaves_tree(arcname, os.readlink(full)):
                    outside.append((arcname, os.fsencode(os.readlink(full))))
                    continue
                info = work_tar.gettarinfo(full, arcname)
                info.uid, info.gid, info.uname, info.gname = uid, gid, "", ""
                content = open(full, "rb") if info.isreg() else None  # noqa: SIM115 - closed below
                try:
                    work_tar.addfile(info, content)
                    if content is not None:
                        content.seek(0)
                        total += info.size
                    info.uid, info.gid = base_owner, base_owner
                    # Readable by all, writable by its owner only; no setuid/setgid/sticky. git reads the
                    # owner's exec bit, which is kept.
                    info.mode = 0o755 if info.isdir() else (info.mode & 0o755) | 0o444
                    info.name = f"{BASE_DIR}/{arcname}"
                    if info.islnk():
                        info.linkname = f"{BASE_DIR}/{info.linkname}"
                    base_tar.addfile(info, content)
                finally:
                    if content is not None:
                        content.close()
    return total, outside


BASE_DIR = "base"
"""Where the baseline lies in its volume (the volume is /sandbox in the box: the baseline is /sandbox/base)."""


def _leaves_tree(arcname: str, link: str) -> bool:
    """Whether a relative symlink's target, taken from its directory, is outside the tree (the engine's check)."""
    if link.startswith("/"):
        return False
    target = posixpath.normpath(posixpath.join(posixpath.dirname(arcname), link))
    return target == ".." or target.startswith("../")


_LINK_SCRIPT = """
import os, sys
root = sys.argv[1].encode()
fields = sys.stdin.buffer.read().split(b"\\0")
for name, link in zip(fields[0::2], fields[1::2]):
    path = os.path.join(root, name)
    parent = os.path.dirname(path)
    mode = os.lstat(parent).st_mode
    if not mode & 0o200:
        os.chmod(parent, mode | 0o200)  # a read-only directory of the repo: opened for this one link
    os.symlink(link, path)
    if not mode & 0o200:
        os.chmod(parent, mode & 0o7777)
"""


def _put_archive(container: Container, path: str, data: Any, what: str) -> None:
    """put_archive, with every engine failure (a refused member, a full volume) as a SandboxError that says what."""
    import docker.errors
    import requests.exceptions

    try:
        ok = container.put_archive(path, data)
    except docker.errors.APIError as error:
        raise SandboxError(f"{what} failed: {_explain(error)}") from None
    except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
        raise SandboxError(f"{what} failed: {str(error).splitlines()[0][:300] if str(error) else error}") from None
    if not ok:
        raise SandboxError(f"{what} failed: the engine refused the archive for {path}")


def _explain(error: Any) -> str:
    """The engine's own words from a docker-py APIError, without the HTTP wrapping."""
    text = str(getattr(error, "explanation", None) or error)
    prefix = "Error processing tar file(exit status 1): "
    return text.replace(prefix, "").strip()[:300]


def _exec_plain(container: Container, argv: list[str], stdin: bytes, user: str) -> tuple[int, bytes]:
    """Run a helper in a container with `stdin`, from `/`, in the helpers' environment: exit status, output."""
    import docker.errors

    api = container.client.api
    try:
        exec_id = api.exec_create(container.id, argv, stdin=True, stdout=True, stderr=True, user=user,
                                  environment=dict(_HELPER_ENV), workdir="/")["Id"]
        sock = api.exec_start(exec_id, socket=True)
        raw: socket.socket = getattr(sock, "_sock", sock)
        output = HeadTailBuffer(64 * 1024)
        try:
            raw.sendall(stdin)
            raw.shutdown(socket.SHUT_WR)
            for _, chunk in _frames(raw, time.monotonic() + 120):
                output.write(chunk)
        finally:
            sock.close()
        for _ in range(100):
            state = api.exec_inspect(exec_id)
            if not state.get("Running") and state.get("ExitCode") is not None:
                return int(state["ExitCode"]), output.getvalue()
            time.sleep(0.02)
        return -1, output.getvalue()
    except (docker.errors.APIError, TimeoutError, OSError) as error:
        return -1, str(error).encode()
