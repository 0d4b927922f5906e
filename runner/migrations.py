"""The run store's schema, versioned with `PRAGMA user_version`, and its forward migrations.

Version 1 is what wave 1 wrote (user_version was never set, so a database with a `runs` table and version 0 is a
version-1 database): the base and final file states lived inside a JSON column as hex (twice the bytes, and a
whole-record rewrite to read one file). Version 2 keeps them as BLOB rows of `run_files` and adds the batch
tables. Every migration runs in one transaction: a crash halfway leaves the previous version intact.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable

from runner.errors import UsageError

RUNS_V1 = """
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

V2 = """
CREATE TABLE run_files (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    side TEXT NOT NULL CHECK (side IN ('base', 'final')),
    path BLOB NOT NULL,  -- a name's bytes: file names need not be UTF-8
    kind TEXT CHECK (kind IS NULL OR kind IN ('file', 'symlink')),  -- NULL: the path does not exist on that side
    data BLOB,
    executable INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, side, path)
);
CREATE TABLE batches (
    name TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    source TEXT NOT NULL,
    settings TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE batch_tasks (
    batch TEXT NOT NULL REFERENCES batches(name) ON DELETE CASCADE,
    task_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    spec TEXT NOT NULL,
    key TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'infra')),
    status TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '',
    run_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    started_at REAL,
    finished_at REAL,
    PRIMARY KEY (batch, task_id)
);
CREATE INDEX batch_tasks_key ON batch_tasks(key);
"""

SCHEMA_VERSION = 2


def _script(db: sqlite3.Connection, script: str) -> None:
    """Each statement on its own: `executescript` would COMMIT first and break the migration's transaction."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _to_v1(db: sqlite3.Connection) -> None:
    _script(db, RUNS_V1)


def _to_v2(db: sqlite3.Connection) -> None:
    _script(db, V2)
    rows = db.execute("SELECT id, files FROM runs").fetchall()
    for run_id, files in rows:
        decoded = json.loads(files or "{}")
        for side in ("base", "final"):
            for path, state in (decoded.get(side) or {}).items():
                db.execute(
                    "INSERT INTO run_files (run_id, side, path, kind, data, executable) VALUES (?, ?, ?, ?, ?, ?)",
                    (run_id, side, path.encode("utf-8", "surrogateescape"), None if state is None else state["kind"],
                     None if state is None else bytes.fromhex(state["data"]),
                     0 if state is None else int(bool(state["executable"]))))
    db.execute("ALTER TABLE runs DROP COLUMN files")


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _to_v1, 2: _to_v2}
"""MIGRATIONS[n] takes a database from version n-1 to n."""


def current_version(db: sqlite3.Connection) -> int:
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version == 0 and db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'").fetchone():
        return 1  # wave 1 never set user_version
    return version


def migrate(path: str) -> int:
    """Bring the database to SCHEMA_VERSION; the version it had. A newer database is refused, never downgraded."""
    db = sqlite3.connect(path, timeout=30, isolation_level=None)  # transactions are ours, not the module's
    try:
        db.execute("PRAGMA journal_mode=WAL")  # persistent: set once, before other readers may hold the file
        return _migrate(db, path)
    finally:
        db.close()


def _migrate(db: sqlite3.Connection, path: str) -> int:
    if int(db.execute("PRAGMA user_version").fetchone()[0]) == SCHEMA_VERSION:
        return SCHEMA_VERSION  # the usual case: no write lock taken on every open
    db.execute("BEGIN IMMEDIATE")  # one writer migrates; a second process waits, then finds it done
    try:
        found = current_version(db)
        if found > SCHEMA_VERSION:
            raise UsageError(f"the run store {path} was written by a newer smol (schema {found}, this smol knows "
                             f"{SCHEMA_VERSION}): upgrade smol, or point RUNS_DB elsewhere")
        for version in range(found + 1, SCHEMA_VERSION + 1):
            MIGRATIONS[version](db)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return found
