"""Landing a reviewed change as a commit, and the write journal, at their edges.

Landing: names git would read as options or patterns, names with tabs or bytes that are not UTF-8, a repository at
a non-UTF-8 path, symlinks and submodules in the tree, a damaged repository, files in the shared temporary
directory, and a branch or HEAD that someone else moves while smol works. Whatever happens, smol's commit holds
HEAD plus exactly the agent's change, the user's refs and staged work survive, and a failure says what failed.

Journal: the recovery after a SIGKILL must put back what smol wrote and nothing else, and must never give up half
way (a running promotion, an unreadable path, a file removed meanwhile, a temporary it cannot remove)."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.promote import apply as apply_module
from runner.promote.apply import Plan, PromotionError, make_plan
from runner.promote.journal import recover
from runner.promote.land import _RepoGit, head_states, land_on_branch, land_on_current_branch
from runner.sandbox.base import FileState
from tests.conftest import git
from tests.test_journal import change, write_journal

LATIN = os.fsdecode(b"caf\xe9.txt")  # not UTF-8: git stores and prints such a name as raw bytes


def f(data: bytes | str, executable: bool = False) -> FileState:
    return FileState("file", data.encode() if isinstance(data, str) else data, executable)


@pytest.fixture
def repo(make_repo: Callable[..., Path]) -> Path:
    return make_repo(owner=None, files={"a.txt": "one\ntwo\nthree\n", "b.txt": "bee\n", "dir/c.txt": "sea\n"},
                     dirty=False)


@pytest.fixture
def state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def commit_files(repo: Path, files: dict[str, bytes]) -> str:
    for name, data in files.items():
        (repo / name).write_bytes(data)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "more files")
    return git(repo, "rev-parse", "HEAD").strip()


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


def plan_of(repo: Path, changes: dict[str, tuple[FileState | None, FileState | None]]) -> Plan:
    plan = make_plan(repo, {p: b for p, (b, _) in changes.items()}, {p: a for p, (_, a) in changes.items()},
                     list(changes))
    assert plan.ok, plan.describe_conflicts()
    return plan


# ---------------------------------------------------------------------------------------------------- landing


def test_a_deletion_a_symlink_and_a_new_file_all_land_in_the_commit(repo: Path) -> None:
    """The commit is HEAD plus every change of the plan: a deletion does not end the list, and a symlink is
    committed as a symlink (mode 120000), never as a file holding its target's name."""
    parent = head(repo)
    changes = {"b.txt": (f("bee\n"), None), "link": (None, FileState("symlink", b"a.txt")),
               "z.txt": (None, f("zed\n"))}
    commit = land_on_branch(repo, plan_of(repo, changes), "smol/kinds", "smol: kinds")
    listing = git(repo, "ls-tree", "-r", commit)
    assert "120000 blob" in git(repo, "ls-tree", commit, "link")
    assert git(repo, "cat-file", "blob", f"{commit}:link") == "a.txt"
    assert git(repo, "show", f"{commit}:z.txt") == "zed\n"
    assert "b.txt" not in listing and git(repo, "rev-parse", f"{commit}~1").strip() == parent

    landed, note = land_on_current_branch(repo, plan_of(repo, changes), "smol: kinds")
    assert note is None and head(repo) == landed
    assert os.readlink(repo / "link") == "a.txt" and (repo / "z.txt").read_text() == "zed\n"
    assert git(repo, "status", "--porcelain") == ""  # the index agrees with the commit for every path


def test_names_starting_with_a_dash_are_never_read_as_git_options(repo: Path) -> None:
    """`-edit.txt` or `--gone.txt` after a revision would be an option to ls-tree or update-index: each git call
    must end its options with `--`, or the change fails to land (or lands the wrong thing)."""
    commit_files(repo, {"-edit.txt": b"old\n", "--gone.txt": b"bye\n"})
    parent = head(repo)
    assert head_states(repo, ["-edit.txt", "--gone.txt"]) == (parent, {"-edit.txt": f("old\n"),
                                                                       "--gone.txt": f("bye\n")})
    plan = plan_of(repo, {"-edit.txt": (f("old\n"), f("new\n")), "--gone.txt": (f("bye\n"), None)})
    commit, note = land_on_current_branch(repo, plan, "smol: dashes")
    assert note is None
    assert git(repo, "diff-tree", "--no-commit-id", "--name-status", "-r", parent, commit).split() == \
        ["D", "--gone.txt", "M", "-edit.txt"]
    assert (repo / "-edit.txt").read_text() == "new\n" and not (repo / "--gone.txt").exists()
    assert git(repo, "status", "--porcelain") == ""


