"""Writing a sandbox's change into the real tree: planned first, then written all or nothing.

The plan compares, for every touched path, the state when the run started (base), the sandbox's result (final)
and the real tree now (current): untouched-by-the-user paths take the final state, paths the user changed too are
merged three-way (`git merge-file`), anything else is a conflict, and one conflict means nothing is written.
The real tree is only ever inspected with lstat (symlinks are never followed) and written through paths whose
parent directories are real directories. Host-side git runs in temporary directories, with hooks and fsmonitor
off, never in the user's repository and never with --unsafe-paths. Landing a plan as a commit instead is
runner.promote.land.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import stat
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import SmolError
from runner.sandbox.base import FileState, normalize_path

SAFE_GIT = ["git", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "protocol.allow=never",
            "-c", "core.symlinks=true"]
GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C",
           "PATH": os.environ.get("PATH", "/usr/bin:/bin")}


class PromotionError(SmolError):
    exit_code = 8


@dataclass
class PlannedChange:
    path: str
    current: FileState | None
    after: FileState | None
    merged: bool = False


@dataclass
class Plan:
    changes: list[PlannedChange] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    already_applied: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    """Why a conflicting path conflicts, where it is not the usual overlapping edit."""

    @property
    def ok(self) -> bool:
        return not self.conflicts

    def describe_conflicts(self) -> str:
        return ", ".join(f"{path} ({self.reasons[path]})" if path in self.reasons else path for path in self.conflicts)


def _unsafe_parent(repo: Path, path: str) -> str | None:
    """The first parent component that is not a real directory (a symlink, a file), or None."""
    current = repo
    for part in path.split("/")[:-1]:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            return None
        if not stat.S_ISDIR(mode):
            return str(current.relative_to(repo))
    return None


def read_state(repo: Path, path: str) -> FileState | None:
    """The real tree's state at a repo-relative path, never following symlinks (directories count as absent)."""
    relative = normalize_path(path)
    if _unsafe_parent(repo, relative) is not None:
        return None
    full = repo / relative
    try:
        st = os.lstat(full)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return FileState("symlink", os.fsencode(os.readlink(full)))
    if stat.S_ISREG(st.st_mode):
        return FileState("file", full.read_bytes(), bool(st.st_mode & 0o100))
    return None


def special_kind(repo: Path, path: str) -> str | None:
    """What stands at the path when it is neither a file, a symlink, a directory nor absent: never replaced."""
    try:
        mode = os.lstat(repo / normalize_path(path)).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device")):
        if test(mode):
            return name
    return None


def _is_text(*states: FileState | None) -> bool:
    return all(s is not None and s.kind == "file" and b"\x00" not in s.data[:8192] for s in states)


def _merge(current: FileState, base: FileState, final: FileState) -> bytes | None:
    with tempfile.TemporaryDirectory(prefix="smol-merge-") as scratch:
        paths = []
        for name, state in (("current", current), ("base", base), ("final", final)):
            target = Path(scratch, name)
            target.write_bytes(state.data)
            paths.append(str(target))
        result = subprocess.run([*SAFE_GIT, "merge-file", "-p", "--quiet", *paths], capture_output=True,
                                env=GIT_ENV, cwd=scratch)
    return result.stdout if result.returncode == 0 else None


def make_plan(repo: Path, base_files: dict[str, FileState | None], final_files: dict[str, FileState | None],
              paths: list[str], *, against: dict[str, FileState | None] | None = None) -> Plan:
    """Plan the write of every path against the working tree, or against `against` (e.g. HEAD's states, for a
    commit that must hold the agent's change and nothing of the user's uncommitted work)."""
    plan = Plan()
    for path in sorted(set(paths)):
        special = special_kind(repo, path) if against is None and _unsafe_parent(repo, normalize_path(path)) is None \
            else None
        if special is not None:
            plan.conflicts.append(path)
            plan.reasons[path] = f"{special} is there in your tree; smol never replaces one"
            continue
        current = read_state(repo, path) if against is None else against.get(path)
        base, final = base_files.get(path), final_files.get(path)
        if current == final:
            plan.already_applied.append(path)
        elif current == base:
            plan.changes.append(PlannedChange(path, current, final))
        elif base is not None and current is not None and final is not None and _is_text(base, current, final):
            merged = _merge(current, base, final)
            if merged is None:
                plan.conflicts.append(path)
            else:
                executable = final.executable if current.executable == base.executable else current.executable
                plan.changes.append(PlannedChange(path, current, FileState("file", merged, executable), merged=True))
        else:
            plan.conflicts.append(path)
    return plan


