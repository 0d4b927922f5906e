"""Run records: every run in an embedded SQLite store under the user's state directory.

A record holds the task, the repo and its base state, the model, every step, the approval decisions, the final
diff with the base and final contents of the touched files (what promotion and replay need), the verification
result, the promotion outcome and the trace spans.

Records and saved patches hold source code, so they are private whatever the umask: the database (and its
-wal/-shm/-journal files) is 0600, every directory smol creates for it is 0700 and smol's own state directory
(`$XDG_STATE_HOME/smol`) is made 0700 even when it already exists. `write_private` writes other files (saved
patches) the same way.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import stat
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import UsageError
from runner.migrations import migrate
from runner.sandbox.base import FileState


def default_db_path() -> Path:
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "smol" / "runs.db"


def private_dir(path: Path | str, *, tighten: bool = False) -> Path:
    """Make sure the directory `path` exists and return it. Every directory this creates, missing parents
    included, is 0700 whatever the umask (as the XDG base-directory spec asks). An existing directory is left as
    it is unless `tighten` is set (for smol's own state directory): then a real directory (not a symlink) that
    the user owns is made 0700."""
    path = Path(path)
    missing: list[Path] = []
    current = path
    while not os.path.lexists(current) and current.parent != current:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            continue  # created meanwhile by someone else: not ours to change
        os.chmod(directory, 0o700)  # mkdir's mode went through the umask, which may have taken our own bits
    if not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(path))
    if tighten:
        info = os.lstat(path)
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) != 0o700:
            os.chmod(path, 0o700)
    return path


_OPEN_PRIVATE = os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _private_fd(fd: int, path: Path, *, exact: bool = True) -> None:
    """Refuse anything but a regular file; make one the user owns 0600 (`exact`) or take away every permission
    of the group and others (an existing file keeps its owner bits: a read-only database stays read-only)."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise OSError(errno.EINVAL, "refusing to write to something that is not a regular file", str(path))
    current = stat.S_IMODE(info.st_mode)
    wanted = 0o600 if exact else current & 0o700
    if info.st_uid == os.getuid() and current != wanted:
        os.fchmod(fd, wanted)


def _open_private(path: Path, flags: int) -> int:
    try:
        return os.open(path, flags | _OPEN_PRIVATE, 0o600)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.EMLINK):  # O_NOFOLLOW met a symlink (EMLINK on the BSDs)
            raise OSError(error.errno, "refusing to follow a symlink", str(path)) from None
        raise


