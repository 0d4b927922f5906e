"""Run records: looking a run up by id, and keeping the store (which holds source code) private."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from runner.errors import UsageError
from runner.records import (
    RunRecord,
    RunStore,
    default_db_path,
    private_dir,
    write_private,
)


def record(run_id: str) -> RunRecord:
    return RunRecord(id=run_id, created_at=1.0, task="t", repo="/r", base_state={}, model="m", status="completed")


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    store = RunStore(tmp_path / "runs.db")
    for run_id in ("20240101-000000-abc123", "20240101-000001-abd456", "20240102-000000-ffff00", "a_b", "a%b"):
        store.save(record(run_id))
    return store


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# ------------------------------------------------------------------------ lookup by id


def test_an_exact_id_finds_its_run(store: RunStore) -> None:
    assert store.get("20240101-000000-abc123").id == "20240101-000000-abc123"
    assert store.get("a_b").id == "a_b"
    assert store.get("a%b").id == "a%b"


def test_a_unique_prefix_or_suffix_finds_its_run(store: RunStore) -> None:
    assert store.get("20240102").id == "20240102-000000-ffff00"
    assert store.get("abc123").id == "20240101-000000-abc123"  # the random tail `smol runs list` shows
    assert store.get("a_").id == "a_b"  # literally: `_` is no wildcard
    assert store.get("%b").id == "a%b"


@pytest.mark.parametrize("pattern", ["%", "_", "2024010_-000000-abc123", "%abc123", "%-abc123", "____", "_%",
                                     "20240101-%"])
def test_sql_wildcards_match_only_themselves(store: RunStore, pattern: str) -> None:
    with pytest.raises(UsageError, match="no run"):
        store.get(pattern)


def test_an_ambiguous_prefix_is_refused_naming_the_candidates(store: RunStore) -> None:
    with pytest.raises(UsageError) as caught:
        store.get("20240101")
    message = str(caught.value)
    assert "ambiguous" in message
    assert "20240101-000000-abc123" in message and "20240101-000001-abd456" in message
    assert "\n" not in message


@pytest.mark.parametrize("run_id", ["", "ABC123"])
def test_no_match_is_a_clear_error(store: RunStore, run_id: str) -> None:
    with pytest.raises(UsageError, match="runs list"):
        store.get(run_id)


# ------------------------------------------------------------------------ private files


def test_the_run_store_is_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "smol" / "runs.db"
    store = RunStore(path)
    reader = sqlite3.connect(path)  # while a connection is open, WAL mode keeps -wal and -shm files
    try:
        reader.execute("SELECT count(*) FROM runs").fetchall()
        store.save(record("r1"))
        companions = sorted(p.name for p in path.parent.iterdir() if p.name != "runs.db")
        assert companions == ["runs.db-shm", "runs.db-wal"]
        for name in companions:
            assert mode(path.parent / name) == 0o600, name
    finally:
        reader.close()
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700 and mode(path.parent.parent) == 0o700  # created by smol


def test_an_existing_store_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    RunStore(path)
    reader = sqlite3.connect(path)
    try:
        reader.execute("SELECT count(*) FROM runs").fetchall()
        RunStore(path).save(record("r1"))
        files = sorted(path.parent.iterdir())
        assert [file.name for file in files] == ["runs.db", "runs.db-shm", "runs.db-wal"]
        for file in files:  # as an older smol (or a careless umask) left them
            os.chmod(file, 0o644)
        os.chmod(tmp_path, 0o755)
        RunStore(path)
        for file in files:
            assert mode(file) == 0o600, file
    finally:
        reader.close()
    assert mode(tmp_path) == 0o755  # not smol's state directory: the user's own directory is left alone


def test_the_default_state_directory_is_made_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    state = tmp_path / "xdg" / "smol"
    state.mkdir(parents=True, mode=0o755)
    os.chmod(state, 0o755)
    store = RunStore()
    assert store.path == default_db_path() == state / "runs.db"
    assert mode(state) == 0o700
    assert mode(state / "runs.db") == 0o600


def test_a_restrictive_umask_does_not_break_the_store(tmp_path: Path) -> None:
    old = os.umask(0o277)
    try:
        store = RunStore(tmp_path / "deep" / "runs.db")
    finally:
        os.umask(old)
    store.save(record("r1"))
    assert store.get("r1").id == "r1"
    assert mode(tmp_path / "deep") == 0o700


def test_private_dir_creates_missing_directories_0700(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)
    target = tmp_path / "a" / "b" / "c"
    assert private_dir(target) == target
    for directory in (tmp_path / "a", tmp_path / "a" / "b", target):
        assert mode(directory) == 0o700
    assert mode(tmp_path) == 0o755
    os.chmod(target, 0o755)
    private_dir(target)
    assert mode(target) == 0o755  # an existing directory is not changed unless asked
    private_dir(target, tighten=True)
    assert mode(target) == 0o700


def test_write_private_writes_0600_and_tightens_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "patches" / "run.patch"
    write_private(target, b"diff --git a/x b/x\n")
    assert target.read_bytes() == b"diff --git a/x b/x\n"
    assert mode(target) == 0o600 and mode(target.parent) == 0o700
    os.chmod(target, 0o644)
    write_private(target, b"new")
    assert target.read_bytes() == b"new" and mode(target) == 0o600


def test_write_private_refuses_to_follow_a_symlink(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_bytes(b"keep")
    link = tmp_path / "run.patch"
    link.symlink_to(elsewhere)
    with pytest.raises(OSError, match="symlink"):
        write_private(link, b"secret")
    assert elsewhere.read_bytes() == b"keep"
    dangling = tmp_path / "dangling.patch"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(OSError, match="symlink"):
        write_private(dangling, b"secret")
    assert not (tmp_path / "nowhere").exists()


def test_write_private_refuses_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "run.patch"
    os.mkfifo(fifo)
    with pytest.raises(OSError):
        write_private(fifo, b"secret")  # neither blocks nor writes into a pipe


def test_a_read_only_store_can_still_be_read(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    RunStore(path).save(record("r1"))
    os.chmod(path, 0o400)
    try:
        assert RunStore(path).get("r1").id == "r1"
        assert mode(path) == 0o400
    finally:
        os.chmod(path, 0o600)