@dataclass
class _Backup:
    state: FileState | None
    mtime_ns: tuple[int, int] | None
    mode: int | None = None


def apply_plan(repo: Path, plan: Plan, *, after_write: Callable[[str], None] | None = None) -> None:
    """Write the plan into the tree; on any failure (or interrupt) restore every touched path and return the tree
    to its previous bytes. `after_write` is called after each path is written (tests inject failures there)."""
    if not plan.ok:
        raise PromotionError("conflicts in: " + plan.describe_conflicts())
    backups: dict[str, _Backup] = {}
    for change in plan.changes:
        full = repo / change.path
        try:
            st = os.lstat(full)
            mtime: tuple[int, int] | None = (st.st_atime_ns, st.st_mtime_ns)
            mode: int | None = stat.S_IMODE(st.st_mode)
        except (FileNotFoundError, NotADirectoryError):  # absent, or below a file the plan turns into a directory
            mtime, mode = None, None
        backups[change.path] = _Backup(read_state(repo, change.path), mtime, mode)
    deletions = sorted((c for c in plan.changes if c.after is None), key=lambda c: -c.path.count("/"))
    writes = sorted((c for c in plan.changes if c.after is not None), key=lambda c: c.path.count("/"))
    from runner.promote.journal import journaled

    # The journal outlives a SIGKILL: the next smol command rolls such a write back (runner.promote.journal).
    with journaled(repo, [(c.path, backups[c.path].state, c.after, backups[c.path].mtime_ns, backups[c.path].mode)
                          for c in plan.changes]):
        _write_all(repo, deletions, writes, backups, after_write)


def _write_all(repo: Path, deletions: list[PlannedChange], writes: list[PlannedChange],
               backups: dict[str, _Backup], after_write: Callable[[str], None] | None) -> None:
    touched: list[str] = []
    created_dirs: list[Path] = []
    removed_dirs: list[_RemovedDir] = []
    try:
        for change in deletions:
            _unchanged_since_plan(repo, change)
            touched.append(change.path)
            _remove(repo, change.path)
            removed_dirs += _prune_empty_parents(repo, change.path)
            if after_write:
                after_write(change.path)
        for change in writes:
            assert change.after is not None
            _unchanged_since_plan(repo, change)
            touched.append(change.path)
            created_dirs += _make_parents(repo, change.path)
            removed_dirs += _empty_dir_in_the_way(repo, change.path)
            _write(repo, change.path, change.after)
            if after_write:
                after_write(change.path)
    except BaseException as error:
        from runner.promote.journal import rollback

        with _signals_held():  # a second Ctrl-C must not stop the rollback half-way
            left = rollback(repo, {path: backups[path] for path in touched}, created_dirs, removed_dirs)
        if left:
            raise RollbackIncomplete(f"writing the change failed ({type(error).__name__}: {error}) and "
                                     f"{', '.join(left)} could not be put back; the next smol command tries again "
                                     "(the write's journal is kept)") from error
        raise


class RollbackIncomplete(PromotionError):
    """A failed write whose rollback could not put every path back: its journal is kept for the next command."""

    keep_journal = True