def write_private(path: Path | str, data: bytes) -> None:
    """Write `data` to the file `path`, readable by its owner only.

    Missing parent directories are created 0700 (`private_dir`); the file is created 0600, and an existing one
    is made 0600 (after truncation, before anything is written). A symlink at `path` is refused rather than
    followed, and so is anything but a regular file (a FIFO neither blocks nor receives the data)."""
    path = Path(path)
    private_dir(path.parent)
    fd = _open_private(path, os.O_WRONLY | os.O_TRUNC)
    try:
        _private_fd(fd, path)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _private_database(path: Path) -> None:
    """Create the database file 0600 before SQLite does (SQLite gives its -wal, -shm and -journal files the
    database's mode); take the group's and others' permissions from an existing database and its companions."""
    existed = path.exists()
    try:  # a symlinked database is the user's choice: followed
        fd = os.open(path, (os.O_RDONLY if existed else os.O_RDWR | os.O_CREAT) | os.O_NONBLOCK | os.O_CLOEXEC,
                     0o600)
    except PermissionError:
        if not existed:
            raise
        return  # someone else's: not ours to change, and SQLite may still read it
    try:
        _private_fd(fd, path, exact=not existed)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm", "-journal"):
        companion = path.with_name(path.name + suffix)
        try:
            fd = os.open(companion, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue  # absent (or not something SQLite made): nothing to tighten
        try:
            _private_fd(fd, companion, exact=False)
        finally:
            os.close(fd)


def encode_path(path: str) -> bytes:
    """A path as stored: its bytes. A file name need not be UTF-8 (the sandbox reads names with surrogateescape),
    and SQLite's TEXT cannot hold the lone surrogates that stand for such bytes."""
    return path.encode("utf-8", "surrogateescape")


def decode_path(stored: bytes | str) -> str:
    return stored if isinstance(stored, str) else bytes(stored).decode("utf-8", "surrogateescape")


_COLUMNS = ("id", "created_at", "task", "repo", "base_state", "model", "status", "reason", "answer", "steps",
            "approvals", "summary", "diff", "verification", "promotion", "spans")


@dataclass
class RunRecord:
    id: str
    created_at: float
    task: str
    repo: str
    base_state: dict[str, Any]
    model: str
    status: str
    reason: str = ""
    answer: str = ""
    steps: list[dict[str, Any]] = field(default_factory=list)
    approvals: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    diff: bytes = b""
    base_files: dict[str, FileState | None] = field(default_factory=dict)
    final_files: dict[str, FileState | None] = field(default_factory=dict)
    verification: dict[str, Any] | None = None
    promotion: dict[str, Any] | None = None
    spans: list[dict[str, Any]] = field(default_factory=list)

    def to_public_dict(self) -> dict[str, Any]:
        """Everything but the file contents, JSON-ready (`smol runs show --json`)."""
        return {
            "id": self.id, "created_at": self.created_at, "task": self.task, "repo": self.repo,
            "base_state": self.base_state, "model": self.model, "status": self.status, "reason": self.reason,
            "answer": self.answer, "steps": self.steps, "approvals": self.approvals, "summary": self.summary,
            "diff": self.diff.decode("utf-8", errors="replace"), "files": sorted(self.final_files | self.base_files),
            "verification": self.verification, "promotion": public_promotion(self.promotion), "spans": len(self.spans),
        }


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


class RunStore:
    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path else default_db_path()
        private_dir(self.path.parent, tighten=self.path.parent == default_db_path().parent)
        _private_database(self.path)
        migrate(str(self.path))

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection in WAL mode with foreign keys on, committed when the block ends (the batch tables use it
        too)."""
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            yield db
            db.commit()
        finally:
            db.close()

    def save(self, record: RunRecord) -> None:
        row = {
            "id": record.id, "created_at": record.created_at, "task": record.task, "repo": record.repo,
            "base_state": json.dumps(record.base_state), "model": record.model, "status": record.status,
            "reason": record.reason, "answer": record.answer, "steps": json.dumps(record.steps, default=str),
            "approvals": json.dumps(record.approvals, default=str), "summary": json.dumps(record.summary, default=str),
            "diff": record.diff,
            "verification": json.dumps(record.verification) if record.verification is not None else None,
            "promotion": json.dumps(record.promotion) if record.promotion is not None else None,
            "spans": json.dumps(record.spans, default=str),
        }
        files = [(record.id, side, encode_path(path), None if state is None else state.kind,
                  None if state is None else state.data, int(state is not None and state.executable))
                 for side, states in (("base", record.base_files), ("final", record.final_files))
                 for path, state in states.items()]
        with self.connect() as db:
            db.execute(f"INSERT OR REPLACE INTO runs ({', '.join(_COLUMNS)}) "
                       f"VALUES ({', '.join(':' + column for column in _COLUMNS)})", row)
            db.execute("DELETE FROM run_files WHERE run_id = ?", (record.id,))
            db.executemany("INSERT INTO run_files (run_id, side, path, kind, data, executable) VALUES (?,?,?,?,?,?)",
                           files)

    _UPDATABLE = frozenset({"verification", "promotion", "spans"})
    """What changes after a run is saved; the rest of a record (its diff and file states) is written once."""

    def update(self, run_id: str, **fields: Any) -> None:
        """Set JSON columns of one saved run, without reading or rewriting its file states."""
        unknown = set(fields) - self._UPDATABLE
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)} of a saved run")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        values = [json.dumps(value, default=str) for value in fields.values()]
        with self.connect() as db:
            changed = db.execute(f"UPDATE runs SET {assignments} WHERE id = ?", (*values, run_id)).rowcount
        if changed != 1:
            raise UsageError(f"no run {run_id!r}: `smol runs list` shows the run ids")

    _SHOWN_CANDIDATES = 5

    def get(self, run_id: str) -> RunRecord:
        """The run with exactly this id, else the only run whose id starts or ends with it (the random tail
        `smol runs list` shows is enough). Matching is literal and case-sensitive: `%` and `_` are no wildcards.
        An unknown or ambiguous id is a UsageError."""
        if not run_id:
            raise UsageError("no run id given: `smol runs list` shows the run ids")
        with self.connect() as db:
            row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                ids = [found for (found,) in db.execute(
                    "SELECT id FROM runs WHERE substr(id, 1, length(?1)) = ?1 OR "
                    "(length(id) >= length(?1) AND substr(id, length(id) - length(?1) + 1) = ?1) "
                    "ORDER BY created_at DESC, id", (run_id,))]
                if len(ids) > 1:
                    shown = ", ".join(ids[: self._SHOWN_CANDIDATES]) + (", …" if len(ids) > self._SHOWN_CANDIDATES
                                                                         else "")
                    raise UsageError(f"run id {run_id!r} is ambiguous: it matches {len(ids)} runs ({shown}); give "
                                     "more of the id")
                if ids:
                    row = db.execute("SELECT * FROM runs WHERE id = ?", (ids[0],)).fetchone()
            if row is None:
                raise UsageError(f"no run matches {run_id!r}: `smol runs list` shows the run ids")
            return self._record(db, row)

    def list(self, limit: int = 50, *, repo: str | None = None, status: str | None = None,
             files: bool = True) -> list[RunRecord]:
        """The newest runs first; `repo` and `status` filter by exact value. Without `files`, the records carry
        no file states (a listing need not read every run's file contents)."""
        where, values = [], []
        for column, value in (("repo", repo), ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                values.append(value)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        with self.connect() as db:
            rows = db.execute(f"SELECT * FROM runs {clause}ORDER BY created_at DESC LIMIT ?",
                              (*values, limit)).fetchall()
            return [self._record(db, row, files=files) for row in rows]

    @staticmethod
    def _record(db: sqlite3.Connection, row: sqlite3.Row, *, files: bool = True) -> RunRecord:
        states: dict[str, dict[str, FileState | None]] = {"base": {}, "final": {}}
        for side, path, kind, data, executable in db.execute(
                "SELECT side, path, kind, data, executable FROM run_files WHERE run_id = ? AND ?",
                (row["id"], files)):
            states[side][decode_path(path)] = None if kind is None else FileState(kind, bytes(data), bool(executable))
        return RunRecord(
            id=row["id"], created_at=row["created_at"], task=row["task"], repo=row["repo"],
            base_state=json.loads(row["base_state"]), model=row["model"], status=row["status"], reason=row["reason"],
            answer=row["answer"], steps=json.loads(row["steps"]), approvals=json.loads(row["approvals"]),
            summary=json.loads(row["summary"]), diff=bytes(row["diff"]), base_files=states["base"],
            final_files=states["final"],
            verification=json.loads(row["verification"]) if row["verification"] else None,
            promotion=json.loads(row["promotion"]) if row["promotion"] else None, spans=json.loads(row["spans"]),
        )


def public_promotion(promotion: dict[str, Any] | None) -> dict[str, Any] | None:
    """A promotion as shown (JSON summaries, `runs show --json`): without `written`, the file contents `smol undo`
    keeps (a 20 MB file would be 55 MB of JSON), in the promotion and in each earlier one."""
    if promotion is None:
        return None
    shown = {key: value for key, value in promotion.items() if key != "written"}
    if "earlier" in shown:
        shown["earlier"] = [public_promotion(entry) for entry in shown["earlier"]]
    if "written" in promotion:
        shown["written_files"] = [entry["path"] for entry in promotion["written"]]
    return shown
