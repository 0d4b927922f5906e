"""The repo's state as tar streams: the two archives copy mode puts into the sandbox, and the export archive read
back (in memory, never extracted on the host). No engine here: plain files and bytes in, archives out."""

from __future__ import annotations

import io
import os
import posixpath
import stat
import tarfile
from pathlib import Path
from typing import BinaryIO

from runner.sandbox.base import FileState

BASE_DIR = "base"
"""Where the baseline lies in its volume (the volume is /sandbox in the box: the baseline is /sandbox/base)."""


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
                if stat.S_ISLNK(st.st_mode) and leaves_tree(arcname, os.readlink(full)):
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


def leaves_tree(arcname: str, link: str) -> bool:
    """Whether a relative symlink's target, taken from its directory, is outside the tree (the engine's check)."""
    if link.startswith("/"):
        return False
    target = posixpath.normpath(posixpath.join(posixpath.dirname(arcname), link))
    return target == ".." or target.startswith("../")


LINK_SCRIPT = """
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
"""Makes the symlinks that lead out of the tree, in the sandbox, as the owner of the tree it runs in."""


def overlay_layout(repo: str, root: os.stat_result, uid: int, gid: int) -> bytes:
    """The overlay's scratch volume as a tar: upper/ (the repo root's mode) and work/, owned by the sandbox user,
    and `lower`, a symlink to the repo that keeps commas, colons and spaces of its path out of the mount options."""
    layout = io.BytesIO()
    with tarfile.open(fileobj=layout, mode="w") as archive:
        for name, mode in (("upper", root.st_mode), ("work", 0o700)):
            entry = tarfile.TarInfo(name)
            entry.type, entry.mode, entry.uid, entry.gid = tarfile.DIRTYPE, mode & 0o7777, uid, gid
            entry.mtime = int(root.st_mtime)
            archive.addfile(entry)
        link = tarfile.TarInfo("lower")
        link.type, link.linkname = tarfile.SYMTYPE, repo
        archive.addfile(link)
    return layout.getvalue()


EXPORT_SCRIPT = """
import os, sys, tarfile
root = sys.argv[1].encode()
with tarfile.open(fileobj=sys.stdout.buffer, mode="w|", format=tarfile.PAX_FORMAT) as archive:
    for name in sys.stdin.buffer.read().split(b"\\0"):
        path = os.path.join(root, name)
        if name and (os.path.islink(path) or os.path.isfile(path)):
            archive.add(os.fsdecode(path), arcname=name.decode("utf-8", "surrogateescape"), recursive=False)
"""
"""Writes the files and symlinks named on stdin (NUL-separated) under argv[1] as a tar to stdout."""


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
