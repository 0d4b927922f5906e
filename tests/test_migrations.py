"""The run store's schema versions: a database written by wave 1 opens, migrated forward, with nothing lost."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from runner.errors import UsageError
from runner.migrations import RUNS_V1, SCHEMA_VERSION
from runner.records import RunStore
from runner.sandbox.base import FileState


def wave1_database(path: Path) -> None:
    """Exactly what wave 1's RunStore wrote: its schema, no user_version, file states as hex inside JSON."""
    db = sqlite3.connect(path)
    db.executescript(RUNS_V1)
    files = {"base": {"app.py": {"kind": "file", "data": b"old\n".hex(), "executable": False},
                      "new.sh": None},
             "final": {"app.py": {"kind": "file", "data": b"new\x00\xff\n".hex(), "executable": False},
                       "new.sh": {"kind": "file", "data": b"#!/bin/sh\n".hex(), "executable": True},
                       "link": {"kind": "symlink", "data": b"app.py".hex(), "executable": False}}}
    db.execute("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
               ("20261201-101010-abcdef", 1.5, "fix it", "/repo", json.dumps({"vcs": "git", "head": "f00"}),
                "ollama_chat/m", "completed", "", "done", "[]", "[]", json.dumps({"steps": 2}), b"diff --git x\n",
                json.dumps(files), json.dumps({"status": "passed"}), None, "[]"))
    db.commit()
    db.close()


def test_a_wave1_database_is_migrated_with_every_file_state(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    wave1_database(path)
    store = RunStore(path)
    record = store.get("abcdef")
    assert record.task == "fix it" and record.diff == b"diff --git x\n" and record.summary == {"steps": 2}
    assert record.verification == {"status": "passed"} and record.base_state["head"] == "f00"
    assert record.base_files == {"app.py": FileState("file", b"old\n", False), "new.sh": None}
    assert record.final_files == {"app.py": FileState("file", b"new\x00\xff\n", False),
                                  "new.sh": FileState("file", b"#!/bin/sh\n", True),
                                  "link": FileState("symlink", b"app.py", False)}
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    assert "files" not in columns  # no hex copies left behind
    blobs = db.execute("SELECT typeof(data) FROM run_files WHERE kind IS NOT NULL").fetchall()
    assert blobs and {kind for (kind,) in blobs} == {"blob"}
    db.close()


def test_a_migrated_store_takes_new_runs_and_updates(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    wave1_database(path)
    store = RunStore(path)
    record = store.get("abcdef")
    record.id = "20261202-000000-123456"
    record.final_files["other.txt"] = FileState("file", b"x", False)
    store.save(record)
    store.update(record.id, promotion={"outcome": "promoted"})
    again = RunStore(path).get("123456")
    assert again.final_files["other.txt"].data == b"x" and again.promotion == {"outcome": "promoted"}
    assert [r.id for r in store.list()] == ["20261202-000000-123456", "20261201-101010-abcdef"]


def test_saving_a_run_again_replaces_its_file_states(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.db")
    path = tmp_path / "w1.db"
    wave1_database(path)
    record = RunStore(path).get("abcdef")
    store.save(record)
    record.final_files = {"only.txt": FileState("file", b"1", False)}
    record.base_files = {}
    store.save(record)
    assert store.get("abcdef").final_files == {"only.txt": FileState("file", b"1", False)}


def test_a_database_from_a_newer_smol_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    wave1_database(path)
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(UsageError, match="newer smol"):
        RunStore(path)
    db = sqlite3.connect(path)
    assert "files" in {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    db.close()
    assert len(path.read_bytes()) == len(before)


def test_a_failed_migration_leaves_the_previous_version(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    wave1_database(path)
    db = sqlite3.connect(path)  # a corrupt row: its file states are not hex
    db.execute("UPDATE runs SET files = ?", (json.dumps({"base": {"a": {"kind": "file", "data": "zz",
                                                                         "executable": False}}}),))
    db.commit()
    db.close()
    with pytest.raises(ValueError):
        RunStore(path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 0
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"runs"}  # the half-made v2 tables were rolled back with the rest
    db.close()


def test_file_names_that_are_not_utf8_are_kept_exactly(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.db")
    path = tmp_path / "w1.db"
    wave1_database(path)
    record = RunStore(path).get("abcdef")
    odd = b"caf\xe9 \xff.txt".decode("utf-8", "surrogateescape")  # Latin-1 bytes, as the sandbox reads them
    record.final_files = {odd: FileState("file", b"x", False), "ok/\u00e9t\u00e9.py": None}
    store.save(record)
    assert store.get("abcdef").final_files == record.final_files
    assert list(store.get("abcdef").final_files)[0].encode("utf-8", "surrogateescape") == b"caf\xe9 \xff.txt"