def test_a_file_named_like_a_glob_never_matches_the_users_other_staged_files(repo: Path) -> None:
    """Paths are literal: an agent's edit of a file named `*.txt` must not see (and refuse over, or sweep up) the
    user's staged b.txt; the user's staged work stays staged and out of smol's commit."""
    parent = commit_files(repo, {"*.txt": b"star\n"})
    (repo / "b.txt").write_text("the user's staged edit\n")
    git(repo, "add", "b.txt")
    commit, note = land_on_current_branch(repo, plan_of(repo, {"*.txt": (f("star\n"), f("STAR\n"))}), "smol: star")
    assert note is None
    assert git(repo, "diff-tree", "--no-commit-id", "--name-only", "-r", parent, commit) == "*.txt\n"
    assert git(repo, "diff", "--cached", "--name-only") == "b.txt\n"
    assert (repo / "b.txt").read_text() == "the user's staged edit\n"


def test_staged_work_on_other_files_does_not_block_landing(repo: Path) -> None:
    (repo / "dir/c.txt").write_text("staged elsewhere\n")
    git(repo, "add", "dir/c.txt")
    commit, note = land_on_current_branch(repo, plan_of(repo, {"a.txt": (f("one\ntwo\nthree\n"), f("1\n"))}), "x")
    assert note is None and head(repo) == commit
    assert git(repo, "show", f"{commit}:dir/c.txt") == "sea\n"  # the staged line is not in smol's commit
    assert git(repo, "diff", "--cached", "--name-only") == "dir/c.txt\n"


def test_names_with_a_tab_or_non_utf8_bytes_are_read_and_landed(repo: Path) -> None:
    tabbed = "tab\there.txt"
    parent = commit_files(repo, {tabbed: b"tab\n", LATIN: b"latin\n"})
    assert head_states(repo, [tabbed, LATIN]) == (parent, {tabbed: f("tab\n"), LATIN: f("latin\n")})
    plan = plan_of(repo, {tabbed: (f("tab\n"), f("TAB\n")), LATIN: (f("latin\n"), f("LATIN\n"))})
    commit, note = land_on_current_branch(repo, plan, "smol: names")  # both clean: not refused as dirty
    assert note is None and head(repo) == commit
    assert (repo / tabbed).read_text() == "TAB\n" and (repo / LATIN).read_text() == "LATIN\n"
    assert git(repo, "status", "--porcelain") == ""


def test_a_staged_non_utf8_name_is_named_as_the_user_knows_it(repo: Path) -> None:
    commit_files(repo, {LATIN: b"latin\n"})
    (repo / LATIN).write_text("staged\n")
    git(repo, "add", "--", LATIN)
    (repo / LATIN).write_text("latin\n")  # the tree looks committed; the index does not
    before = head(repo)
    with pytest.raises(PromotionError) as caught:
        land_on_current_branch(repo, plan_of(repo, {LATIN: (f("latin\n"), f("agent\n"))}), "x")
    assert f"uncommitted changes in {LATIN} " in str(caught.value)
    assert head(repo) == before and (repo / LATIN).read_text() == "latin\n"


def test_a_submodule_in_head_is_not_a_file_and_does_not_hide_the_paths_after_it(repo: Path) -> None:
    """A gitlink (mode 160000) has no blob to read: `--land branch` must not plan against it as an empty file,
    and the files listed after it are still read."""
    commit_files(repo, {"zz.txt": b"last\n"})
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{head(repo)},sub")
    git(repo, "commit", "-qm", "a submodule")
    assert head_states(repo, ["sub", "zz.txt"]) == (head(repo), {"sub": None, "zz.txt": f("last\n")})


