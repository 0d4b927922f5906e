"""A write journal, so that even a SIGKILL in the middle of a promotion leaves no partial change for long.

Before the first byte is written, the journal records every path's state before and after (owner-only, in smol's
state directory). It is removed when the write completed or was rolled back (`rollback`, below); a rollback that
could not put every path back keeps it. A journal whose process is gone was
interrupted by something no handler sees (SIGKILL, a power cut): the next smol command puts back every path that
holds what smol wrote, leaves alone a path the user has changed since (and says so), and removes smol's own
temporaries (recognised by holding exactly the bytes smol was writing)."""

from __future__ import annotations

import base64
import glob
import json
import os
import stat
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.sandbox.base import FileState

if TYPE_CHECKING:
    from runner.promote.apply import _Backup, _RemovedDir


def journal_dir() -> Path:
    from runner.records import default_db_path

    return default_db_path().parent / "journal"


def encode_state(state: FileState | None) -> dict[str, Any] | None:
    if state is None:
        return None
    return {"kind": state.kind, "data": base64.b64encode(state.data).decode(), "executable": state.executable}


def decode_state(value: dict[str, Any] | None) -> FileState | None:
    if value is None:
        return None
    return FileState(kind=value["kind"], data=base64.b64decode(value["data"]), executable=value["executable"])


@contextmanager
def journaled(repo: Path, changes: list[tuple[str, FileState | None, FileState | None, Any, int | None]]) \
        -> Iterator[None]:
    """Keep a journal of (path, before, after, (atime_ns, mtime_ns) before, permissions before) for the write."""
    from runner.records import private_dir, write_private

    directory = private_dir(journal_dir())
    path = directory / f"{uuid.uuid4().hex}.json"
    entry = {"repo": str(repo), "pid": os.getpid(), "boot": _boot_id(),
             "changes": [{"path": p, "before": encode_state(b), "after": encode_state(a), "times": t, "mode": m}
                         for p, b, a, t, m in changes]}
    write_private(path, json.dumps(entry).encode())
    try:
        yield
    except BaseException as error:
        if not getattr(error, "keep_journal", False):  # rolled back: the tree is whole
            with suppress(FileNotFoundError):
                path.unlink()
        raise  # (a rollback that could not finish keeps the journal: the next smol command finishes it)
    with suppress(FileNotFoundError):
        path.unlink()  # completed


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _alive(entry: dict[str, Any]) -> bool:
    if entry.get("boot") != _boot_id():
        return False  # written before a reboot: its process is gone whatever its pid says now
    try:
        os.kill(int(entry["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(report: Callable[[str], None]) -> int:
    """Roll back every write whose process died mid-way; returns how many journals were handled."""
    from runner.promote.apply import _write, read_state

    directory = journal_dir()
    if not directory.is_dir():
        return 0
    handled = 0
    for path in sorted(directory.glob("*.json")):
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if _alive(entry):
            continue  # a promotion running right now
        repo = Path(entry["repo"])
        restored, kept = 0, []
        for change in reversed(entry["changes"]):
            name = change["path"]
            before, after = decode_state(change["before"]), decode_state(change["after"])
            _remove_our_temporaries(repo / name, after)
            try:
                current = read_state(repo, name)
            except OSError:
                kept.append(name)
                continue
            if current == before:
                continue
            if current != after:
                kept.append(name)  # changed by someone since: theirs now
                continue
            try:
                if before is None:
                    with suppress(FileNotFoundError):
                        os.unlink(repo / name)
                else:
                    os.makedirs((repo / name).parent, exist_ok=True)
                    _write(repo, name, before, mode=change.get("mode") if before.kind == "file" else None)
                    if change.get("times"):
                        os.utime(repo / name, ns=tuple(change["times"]), follow_symlinks=False)
            except OSError:  # still not writable: reported as kept, never a traceback at the next start
                kept.append(name)
                continue
            restored += 1
        path.unlink()
        handled += 1
        message = f"a promotion into {repo} was killed mid-write; {restored} file(s) put back as they were"
        if kept:
            more = f" and {len(kept) - 10} more" if len(kept) > 10 else ""
            message += f"; left as they are now (changed since): {', '.join(kept[:10])}{more}"
        report(message)
    return handled


def _remove_our_temporaries(full: Path, after: FileState | None) -> None:
    if after is None or after.kind != "file" or not full.parent.is_dir():
        return
    from runner.promote.apply import temporary_name

    for candidate in full.parent.glob(glob.escape(temporary_name(full.name)) + "*"):
        with suppress(OSError):
            if not candidate.is_symlink() and candidate.is_file() and candidate.read_bytes() in (after.data, b""):
                candidate.unlink()


def rollback(repo: Path, backups: dict[str, _Backup], created: list[Path],
             removed: list[_RemovedDir]) -> list[str]:
    """Undo the writes of `backups`' paths: take away what was written where nothing was before, deepest first,
    and the directories made for it; put back the directories removed and then every previous file, shallowest
    first, with its mode and times (an atomic replace: a file that cannot be put back keeps the agent's bytes,
    which the journal's recovery recognises). In that order a path the plan turned from a file into a directory
    (or back) is free again before its old state returns. A path still as it was (its write failed before the
    rename) is left alone: taking it away would delete the user's file. One step that fails does not stop the
    others. Returns what it could not put back."""
    from runner.promote.apply import PromotionError, _unsafe_parent, _write

    order = [path for path in sorted(backups, key=lambda p: -p.count("/"))
             if _unsafe_parent(repo, path) is None  # never written (the write refuses it too)
             and not _still_as_before(repo, path, backups[path])]
    left: list[str] = []
    for path in order:
        full = repo / path
        if backups[path].state is not None:
            continue  # put back below by an atomic replace: the path is never without a file meanwhile
        try:
            if os.path.lexists(full) and not (os.path.isdir(full) and not os.path.islink(full)):
                os.unlink(full)
        except OSError:
            left.append(path)
    for directory in sorted(created, key=lambda p: -len(p.parts)):
        with suppress(OSError):
            os.rmdir(directory)
    for gone in sorted(removed, key=lambda d: len(d.path.parts)):
        try:
            if not os.path.lexists(gone.path):
                os.mkdir(gone.path)
                if os.geteuid() == 0:
                    os.lchown(gone.path, *gone.owner)
                os.chmod(gone.path, gone.mode)
        except OSError:
            left.append(str(gone.path.relative_to(repo)))
    for path in reversed(order):
        backup, full = backups[path], repo / path
        if backup.state is None or path in left:
            continue
        try:
            os.makedirs(full.parent, exist_ok=True)
            _write(repo, path, backup.state, mode=backup.mode if backup.state.kind == "file" else None)
            if backup.mtime_ns is not None:
                os.utime(full, ns=backup.mtime_ns, follow_symlinks=False)
        except (OSError, PromotionError):
            left.append(path)
    return left


def _still_as_before(repo: Path, path: str, backup: _Backup) -> bool:
    from runner.promote.apply import read_state

    try:
        if read_state(repo, path) != backup.state:
            return False
        return backup.mode is None or stat.S_IMODE(os.lstat(repo / path).st_mode) == backup.mode
    except OSError:
        return False
