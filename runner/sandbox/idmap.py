"""Root-owned repos in overlay mode: an idmapped mount of the repo, in which root's files appear as the sandbox
user's, becomes the overlay's lower layer (instead of copying the whole tree, whose cost grows with its size).

Only for a host process that is root (it alone may make the mount) over a repo owned by root. The mount is
read-only, lives under a directory only root can enter (IDMAP_ROOT, mode 0700), and is unmounted when the sandbox
stops, or by `smol gc` after a killed process (each mount's directory records its owner, as the labels do).

util-linux here has no `X-mount.idmap`, and Python no wrapper for the new mount API: the three syscalls are called
through ctypes (numbers for x86_64 and aarch64, the same on both: the new mount API is in the generic table).
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from runner.sandbox import labels

log = logging.getLogger(__name__)

IDMAP_ROOT = Path("/run/smol/idmap")

_SYS_OPEN_TREE, _SYS_MOVE_MOUNT, _SYS_MOUNT_SETATTR = 428, 429, 442
_OPEN_TREE_CLONE, _OPEN_TREE_CLOEXEC, _AT_RECURSIVE, _AT_EMPTY_PATH = 1, os.O_CLOEXEC, 0x8000, 0x1000
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_MOUNT_ATTR_RDONLY, _MOUNT_ATTR_NOSUID, _MOUNT_ATTR_NODEV, _MOUNT_ATTR_IDMAP = 0x1, 0x2, 0x4, 0x00100000
_AT_FDCWD, _MNT_DETACH = -100, 2


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),  # noqa: RUF012 - ctypes' layout
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> int:
    if result < 0:
        number = ctypes.get_errno()
        raise OSError(number, f"{what}: {os.strerror(number)}")
    return result


def available() -> str | None:
    """Why an idmapped mount cannot be made here, or None when it can be tried."""
    if os.geteuid() != 0:
        return "the host process is not root"
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "aarch64"):
        return f"idmapped mounts are not wired up for {platform.system()} {platform.machine()}"
    return None


@dataclass(frozen=True)
class IdmappedRepo:
    """The repo, seen through an idmapped mount at `path`: files of uid/gid 0 belong to uid:gid there."""

    directory: Path
    """The session's directory under IDMAP_ROOT: `owner` (who made it) and `tree` (the mount)."""

    @property
    def path(self) -> Path:
        return self.directory / "tree"

    def release(self) -> None:
        """Unmount and remove the directory; idempotent. Never removes anything while it is still mounted."""
        release(self.directory)


def _userns_fd(uid: int, gid: int) -> int:
    """A user namespace whose root is `uid:gid` outside: the idmapping the mount takes (its fd outlives the
    process that made it)."""
    holder = subprocess.Popen(["unshare", "--user", "sleep", "60"], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ours = os.readlink("/proc/self/ns/user")
        deadline = time.monotonic() + 5
        while os.readlink(f"/proc/{holder.pid}/ns/user") == ours:
            if holder.poll() is not None or time.monotonic() > deadline:
                raise OSError(f"unshare --user failed (exit {holder.poll()})")
            time.sleep(0.005)
        Path(f"/proc/{holder.pid}/uid_map").write_text(f"0 {uid} 1\n")
        Path(f"/proc/{holder.pid}/gid_map").write_text(f"0 {gid} 1\n")
        return os.open(f"/proc/{holder.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        holder.kill()
        holder.wait()


def mount(repo: Path, session: str, uid: int, gid: int) -> IdmappedRepo:
    """Mount `repo` read-only at IDMAP_ROOT/<session>/tree, with root's files appearing as uid:gid's."""
    IDMAP_ROOT.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(IDMAP_ROOT, 0o700)  # the only way in: root's files must not be reachable as uid's by anyone else
    directory = IDMAP_ROOT / session
    directory.mkdir(mode=0o700)
    (directory / "owner").write_text(labels.owner_label())
    (directory / "tree").mkdir(mode=0o700)
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    tree = userns = -1
    try:
        tree = _check(libc.syscall(_SYS_OPEN_TREE, _AT_FDCWD, os.fsencode(repo),
                                   _OPEN_TREE_CLONE | _OPEN_TREE_CLOEXEC | _AT_RECURSIVE), "open_tree")
        userns = _userns_fd(uid, gid)
        attr = _MountAttr(_MOUNT_ATTR_IDMAP | _MOUNT_ATTR_RDONLY | _MOUNT_ATTR_NOSUID | _MOUNT_ATTR_NODEV, 0, 0,
                          userns)
        _check(libc.syscall(_SYS_MOUNT_SETATTR, tree, b"", _AT_EMPTY_PATH | _AT_RECURSIVE, ctypes.byref(attr),
                            ctypes.sizeof(attr)), "mount_setattr")
        _check(libc.syscall(_SYS_MOVE_MOUNT, tree, b"", _AT_FDCWD, os.fsencode(directory / "tree"),
                            _MOVE_MOUNT_F_EMPTY_PATH), "move_mount")
    except BaseException:
        release(directory)
        raise
    finally:
        for fd in (tree, userns):
            if fd >= 0:
                os.close(fd)
    return IdmappedRepo(directory)


def _mounted(path: Path) -> bool:
    """Whether something is mounted at `path` (os.path.ismount misses a bind of the same filesystem)."""
    wanted = os.fsencode(path)
    try:
        with open("/proc/self/mountinfo", "rb") as handle:
            points = [line.split()[4] for line in handle]
    except OSError:
        return True  # cannot tell: assume mounted, so nothing is removed
    return any(point.decode("unicode_escape").encode("latin-1") == wanted for point in points)


def release(directory: Path) -> None:
    tree = directory / "tree"
    if _mounted(tree):
        libc = _libc()
        if libc.umount2(os.fsencode(tree), _MNT_DETACH) != 0:
            number = ctypes.get_errno()
            log.warning("could not unmount %s: %s (run `smol gc`)", tree, os.strerror(number))
            return
    if _mounted(tree):
        return  # never remove what is still mounted: it is the repo
    for leftover in (tree, directory / "owner", directory):
        try:
            if leftover.name == "owner":
                leftover.unlink()
            else:
                leftover.rmdir()  # rmdir, never a recursive delete: an empty directory or nothing
        except FileNotFoundError:
            pass
        except OSError as error:
            log.warning("could not remove %s: %s", leftover, error)


def collect(*, everything: bool = False) -> list[str]:
    """Unmount what killed processes left under IDMAP_ROOT (or everything); returns the sessions released."""
    if not IDMAP_ROOT.is_dir() or os.geteuid() != 0:
        return []
    released = []
    for directory in sorted(IDMAP_ROOT.iterdir()):
        try:
            owner = (directory / "owner").read_text()
        except OSError:
            owner = ""
        if not everything and owner and labels.owner_alive(owner):
            continue
        release(directory)
        if not directory.exists():
            released.append(directory.name)
    return released