# Found by mutation testing (failed before land.commit_plan took deletions first).
def test_a_directory_the_agent_turns_into_a_file_lands_as_a_commit(repo: Path) -> None:
    """`--land worktree` writes this change (deletions first); `--land commit` must land it too, and the directory
    that HEAD holds at that path is not the user's uncommitted work."""
    parent = head(repo)
    plan = plan_of(repo, {"dir/c.txt": (f("sea\n"), None), "dir": (None, f("now a file\n"))})
    commit, note = land_on_current_branch(repo, plan, "smol: dir to file")
    assert note is None and head(repo) == commit
    assert git(repo, "diff-tree", "--no-commit-id", "--name-status", "-r", parent, commit).split() == \
        ["A", "dir", "D", "dir/c.txt"]
    assert (repo / "dir").read_text() == "now a file\n"
    assert git(repo, "status", "--porcelain") == ""


def test_a_conflicted_plan_is_refused_naming_the_path_with_nothing_written(repo: Path) -> None:
    (repo / "a.txt").write_text("one\nthe user's two\nthree\n")
    plan = make_plan(repo, {"a.txt": f("one\ntwo\nthree\n")}, {"a.txt": f("one\nthe agent's two\nthree\n")},
                     ["a.txt"])
    before = head(repo)
    with pytest.raises(PromotionError, match="a.txt"):
        land_on_current_branch(repo, plan, "x")
    assert head(repo) == before and (repo / "a.txt").read_text() == "one\nthe user's two\nthree\n"


@pytest.fixture
def latin_repo(make_repo: Callable[..., Path]) -> Path:
    """A checkout whose own path is not UTF-8: git quotes it raw in its error messages."""
    return make_repo(os.fsdecode(b"r\xe9po"), owner=None, files={"a.txt": "one\n"}, dirty=False)


def test_a_damaged_repository_is_a_promotion_error_naming_the_git_step(latin_repo: Path) -> None:
    tree = git(latin_repo, "rev-parse", "HEAD^{tree}").strip()
    loose = latin_repo / ".git" / "objects" / tree[:2] / tree[2:]
    loose.chmod(0o644)
    loose.write_bytes(b"not a zlib stream")  # HEAD's commit still reads; its tree does not
    with pytest.raises(PromotionError, match="ls-tree") as caught:
        head_states(latin_repo, ["a.txt"])
    assert "corrupt" in str(caught.value) or "unable" in str(caught.value)


def test_a_change_naming_more_paths_than_a_command_line_holds_is_refused_not_crashed(repo: Path) -> None:
    # Found by reviewing an equivalence claim: the paths are named on git's command line, and 2,600 names of 900
    # bytes exceed the kernel's argument limit (E2BIG). That crashed the promotion with a traceback.
    paths = [f"{'d' * 200}/{'e' * 200}/{'f' * 200}/{'g' * 200}/{index:04d}{'h' * 95}" for index in range(2600)]
    with pytest.raises(PromotionError, match=r"^git ls-tree could not be started \(Argument list too long\); land "):
        head_states(repo, paths)


def test_a_locked_ref_is_a_promotion_error_naming_the_git_step(latin_repo: Path) -> None:
    """Another git holds the branch's lock: the refusal says which git step failed and why, whatever bytes the
    repository's path holds, and no branch appears."""
    lock = latin_repo / ".git" / "refs" / "heads" / "smol" / "locked.lock"
    lock.parent.mkdir(parents=True)
    lock.touch()
    plan = plan_of(latin_repo, {"a.txt": (f("one\n"), f("two\n"))})
    with pytest.raises(PromotionError) as caught:
        land_on_branch(latin_repo, plan, "smol/locked", "x")
    assert "git update-ref failed" in str(caught.value) and "locked.lock" in str(caught.value)
    assert git(latin_repo, "branch", "--list", "smol/locked") == ""


