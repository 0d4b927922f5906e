"""The sandbox's lifecycle (SWE-ReX's Deployment): choosing a mode, creating, starting and removing the containers
and volumes, warm spares. What runs inside is the runtime's (`runtime.py`); copy mode's filling is `copymode.py`.

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

import logging
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import DockerUnavailableError, ImageError, SandboxError, SmolError, UsageError
from runner.sandbox import idmap, labels, spares
from runner.sandbox.base import SandboxInfo, SandboxMode
from runner.sandbox.engine import Engine, Mount, connect
from runner.sandbox.idmap import IdmappedRepo
from runner.sandbox.layout import HOME, WORKSPACE, keeper_uid
from runner.sandbox.overlaymode import EngineFacts, FallBack, Spare, start_overlay
from runner.sandbox.runtime import DockerRuntime

if TYPE_CHECKING:
    from runner.config import Settings

log = logging.getLogger(__name__)


class DockerDeployment:
    """Starts and stops one sandbox; hands out its runtime once started."""

    def __init__(self, repo: Path | str, settings: Settings, *, engine: Engine | None = None,
                 image: str | None = None, progress: Callable[[str], None] | None = None,
                 lock: threading.RLock | None = None) -> None:
        self.repo = Path(repo)
        self.settings = settings
        self._engine = engine
        self._image = image
        self.progress = progress or (lambda message: log.info("%s", message))
        self.session = uuid.uuid4().hex[:12]
        self._labels = labels.for_session(self.session)
        self.containers: list[str] = []
        self._volumes: list[str] = []
        self.mountpoints: dict[str, str] = {}
        self._box: str | None = None
        self._info: SandboxInfo | None = None
        self._runtime: DockerRuntime | None = None
        self._lock = lock or threading.RLock()
        self._closed = False
        self._owns_engine = False
        self.warm_spare = False
        """Whether this sandbox started on a spare made ahead of time (one container start instead of two)."""
        self.idmapped: IdmappedRepo | None = None
        """A root-owned repo's idmapped mount, the overlay's lower layer; released with the containers."""
        self.image_env: dict[str, str] = {}
        """Variables of the repo's prepared environment (PATH, VIRTUAL_ENV, …) when the sandbox starts from one."""

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = connect()
            self._owns_engine = True
        return self._engine

    @property
    def info(self) -> SandboxInfo:
        if self._info is None:
            raise SandboxError("the sandbox is not started")
        return self._info

    @property
    def runtime(self) -> DockerRuntime:
        if self._runtime is None:
            raise SandboxError("the sandbox is not started")
        return self._runtime

    # ------------------------------------------------------------------ start / stop
    def start(self) -> None:
        with self._lock:
            if self._info is not None:
                return
            if self._closed:
                raise SandboxError("this sandbox was closed; create a new one")
            repo = check_repo(self.repo)
            image = self._choose_image(repo, self._ensure_image())
            uid, gid, identity_note = self.identity(repo)
            obstacle = self._overlay_obstacle(repo, uid)
            if obstacle is None:
                try:
                    start_overlay(self, repo, image, uid, gid)
                    why = "the real tree, read-only, with a writable overlay" + (
                        f"; the repo is owned by root and seen as uid {uid}'s through an idmapped mount"
                        if self.idmapped else "")
                    self._started(SandboxInfo(SandboxMode.OVERLAY, why, image, self._box_id(), uid, gid))
                    return
                except FallBack as reason:
                    if self.settings.sandbox_mode == "overlay":
                        raise SandboxError(f"overlay mode is not possible: {reason}; set SANDBOX_MODE=auto") from None
                    self.remove_all()
                    obstacle = str(reason)
            from runner.sandbox.copymode import start_copy

            start_copy(self, repo, image, uid, gid)
            why = obstacle + (f"; {identity_note}" if identity_note else "")
            self._started(SandboxInfo(SandboxMode.COPY, why, image, self._box_id(), uid, gid))

    def _started(self, info: SandboxInfo) -> None:
        self._info = info
        self._runtime = DockerRuntime(self.engine, info.container_id, info, self.settings, self._lock,
                                      image_env=self.image_env)

    def stop(self) -> None:
        with self._lock:
            self._closed = True
            self._runtime = None
            self.remove_all()
            self._box = None
            if self._owns_engine and self._engine is not None:
                self._engine.close()
                self._engine, self._owns_engine = None, False

    def _box_id(self) -> str:
        if self._box is None:
            raise SandboxError("the sandbox is not started")
        return self._box

    def remove_all(self) -> None:
        if self.containers or self._volumes:
            remove_objects(self.engine, self.containers, self._volumes)
        self.containers.clear()
        self._volumes.clear()
        if self.idmapped is not None:  # after the overlay that uses it is gone
            self.idmapped.release()
            self.idmapped = None

    # ------------------------------------------------------------------ choices
    def _ensure_image(self) -> str:
        from runner.sandbox.image import build_image, resolve_image

        tag = self._image or resolve_image(self.settings)
        if self.engine.image_exists(tag):
            return tag
        if self.settings.sandbox_image or self._image:
            raise ImageError(f"the sandbox image {tag} is not present: pull or build it, or unset SANDBOX_IMAGE")
        if not self.settings.sandbox_auto_build:
            raise ImageError(f"the sandbox image {tag} is not built: run `smol image build`")
        self.progress(f"the sandbox image {tag} is missing; building it now")
        return build_image(self.engine, self.settings, self.progress)

    def _choose_image(self, repo: Path, base: str) -> str:
        """An image given explicitly is used as it is; otherwise the repo's prepared environment on `base` when one
        exists for the repo's current inputs. A sandbox only ever uses one: building it is the user's choice
        (`runner.env`), never the sandbox's, and its network stays off."""
        if self._image is not None:
            return base
        from runner.env.key import env_tag
        from runner.env.plan import plan_for

        plan = plan_for(repo)
        if not plan.declares_dependencies:
            return base
        tag = env_tag(repo, plan, self.engine.image_id(base))
        if not self.engine.image_exists(tag):
            return base
        self.image_env = dict(plan.image_env)
        return tag

    def identity(self, repo: Path) -> tuple[int, int, str]:
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
        obstacle = EngineFacts(self.engine).overlay_obstacle()
        owner = repo.stat().st_uid
        if obstacle is None and owner != uid and (owner != 0 or idmap.available() is not None):
            obstacle = f"the repo is owned by uid {owner}, not by the sandbox user {uid}" + (
                f" ({idmap.available()})" if owner == 0 else "")
        if obstacle and self.settings.sandbox_mode == "overlay":
            raise SandboxError(f"overlay mode is not possible: {obstacle}; set SANDBOX_MODE=auto")
        return obstacle

    # ------------------------------------------------------------------ containers and volumes
    def hardening(self, uid: int, gid: int) -> dict[str, Any]:
        settings = self.settings
        tmp = settings.sandbox_tmp_size
        # A prepared environment with a compiled toolchain (Go) runs its test binaries from /tmp (GOTMPDIR); noexec
        # there would add no containment, since commands already run what they write under /workspace.
        exec_tmp = ",exec" if "GOCACHE" in self.image_env else ""
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
                "/tmp": f"rw,nosuid,nodev{exec_tmp},size={tmp},mode=1777",
                HOME: f"rw,nosuid,nodev,size={tmp},uid={uid},gid={gid},mode=0700",
            },
            "hostname": "sandbox",
            "working_dir": WORKSPACE,
            "environment": {},
        }

    def volume(self, role: str, driver_opts: dict[str, str] | None = None) -> str:
        name = f"smol-{self.session}-{role}"
        self._volumes.append(name)  # before creating: a half-made volume is still ours to remove
        self.mountpoints[name] = self.engine.create_volume(name, labels.with_role(self._labels, role), driver_opts)
        return name

    def tmpfs_volume(self, role: str, uid: int, gid: int, mode: int) -> str:
        options = f"size={self.settings.sandbox_disk},uid={uid},gid={gid},mode={mode & 0o7777:o}"
        return self.volume(role, {"type": "tmpfs", "device": "tmpfs", "o": options})

    def create(self, image: str, role: str, mounts: list[Mount], **options: Any) -> str:
        container = self.engine.create_container(image, ["sleep", "infinity"], name=f"smol-{self.session}-{role}",
                                                 labels=labels.with_role(self._labels, role), mounts=mounts,
                                                 **options)
        self.containers.append(container)
        return container

    def start_container(self, container: str, role: str) -> None:
        try:
            self.engine.start_container(container)
        except DockerUnavailableError:
            raise
        except SandboxError as error:
            text = str(error).removeprefix("starting the sandbox failed: ")
            if role == "box" and ("mount" in text or "overlay" in text or "no such file" in text.lower()):
                raise FallBack(f"the engine could not mount the overlay ({text[:160]})") from None
            raise

    def run(self, image: str, role: str, mounts: list[Mount], **options: Any) -> str:
        container = self.create(image, role, mounts, **options)
        self.start_container(container, role)
        return container

    def keeper_options(self, uid: int, gid: int) -> dict[str, Any]:
        options = self.hardening(uid, gid)
        options.update(mem_limit=64 * 1024**2, memswap_limit=64 * 1024**2, pids_limit=16,
                       nano_cpus=100_000_000, network_mode="none", tmpfs={})
        return options

    def keeper(self, image: str, uid: int, gid: int, volume: str, base: str | None = None) -> str:
        mounts = [Mount("/keep", volume, no_copy=True)]
        if base is not None:
            mounts.append(Mount("/base", base, no_copy=True))
        return self.run(image, "keeper", mounts, **self.keeper_options(uid, gid))

    def set_box(self, box: str) -> None:
        self._box = box

    # ------------------------------------------------------------------ warm spares
    def prepare_spare(self) -> bool:
        """Make, in the background, the first half of the next overlay sandbox over this repo (see `spares`).

        For callers that know another sandbox follows. Does nothing when that sandbox would not use overlay mode or
        the image is not built yet. True when a spare is on its way.
        """
        from runner.sandbox.image import resolve_image

        try:
            repo = check_repo(self.repo)
            image = self._image or resolve_image(self.settings)
            uid, gid, _ = self.identity(repo)
            if self._overlay_obstacle(repo, uid) is not None or not self.engine.image_exists(image):
                return False
            image = self._choose_image(repo, image)  # the next sandbox over this repo starts from the same one
            key = self.spare_key(image, uid, gid)
        except SmolError as error:
            log.debug("no spare: %s", error)
            return False
        settings = self.settings
        return spares.POOL.prepare(key, lambda: _make_spare(repo, settings, image, uid, gid),
                                   lambda spare: _discard_spare(spare))  # type: ignore[arg-type]

    def spare_key(self, image: str, uid: int, gid: int) -> spares.SpareKey:
        return spares.SpareKey(self.engine.base_url, image, uid, gid, int(self.settings.sandbox_disk))

    def adopt(self, spare: Spare) -> None:
        self.session = spare.session
        self._labels = labels.for_session(spare.session)
        self._volumes.append(spare.scratch)
        self.mountpoints[spare.scratch] = spare.mountpoint
        self.warm_spare = True

    def new_session(self) -> None:
        self.session = uuid.uuid4().hex[:12]
        self._labels = labels.for_session(self.session)
        self.warm_spare = False

    def disown(self) -> None:
        """Forget what was made (a spare now owns it), so that stopping removes nothing."""
        self.containers.clear()
        self._volumes.clear()


