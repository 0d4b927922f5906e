"""Overlay mode's start: the real tree, read-only, as the lower layer of an overlay the daemon mounts, with the
upper layer on a tmpfs volume capped at SANDBOX_DISK; and whether this engine can do that at all."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import DockerUnavailableError, SandboxError
from runner.sandbox import idmap, spares
from runner.sandbox.base import SandboxInfo, SandboxMode
from runner.sandbox.engine import Engine, Mount
from runner.sandbox.layout import BASE, SCRATCH, WORKSPACE
from runner.sandbox.runtime import DockerRuntime
from runner.sandbox.tarstate import overlay_layout

if TYPE_CHECKING:
    from runner.sandbox.deployment import DockerDeployment

log = logging.getLogger(__name__)


class FallBack(Exception):
    """Overlay mode cannot work here; copy mode should be used instead, for the reason given."""


@dataclass
class EngineFacts:
    """What the sandbox needs to know about the engine to pick a mode."""

    engine: Engine

    @cached_property
    def info(self) -> dict[str, Any]:
        return self.engine.info()

    @property
    def is_remote(self) -> bool:
        host = os.environ.get("DOCKER_HOST", "")
        return bool(host) and not host.startswith(("unix://", "npipe://"))

    @property
    def is_rootless(self) -> bool:
        return any("rootless" in str(option) for option in self.info.get("SecurityOptions") or [])

    @property
    def is_desktop(self) -> bool:
        return "Docker Desktop" in str(self.info.get("OperatingSystem", ""))

    def overlay_obstacle(self) -> str | None:
        """Why the daemon cannot mount an overlay of a host path, or None when it can."""
        if self.is_remote:
            return "the engine is remote (DOCKER_HOST) and cannot see host paths"
        if self.is_desktop:
            return "Docker Desktop runs the engine in a VM that cannot overlay host paths"
        if self.is_rootless:
            return "the engine is rootless"
        return None


@dataclass(frozen=True)
class Spare:
    """A tmpfs volume already mounted by its running keeper; the sandbox that takes it adopts its session."""

    session: str
    scratch: str
    mountpoint: str
    keeper_id: str


def start_overlay(deployment: DockerDeployment, repo: Path, image: str, uid: int, gid: int) -> None:
    spare = spares.POOL.take(deployment.spare_key(image, uid, gid))
    if spare is not None:
        assert isinstance(spare, Spare)
        try:
            _start_on(deployment, repo, image, uid, gid, spare)
            return
        except SandboxError as error:
            # The spare went stale (its keeper died, the engine restarted): start from scratch instead.
            log.info("the warm spare could not be used (%s); starting without it", error)
            deployment.remove_all()
            deployment.new_session()
    _start_on(deployment, repo, image, uid, gid, None)


def _start_on(deployment: DockerDeployment, repo: Path, image: str, uid: int, gid: int, spare: Spare | None) -> None:
    root = repo.stat()
    if spare is not None:
        deployment.adopt(spare)
        scratch = spare.scratch
    else:
        scratch = deployment.tmpfs_volume("scratch", uid, gid, 0o700)
    mountpoint = deployment.mountpoints[scratch]
    lower = _lower(deployment, repo, root, uid, gid)
    overlay = deployment.volume("overlay", {
        "type": "overlay", "device": "overlay",
        # redirect_dir/metacopy off: every changed path is a real entry in the upper layer, which the diff
        # reads; a renamed directory must not become a redirect that hides its files.
        "o": f"lowerdir={mountpoint}/lower,upperdir={mountpoint}/upper,workdir={mountpoint}/work,"
             "redirect_dir=off,metacopy=off",
    })
    box_mounts = [
        Mount(WORKSPACE, overlay, no_copy=True),
        Mount(SCRATCH, scratch, read_only=True, no_copy=True),
        Mount(BASE, str(lower), type="bind", read_only=True),
    ]
    if spare is not None:
        keeper = spare.keeper_id
        deployment.containers.append(keeper)
        box = deployment.create(image, "box", box_mounts, **deployment.hardening(uid, gid))
    else:
        keeper_mounts = [Mount("/keep", scratch, no_copy=True)]
        # Both containers are created at once; only the starts must wait for each other.
        with ThreadPoolExecutor(max_workers=2) as pool:
            keeper_future = pool.submit(deployment.create, image, "keeper", keeper_mounts,
                                        **deployment.keeper_options(uid, gid))
            box_future = pool.submit(deployment.create, image, "box", box_mounts, **deployment.hardening(uid, gid))
            keeper, box = keeper_future.result(), box_future.result()
        deployment.start_container(keeper, "keeper")
    deployment.engine.put_archive(keeper, "/keep", overlay_layout(str(lower), root, uid, gid), "preparing the overlay")
    deployment.start_container(box, "box")
    deployment.set_box(box)
    if not daemon_sees(deployment, box, root, f"{uid}:{gid}"):
        raise FallBack("the engine sees a different tree at the repo path")


def _lower(deployment: DockerDeployment, repo: Path, root: os.stat_result, uid: int, gid: int) -> Path:
    """The overlay's lower layer: the repo itself, or, for a root-owned repo (and a root host process), an
    idmapped mount of it in which root's files are uid:gid's (see `idmap`); copy mode when that cannot be made."""
    if root.st_uid == uid:
        return repo
    try:
        deployment.idmapped = idmap.mount(repo, deployment.session, uid, gid)
    except OSError as error:
        raise FallBack(f"the repo is owned by root and an idmapped mount of it failed ({error})") from None
    return deployment.idmapped.path


def daemon_sees(deployment: DockerDeployment, box: str, root: os.stat_result, user: str) -> bool:
    """Whether the daemon mounted the very directory we stat (it may run elsewhere, e.g. in a VM)."""
    try:
        seen = deployment.engine.path_stat(box, BASE)
    except DockerUnavailableError:
        raise
    except SandboxError:
        seen = None
    if seen is not None:
        mtime_ns, mode = seen
        return mtime_ns == root.st_mtime_ns and (mode & 0o777) == (root.st_mode & 0o777)
    # An engine without this API gets the slower check.
    runtime = DockerRuntime(deployment.engine, box, SandboxInfo(SandboxMode.OVERLAY, "", "", box, 0, 0),
                            deployment.settings)
    listing = runtime._exec_raw(["ls", "-A1", BASE], timeout=30, user=user, output_limit=1 << 20)
    return listing.exit_code == 0 and sorted(listing.stdout.decode(errors="surrogateescape").splitlines()) \
        == sorted(os.listdir(deployment.repo))
