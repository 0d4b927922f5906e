"""Writing a change into a real git repo: plans, three-way merges, conflicts, atomicity, branch landing."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.promote.apply import (
    Plan,
    PromotionError,
    apply_plan,
    make_plan,
    read_state,
)
from runner.promote.land import head_states, land_on_branch, land_on_current_branch
from runner.sandbox.base import FileState
from tests.conftest import git, tree_fingerprint


def f(text: str, executable: bool = False) -> FileState:
    return FileState("file", text.encode(), executable)


@pytest.fixture
def repo(make_repo: Callable[..., Path]) -> Path:
    return make_repo(owner=None, files={
        "a.txt": "one\ntwo\nthree\nfour\nfive\n",
        "b.txt": "bee\n",
        "dir/c.txt": "sea\n",
        "link": "placeholder",
    }, dirty=False)


def test_plan_and_apply_every_kind_of_change(repo: Path) -> None:
    (repo / "link").unlink()
    os.symlink("a.txt", repo / "link")
    base = {"a.txt": f("one\ntwo\nthree\nfour\nfive\n"), "b.txt": f("bee\n"), "dir/c.txt": f("sea\n"),
            "new/deep/d.sh": None, "link": FileState("symlink", b"a.txt")}
    final = {"a.txt": f("one\nTWO\nthree\nfour\nfive\n"), "b.txt": None, "dir/c.txt": f("sea\n", executable=True),
             "new/deep/d.sh": f("#!/bin/sh\n", executable=True), "link": FileState("symlink", b"b.txt")}
    plan = make_plan(repo, base, final, list(base))
    assert plan.ok and not plan.already_applied
    apply_plan(repo, plan)
    assert (repo / "a.txt").read_text() == "one\nTWO\nthree\nfour\nfive\n"
    assert not (repo / "b.txt").exists()
    assert os.access(repo / "dir/c.txt", os.X_OK) and os.access(repo / "new/deep/d.sh", os.X_OK)
    assert os.readlink(repo / "link") == "b.txt"
    assert {p: read_state(repo, p) for p in final} == final
    again = make_plan(repo, base, final, list(base))
    assert again.changes == [] and sorted(again.already_applied) == sorted(final)


def test_user_edits_elsewhere_merge_three_way(repo: Path) -> None:
    base = {"a.txt": f("one\ntwo\nthree\nfour\nfive\n")}
    final = {"a.txt": f("one\nTWO\nthree\nfour\nfive\n")}
    (repo / "a.txt").write_text("one\ntwo\nthree\nfour\nFIVE\n")  # the user, meanwhile
    plan = make_plan(repo, base, final, ["a.txt"])
    assert plan.ok and plan.changes[0].merged
    apply_plan(repo, plan)
    assert (repo / "a.txt").read_text() == "one\nTWO\nthree\nfour\nFIVE\n"


def test_overlapping_edits_conflict_and_nothing_is_written(repo: Path) -> None:
    base = {"a.txt": f("one\ntwo\nthree\nfour\nfive\n"), "b.txt": f("bee\n")}
    final = {"a.txt": f("one\nTWO\nthree\nfour\nfive\n"), "b.txt": f("BEE\n")}
    (repo / "a.txt").write_text("one\nzwei\nthree\nfour\nfive\n")
    before = tree_fingerprint(repo)
    plan = make_plan(repo, base, final, ["a.txt", "b.txt"])
    assert plan.conflicts == ["a.txt"]
    with pytest.raises(PromotionError, match="a.txt"):
        apply_plan(repo, plan)
    assert tree_fingerprint(repo) == before


def test_a_failure_in_the_middle_leaves_the_tree_byte_identical(repo: Path) -> None:
    base = {"a.txt": f("one\ntwo\nthree\nfour\nfive\n"), "b.txt": f("bee\n"), "dir/c.txt": f("sea\n"),
            "x/y/new.txt": None}
    final = {"a.txt": f("changed\n"), "b.txt": None, "dir/c.txt": None, "x/y/new.txt": f("new\n")}
    before = tree_fingerprint(repo)
    plan = make_plan(repo, base, final, list(base))
    written: list[str] = []

    def explode(path: str) -> None:
        written.append(path)
        if len(written) == 3:
            raise OSError("disk on fire")

    with pytest.raises(OSError, match="disk on fire"):
        apply_plan(repo, plan, after_write=explode)
    assert len(written) == 3
    assert tree_fingerprint(repo) == before
    assert not (repo / "x").exists()


NESTED_BASE = {"a.txt": f("one\ntwo\nthree\nfour\nfive\n"), "d1/d2/d3/old.txt": f("old\n"),
               "d1/d2/keep.txt": None, "n1/n2/n3/new.txt": None, "n1/n2/side.txt": None, "link": f("placeholder"),
               "dir/c.txt": f("sea\n")}
NESTED_FINAL = {"a.txt": f("changed\n"), "d1/d2/d3/old.txt": None, "d1/d2/keep.txt": None,
                "n1/n2/n3/new.txt": f("new\n"), "n1/n2/side.txt": f("side\n"), "link": FileState("symlink", b"a.txt"),
                "dir/c.txt": None}


@pytest.mark.parametrize("fail_at", range(1, 7))
def test_a_failure_at_any_step_puts_nested_directories_back_too(repo: Path, fail_at: int) -> None:
    """Directories the write created go (deepest first), directories it pruned come back (outermost first) with
    their own permissions, replaced files get their times back: byte-identical, whichever write failed."""
    for directory, mode in (("d1", 0o750), ("d1/d2", 0o700), ("d1/d2/d3", 0o755)):
        (repo / directory).mkdir()
        (repo / directory).chmod(mode)
    (repo / "d1/d2/d3/old.txt").write_text("old\n")
    os.utime(repo / "a.txt", ns=(1_000_000_000_000_000_000, 1_100_000_000_000_000_000))
    before = tree_fingerprint(repo)
    plan = make_plan(repo, NESTED_BASE, NESTED_FINAL, list(NESTED_BASE))
    assert plan.ok, plan.conflicts
    written: list[str] = []

    def explode(path: str) -> None:
        written.append(path)
        if len(written) == fail_at:
            raise OSError("disk on fire")

    with pytest.raises(OSError, match="disk on fire"):
        apply_plan(repo, plan, after_write=explode)
    assert tree_fingerprint(repo) == before
    assert not (repo / "n1").exists()


def test_a_plan_with_conflicts_is_refused_naming_them(repo: Path) -> None:
    (repo / "a.txt").write_text("the user's own rewrite\n")
    base = {"a.txt": f("one\ntwo\nthree\nfour\nfive\n"), "b.txt": f("bee\n")}
    final = {"a.txt": f("one\nTWO\nthree\nfour\nfive\n"), "b.txt": f("bee\n")}
    plan = make_plan(repo, base, final, list(base))
    assert plan.conflicts == ["a.txt"]
    before = tree_fingerprint(repo)
    for write in (lambda: apply_plan(repo, plan), lambda: land_on_branch(repo, plan, "smol/x", "m")):
        with pytest.raises(PromotionError) as caught:
            write()
        assert str(caught.value) == f"conflicts in: {plan.describe_conflicts()}" and "a.txt" in str(caught.value)
    assert tree_fingerprint(repo) == before
    assert "smol/x" not in git(repo, "branch", "--list")


def test_replaced_files_keep_their_permissions(repo: Path) -> None:
    (repo / "a.txt").chmod(0o600)  # a secret stays a secret
    (repo / "b.txt").chmod(0o640)
    base = {"a.txt": f("one\ntwo\nthree\nfour\nfive\n"), "b.txt": f("bee\n"), "new.txt": None}
    final = {"a.txt": f("edited\n"), "b.txt": f("bee\n", executable=True), "new.txt": f("n\n")}
    apply_plan(repo, make_plan(repo, base, final, list(base)))
    assert (repo / "a.txt").stat().st_mode & 0o7777 == 0o600
    assert (repo / "b.txt").stat().st_mode & 0o7777 == 0o750
    assert (repo / "new.txt").stat().st_mode & 0o7777 == 0o644 & ~current_umask()


def test_rollback_restores_exact_permissions(repo: Path) -> None:
    (repo / "a.txt").chmod(0o600)
    before = tree_fingerprint(repo)
    base = {"a.txt": f("one\ntwo\nthree\nfour\nfive\n"), "b.txt": f("bee\n")}
    final = {"a.txt": f("edited\n", executable=True), "b.txt": f("B\n")}

    def explode(path: str) -> None:
        if path == "b.txt":
            raise OSError("injected")

    with pytest.raises(OSError, match="injected"):
        apply_plan(repo, make_plan(repo, base, final, list(base)), after_write=explode)
    assert tree_fingerprint(repo) == before


def test_a_fifo_in_the_tree_is_never_replaced(repo: Path) -> None:
    os.mkfifo(repo / "pipe")
    before = tree_fingerprint(repo)
    plan = make_plan(repo, {"pipe": None, "b.txt": f("bee\n")}, {"pipe": f("data\n"), "b.txt": f("B\n")},
                     ["pipe", "b.txt"])
    assert plan.conflicts == ["pipe"] and "FIFO" in plan.describe_conflicts()
    with pytest.raises(PromotionError, match="pipe .a FIFO"):
        apply_plan(repo, plan)
    assert tree_fingerprint(repo) == before
    assert stat.S_ISFIFO(os.lstat(repo / "pipe").st_mode)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_ctrl_c_in_the_middle_rolls_back_too(repo: Path) -> None:
    base = {"a.txt": f("one\ntwo\nthree\nfour\nfive\n"), "b.txt": f("bee\n")}
    final = {"a.txt": f("A\n"), "b.txt": f("B\n")}
    before = tree_fingerprint(repo)

    def interrupt(path: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        apply_plan(repo, make_plan(repo, base, final, list(base)), after_write=interrupt)
    assert tree_fingerprint(repo) == before


def test_never_writes_through_a_symlinked_directory(repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, repo / "escape")
    plan = Plan()
    from runner.promote.apply import PlannedChange

    plan.changes.append(PlannedChange("escape/evil.txt", None, f("pwned\n")))
    with pytest.raises(PromotionError, match="not a real directory"):
        apply_plan(repo, plan)
    assert list(outside.iterdir()) == []
    assert read_state(repo, "escape/evil.txt") is None
    # The rollback after that refusal must not follow the link either: a file outside survives it.
    (outside / "evil.txt").write_text("the user's own file\n")
    with pytest.raises(PromotionError, match="not a real directory"):
        apply_plan(repo, plan)
    assert (outside / "evil.txt").read_text() == "the user's own file\n"


def test_land_on_a_new_branch_keeps_the_working_tree(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD").strip()
    before = tree_fingerprint(repo, include_git=False)
    base = {"a.txt": f("one\ntwo\nthree\nfour\nfive\n"), "added.sh": None, "b.txt": f("bee\n")}
    final = {"a.txt": f("edited\n"), "added.sh": f("#!/bin/sh\n", executable=True), "b.txt": None}
    commit = land_on_branch(repo, make_plan(repo, base, final, list(base)), "smol/test", "smol: test change")
    assert tree_fingerprint(repo, include_git=False) == before
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "rev-parse", "smol/test").strip() == commit
    assert git(repo, "rev-parse", "smol/test~1").strip() == head
    assert git(repo, "show", "smol/test:a.txt") == "edited\n"
    assert "100755" in git(repo, "ls-tree", "smol/test", "added.sh")
    assert git(repo, "ls-tree", "smol/test", "b.txt") == ""
    with pytest.raises(PromotionError, match="already exists"):
        land_on_branch(repo, make_plan(repo, base, final, list(base)), "smol/test", "again")
    # smol's commits say so: author and committer are smol, never the user's identity from their config
    assert git(repo, "log", "-1", "--format=%an <%ae>|%cn <%ce>|%s", "smol/test").strip() == \
        "smol <smol@localhost>|smol <smol@localhost>|smol: test change"


def test_land_commit_names_the_dirty_paths_and_the_way_out(repo: Path) -> None:
    (repo / "a.txt").write_text("one\ntwo\nthree\nfour\nFIVE\n")  # merges cleanly: dirty, not a conflict
    (repo / "b.txt").write_text("staged\n")
    git(repo, "add", "b.txt")
    (repo / "b.txt").write_text("bee\n")
    plan = make_plan(repo, COMMIT_BASE, {**COMMIT_FINAL, "a.txt": f("one\nTWO\nthree\nfour\nfive\n")},
                     list(COMMIT_BASE))
    assert plan.ok
    with pytest.raises(PromotionError) as caught:
        land_on_current_branch(repo, plan, "smol: x")
    assert str(caught.value) == ("uncommitted changes in a.txt, b.txt would end up in smol's commit: commit or "
                                 "stash them first, or use --land worktree or --land branch")


def test_land_commit_says_how_to_fix_an_index_it_could_not_refresh(repo: Path) -> None:
    """The commit and the tree are written; only the index is stale (another git held its lock): the message
    names the command that fixes it, with every path."""
    plan = make_plan(repo, COMMIT_BASE, COMMIT_FINAL, list(COMMIT_BASE))
    lock = repo / ".git" / "index.lock"
    commit, problem = land_on_current_branch(repo, plan, "smol: x", after_write=lambda path: lock.touch())
    lock.unlink()
    assert git(repo, "rev-parse", "HEAD").strip() == commit
    assert (repo / "a.txt").read_text() == "edited\n"
    assert problem is not None and problem.startswith("the index could not be refreshed (fatal: Unable to create")
    assert problem.endswith("): run `git reset -q -- a.txt added.sh b.txt`"), problem
    assert git(repo, "log", "-1", "--format=%an <%ae>|%cn <%ce>").strip() == \
        "smol <smol@localhost>|smol <smol@localhost>"


def test_head_states_read_what_head_holds_not_the_working_tree(repo: Path) -> None:
    """`--land branch` plans against these states: the user's uncommitted lines must never be among them."""
    (repo / "tool.sh").write_text("#!/bin/sh\n")
    (repo / "tool.sh").chmod(0o755)
    (repo / "pointer").symlink_to("b.txt")
    name = os.fsdecode(b"caf\xe9.txt")  # not UTF-8: a name git stores as bytes
    (repo / name).write_bytes(b"latin\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "more kinds")
    head = git(repo, "rev-parse", "HEAD").strip()
    (repo / "a.txt").write_text("the user's uncommitted line\n")  # dirty, and staged: neither is HEAD
    (repo / "b.txt").write_text("staged\n")
    git(repo, "add", "b.txt")
    (repo / "new.txt").write_text("untracked\n")
    (repo / "tool.sh").chmod(0o644)

    paths = ["a.txt", "b.txt", "dir/c.txt", "tool.sh", "pointer", name, "new.txt", "dir", "gone.txt"]
    got_head, states = head_states(repo, paths)
    assert got_head == head
    assert states == {
        "a.txt": f("one\ntwo\nthree\nfour\nfive\n"), "b.txt": f("bee\n"), "dir/c.txt": f("sea\n"),
        "tool.sh": f("#!/bin/sh\n", executable=True), "pointer": FileState("symlink", b"b.txt"),
        name: FileState("file", b"latin\n"),
        "new.txt": None, "dir": None, "gone.txt": None,  # not a file in HEAD: a directory is not a file state
    }
    assert head_states(repo, []) == (head, {})


def test_head_states_of_a_repo_without_a_commit_is_an_error(make_repo: Callable[..., Path], tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    with pytest.raises(PromotionError):
        head_states(empty, ["a.txt"])


def test_a_branch_landed_from_a_dirty_tree_is_head_plus_the_change(repo: Path) -> None:
    """The `--land branch` trust hole: the commit must hold HEAD's lines plus the agent's edit, not the user's
    uncommitted ones, and the working tree stays as the user left it."""
    (repo / "a.txt").write_text("one\ntwo\nthree\nfour\nfive\nthe user's uncommitted line\n")
    before = tree_fingerprint(repo, include_git=False)
    head, against = head_states(repo, ["a.txt", "b.txt"])
    base = {"a.txt": f("one\ntwo\nthree\nfour\nfive\nthe user's uncommitted line\n"), "b.txt": f("bee\n")}
    final = {"a.txt": f("ONE\ntwo\nthree\nfour\nfive\nthe user's uncommitted line\n"), "b.txt": f("bee\n")}
    plan = make_plan(repo, base, final, ["a.txt", "b.txt"], against=against)
    land_on_branch(repo, plan, "smol/clean", "smol: change", head=head)
    assert git(repo, "show", "smol/clean:a.txt") == "ONE\ntwo\nthree\nfour\nfive\n"
    assert git(repo, "diff", "--name-only", "HEAD", "smol/clean") == "a.txt\n"
    assert tree_fingerprint(repo, include_git=False) == before
    (repo / "b.txt").write_text("moved on\n")
    git(repo, "commit", "-qam", "HEAD moves")
    with pytest.raises(PromotionError, match="HEAD moved"):
        land_on_branch(repo, plan, "smol/late", "smol: change", head=head)
    assert "smol/late" not in git(repo, "branch", "--list")


COMMIT_BASE = {"a.txt": f("one\ntwo\nthree\nfour\nfive\n"), "added.sh": None, "b.txt": f("bee\n")}
COMMIT_FINAL = {"a.txt": f("edited\n"), "added.sh": f("#!/bin/sh\n", executable=True), "b.txt": None}


def test_land_commit_on_the_current_branch_commits_exactly_the_change(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD").strip()
    branch = git(repo, "symbolic-ref", "--short", "HEAD").strip()
    (repo / "dir/c.txt").write_text("the user's own edit\n")  # unrelated work in progress stays as it is
    (repo / "untracked.txt").write_text("mine\n")
    commit, index_note = land_on_current_branch(repo, make_plan(repo, COMMIT_BASE, COMMIT_FINAL, list(COMMIT_BASE)),
                                                "smol: test change")
    assert index_note is None
    assert git(repo, "rev-parse", "HEAD").strip() == commit
    assert git(repo, "symbolic-ref", "--short", "HEAD").strip() == branch
    assert git(repo, "rev-parse", "HEAD~1").strip() == head
    changed = git(repo, "diff-tree", "--no-commit-id", "--name-status", "-r", head, commit).split("\n")
    assert sorted(line for line in changed if line) == ["A\tadded.sh", "D\tb.txt", "M\ta.txt"]
    assert (repo / "a.txt").read_text() == "edited\n" and not (repo / "b.txt").exists()
    assert os.access(repo / "added.sh", os.X_OK)
    # Only the user's own changes remain in `git status`: the landed files are clean, not staged in reverse.
    assert sorted(git(repo, "status", "--porcelain").splitlines()) == [" M dir/c.txt", "?? untracked.txt"]


@pytest.mark.parametrize("how", ["dirty", "staged"])
def test_land_commit_refuses_when_touched_files_hold_uncommitted_work(repo: Path, how: str) -> None:
    head = git(repo, "rev-parse", "HEAD").strip()
    if how == "dirty":
        (repo / "a.txt").write_text("one\ntwo\nthree\nfour\nFIVE\n")  # would be merged, then swept into the commit
    else:
        (repo / "b.txt").write_text("staged\n")
        git(repo, "add", "b.txt")
        (repo / "b.txt").write_text("bee\n")  # the tree looks committed; the index does not
    before = tree_fingerprint(repo)
    final = {**COMMIT_FINAL, "a.txt": f("one\nTWO\nthree\nfour\nfive\n")}
    plan = make_plan(repo, COMMIT_BASE, final, list(COMMIT_BASE))
    assert plan.ok
    with pytest.raises(PromotionError, match="uncommitted changes in (a|b).txt.*--land worktree"):
        land_on_current_branch(repo, plan, "smol: refused")
    assert tree_fingerprint(repo) == before
    assert git(repo, "rev-parse", "HEAD").strip() == head


def test_land_commit_puts_head_back_when_the_write_fails(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD").strip()
    before = tree_fingerprint(repo, include_git=False)

    def fail_on_second(path: str) -> None:
        if path == "added.sh":
            raise OSError("disk full (injected)")

    plan = make_plan(repo, COMMIT_BASE, COMMIT_FINAL, list(COMMIT_BASE))
    with pytest.raises(OSError, match="injected"):
        land_on_current_branch(repo, plan, "smol: fails", after_write=fail_on_second)
    assert git(repo, "rev-parse", "HEAD").strip() == head
    assert tree_fingerprint(repo, include_git=False) == before
    assert git(repo, "status", "--porcelain") == ""


def test_land_commit_needs_a_git_repo_with_a_commit(make_repo: Callable[..., Path], tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "a.txt").write_text("x\n")
    plan = make_plan(plain, {"a.txt": f("x\n")}, {"a.txt": f("y\n")}, ["a.txt"])
    with pytest.raises(PromotionError, match="not a git repository"):
        land_on_current_branch(plain, plan, "x")
    empty = tmp_path / "empty"
    empty.mkdir()
    subprocess.run(["git", "init", "-q", str(empty)], check=True)
    (empty / "a.txt").write_text("x\n")
    with pytest.raises(PromotionError, match="no commit yet"):
        land_on_current_branch(empty, make_plan(empty, {"a.txt": f("x\n")}, {"a.txt": f("y\n")}, ["a.txt"]), "x")
    assert (plain / "a.txt").read_text() == "x\n" and (empty / "a.txt").read_text() == "x\n"


def test_hooks_never_run(repo: Path) -> None:
    marker = repo.parent / "hook-ran"
    for name in ("reference-transaction", "post-commit", "post-index-change"):  # what update-ref/index could fire
        hook = repo / ".git" / "hooks" / name
        hook.write_text(f"#!/bin/sh\necho {name} >> {marker}\n")
        hook.chmod(0o755)
    base = {"b.txt": f("bee\n")}
    land_on_branch(repo, make_plan(repo, base, {"b.txt": f("B\n")}, ["b.txt"]), "smol/hooks", "x")
    land_on_current_branch(repo, make_plan(repo, base, {"b.txt": f("B\n")}, ["b.txt"]), "y")
    assert not marker.exists(), marker.read_text()
    subprocess.run(["git", "-C", str(repo), "fsck", "--no-progress"], check=True, capture_output=True)
    # The control: plain git on the same repo does run the hook, so the assertion above could fail.
    subprocess.run(["git", "-c", "safe.directory=*", "-C", str(repo), "update-ref", "refs/heads/control", "HEAD"],
                   check=True, capture_output=True)
    assert "reference-transaction" in marker.read_text()


def test_non_utf8_names_and_binary_content(repo: Path) -> None:
    name = os.fsdecode(b"caf\xe9-\xff.bin")
    payload = bytes(range(256)) * 3
    base: dict[str, FileState | None] = {name: None, "a.txt": f("one\ntwo\nthree\nfour\nfive\n")}
    final: dict[str, FileState | None] = {name: FileState("file", payload), "a.txt": FileState("file", b"\x00\x01")}
    plan = make_plan(repo, base, final, list(base))
    assert plan.ok
    apply_plan(repo, plan)
    assert (repo / os.fsencode(name).decode("utf-8", "surrogateescape")).read_bytes() == payload
    assert os.path.exists(os.path.join(os.fsencode(repo), b"caf\xe9-\xff.bin"))
    assert (repo / "a.txt").read_bytes() == b"\x00\x01"


@pytest.mark.parametrize(("user_mode", "agent_exec", "expected_exec"), [
    (0o755, False, True),   # the user made it executable, the agent only edited lines: the user's bit stays
    (0o644, True, True),    # the agent made it executable, the user did not touch the mode: the agent's bit
    (0o644, False, False),
])
def test_a_three_way_merge_keeps_whoever_changed_the_mode(repo: Path, user_mode: int, agent_exec: bool,
                                                          expected_exec: bool) -> None:
    (repo / "a.txt").write_text("ONE\ntwo\nthree\nfour\nfive\n")  # the user's line edit
    (repo / "a.txt").chmod(user_mode)
    base = {"a.txt": f("one\ntwo\nthree\nfour\nfive\n")}
    final = {"a.txt": f("one\ntwo\nthree\nfour\nFIVE\n", executable=agent_exec)}
    plan = make_plan(repo, base, final, ["a.txt"])
    assert plan.ok and [change.merged for change in plan.changes] == [True]
    assert plan.changes[0].after == FileState("file", b"ONE\ntwo\nthree\nfour\nFIVE\n", expected_exec)


def test_binary_content_edited_on_both_sides_is_a_conflict(repo: Path) -> None:
    (repo / "b.txt").write_bytes(b"\0user")
    plan = make_plan(repo, {"b.txt": f("bee\n")}, {"b.txt": FileState("file", b"\0agent")}, ["b.txt"])
    assert plan.conflicts == ["b.txt"]


def test_files_named_like_smols_temporaries_are_never_touched(repo: Path) -> None:
    (repo / ".a.txt.smol-tmp").write_text("the user's file\n")
    (repo / ".a.txt.smol-tmp1").write_text("another of theirs\n")
    plan = make_plan(repo, {"a.txt": f("one\ntwo\nthree\nfour\nfive\n")}, {"a.txt": f("new\n")}, ["a.txt"])
    apply_plan(repo, plan)
    assert (repo / "a.txt").read_text() == "new\n"
    assert (repo / ".a.txt.smol-tmp").read_text() == "the user's file\n"
    assert (repo / ".a.txt.smol-tmp1").read_text() == "another of theirs\n"
    assert sorted(p.name for p in repo.iterdir() if "smol-tmp" in p.name) == [".a.txt.smol-tmp", ".a.txt.smol-tmp1"]


def test_a_directory_in_the_way_is_replaced_only_when_empty(repo: Path) -> None:
    (repo / "empty").mkdir()
    apply_plan(repo, make_plan(repo, {"empty": None}, {"empty": f("now a file\n")}, ["empty"]))
    assert (repo / "empty").read_text() == "now a file\n"
    (repo / "full").mkdir()
    (repo / "full" / "keep.txt").write_text("the user's\n")
    plan = Plan()
    from runner.promote.apply import PlannedChange

    plan.changes.append(PlannedChange("full", None, f("x\n")))
    with pytest.raises(PromotionError) as caught:
        apply_plan(repo, plan)
    assert str(caught.value) == "cannot write full: a non-empty directory is in the way"
    assert (repo / "full" / "keep.txt").read_text() == "the user's\n"


def test_a_failed_rename_leaves_no_temporary(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import runner.promote.apply as apply_module

    real_replace = os.replace
    calls: list[object] = []

    def refuse_once(source: str, target: str) -> None:  # the write's rename fails; the rollback's works
        calls.append(target)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        real_replace(source, target)

    before = tree_fingerprint(repo)
    monkeypatch.setattr(apply_module.os, "replace", refuse_once)
    for final in (f("new\n"), FileState("symlink", b"b.txt")):
        calls.clear()
        with pytest.raises(OSError, match="No space left"):
            apply_plan(repo, make_plan(repo, {"a.txt": f("one\ntwo\nthree\nfour\nfive\n")}, {"a.txt": final},
                                       ["a.txt"]))
        assert tree_fingerprint(repo) == before  # no `.a.txt.smol-tmp*` left behind


def test_what_smol_writes_as_root_belongs_to_the_trees_owner(repo: Path) -> None:
    """CI runs smol as root over a checkout someone owns: new files and links take the directory's owner, a
    replaced file keeps its own. Run as another user, everything is simply that user's."""
    root = os.geteuid() == 0
    if root:
        os.chown(repo, 1234, 2345)
        os.chown(repo / "b.txt", 4321, 4321)
    base = {"new.txt": None, "lnk": None, "b.txt": f("bee\n")}
    final = {"new.txt": f("n\n"), "lnk": FileState("symlink", b"b.txt"), "b.txt": f("B\n")}
    apply_plan(repo, make_plan(repo, base, final, list(base)))
    owners = {name: (os.lstat(repo / name).st_uid, os.lstat(repo / name).st_gid) for name in final}
    me = (os.geteuid(), os.getegid())
    assert owners == ({"new.txt": (1234, 2345), "lnk": (1234, 2345), "b.txt": (4321, 4321)} if root else
                      {"new.txt": me, "lnk": me, "b.txt": me})
