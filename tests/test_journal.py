"""The write journal: a promotion killed where no handler runs (SIGKILL, power cut) is put back by the next smol
command, without Docker. Each case is a state a real killed write can leave: what smol wrote, what the user changed
since, smol's own half-written temporaries, and a journal of a promotion that is still running."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from runner.promote.journal import _boot_id, decode_state, encode_state, journal_dir, journaled, recover
from runner.sandbox.base import FileState


def f(data: bytes, executable: bool = False) -> FileState:
    return FileState("file", data, executable)


@pytest.fixture
def state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def write_journal(name: str, repo: Path, changes: list[dict[str, object]], *, pid: int = 2 ** 22 + 7,
                  boot: str | None = None) -> Path:
    """A journal as `journaled` writes it, of a process that is gone (a pid no process has, by default)."""
    directory = journal_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    entry = {"repo": str(repo), "pid": pid, "boot": _boot_id() if boot is None else boot, "changes": changes}
    path.write_text(json.dumps(entry))
    return path


def change(path: str, before: FileState | None, after: FileState | None, *, times: tuple[int, int] | None = None,
           mode: int | None = None) -> dict[str, object]:
    return {"path": path, "before": encode_state(before), "after": encode_state(after),
            "times": list(times) if times else None, "mode": mode}


def test_a_killed_write_is_put_back_exactly(tmp_path: Path, state_home: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "sub").mkdir(parents=True)
    # the tree as the killed write left it: what smol wrote ("after") ...
    (repo / "a.txt").write_bytes(b"agent's a\n")
    (repo / "new.txt").write_bytes(b"agent's new file\n")
    (repo / "tool.sh").write_bytes(b"agent's tool\n")
    os.symlink("agent-target", repo / "link")
    # ... a file the user edited after the write (theirs now), one that was never written, one deleted by smol
    (repo / "theirs.txt").write_bytes(b"the user's edit since\n")
    (repo / "same.txt").write_bytes(b"untouched\n")
    # smol's own temporaries next to a.txt: those holding what it was writing (or nothing yet) are its own
    (repo / ".a.txt.smol-tmp").write_bytes(b"agent's a\n")
    (repo / ".a.txt.smol-tmp1").write_bytes(b"")
    (repo / ".a.txt.smol-tmp2").write_bytes(b"a user's file that happens to have this name\n")
    os.symlink("a.txt", repo / ".a.txt.smol-tmp3")
    times = (1_000_000_000 * 10**9, 1_100_000_000 * 10**9)
    journal = write_journal("killed", repo, [
        change("a.txt", f(b"user's a\n"), f(b"agent's a\n"), times=times, mode=0o640),
        change("new.txt", None, f(b"agent's new file\n")),
        change("sub/deep/gone.txt", f(b"deleted by the agent\n"), None),
        change("tool.sh", f(b"#!/bin/sh\n", executable=True), f(b"agent's tool\n"), mode=0o755),
        change("link", FileState("symlink", b"user-target"), FileState("symlink", b"agent-target")),
        change("theirs.txt", f(b"before\n"), f(b"agent's theirs\n")),
        change("same.txt", f(b"untouched\n"), f(b"agent's same\n")),
    ])
    messages: list[str] = []

    assert recover(messages.append) == 1

    assert (repo / "a.txt").read_bytes() == b"user's a\n"
    assert stat.S_IMODE(os.lstat(repo / "a.txt").st_mode) == 0o640
    assert os.lstat(repo / "a.txt").st_mtime_ns == times[1]
    assert not (repo / "new.txt").exists()
    assert (repo / "sub/deep/gone.txt").read_bytes() == b"deleted by the agent\n"
    assert (repo / "tool.sh").read_bytes() == b"#!/bin/sh\n" and os.access(repo / "tool.sh", os.X_OK)
    assert os.readlink(repo / "link") == "user-target"
    assert (repo / "theirs.txt").read_bytes() == b"the user's edit since\n"
    assert (repo / "same.txt").read_bytes() == b"untouched\n"
    assert not (repo / ".a.txt.smol-tmp").exists() and not (repo / ".a.txt.smol-tmp1").exists()
    assert (repo / ".a.txt.smol-tmp2").read_bytes() == b"a user's file that happens to have this name\n"
    assert os.path.islink(repo / ".a.txt.smol-tmp3")
    assert not journal.exists()
    assert messages == [f"a promotion into {repo} was killed mid-write; 5 file(s) put back as they were; "
                        "left as they are now (changed since): theirs.txt"]


def test_a_running_promotions_journal_is_left_alone(tmp_path: Path, state_home: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.txt").write_bytes(b"after\n")
    live = write_journal("live", repo, [change("a.txt", f(b"before\n"), f(b"after\n"))], pid=os.getpid())
    assert recover(lambda message: None) == 0
    assert live.exists() and (repo / "a.txt").read_bytes() == b"after\n"

    # the same pid after a reboot is another process: that journal's write was interrupted
    live.rename(live.with_name("old.json"))
    entry = json.loads(live.with_name("old.json").read_text())
    entry["boot"] = "a boot long gone"
    live.with_name("old.json").write_text(json.dumps(entry))
    assert recover(lambda message: None) == 1
    assert (repo / "a.txt").read_bytes() == b"before\n"


def test_journals_that_cannot_be_read_are_skipped_not_fatal(tmp_path: Path, state_home: Path) -> None:
    assert recover(lambda message: None) == 0  # no journal directory at all
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.txt").write_bytes(b"after\n")
    broken = journal_dir() / "broken.json"
    write_journal("good", repo, [change("a.txt", f(b"before\n"), f(b"after\n"))])
    broken.write_text("{ not json")
    (journal_dir() / "notes.txt").write_text("not a journal")
    messages: list[str] = []
    assert recover(messages.append) == 1
    assert broken.exists() and (repo / "a.txt").read_bytes() == b"before\n"
    assert messages == [f"a promotion into {repo} was killed mid-write; 1 file(s) put back as they were"]


def test_a_path_that_cannot_be_read_is_kept_and_named(tmp_path: Path, state_home: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "plain").write_bytes(b"a file where a directory was\n")
    messages: list[str] = []
    write_journal("k", repo, [change("plain/inside.txt", f(b"before\n"), f(b"after\n")),
                              change("x.txt", None, f(b"after\n"))])
    assert recover(messages.append) == 1
    # plain/inside.txt cannot exist (plain is a file): neither before nor after, so it is not smol's to touch;
    # x.txt was created by the write and is already gone: nothing to do, and not counted
    assert messages == [f"a promotion into {repo} was killed mid-write; 0 file(s) put back as they were; "
                        "left as they are now (changed since): plain/inside.txt"]
    assert (repo / "plain").read_bytes() == b"a file where a directory was\n"


def test_the_journal_lives_while_the_write_runs_and_goes_with_it(tmp_path: Path, state_home: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    before, after = f(b"b\n", executable=True), FileState("symlink", b"\xff-not-utf8")
    with journaled(repo, [("a", before, after, (1, 2), 0o755), ("b", None, f(b""), None, None)]):
        (path,) = journal_dir().glob("*.json")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(journal_dir().stat().st_mode) == 0o700
        entry = json.loads(path.read_text())
        assert entry["pid"] == os.getpid() and entry["boot"] == _boot_id() and entry["repo"] == str(repo)
        first, second = entry["changes"]
        assert (decode_state(first["before"]), decode_state(first["after"])) == (before, after)
        assert (first["times"], first["mode"], first["path"]) == ([1, 2], 0o755, "a")
        assert (second["before"], decode_state(second["after"])) == (None, f(b""))
        assert recover(lambda message: None) == 0  # ours, and running
    assert not path.exists()
    with pytest.raises(RuntimeError), journaled(repo, []):
        raise RuntimeError("a failed write rolls back by itself: its journal goes too")
    assert list(journal_dir().glob("*.json")) == []
