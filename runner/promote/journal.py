"""A write journal, so that even a SIGKILL in the middle of a promotion leaves no partial change for long.

Before the first byte is written, the journal records every path's state before and after (owner-only, in smol's
state directory). It is removed when the write completed or was rolled back. A journal whose process is gone was
interrupted by something no handler sees (SIGKILL, a power cut): the next smol command puts back every path that
holds what smol wrote, leaves alone a path the user has changed since (and says so), and removes smol's own
temporaries (recognised by holding exactly the bytes smol was writing)."""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from runner.sandbox.base import FileState


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
    finally:
        with suppress(FileNotFoundError):
            path.unlink()  # completed or rolled back: either way the tree is whole


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
            if before is None:
                with suppress(FileNotFoundError):
                    os.unlink(repo / name)
            else:
                os.makedirs((repo / name).parent, exist_ok=True)
                _write(repo, name, before, mode=change.get("mode") if before.kind == "file" else None)
                if change.get("times"):
                    os.utime(repo / name, ns=tuple(change["times"]), follow_symlinks=False)
            restored += 1
        path.unlink()
        handled += 1
        message = f"a promotion into {repo} was killed mid-write; {restored} file(s) put back as they were"
        if kept:
            message += f"; left as they are now (changed since): {', '.join(kept[:10])}"
        report(message)
    return handled


def _remove_our_temporaries(full: Path, after: FileState | None) -> None:
    if after is None or after.kind != "file" or not full.parent.is_dir():
        return
    for candidate in full.parent.glob(f".{full.name}.smol-tmp*"):
        with suppress(OSError):
            if not candidate.is_symlink() and candidate.is_file() and candidate.read_bytes() in (after.data, b""):
                candidate.unlink()
