"""Edge cases of writing a reviewed change into the user's real tree (runner.promote.apply): modes, ownership,
symlinks met on the way, temporaries someone else takes, binary detection, hermetic merges, rollback details, and
the journal a SIGKILL leaves behind."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

import runner.promote.apply as apply_module
from runner.promote.apply import Plan, PlannedChange, PromotionError, apply_plan, make_plan, read_state
from runner.promote.journal import journal_dir, recover
from runner.promote.land import head_states, land_on_branch
from runner.sandbox.base import FileState
from tests.conftest import git, tree_fingerprint
from tests.test_journal import change, write_journal
from tests.test_promote_apply import current_umask, f

FIVE = "one\ntwo\nthree\nfour\nfive\n"
ROOT = os.geteuid() == 0


@pytest.fixture
def repo(make_repo: Callable[..., Path]) -> Path:
    return make_repo(owner=None, files={"a.txt": FIVE, "b.txt": "bee\n", "dir/c.txt": "sea\n"}, dirty=False)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def owner_of(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid


# --- permissions of what smol writes ---------------------------------------------------------------------------

def test_a_new_executable_file_is_runnable_by_everyone_the_umask_allows(repo: Path) -> None:
    """git checks a new 100755 file out as 0755 under the umask: group and others may run the agent's new script."""
    plan = make_plan(repo, {"run.sh": None}, {"run.sh": f("#!/bin/sh\n", executable=True)}, ["run.sh"])
    apply_plan(repo, plan)
    assert mode_of(repo / "run.sh") == 0o755 & ~current_umask()


@pytest.mark.parametrize(("before", "executable", "after"), [
    (0o6755, True, 0o755),   # setuid/setgid never lend their owner's rights to content the agent wrote
    (0o2750, False, 0o640),  # nor does setgid survive on a file that is no longer executable
    (0o755, False, 0o644),   # the agent's chmod -x takes every x bit away, and nothing else
    (0o775, False, 0o664),
    (0o666, True, 0o777),    # chmod +x on a world-writable file: x for everyone who may read it
    (0o640, True, 0o750),
], ids=lambda value: oct(value) if isinstance(value, int) and not isinstance(value, bool) else str(value))
def test_a_replaced_file_keeps_its_mode_with_only_the_executable_bits_following_the_change(
        repo: Path, before: int, executable: bool, after: int) -> None:
    (repo / "a.txt").chmod(before)
    assert mode_of(repo / "a.txt") == before
    plan = make_plan(repo, {"a.txt": f(FIVE, executable=bool(before & 0o100))},
                     {"a.txt": f("edited\n", executable=executable)}, ["a.txt"])
    assert plan.ok and not plan.changes[0].merged
    apply_plan(repo, plan)
    assert (repo / "a.txt").read_text() == "edited\n"
    assert mode_of(repo / "a.txt") == after


def test_a_file_only_others_may_run_is_not_executable_as_git_sees_it(repo: Path) -> None:
    """git takes the owner's x bit for the executable flag: a 0645 file is 100644, so the agent's non-executable
    copy of the same bytes is already there (nothing to write, no merge)."""
    (repo / "a.txt").chmod(0o645)
    assert read_state(repo, "a.txt") == f(FIVE)
    plan = make_plan(repo, {"a.txt": f(FIVE, executable=True)}, {"a.txt": f(FIVE)}, ["a.txt"])
    assert plan.already_applied == ["a.txt"] and plan.changes == []


