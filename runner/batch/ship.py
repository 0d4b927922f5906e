"""A repo's exact working tree as plain data, so a task can run on a machine that cannot read the driver's paths.

`pack_repo` (on the driver) takes a git bundle of HEAD plus the working tree's uncommitted state: every tracked file
whose bytes or exec bit differ from HEAD, every untracked file git does not ignore, every tracked path deleted.
`unpack_repo` (on a worker) rebuilds that tree in a fresh directory: the same commit checked out byte for byte, the
same files on top. Ignored files (build output, virtualenvs, `.env`) and submodules do not travel: a worker prepares
its own environment, as the local pool's sandboxes do.

No host-side git command here runs a filter, a hook or the fsmonitor: changes are found by hashing the working
tree's raw bytes as git blobs (what `git status` would do only after running clean filters the repo may configure),
and the worker checks out with every attribute that converts content switched off."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import SmolError
from runner.sandbox.base import FileState

_RAW_CHECKOUT = "* -text -eol -filter -ident -working-tree-encoding -export-subst\n"
"""$GIT_DIR/info/attributes outranks every .gitattributes: the checkout writes each blob's bytes as they are."""


class ShipError(SmolError):
    """A repo cannot be packed or rebuilt (not readable, a path that escapes the tree)."""


@dataclass
class RepoPack:
    """What travels: the commit (as a bundle) and the working tree's difference from it."""

    head: str | None
    """The commit checked out, or None (not a git repo, or a repo without commits: every file travels)."""
    branch: str | None
    bundle: bytes = b""
    files: dict[str, FileState] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    git: bool = True
    base_state: dict[str, Any] = field(default_factory=dict)
    """The driver's `base_state` of the repo when it was packed (what the run record keeps)."""

    @property
    def size(self) -> int:
        return len(self.bundle) + sum(len(state.data) for state in self.files.values())

    @property
    def digest(self) -> str:
        """Equal digests mean equal trees (caches a pack already sent to the cluster)."""
        hashed = hashlib.sha256(f"{self.head}\0{self.branch}\0{self.git}\0".encode())
        for path in sorted(self.files):
            state = self.files[path]
            hashed.update(f"{path}\0{state.kind}\0{int(state.executable)}\0{len(state.data)}\0".encode())
            hashed.update(state.data)
        hashed.update("\0".join(sorted(self.deleted)).encode())
        return hashed.hexdigest()[:32]


def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    from runner.promote.apply import GIT_ENV, SAFE_GIT

    result = subprocess.run([*SAFE_GIT, "-c", f"safe.directory={repo}", "-C", str(repo), *args],
                            capture_output=True, env=GIT_ENV)
    if check and result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        raise ShipError(f"git {args[0]} failed in {repo}: {message[-1] if message else result.returncode}")
    return result


def pack_repo(repo: Path) -> RepoPack:
    """The repo at `repo` as a RepoPack (a git top level: bundle + changes; anything else: every file)."""
    from runner.agent.recording import base_state

    repo = repo.resolve()
    top = _git(repo, "rev-parse", "--show-toplevel", check=False)
    if top.returncode != 0 or Path(os.fsdecode(top.stdout.strip())).resolve() != repo:
        return RepoPack(head=None, branch=None, files=_walk(repo), git=False, base_state=base_state(repo))
    head_run = _git(repo, "rev-parse", "--verify", "-q", "HEAD^{commit}", check=False)
    head = head_run.stdout.decode().strip() or None
    branch_run = _git(repo, "symbolic-ref", "-q", "--short", "HEAD", check=False)
    branch = branch_run.stdout.decode().strip() or None
    pack = RepoPack(head=head, branch=branch, base_state=base_state(repo))
    tracked: dict[str, tuple[str, str]] = {}
    if head is not None:
        with tempfile.TemporaryDirectory(prefix="smol-bundle-") as scratch:
            target = Path(scratch) / "head.bundle"
            _git(repo, "bundle", "create", "-q", str(target), "HEAD")
            pack.bundle = target.read_bytes()
        for entry in _git(repo, "ls-tree", "-r", "-z", "--full-tree", "HEAD").stdout.split(b"\0"):
            if entry:
                meta, _, raw_path = entry.partition(b"\t")
                mode, _kind, blob = meta.decode().split()
                tracked[os.fsdecode(raw_path)] = (mode, blob)
    for name, (mode, blob) in tracked.items():
        if mode == "160000":
            continue  # a submodule: not shipped
        state = _read(repo, name)
        if state is None:
            pack.deleted.append(name)
        elif _blob_id(state.data) != blob or _mode(state) != mode:
            pack.files[name] = state
    untracked = _git(repo, "ls-files", "-z", "--others", "--exclude-standard").stdout.split(b"\0")
    for raw in untracked:
        name = os.fsdecode(raw)
        if name and name not in tracked:
            state = _read(repo, name)
            if state is not None:
                pack.files[name] = state
    return pack