def test_an_index_locked_after_the_write_is_reported_with_the_fix(latin_repo: Path) -> None:
    plan = plan_of(latin_repo, {"a.txt": (f("one\n"), f("two\n"))})
    lock = latin_repo / ".git" / "index.lock"
    commit, note = land_on_current_branch(latin_repo, plan, "x", after_write=lambda path: lock.touch())
    lock.unlink()
    assert head(latin_repo) == commit
    assert note is not None and "index.lock" in note and note.endswith("run `git reset -q -- a.txt`")


def test_an_existing_branch_is_refused_with_the_way_out(repo: Path) -> None:
    git(repo, "branch", "smol/taken")
    taken = git(repo, "rev-parse", "smol/taken").strip()
    with pytest.raises(PromotionError, match="--branch"):
        land_on_branch(repo, plan_of(repo, {"a.txt": (f("one\ntwo\nthree\n"), f("x\n"))}), "smol/taken", "x")
    assert git(repo, "rev-parse", "smol/taken").strip() == taken


def test_files_in_the_shared_temporary_directory_never_decide_for_smol(
        repo: Path, make_repo: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """/tmp is anyone's: a file there named like the branch or like `HEAD^{commit}` must not be taken for a
    branch or a commit, and smol's private index must not be a fixed name there (another user could swap it
    between update-index and write-tree); nothing of smol's is left behind."""
    shared = tmp_path / "shared-tmp"
    (shared / "refs" / "heads" / "smol").mkdir(parents=True)
    (shared / "refs" / "heads" / "smol" / "new").write_text("planted\n")
    (shared / "HEAD^{commit}").write_text("planted\n")
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    commit = land_on_branch(repo, plan_of(repo, {"a.txt": (f("one\ntwo\nthree\n"), f("x\n"))}), "smol/new", "x")
    assert git(repo, "rev-parse", "smol/new").strip() == commit
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    with pytest.raises(PromotionError, match="no commit yet"):
        head_states(empty, ["a.txt"])
    assert sorted(os.listdir(shared)) == ["HEAD^{commit}", "refs"]


def test_landing_works_from_a_directory_that_was_deleted(repo: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The shell's directory can vanish under it (a removed build or worktree directory): git runs from the
    temporary directory, not from there."""
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    commit = land_on_branch(repo, plan_of(repo, {"a.txt": (f("one\ntwo\nthree\n"), f("x\n"))}), "smol/cwd", "x")
    assert git(repo, "rev-parse", "smol/cwd").strip() == commit


def test_a_branch_created_meanwhile_is_never_overwritten(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between smol's check that the branch is new and its update-ref, someone creates it: their branch stays."""
    real = _RepoGit.commit_plan

    def racing(self: _RepoGit, plan: Plan, parent: str, message: str) -> tuple[str, list[tuple[str, str | None]]]:
        git(repo, "branch", "smol/race")
        return real(self, plan, parent, message)

    monkeypatch.setattr(_RepoGit, "commit_plan", racing)
    theirs = head(repo)
    with pytest.raises(PromotionError):
        land_on_branch(repo, plan_of(repo, {"a.txt": (f("one\ntwo\nthree\n"), f("x\n"))}), "smol/race", "x")
    assert git(repo, "rev-parse", "smol/race").strip() == theirs


def test_a_commit_made_while_smol_builds_its_own_is_never_dropped(repo: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The user commits between smol's read of HEAD and its update-ref: smol's commit (on the old HEAD) must not
    replace theirs, and nothing is written."""
    real = _RepoGit.commit_plan

    def racing(self: _RepoGit, plan: Plan, parent: str, message: str) -> tuple[str, list[tuple[str, str | None]]]:
        git(repo, "commit", "-q", "--allow-empty", "-m", "the user's commit")
        return real(self, plan, parent, message)

    monkeypatch.setattr(_RepoGit, "commit_plan", racing)
    with pytest.raises(PromotionError):
        land_on_current_branch(repo, plan_of(repo, {"a.txt": (f("one\ntwo\nthree\n"), f("x\n"))}), "x")
    assert git(repo, "log", "-1", "--format=%s").strip() == "the user's commit"
    assert (repo / "a.txt").read_text() == "one\ntwo\nthree\n"


def test_a_failed_write_never_moves_head_off_a_commit_made_meanwhile(repo: Path) -> None:
    """smol's write fails after HEAD moved on to smol's commit and then, by someone else, past it: putting HEAD
    back must not drop that other commit (HEAD only goes back while it is still smol's)."""
    plan = plan_of(repo, {"a.txt": (f("one\ntwo\nthree\n"), f("x\n")), "b.txt": (f("bee\n"), f("B\n"))})

    def commit_then_fail(path: str) -> None:
        git(repo, "commit", "-q", "--allow-empty", "-m", "someone else's commit")
        raise OSError("disk full (injected)")

    with pytest.raises(OSError, match="injected"):
        land_on_current_branch(repo, plan, "x", after_write=commit_then_fail)
    assert git(repo, "log", "-1", "--format=%s").strip() == "someone else's commit"
    assert (repo / "a.txt").read_text() == "one\ntwo\nthree\n"


# ---------------------------------------------------------------------------------------------------- journal


def test_a_running_promotion_does_not_hold_up_the_recovery_of_killed_ones(tmp_path: Path,
                                                                          state_home: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):
        (repo / name).write_bytes(b"after\n")
    live = write_journal("1-live", repo, [change("a.txt", f("before\n"), f("after\n"))], pid=os.getpid())
    write_journal("2-killed", repo, [change("b.txt", f("before\n"), f("after\n"))])
    write_journal("3-killed", repo, [change("c.txt", f("before\n"), f("after\n"))])
    messages: list[str] = []
    assert recover(messages.append) == 2
    assert (repo / "a.txt").read_bytes() == b"after\n" and live.exists()
    assert (repo / "b.txt").read_bytes() == b"before\n" and (repo / "c.txt").read_bytes() == b"before\n"
    assert len(messages) == 2


def test_a_journal_of_a_process_smol_may_not_signal_is_left_alone(tmp_path: Path, state_home: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """kill(pid, 0) answering EPERM means a process has that pid: it may be the promotion, so its write is not
    undone under it."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.txt").write_bytes(b"after\n")
    journal = write_journal("other-user", repo, [change("a.txt", f("before\n"), f("after\n"))], pid=1)

    def refuse(pid: int, signal: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "kill", refuse)
    assert recover(lambda message: None) == 0
    assert journal.exists() and (repo / "a.txt").read_bytes() == b"after\n"


@pytest.mark.skipif(not Path("/proc/sys/kernel/random/boot_id").exists(), reason="needs Linux's boot id")
def test_a_journal_of_this_boot_written_by_a_live_process_is_left_alone(tmp_path: Path, state_home: Path) -> None:
    """The boot id is the kernel's: a journal another smol process wrote during this boot, whose process runs,
    is a promotion in progress."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.txt").write_bytes(b"after\n")
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    journal = write_journal("live", repo, [change("a.txt", f("before\n"), f("after\n"))], pid=os.getpid(),
                            boot=boot)
    assert recover(lambda message: None) == 0
    assert journal.exists() and (repo / "a.txt").read_bytes() == b"after\n"


def test_a_path_that_cannot_be_read_is_named_and_the_rest_still_put_back(tmp_path: Path, state_home: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.txt").write_bytes(b"after\n")
    (repo / "locked.txt").write_bytes(b"after\n")
    real = apply_module.read_state

    def unreadable(root: Path, path: str) -> FileState | None:
        if path == "locked.txt":  # chmod 000 by its owner: only root could read it
            raise PermissionError(13, "Permission denied", path)
        return real(root, path)

    monkeypatch.setattr(apply_module, "read_state", unreadable)
    write_journal("k", repo, [change("a.txt", f("before\n"), f("after\n")),
                              change("locked.txt", f("before\n"), f("after\n"))])
    messages: list[str] = []
    assert recover(messages.append) == 1
    assert (repo / "a.txt").read_bytes() == b"before\n" and (repo / "locked.txt").read_bytes() == b"after\n"
    assert len(messages) == 1 and messages[0].endswith("(changed since): locked.txt")


def test_a_file_removed_by_the_user_during_recovery_is_not_an_error(tmp_path: Path, state_home: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """smol created new.txt; the user deletes it right after recovery read it: it is gone either way, and the
    other files are still put back."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.txt").write_bytes(b"after\n")
    (repo / "new.txt").write_bytes(b"created\n")
    real = apply_module.read_state

    def read_then_user_deletes(root: Path, path: str) -> FileState | None:
        state = real(root, path)
        if path == "new.txt":
            (root / path).unlink()
        return state

    monkeypatch.setattr(apply_module, "read_state", read_then_user_deletes)
    write_journal("k", repo, [change("a.txt", f("before\n"), f("after\n")), change("new.txt", None, f("created\n"))])
    assert recover(lambda message: None) == 1
    assert (repo / "a.txt").read_bytes() == b"before\n" and not (repo / "new.txt").exists()


def test_a_symlink_is_put_back_with_its_own_times_and_its_target_untouched(tmp_path: Path, state_home: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "real.txt").write_bytes(b"the user's file\n")
    os.utime(repo / "real.txt", ns=(5 * 10**18, 5 * 10**18))
    os.symlink("agent-target", repo / "link")
    os.symlink("agent-target", repo / "dangling")
    times = (1_000_000_000 * 10**9, 1_100_000_000 * 10**9)
    write_journal("k", repo, [
        change("link", FileState("symlink", b"real.txt"), FileState("symlink", b"agent-target"), times=times,
               mode=0o777),
        change("dangling", FileState("symlink", b"missing"), FileState("symlink", b"agent-target"), times=times,
               mode=0o777),
    ])
    assert recover(lambda message: None) == 1
    assert os.readlink(repo / "link") == "real.txt" and os.readlink(repo / "dangling") == "missing"
    assert os.lstat(repo / "link").st_mtime_ns == times[1]
    assert os.stat(repo / "real.txt").st_mtime_ns == 5 * 10**18


def test_a_file_beside_a_symlink_change_is_not_taken_for_smols_temporary(tmp_path: Path, state_home: Path) -> None:
    """smol writes a symlink through a symlink temporary: an empty regular file of that name is the user's."""
    repo = tmp_path / "repo"
    repo.mkdir()
    os.symlink("agent-target", repo / "link")
    (repo / ".link.smol-tmp").write_bytes(b"")
    write_journal("k", repo, [change("link", FileState("symlink", b"old"), FileState("symlink", b"agent-target"))])
    assert recover(lambda message: None) == 1
    assert os.readlink(repo / "link") == "old" and (repo / ".link.smol-tmp").read_bytes() == b""


def test_a_temporary_that_cannot_be_removed_does_not_stop_the_recovery(tmp_path: Path, state_home: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.txt").write_bytes(b"after\n")
    (repo / ".a.txt.smol-tmp").write_bytes(b"after\n")
    real = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if ".smol-tmp" in self.name:  # a read-only directory, or a file the user has locked
            raise PermissionError(1, "Operation not permitted", str(self))
        real(self, missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    journal = write_journal("k", repo, [change("a.txt", f("before\n"), f("after\n"))])
    assert recover(lambda message: None) == 1
    assert (repo / "a.txt").read_bytes() == b"before\n" and not journal.exists()
    assert stat.S_ISREG(os.lstat(repo / ".a.txt.smol-tmp").st_mode)


@pytest.fixture
def worktree_config(repo: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`core.worktree` set in the repository's config (as git sets it for a submodule's repository) and the
    temporary directory inside the work tree (TMPDIR=./build/tmp): git then reads paths as relative to that
    directory unless told they are from the top."""
    git(repo, "config", "core.worktree", str(repo))
    inside = repo / "build" / "tmp"  # ignored by the repo's .gitignore
    inside.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(inside))
    return repo


def test_paths_are_read_from_the_top_of_the_tree_whatever_the_temporary_directory(worktree_config: Path) -> None:
    repo = worktree_config
    assert head_states(repo, ["a.txt", "dir/c.txt"]) == (head(repo), {"a.txt": f("one\ntwo\nthree\n"),
                                                                      "dir/c.txt": f("sea\n")})
    commit, note = land_on_current_branch(repo, plan_of(repo, {"a.txt": (f("one\ntwo\nthree\n"), f("x\n"))}), "x")
    assert note is None and head(repo) == commit and (repo / "a.txt").read_text() == "x\n"


# Found by mutation testing (failed before _RepoGit named its own work tree).
def test_staged_work_is_seen_whatever_the_temporary_directory(worktree_config: Path) -> None:
    """The user staged an edit of b.txt and then put the file back: landing an agent's edit of b.txt would
    overwrite the staged version in the index, so it is refused."""
    repo = worktree_config
    (repo / "b.txt").write_text("staged\n")
    git(repo, "add", "b.txt")
    (repo / "b.txt").write_text("bee\n")
    before = head(repo)
    with pytest.raises(PromotionError, match="b.txt"):
        land_on_current_branch(repo, plan_of(repo, {"b.txt": (f("bee\n"), f("B\n"))}), "x")
    assert head(repo) == before and git(repo, "diff", "--cached", "--name-only") == "b.txt\n"


def test_an_index_refresh_that_fails_without_a_word_still_says_how_to_fix_it(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """git can die without printing anything (killed, out of memory): the commit stands, and the note names the
    command that puts the index right."""
    real = shutil.which("git")
    assert real is not None
    fake = tmp_path / "bin" / "git"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n"  # the refresh of the user's index (not smol's private one) fails silently
                    'for a in "$@"; do [ "$a" = update-index ] && [ -z "$GIT_INDEX_FILE" ] && exit 1; done\n'
                    f'exec {real} "$@"\n')
    fake.chmod(0o755)
    monkeypatch.setitem(apply_module.GIT_ENV, "PATH", f"{fake.parent}{os.pathsep}{apply_module.GIT_ENV['PATH']}")
    commit, note = land_on_current_branch(repo, plan_of(repo, {"a.txt": (f("one\ntwo\nthree\n"), f("x\n"))}), "x")
    assert head(repo) == commit and (repo / "a.txt").read_text() == "x\n"
    assert note is not None and note.endswith("run `git reset -q -- a.txt`")


def test_a_path_that_cannot_be_written_back_is_named_and_the_rest_still_put_back(
        tmp_path: Path, state_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file recovery cannot write (a read-only mount, a directory its owner locked) is left as it is and named;
    the journal's other files are still put back (recovery goes through them last to first)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.txt").write_bytes(b"after\n")
    (repo / "locked.txt").write_bytes(b"after\n")
    real = apply_module._write

    def read_only(root: Path, path: str, state: FileState, *, mode: int | None = None) -> None:
        if path == "locked.txt":
            raise OSError(30, "Read-only file system", path)
        real(root, path, state, mode=mode)

    monkeypatch.setattr(apply_module, "_write", read_only)
    write_journal("k", repo, [change("a.txt", f("before\n"), f("after\n")),
                              change("locked.txt", f("before\n"), f("after\n"))])
    messages: list[str] = []
    assert recover(messages.append) == 1
    assert (repo / "a.txt").read_bytes() == b"before\n" and (repo / "locked.txt").read_bytes() == b"after\n"
    assert messages == [f"a promotion into {repo} was killed mid-write; 1 file(s) put back as they were; "
                        "left as they are now (changed since): locked.txt"]


@pytest.mark.parametrize(("count", "more"), [(10, ""), (11, " and 1 more"), (12, " and 2 more")])
def test_the_recovery_message_names_ten_paths_left_and_counts_the_rest(tmp_path: Path, state_home: Path,
                                                                       count: int, more: str) -> None:
    # exactly ten are all named (no "and 0 more"); from eleven on the rest are counted
    repo = tmp_path / "repo"
    repo.mkdir()
    names = [f"f{i:02}.txt" for i in range(count)]
    for name in names:
        (repo / name).write_bytes(b"the user's edit since\n")
    write_journal("k", repo, [change(name, f("before\n"), f("after\n")) for name in names])
    messages: list[str] = []
    assert recover(messages.append) == 1
    listed = ", ".join(list(reversed(names))[:10])  # recovery goes last to first
    assert messages == [f"a promotion into {repo} was killed mid-write; 0 file(s) put back as they were; "
                        f"left as they are now (changed since): {listed}{more}"]