def _unchanged_since_plan(repo: Path, change: PlannedChange) -> None:
    """Right before a path is written: it must still hold what the plan (and the review) saw. A user who saves a
    file while the change is being written keeps their bytes; the paths already written are rolled back."""
    if read_state(repo, change.path) != change.current:
        raise PromotionError(f"{change.path} changed while the change was being written; nothing was written "
                             "(the files already written were put back)")


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP (delivered when this ends). Only the main thread can: elsewhere, nothing."""
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@dataclass
class _RemovedDir:
    """A directory that a deletion left empty and that was removed with it: put back as it was on rollback."""

    path: Path
    mode: int
    owner: tuple[int, int]


def _remove(repo: Path, path: str) -> None:
    unsafe = _unsafe_parent(repo, path)
    if unsafe is not None:
        raise PromotionError(f"refusing to write through {unsafe}: it is not a real directory")
    full = repo / path
    if os.path.lexists(full) and not (os.path.isdir(full) and not os.path.islink(full)):
        os.unlink(full)


def _prune_empty_parents(repo: Path, path: str) -> list[_RemovedDir]:
    removed = []
    parent = (repo / path).parent
    while parent != repo:
        try:
            st = os.lstat(parent)
            os.rmdir(parent)
        except OSError:
            break
        removed.append(_RemovedDir(parent, stat.S_IMODE(st.st_mode), (st.st_uid, st.st_gid)))
        parent = parent.parent
    return removed


def _empty_dir_in_the_way(repo: Path, path: str) -> list[_RemovedDir]:
    """The empty directory that _write is about to replace with the file: made again, as it was, on rollback."""
    full = repo / path
    try:
        st = os.lstat(full)
    except (FileNotFoundError, NotADirectoryError):
        return []
    if not stat.S_ISDIR(st.st_mode) or any(os.scandir(full)):
        return []
    return [_RemovedDir(full, stat.S_IMODE(st.st_mode), (st.st_uid, st.st_gid))]


def _make_parents(repo: Path, path: str) -> list[Path]:
    unsafe = _unsafe_parent(repo, path)
    if unsafe is not None:
        raise PromotionError(f"refusing to write through {unsafe}: it is not a real directory")
    created = []
    current = repo
    for part in path.split("/")[:-1]:
        current = current / part
        if not os.path.lexists(current):
            os.mkdir(current)
            owner = _owner_for(current.parent)
            if owner is not None:
                os.lchown(current, *owner)
            created.append(current)
    return created


def _file_mode(full: Path, executable: bool) -> int:
    """A replaced file keeps its permissions (a 0600 secret stays 0600) with only the executable bits following
    the change, as git sets them; a new file gets 0755 or 0644 under the umask. Setuid and setgid are dropped:
    git cannot carry them, and they must not lend their owner's rights to content the agent wrote."""
    try:
        st = os.lstat(full)
    except FileNotFoundError:
        st = None
    if st is None or not stat.S_ISREG(st.st_mode):
        return (0o755 if executable else 0o644) & ~_umask()
    mode = stat.S_IMODE(st.st_mode) & ~(stat.S_ISUID | stat.S_ISGID)
    if not executable:
        return mode & ~0o111
    if mode & 0o111:
        return mode
    return mode | ((mode & 0o444) >> 2)


def _write(repo: Path, path: str, state: FileState, *, mode: int | None = None) -> None:
    """Replace the path atomically with the state; `mode` (the exact permissions) only when restoring a backup."""
    full = repo / path
    if os.path.isdir(full) and not os.path.islink(full):
        if any(os.scandir(full)):
            raise PromotionError(f"cannot write {path}: a non-empty directory is in the way")
        os.rmdir(full)
    temporary = full.with_name(temporary_name(full.name))
    attempt = 0
    while os.path.lexists(temporary):  # a file of that name is the user's (or a leftover): never ours to delete
        attempt += 1
        temporary = full.with_name(temporary_name(full.name, attempt))
    owner = _owner_for(full)
    with _signals_held():  # one file's write is never cut between its open and its rename (a signal waits ms)
        _replace_with(full, temporary, state, owner, mode)


def temporary_name(name: str, attempt: int = 0) -> str:
    """`.NAME.smol-tmp[N]` next to the file; for a name too long to take the suffix (a file system allows 255
    bytes), `.smol-HASH.smol-tmp[N]`, so that such a file can be written at all."""
    suffix = f".smol-tmp{attempt or ''}"
    if len(os.fsencode(f".{name}{suffix}")) <= 255:
        return f".{name}{suffix}"
    return f".smol-{hashlib.sha256(os.fsencode(name)).hexdigest()[:16]}{suffix}"


def _replace_with(full: Path, temporary: Path, state: FileState, owner: tuple[int, int] | None,
                  mode: int | None) -> None:
    created = False
    try:
        if state.kind == "symlink":
            os.symlink(os.fsdecode(state.data), temporary)
            created = True
            if owner is not None:
                os.lchown(temporary, *owner)
        else:
            permissions = mode if mode is not None else _file_mode(full, state.executable)
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            created = True
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(state.data)
            if owner is not None:
                os.lchown(temporary, *owner)  # before the chmod: a chown clears setuid/setgid, even root's
            os.chmod(temporary, permissions)
        os.replace(temporary, full)
    except BaseException:
        if created:  # ours (O_EXCL): never leave it in the user's tree, whatever stopped the write
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        raise


def _owner_for(full: Path) -> tuple[int, int] | None:
    """When smol runs as root on someone's tree, what it writes keeps that someone as owner: the replaced file's
    owner, else the directory's."""
    if os.geteuid() != 0:
        return None
    for candidate in (full, full.parent):
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            continue
        return st.st_uid, st.st_gid
    return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