def test_the_temporary_holding_a_secrets_new_bytes_is_never_readable_by_others(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between its creation and its final chmod the temporary already holds the new content: it must be the
    owner's alone then (0600), or anyone could read a 0600 secret's new bytes during the write."""
    (repo / "a.txt").chmod(0o600)
    seen: list[int] = []
    real_chmod = os.chmod

    def spy(path: str | Path, mode: int, *args: object, **kwargs: object) -> None:
        if ".smol-tmp" in os.fspath(path):
            seen.append(mode_of(Path(path)))
        real_chmod(path, mode, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "chmod", spy)
    apply_plan(repo, make_plan(repo, {"a.txt": f(FIVE)}, {"a.txt": f("new secret\n")}, ["a.txt"]))
    assert seen and all(mode & 0o077 == 0 for mode in seen), [oct(m) for m in seen]
    assert mode_of(repo / "a.txt") == 0o600


# --- ownership when smol runs as root on someone's tree --------------------------------------------------------

def test_directories_smol_makes_or_puts_back_belong_to_the_trees_owner(repo: Path) -> None:
    """CI runs smol as root over a checkout someone owns: a directory made for a new file takes its parent's owner,
    and a directory a failed write had pruned comes back with its own owner. As another user: that user's."""
    me = (os.geteuid(), os.getegid())
    if ROOT:
        os.chown(repo, 1234, 2345)
        os.chown(repo / "dir", 4321, 4322)
    apply_plan(repo, make_plan(repo, {"made/deep/new.txt": None}, {"made/deep/new.txt": f("n\n")},
                               ["made/deep/new.txt"]))
    assert owner_of(repo / "made") == ((1234, 2345) if ROOT else me)
    assert owner_of(repo / "made/deep") == ((1234, 2345) if ROOT else me)

    before = tree_fingerprint(repo)
    plan = make_plan(repo, {"dir/c.txt": f("sea\n"), "b.txt": f("bee\n")}, {"dir/c.txt": None, "b.txt": f("B\n")},
                     ["dir/c.txt", "b.txt"])

    def fail_last(path: str) -> None:
        if path == "b.txt":
            raise OSError("disk on fire")

    with pytest.raises(OSError, match="disk on fire"):
        apply_plan(repo, plan, after_write=fail_last)
    assert tree_fingerprint(repo) == before
    assert owner_of(repo / "dir") == ((4321, 4322) if ROOT else me)


# --- deletions ---------------------------------------------------------------------------------------------------

def test_deleting_the_last_file_of_a_directory_removes_it_up_to_the_first_one_still_in_use(repo: Path) -> None:
    """As git does on checkout: directories a deletion leaves empty go, a directory still holding the user's files
    stays, whichever order the deletions come in."""
    for name in ("keep/sub/x.txt", "keep/mine.txt", "gone/deeper/y.txt"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(name)
    base = {"keep/sub/x.txt": f("keep/sub/x.txt"), "gone/deeper/y.txt": f("gone/deeper/y.txt"),
            "dir/c.txt": f("sea\n")}
    plan = make_plan(repo, base, dict.fromkeys(base), list(base))
    assert plan.ok and len(plan.changes) == 3
    apply_plan(repo, plan)
    assert not (repo / "gone").exists() and not (repo / "dir").exists() and not (repo / "keep/sub").exists()
    assert (repo / "keep/mine.txt").read_text() == "keep/mine.txt"


def test_deleting_a_symlink_to_a_directory_removes_the_link_never_the_directory(repo: Path) -> None:
    (repo / "shortcut").symlink_to("dir")
    plan = make_plan(repo, {"shortcut": FileState("symlink", b"dir")}, {"shortcut": None}, ["shortcut"])
    assert plan.ok and [c.path for c in plan.changes] == ["shortcut"]
    apply_plan(repo, plan)
    assert not os.path.lexists(repo / "shortcut")
    assert (repo / "dir/c.txt").read_text() == "sea\n"
    # A plan entry deleting a path that holds nothing smol reads (a directory full of the user's files) deletes
    # nothing at all.
    plan = Plan(changes=[PlannedChange("dir", None, None)])
    apply_plan(repo, plan)
    assert (repo / "dir/c.txt").read_text() == "sea\n"


# --- symlinks met on the way -------------------------------------------------------------------------------------

def test_a_deletion_below_a_symlinked_directory_is_refused_and_the_file_outside_survives(
        repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("not the repo's\n")
    (repo / "escape").symlink_to(outside)
    plan = Plan(changes=[PlannedChange("escape/precious.txt", None, None)])
    with pytest.raises(PromotionError, match="escape") as caught:
        apply_plan(repo, plan)
    assert "escape/precious.txt" not in str(caught.value)  # the refusal names the link, the culprit
    assert (outside / "precious.txt").read_text() == "not the repo's\n"


def test_a_write_refused_at_a_symlinked_directory_leaves_none_of_the_other_new_files(
        repo: Path, tmp_path: Path) -> None:
    """The agent's change adds escape/evil.txt where the user's tree has `escape` -> a directory outside: the
    write stops there, and the rollback takes away the new files already written, skipping only the link."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (repo / "escape").symlink_to(outside)
    before = tree_fingerprint(repo)
    base: dict[str, FileState | None] = {"new.txt": None, "escape/evil.txt": None}
    plan = make_plan(repo, base, {"new.txt": f("new\n"), "escape/evil.txt": f("pwned\n")}, list(base))
    with pytest.raises(PromotionError, match="escape") as caught:
        apply_plan(repo, plan)
    assert "escape/evil.txt" not in str(caught.value)
    assert tree_fingerprint(repo) == before
    assert list(outside.iterdir()) == []


def test_what_lies_behind_a_symlinked_directory_is_never_looked_at(repo: Path, tmp_path: Path) -> None:
    """A FIFO outside the tree, reached through the user's `escape` link, is not reported as being "in your tree":
    planning never follows the link, and the write is refused at the link itself."""
    outside = tmp_path / "outside"
    outside.mkdir()
    os.mkfifo(outside / "pipe")
    (repo / "escape").symlink_to(outside)
    plan = make_plan(repo, {"escape/pipe": None}, {"escape/pipe": f("data\n")}, ["escape/pipe"])
    assert plan.conflicts == [] and plan.reasons == {}
    with pytest.raises(PromotionError, match="escape"):
        apply_plan(repo, plan)
    assert stat.S_ISFIFO(os.lstat(outside / "pipe").st_mode)


# --- planning --------------------------------------------------------------------------------------------------

def test_every_conflict_is_named_not_only_the_first(repo: Path) -> None:
    os.mkfifo(repo / "a-pipe")
    (repo / "b.txt").write_text("the user's bee\n")
    plan = make_plan(repo, {"a-pipe": None, "b.txt": f("bee\n"), "dir/c.txt": f("sea\n")},
                     {"a-pipe": f("x\n"), "b.txt": f("the agent's bee\n"), "dir/c.txt": f("SEA\n")},
                     ["a-pipe", "b.txt", "dir/c.txt"])
    assert plan.conflicts == ["a-pipe", "b.txt"]
    assert [c.path for c in plan.changes] == ["dir/c.txt"]
    with pytest.raises(PromotionError, match="a-pipe.*b.txt"):
        apply_plan(repo, plan)


def test_a_branch_planned_against_head_ignores_a_fifo_in_the_working_tree(repo: Path) -> None:
    """`--land branch` commits HEAD plus the change and never touches the working tree, so an untracked FIFO the
    user keeps at the agent's new path is no conflict there (it would be for --land worktree)."""
    os.mkfifo(repo / "pipe")
    head, against = head_states(repo, ["pipe"])
    plan = make_plan(repo, {"pipe": None}, {"pipe": f("data\n")}, ["pipe"], against=against)
    assert plan.ok, plan.describe_conflicts()
    land_on_branch(repo, plan, "smol/pipe", "smol: pipe", head=head)
    assert git(repo, "show", "smol/pipe:pipe") == "data\n"
    assert stat.S_ISFIFO(os.lstat(repo / "pipe").st_mode)
    assert not make_plan(repo, {"pipe": None}, {"pipe": f("data\n")}, ["pipe"]).ok


@pytest.mark.parametrize("user_did", ["deleted it", "edited it"])
def test_the_agent_editing_or_deleting_a_file_the_user_deleted_or_edited_is_a_conflict(
        repo: Path, user_did: str) -> None:
    if user_did == "deleted it":
        (repo / "a.txt").unlink()
        final = f(FIVE.replace("two", "TWO"))
    else:
        (repo / "a.txt").write_text(FIVE.replace("five", "FIVE"))
        final = None
    before = tree_fingerprint(repo)
    plan = make_plan(repo, {"a.txt": f(FIVE)}, {"a.txt": final}, ["a.txt"])
    assert plan.conflicts == ["a.txt"]
    with pytest.raises(PromotionError, match="a.txt"):
        apply_plan(repo, plan)
    assert tree_fingerprint(repo) == before


def test_a_symlink_the_user_put_where_the_agent_changed_a_file_is_a_conflict(repo: Path) -> None:
    """The agent only made a.txt executable; the user meanwhile replaced it with a link. A link is no text to merge:
    the link's target must not become the content of a regular file."""
    (repo / "a.txt").unlink()
    (repo / "a.txt").symlink_to("b.txt")
    before = tree_fingerprint(repo)
    plan = make_plan(repo, {"a.txt": f(FIVE)}, {"a.txt": f(FIVE, executable=True)}, ["a.txt"])
    assert plan.conflicts == ["a.txt"] and plan.changes == []
    with pytest.raises(PromotionError, match="a.txt"):
        apply_plan(repo, plan)
    assert tree_fingerprint(repo) == before and os.readlink(repo / "a.txt") == "b.txt"


PAD = b"".join(b"line %04d\n" % i for i in range(810))  # 8100 bytes: the middle line starts at byte 8104
GAP = b"gap 1\ngap 2\ngap 3\n"


def version(top: bytes, middle: bytes, tail: bytes, pad: bytes = PAD) -> FileState:
    return FileState("file", top + pad + middle + GAP + tail)


@pytest.mark.parametrize("who", ["the run's start", "the user", "the agent"])
def test_a_nul_in_the_first_8_kib_of_any_version_means_binary_never_merged(repo: Path, who: str) -> None:
    """Merging binary content line by line corrupts it. The NUL sits at byte 8104: past the 8000 bytes git's own
    check reads (git would merge it), within smol's 8 KiB. Each side's other edit is clean to merge."""
    nul, text = b"\x00\n", b"middle\n"
    base = version(b"top\n", nul if who == "the run's start" else text, b"tail\n")
    current = version(b"TOP\n", nul if who == "the user" else text, b"tail\n")
    final = version(b"top\n", nul if who == "the agent" else text, b"TAIL\n")
    (repo / "blob").write_bytes(current.data)
    plan = make_plan(repo, {"blob": base}, {"blob": final}, ["blob"])
    assert plan.conflicts == ["blob"]
    assert (repo / "blob").read_bytes() == current.data


def test_a_nul_past_the_first_8_kib_leaves_a_long_text_file_mergeable(repo: Path) -> None:
    pad = PAD + b"line 0810\n" * 8 + b"padding\n"  # 8188 bytes: the agent's NUL line starts at byte 8192
    base = version(b"top\n", b"middle\n", b"tail\n", pad)
    current = version(b"TOP\n", b"middle\n", b"tail\n", pad)
    final = version(b"top\n", b"\x00\n", b"TAIL\n", pad)
    assert final.data.index(b"\x00") == 8192
    (repo / "long.txt").write_bytes(current.data)
    plan = make_plan(repo, {"long.txt": base}, {"long.txt": final}, ["long.txt"])
    assert plan.ok and plan.changes[0].merged
    apply_plan(repo, plan)
    assert (repo / "long.txt").read_bytes() == version(b"TOP\n", b"\x00\n", b"TAIL\n", pad).data


def test_merges_do_not_read_the_users_git_config_nor_the_repository_smol_runs_in(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Host-side git is hermetic: a ~/.gitconfig git cannot parse, or a repository with such a config as the
    directory smol was started in, must not turn a clean three-way merge into a conflict (nor change it)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    git(elsewhere, "init", "-q")
    with (elsewhere / ".git" / "config").open("a") as config:
        config.write("[core\nbroken\n")
    monkeypatch.chdir(elsewhere)
    broken = tmp_path / "broken.gitconfig"
    broken.write_text("[oops\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(broken))
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".gitconfig").write_text("[oops\n")
    (repo / "a.txt").write_text(FIVE.replace("five", "FIVE"))
    plan = make_plan(repo, {"a.txt": f(FIVE)}, {"a.txt": f(FIVE.replace("one", "ONE"))}, ["a.txt"])
    assert plan.ok and plan.changes[0].merged
    apply_plan(repo, plan)
    assert (repo / "a.txt").read_text() == "ONE\ntwo\nthree\nfour\nFIVE\n"


# --- temporaries and failures ------------------------------------------------------------------------------------

def test_a_temporary_name_taken_at_the_last_moment_is_never_written_through_nor_deleted(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between smol picking a free name for its temporary and creating it, someone plants a symlink there (a race
    to redirect the write outside the tree). The exclusive, no-follow create fails: the write is rolled back, the
    file outside keeps its bytes, and the planted link (not smol's) is left where it is."""
    victim = tmp_path / "victim.txt"
    victim.write_text("outside the tree\n")
    real_owner_for = apply_module._owner_for

    def plant(full: Path) -> tuple[int, int] | None:
        if full.name == "a.txt" and not os.path.lexists(repo / ".a.txt.smol-tmp"):
            os.symlink(victim, repo / ".a.txt.smol-tmp")
        return real_owner_for(full)

    monkeypatch.setattr(apply_module, "_owner_for", plant)
    before = tree_fingerprint(repo)
    with pytest.raises(FileExistsError):
        apply_plan(repo, make_plan(repo, {"a.txt": f(FIVE)}, {"a.txt": f("redirected?\n")}, ["a.txt"]))
    assert victim.read_text() == "outside the tree\n"
    assert os.readlink(repo / ".a.txt.smol-tmp") == str(victim)
    (repo / ".a.txt.smol-tmp").unlink()
    assert tree_fingerprint(repo) == before


def test_the_error_shown_is_the_one_that_stopped_the_write_even_when_the_temporary_is_already_gone(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_replace = os.replace
    calls: list[str] = []

    def vanish_and_fail(source: str, target: str) -> None:  # the write's rename fails; the rollback's works
        calls.append(target)
        if len(calls) == 1:
            os.unlink(source)  # someone else cleaned the temporary up first
            raise OSError(28, "No space left on device")
        real_replace(source, target)

    before = tree_fingerprint(repo)
    monkeypatch.setattr(os, "replace", vanish_and_fail)
    with pytest.raises(OSError, match="No space left"):
        apply_plan(repo, make_plan(repo, {"a.txt": f(FIVE)}, {"a.txt": f("new\n")}, ["a.txt"]))
    assert tree_fingerprint(repo) == before


def test_a_file_the_user_saves_during_the_write_is_kept_and_named(repo: Path) -> None:
    """smol has just deleted b.txt when the user saves a.txt: a.txt's write is refused (the message names it), the
    user's bytes stay, and b.txt comes back."""
    before_b = tree_fingerprint(repo)["b.txt"]
    plan = make_plan(repo, {"a.txt": f(FIVE), "b.txt": f("bee\n")}, {"a.txt": f("agent\n"), "b.txt": None},
                     ["a.txt", "b.txt"])

    def user_saves(path: str) -> None:
        if path == "b.txt":
            (repo / "a.txt").write_text("the user's save\n")

    with pytest.raises(PromotionError, match="a.txt") as caught:
        apply_plan(repo, plan, after_write=user_saves)
    assert "b.txt" not in str(caught.value)
    assert (repo / "a.txt").read_text() == "the user's save\n"
    assert tree_fingerprint(repo)["b.txt"] == before_b


def test_rolling_back_a_replaced_symlink_never_touches_what_it_points_to(repo: Path) -> None:
    """The link's own times come back (lstat), and its target's times are not set to the link's."""
    (repo / "link").symlink_to("a.txt")
    os.utime(repo / "a.txt", ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    os.utime(repo / "link", ns=(1_200_000_000_000_000_000, 1_300_000_000_000_000_000), follow_symlinks=False)
    (repo / "dangling").symlink_to("nowhere")
    before = tree_fingerprint(repo)
    base = {"link": FileState("symlink", b"a.txt"), "dangling": FileState("symlink", b"nowhere"),
            "b.txt": f("bee\n")}
    final = {"link": FileState("symlink", b"b.txt"), "dangling": FileState("symlink", b"b.txt"), "b.txt": f("B\n")}

    def fail_last(path: str) -> None:
        if path == "link":
            raise OSError("disk on fire")

    with pytest.raises(OSError, match="disk on fire"):
        apply_plan(repo, make_plan(repo, base, final, list(base)), after_write=fail_last)
    assert tree_fingerprint(repo) == before
    assert os.lstat(repo / "link").st_mtime_ns == 1_300_000_000_000_000_000
    assert os.lstat(repo / "a.txt").st_mtime_ns == 1_000_000_000_000_000_000


def test_a_write_killed_with_sigkill_is_put_back_by_the_next_smol_command(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No handler runs on SIGKILL: the journal is all that is left. Here the kill comes after the last write: the
    journal as it was then, with a process that is gone, must lead the next command to this very repo."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    before = tree_fingerprint(repo, include_git=False)
    base = {"a.txt": f(FIVE), "b.txt": f("bee\n"), "new/n.txt": None}
    final = {"a.txt": f("agent\n"), "b.txt": None, "new/n.txt": f("n\n")}
    plan = make_plan(repo, base, final, list(base))
    at_kill: list[dict[str, object]] = []

    def snapshot(path: str) -> None:
        (journal,) = journal_dir().glob("*.json")
        at_kill[:] = [json.loads(journal.read_text())]

    apply_plan(repo, plan, after_write=snapshot)
    assert (repo / "a.txt").read_text() == "agent\n"
    entry = {**at_kill[0], "pid": 2 ** 22 + 7}  # a pid no process has: the writer is gone
    (journal_dir() / "killed.json").write_text(json.dumps(entry))
    messages: list[str] = []
    assert recover(messages.append) == 1
    assert str(repo) in messages[0]
    assert (repo / "a.txt").read_text() == FIVE and (repo / "b.txt").read_text() == "bee\n"
    assert not (repo / "new/n.txt").exists()
    assert {k: v for k, v in tree_fingerprint(repo, include_git=False).items() if k != "new"} == before


# --- a real gap (found by mutation testing, fixed in apply._empty_dir_in_the_way) -----------------------------------

def test_rollback_puts_back_an_empty_directory_the_write_replaced_with_a_file(repo: Path) -> None:
    """An empty directory where the agent's change puts a file is replaced (test_promote_apply). When a later write
    fails, the rollback removes the file but never makes the directory again: the tree is not as it was."""
    (repo / "slot").mkdir()
    (repo / "slot").chmod(0o750)
    before = tree_fingerprint(repo)
    plan = make_plan(repo, {"slot": None, "b.txt": f("bee\n")}, {"slot": f("now a file\n"), "b.txt": f("B\n")},
                     ["slot", "b.txt"])

    def fail_last(path: str) -> None:
        if path == "slot":
            raise OSError("disk on fire")

    with pytest.raises(OSError, match="disk on fire"):
        apply_plan(repo, plan, after_write=fail_last)
    assert tree_fingerprint(repo) == before


# --- found by reviewing the equivalence claims of apply's rollback (each failed before the fix) ------------------

def _failing_write(monkeypatch: pytest.MonkeyPatch, path: str, data: bytes | None) -> None:
    """Writing `data` (None: anything) to `path` fails before its rename, as on a read-only mount or for a name
    too long for a temporary: the file there is never replaced."""
    real = apply_module._replace_with

    def replace_with(full: Path, temporary: Path, state: FileState, owner: tuple[int, int] | None,
                     mode: int | None) -> None:
        if full.name == path and data in (None, state.data):
            raise OSError(30, "Read-only file system", str(full))
        real(full, temporary, state, owner, mode)

    monkeypatch.setattr(apply_module, "_replace_with", replace_with)


def test_a_write_that_fails_before_its_rename_leaves_the_users_file_in_place(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The rollback used to take away every path it had started on, including the one whose write had failed: the
    # user's own file, never replaced, was deleted (and could not be written back for the same reason).
    _failing_write(monkeypatch, "b.txt", None)
    before = tree_fingerprint(repo)
    plan = make_plan(repo, {"a.txt": f(FIVE), "b.txt": f("bee\n")}, {"a.txt": f("A\n"), "b.txt": f("B\n")},
                     ["a.txt", "b.txt"])
    with pytest.raises(OSError, match="Read-only"):
        apply_plan(repo, plan)
    assert tree_fingerprint(repo) == before


def test_a_rollback_step_that_fails_does_not_stop_the_others_and_keeps_the_journal(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # One path that cannot be put back used to stop the rollback there, leaving every other written file with the
    # agent's bytes, and the journal was removed so no later command could finish the job.
    _failing_write(monkeypatch, "b.txt", b"bee\n")  # b.txt is written, then cannot be restored
    plan = make_plan(repo, {"a.txt": f(FIVE), "b.txt": f("bee\n"), "dir/c.txt": f("sea\n")},
                     {"a.txt": f("A\n"), "b.txt": f("B\n"), "dir/c.txt": f("C\n")}, ["a.txt", "b.txt", "dir/c.txt"])

    def fail_last(path: str) -> None:
        if path == "dir/c.txt":
            raise OSError("disk on fire")

    with pytest.raises(PromotionError, match="b.txt could not be put back") as caught:
        apply_plan(repo, plan, after_write=fail_last)
    assert isinstance(caught.value.__cause__, OSError)
    assert (repo / "a.txt").read_text() == FIVE and (repo / "dir/c.txt").read_text() == "sea\n"
    assert (repo / "b.txt").read_text() == "B\n"
    kept = list(journal_dir().glob("*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["repo"] == str(repo)
    monkeypatch.undo()  # writable again: a later command finishes the rollback from the journal
    monkeypatch.setattr("runner.promote.journal._alive", lambda entry: False)
    assert recover(lambda message: None) == 1
    assert (repo / "b.txt").read_text() == "bee\n" and not list(journal_dir().glob("*.json"))


def test_a_file_whose_name_leaves_no_room_for_the_temporary_suffix_is_written(repo: Path) -> None:
    # A 250-byte name is legal, `.NAME.smol-tmp` is not (255 bytes at most): the write failed for every such file
    # (found by a reviewer; this failed before apply.temporary_name).
    name = "n" * 250
    (repo / name).write_text("old\n")
    plan = make_plan(repo, {name: f("old\n")}, {name: f("new\n")}, [name])
    apply_plan(repo, plan)
    assert (repo / name).read_text() == "new\n"
    assert not [entry for entry in os.listdir(repo) if "smol" in entry]


def test_a_killed_write_of_a_long_named_file_leaves_no_temporary_after_recovery(repo: Path) -> None:
    name = "n" * 250
    (repo / name).write_text("old\n")
    leftover = repo / apply_module.temporary_name(name)
    leftover.write_text("new\n")  # what a SIGKILL between the temporary's write and its rename leaves
    write_journal("killed", repo, [change(name, f("old\n"), f("new\n"))])
    assert recover(lambda message: None) == 1
    assert (repo / name).read_text() == "old\n" and not leftover.exists()


@pytest.mark.parametrize("mode", [0o711, 0o751, 0o701])
def test_a_rollback_puts_back_permissions_the_executable_bit_alone_cannot_describe(repo: Path, mode: int) -> None:
    """The change makes an executable script plain; a later write fails. The script comes back with its exact
    permissions: rebuilt from "executable" alone, 0711 would come back as 0700."""
    (repo / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(repo / "run.sh", mode)
    (repo / "z.txt").write_text("bee\n")
    plan = make_plan(repo, {"run.sh": f("#!/bin/sh\n", executable=True), "z.txt": f("bee\n")},
                     {"run.sh": f("echo plain\n"), "z.txt": f("B\n")}, ["run.sh", "z.txt"])

    def fail_last(path: str) -> None:
        if path == "z.txt":
            raise OSError("disk on fire")

    with pytest.raises(OSError, match="disk on fire"):
        apply_plan(repo, plan, after_write=fail_last)
    assert (repo / "run.sh").read_text() == "#!/bin/sh\n"
    assert stat.S_IMODE(os.lstat(repo / "run.sh").st_mode) == mode


@pytest.mark.parametrize("length", [244, 245, 246, 247])
def test_names_at_the_edge_of_the_temporary_suffix_are_written(repo: Path, length: int) -> None:
    # `.NAME.smol-tmp` is NAME + 10 bytes: 245 makes it exactly 255 (the most a file system allows), 246 one more
    name = "n" * length
    (repo / name).write_text("old\n")
    if length == 244:  # and the plain temporary name taken by a user's file: the next one is 255 bytes again
        (repo / f".{name}.smol-tmp").write_text("a user's file of that name\n")
    apply_plan(repo, make_plan(repo, {name: f("old\n")}, {name: f("new\n")}, [name]))
    assert (repo / name).read_text() == "new\n"
    assert [entry for entry in os.listdir(repo) if "smol" in entry] == ([f".{name}.smol-tmp"] if length == 244 else [])
