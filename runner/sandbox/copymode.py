"""Copy mode's start: the tree copied into the sandbox, for engines that cannot overlay a host path (remote or
rootless engines, Docker Desktop) and for repos the sandbox user does not own."""

from __future__ import annotations

import posixpath
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from runner.errors import DockerUnavailableError, SandboxError
from runner.sandbox.engine import Mount
from runner.sandbox.layout import BASE, HELPER_ENV, PYTHON, WORKSPACE, keeper_uid
from runner.sandbox.output import HeadTailBuffer
from runner.sandbox.tarstate import BASE_DIR, LINK_SCRIPT, write_tree_archives

if TYPE_CHECKING:
    from runner.sandbox.deployment import DockerDeployment
    from runner.sandbox.engine import Engine


def start_copy(deployment: DockerDeployment, repo: Path, image: str, uid: int, gid: int) -> None:
    """The tree twice: the workspace (the sandbox user's, on a tmpfs capped at SANDBOX_DISK) and the baseline
    for the diff, owned by the keeper's uid with no write bit for anyone else, mounted read-only in the box.

    Relative symlinks that lead out of the tree (`up -> ..`) are refused by the engine's archive extraction;
    they are made afterwards, as links, by the owner of each tree: the same link text in both, so the diff sees
    no change."""
    engine = deployment.engine
    deployment.progress(f"copying {repo} into the sandbox")
    workspace = deployment.tmpfs_volume("workspace", uid, gid, repo.stat().st_mode)
    base = deployment.volume("base")
    keeper = deployment.keeper(image, uid, gid, workspace, base)
    # The base volume is /sandbox, read-only; the baseline is its directory `base`, made by the archive and
    # so owned by the keeper's uid (a volume's own root belongs to root and cannot be re-owned that way).
    mounts = [Mount(WORKSPACE, workspace, no_copy=True),
              Mount(posixpath.dirname(BASE), base, read_only=True, no_copy=True)]
    box = deployment.run(image, "box", mounts, **deployment.hardening(uid, gid))
    deployment.set_box(box)
    owner = keeper_uid(uid)
    with tempfile.TemporaryFile() as working, tempfile.TemporaryFile() as baseline:
        size, outside = write_tree_archives(repo, working, baseline, uid, gid, base_owner=owner)
        if size > deployment.settings.sandbox_disk:
            raise SandboxError(
                f"the repo holds {size >> 20} MiB, more than SANDBOX_DISK allows in copy mode: raise SANDBOX_DISK"
            )
        for archive, target in ((working, "/keep"), (baseline, "/base")):
            archive.seek(0)
            engine.put_archive(keeper, target, archive, "copying the repo into the sandbox")
    if outside:
        listing = b"".join(name.encode("utf-8", "surrogateescape") + b"\0" + link + b"\0" for name, link in outside)
        for container, root, user in ((keeper, f"/base/{BASE_DIR}", f"{owner}:{owner}"),
                                      (box, WORKSPACE, f"{uid}:{gid}")):
            made, output = exec_plain(engine, container, [*PYTHON, "-c", LINK_SCRIPT, root], listing, user)
            if made != 0:
                last = output.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise SandboxError(f"copying the repo into the sandbox failed: could not recreate "
                                   f"{len(outside)} symlink(s) that lead out of the repo ({last[0][:200]})")


def exec_plain(engine: Engine, container: str, argv: list[str], stdin: bytes, user: str) -> tuple[int, bytes]:
    """Run a helper in a container with `stdin`, from `/`, in the helpers' environment: exit status, output
    (-1 and the reason when the engine refused it)."""
    output = HeadTailBuffer(64 * 1024)
    try:
        exec_id = engine.exec_create(container, argv, user=user, environment=dict(HELPER_ENV), workdir="/",
                                     stdin=True)
        for _, chunk in engine.exec_stream(exec_id, stdin=stdin, deadline=time.monotonic() + 120):
            output.write(chunk)
        code = engine.exec_exit_code(exec_id)
    except DockerUnavailableError:
        raise
    except (SandboxError, TimeoutError) as error:
        return -1, str(error).encode()
    return (-1 if code is None else code), output.getvalue()