def _read(repo: Path, path: str) -> FileState | None:
    """A path's content as git would store it; None for a path that is gone or is no file (a directory now)."""
    full = repo / path
    try:
        info = os.lstat(full)
        if stat.S_ISLNK(info.st_mode):
            return FileState("symlink", os.fsencode(os.readlink(full)))
        if stat.S_ISREG(info.st_mode):
            return FileState("file", full.read_bytes(), bool(info.st_mode & stat.S_IXUSR))
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ShipError(f"cannot read {full} to ship it: {error.strerror}") from None
    return None


def _blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _mode(state: FileState) -> str:
    if state.kind == "symlink":
        return "120000"
    return "100755" if state.executable else "100644"


def _walk(repo: Path) -> dict[str, FileState]:
    found: dict[str, FileState] = {}
    for root, dirs, files in os.walk(repo):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            rel = os.path.relpath(os.path.join(root, name), repo)
            state = _read(repo, rel)
            if state is not None:
                found[rel] = state
    return found


def unpack_repo(pack: RepoPack, target: Path) -> Path:
    """Rebuild the packed tree at `target` (created; must not exist) and return it."""
    target.mkdir(parents=True)
    if pack.git:
        _git(target, "init", "-q")
    if pack.head is not None:
        bundle = target.parent / f".{target.name}.bundle"
        bundle.write_bytes(pack.bundle)
        try:
            _git(target, "-c", "protocol.file.allow=always", "fetch", "-q", "--no-tags", str(bundle),
                 "+HEAD:refs/smol/shipped")
        finally:
            bundle.unlink()
        attributes = target / ".git" / "info" / "attributes"
        attributes.parent.mkdir(parents=True, exist_ok=True)
        attributes.write_text(_RAW_CHECKOUT)
        if pack.branch:
            _git(target, "checkout", "-q", "-B", pack.branch, pack.head)
        else:
            _git(target, "checkout", "-q", "--detach", pack.head)
        attributes.unlink()
        _git(target, "update-ref", "-d", "refs/smol/shipped")
    root = target.resolve()
    for path in pack.deleted:
        full = _inside(root, path)
        if full.is_symlink() or full.is_file():
            full.unlink()
    for path, state in pack.files.items():
        full = _inside(root, path)
        full.parent.mkdir(parents=True, exist_ok=True)
        if full.is_symlink() or full.is_file():
            full.unlink()
        if state.kind == "symlink":
            os.symlink(os.fsdecode(state.data), full)
        else:
            full.write_bytes(state.data)
            full.chmod(0o755 if state.executable else 0o644)
    return target


def _inside(root: Path, path: str) -> Path:
    """`root/path`, refused when the path is absolute, climbs out, names .git or passes through a symlink."""
    parts = Path(path).parts
    if not parts or Path(path).is_absolute() or ".." in parts or any(p.lower() == ".git" for p in parts):
        raise ShipError(f"refusing to unpack {path!r}: not a path inside the repo")
    parent = (root / path).parent.resolve()
    if parent != root and root not in parent.parents:
        raise ShipError(f"refusing to unpack {path!r}: its directory leaves the repo through a symlink")
    return parent / parts[-1]
