"""A batch's state in the run store, written as it changes: the source of truth a resumed batch starts from.

Each task row moves queued → running → done (or → infra when the Docker engine or the model endpoint was down,
which is not the task's fault). Every transition is one SQLite transaction, so a batch killed at any instant leaves
rows that say exactly what finished; `running` rows of a batch that is gone are simply unfinished."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.batch.tasks import TaskSpec
from runner.errors import UsageError
from runner.records import RunStore

REUSABLE = frozenset({"verified", "unverified", "no-change", "guard-refused", "loop", "format-errors", "step-limit"})
"""Outcomes that the same work (same task key) would reach again: a later batch reuses them instead of re-running.
Timeouts, infrastructure errors and crashes are worth another try."""


@dataclass
class TaskRow:
    batch: str
    spec: TaskSpec
    position: int
    key: str
    state: str
    status: str
    detail: str
    run_id: str | None
    attempts: int
    started_at: float | None
    finished_at: float | None

    @property
    def finished(self) -> bool:
        return self.state == "done"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.spec.id, "repo": self.spec.repo, "task": self.spec.task, "state": self.state,
                "status": self.status, "detail": self.detail, "run_id": self.run_id, "attempts": self.attempts,
                "started_at": self.started_at, "finished_at": self.finished_at,
                "duration_s": round(self.finished_at - self.started_at, 1)
                if self.finished_at and self.started_at else None}


class BatchStore:
    """The batch tables of the run store: one database, one migration path, one way of connecting."""

    def __init__(self, path: Path | str | None = None) -> None:
        self._runs = RunStore(path)  # creates and migrates the database, privately
        self.path = self._runs.path
        self._connect = self._runs.connect

    def open_batch(self, name: str, source: str, specs: list[TaskSpec], settings: dict[str, Any]) -> list[TaskRow]:
        """The batch's rows, made or brought up to date with the task file: a new task is queued; a task whose
        definition changed since it ran is queued again; a task that ran or was cut short keeps its row (resume
        decides what to do with it)."""
        with self._connect() as db:
            db.execute("INSERT OR IGNORE INTO batches (name, created_at, source, settings) VALUES (?, ?, ?, ?)",
                       (name, time.time(), source, json.dumps(settings, default=str)))
            db.execute("UPDATE batches SET source = ?, settings = ? WHERE name = ?",
                       (source, json.dumps(settings, default=str), name))
            for position, spec in enumerate(specs):
                text = spec.model_dump_json()
                row = db.execute("SELECT spec FROM batch_tasks WHERE batch = ? AND task_id = ?",
                                 (name, spec.id)).fetchone()
                if row is None:
                    db.execute("INSERT INTO batch_tasks (batch, task_id, position, spec, state) "
                               "VALUES (?, ?, ?, ?, 'queued')", (name, spec.id, position, text))
                elif row["spec"] != text:
                    db.execute("UPDATE batch_tasks SET spec = ?, position = ?, state = 'queued', status = '', "
                               "detail = '', run_id = NULL, key = '' WHERE batch = ? AND task_id = ?",
                               (text, position, name, spec.id))
                else:
                    db.execute("UPDATE batch_tasks SET position = ? WHERE batch = ? AND task_id = ?",
                               (position, name, spec.id))
        return self.tasks(name)

    def tasks(self, name: str) -> list[TaskRow]:
        with self._connect() as db:
            if db.execute("SELECT 1 FROM batches WHERE name = ?", (name,)).fetchone() is None:
                raise UsageError(f"no batch named {name!r}: `smol batch list` shows the batches")
            rows = db.execute("SELECT * FROM batch_tasks WHERE batch = ? ORDER BY position", (name,)).fetchall()
        return [_row(row) for row in rows]

    def batches(self) -> list[dict[str, Any]]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT b.name, b.created_at, b.source, count(t.task_id) AS tasks, "
                "sum(t.state = 'done') AS done, max(t.finished_at) AS last FROM batches b "
                "LEFT JOIN batch_tasks t ON t.batch = b.name GROUP BY b.name ORDER BY b.created_at DESC").fetchall()
        return [dict(row) for row in rows]

    def start(self, name: str, task_id: str, key: str) -> None:
        with self._connect() as db:
            db.execute("UPDATE batch_tasks SET state = 'running', key = ?, attempts = attempts + 1, started_at = ?, "
                       "finished_at = NULL WHERE batch = ? AND task_id = ?", (key, time.time(), name, task_id))

    def finish(self, name: str, task_id: str, status: str, detail: str, run_id: str | None, *,
               infra: bool = False) -> None:
        with self._connect() as db:
            db.execute("UPDATE batch_tasks SET state = ?, status = ?, detail = ?, run_id = ?, finished_at = ? "
                       "WHERE batch = ? AND task_id = ?",
                       ("infra" if infra else "done", status, detail[:2000], run_id, time.time(), name, task_id))

    def requeue(self, name: str, task_id: str) -> None:
        """Back to the queue, as if it never started (an interrupted batch; an infrastructure pause)."""
        with self._connect() as db:
            db.execute("UPDATE batch_tasks SET state = 'queued', status = '', detail = '' "
                       "WHERE batch = ? AND task_id = ? AND state != 'done'", (name, task_id))

    def done_with_key(self, key: str) -> TaskRow | None:
        """A finished task of any batch that did exactly this work with a reusable outcome."""
        marks = ",".join("?" * len(REUSABLE))
        with self._connect() as db:
            row = db.execute(f"SELECT * FROM batch_tasks WHERE key = ? AND state = 'done' AND status IN ({marks}) "
                             "ORDER BY finished_at DESC LIMIT 1", (key, *sorted(REUSABLE))).fetchone()
        return _row(row) if row is not None else None


def _row(row: sqlite3.Row) -> TaskRow:
    return TaskRow(batch=row["batch"], spec=TaskSpec.model_validate_json(row["spec"]), position=row["position"],
                   key=row["key"], state=row["state"], status=row["status"], detail=row["detail"],
                   run_id=row["run_id"], attempts=row["attempts"], started_at=row["started_at"],
                   finished_at=row["finished_at"])