def _make_spare(repo: Path, settings: Settings, image: str, uid: int, gid: int) -> Spare:
    maker = DockerDeployment(repo, settings, image=image)
    try:
        scratch = maker.tmpfs_volume("scratch", uid, gid, 0o700)
        keeper = maker.keeper(image, uid, gid, scratch)
        spare = Spare(maker.session, scratch, maker.mountpoints[scratch], keeper)
        maker.disown()  # from here on the spare, not the maker, owns them
        return spare
    finally:
        maker.stop()


def _discard_spare(spare: Spare) -> None:
    engine = connect()
    try:
        remove_objects(engine, [spare.keeper_id], [spare.scratch])
    finally:
        engine.close()


def remove_objects(engine: Engine, containers: Sequence[str], volumes: Sequence[str]) -> None:
    """Remove containers, then the volumes they held; what cannot be removed is left for `smol gc`, with a warning.
    Never raises: it runs on the way out, often while another error is on its way to the user."""
    import sys
    import time

    on_its_way = sys.exc_info()[1]
    try:
        for container in reversed(containers):
            try:
                engine.remove_container(container)
            except SandboxError as error:
                log.warning("could not remove container %s: %s", container[:12], error)
        for name in reversed(volumes):
            for attempt in range(5):
                try:
                    engine.remove_volume(name)
                    break
                except SandboxError as error:  # still in use by a container that is going away
                    if attempt == 4:
                        log.warning("could not remove volume %s: %s (run `smol gc`)", name, error)
                    time.sleep(0.1 * (attempt + 1))
    except DockerUnavailableError as error:
        if not isinstance(on_its_way, DockerUnavailableError):  # else its own message already says all this
            log.warning("%s; the sandbox's containers and volumes stay until then", error)


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
