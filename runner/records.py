"""Run records: every run in an embedded SQLite store under the user's state directory.

A record holds the task, the repo and its base state, the model, every step, the approval decisions, the final
diff with the base and final contents of the touched files (what promotion and replay need), the verification
result, the promotion outcome and the trace spans.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import UsageError
from runner.sandbox.base import FileState

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    task TEXT NOT NULL,
    repo TEXT NOT NULL,
    base_state TEXT NOT NULL,
    model TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    answer TEXT NOT NULL DEFAULT '',
    steps TEXT NOT NULL DEFAULT '[]',
    approvals TEXT NOT NULL DEFAULT '[]',
    summary TEXT NOT NULL DEFAULT '{}',
    diff BLOB NOT NULL DEFAULT x'',
    files TEXT NOT NULL DEFAULT '{}',
    verification TEXT,
    promotion TEXT,
    spans TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS runs_created ON runs(created_at);
"""


def default_db_path() -> Path:
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "smol" / "runs.db"


def _encode_states(states: dict[str, FileState | None]) -> dict[str, Any]:
    return {path: None if s is None else {"kind": s.kind, "data": s.data.hex(), "executable": s.executable}
            for path, s in states.items()}


def _decode_states(data: dict[str, Any]) -> dict[str, FileState | None]:
    return {path: None if s is None else FileState(s["kind"], bytes.fromhex(s["data"]), s["executable"])
            for path, s in data.items()}


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
            "verification": self.verification, "promotion": self.promotion, "spans": len(self.spans),
        }


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


class RunStore:
    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path else default_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            yield db
            db.commit()
        finally:
            db.close()

    def save(self, record: RunRecord) -> None:
        files = {"base": _encode_states(record.base_files), "final": _encode_states(record.final_files)}
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (record.id, record.created_at, record.task, record.repo, json.dumps(record.base_state),
                 record.model, record.status, record.reason, record.answer, json.dumps(record.steps, default=str),
                 json.dumps(record.approvals, default=str), json.dumps(record.summary, default=str), record.diff,
                 json.dumps(files), json.dumps(record.verification) if record.verification is not None else None,
                 json.dumps(record.promotion) if record.promotion is not None else None,
                 json.dumps(record.spans, default=str)),
            )

    _UPDATABLE = frozenset({"verification", "promotion", "spans"})
    """What changes after a run is saved; the rest of a record (its diff and file states) is written once."""

    def update(self, run_id: str, **fields: Any) -> None:
        """Set JSON columns of one saved run, without reading or rewriting its file states."""
        unknown = set(fields) - self._UPDATABLE
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)} of a saved run")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        values = [json.dumps(value, default=str) for value in fields.values()]
        with self._connect() as db:
            changed = db.execute(f"UPDATE runs SET {assignments} WHERE id = ?", (*values, run_id)).rowcount
        if changed != 1:
            raise UsageError(f"no run {run_id!r}: `smol runs list` shows the run ids")

    def get(self, run_id: str) -> RunRecord:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM runs WHERE id = ? OR id LIKE ?", (run_id, f"%{run_id}")).fetchall()
        if len(rows) != 1:
            problem = "no run" if not rows else "more than one run"
            raise UsageError(f"{problem} matches {run_id!r}: `smol runs list` shows the run ids")
        return self._record(rows[0])

    def list(self, limit: int = 50) -> list[RunRecord]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM runs ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall()
        return [self._record(row) for row in rows]

    @staticmethod
    def _record(row: tuple[Any, ...]) -> RunRecord:
        (run_id, created_at, task, repo, base_state, model, status, reason, answer, steps, approvals, summary,
         diff, files, verification, promotion, spans) = row
        decoded = json.loads(files)
        return RunRecord(
            id=run_id, created_at=created_at, task=task, repo=repo, base_state=json.loads(base_state), model=model,
            status=status, reason=reason, answer=answer, steps=json.loads(steps), approvals=json.loads(approvals),
            summary=json.loads(summary), diff=bytes(diff), base_files=_decode_states(decoded.get("base", {})),
            final_files=_decode_states(decoded.get("final", {})),
            verification=json.loads(verification) if verification else None,
            promotion=json.loads(promotion) if promotion else None, spans=json.loads(spans),
        )
