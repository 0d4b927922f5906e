"""Edges of the promotion guard and of the host-side derivation of the written bytes.

Guard: patches git would never print but an attacker (or a confused model) can hand back: changes without modes,
renames that quietly change what a file is, names the real tree cannot even be asked about, links through
symlinks the same patch removes or copies, and git's own `.git` spellings on HFS+.

Derivation (`derive_final`): the bytes smol writes come from the reviewed patch applied in a private git
repository. It must give the same answer wherever smol is started from, refuse (never crash or skip) whenever git
fails at any step, and refuse any change git sees that the review did not show.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import runner.promote.apply as promote_apply
from runner.promote.derive import PatchMismatchError, derive_final, first_disagreement
from runner.promote.guard import GuardReport, guard, is_hfs_dotgit, touches_dotgit
from runner.promote.paths import path_problem
from runner.sandbox.base import FileState
from tests.test_guard import BLOB, BLOB2, ZERO, added, refused_paths, symlink

# ------------------------------------------------------------------------ helpers


def deletion(path: str, content: str = "a", mode: str | None = "100644") -> bytes:
    """A deleted file; with mode=None the `deleted file mode` line is left out (git always prints it)."""
    mode_line = f"deleted file mode {mode}\n" if mode else ""
    no_newline = "\\ No newline at end of file\n" if mode == "120000" else ""
    return (f"diff --git a/{path} b/{path}\n{mode_line}--- a/{path}\n+++ /dev/null\n@@ -1 +0,0 @@\n"
            f"-{content}\n{no_newline}").encode()


def moved(kind: str, old: str, new: str, old_target: str, new_target: str) -> bytes:
    """A rename or copy of a symlink whose target changes on the way (so git prints its mode)."""
    return (f"diff --git a/{old} b/{new}\nsimilarity index 50%\n{kind} from {old}\n{kind} to {new}\n"
            f"index {BLOB}..{BLOB2} 120000\n--- a/{old}\n+++ b/{new}\n@@ -1 +1 @@\n-{old_target}\n"
            f"\\ No newline at end of file\n+{new_target}\n\\ No newline at end of file\n").encode()


def findings(report: GuardReport) -> list[tuple[str, str]]:
    return [(f.path, f.category) for f in report.refused]


GIT = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "-c", "core.symlinks=true"]
CLEAN_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_CONFIG_GLOBAL": "/dev/null",
             "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent", "LC_ALL": "C"}


def real_diff(tmp_path: Path, before: dict[str, bytes], after: dict[str, bytes | None]) -> bytes:
    """What the sandbox hands back: `git diff --binary --full-index` between two states of a few files."""
    work = tmp_path / "work"
    work.mkdir()

    def git(*args: str) -> bytes:
        return subprocess.run([*GIT, "-C", str(work), *args], env=CLEAN_ENV, capture_output=True,
                              check=True).stdout

    git("init", "-q")
    for name, data in before.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(data)
    git("add", "-A")
    git("commit", "-qm", "base", "--allow-empty")
    for name, data in after.items():
        if data is None:
            (work / name).unlink()
        else:
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            (work / name).write_bytes(data)
    git("add", "-A")
    return git("diff", "--cached", "--binary", "--full-index")


def files(contents: dict[str, bytes]) -> dict[str, FileState | None]:
    return {name: FileState("file", data) for name, data in contents.items()}


# ------------------------------------------------------------------------ guard: modes


def test_a_modified_file_whose_patch_gives_no_mode_is_refused(tmp_path: Path) -> None:
    # `index a..b` without a mode cannot say whether the new content is a file or a symlink target; the real
    # tree's current mode is no answer (only pure renames may borrow it).
    (tmp_path / "f").write_text("a\n")
    patch = f"diff --git a/f b/f\nindex {BLOB}..{BLOB2}\n--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n".encode()
    report = guard(patch, tmp_path)
    assert findings(report) == [("f", "mode")]
    assert "mode" in report.refused[0].reason


def test_a_deletion_whose_patch_gives_no_mode_is_refused(tmp_path: Path) -> None:
    # Without `deleted file mode` the review cannot tell a file from a symlink being removed.
    report = guard(deletion("f", mode=None), tmp_path)
    assert report.changes[0].kind == "deleted"
    assert findings(report) == [("f", "mode")]
    assert "mode" in report.refused[0].reason


def test_a_rename_that_turns_a_file_into_an_absolute_symlink_is_refused(tmp_path: Path) -> None:
    # The source is a plain file in the real tree, but the patch says the destination is a symlink to
    # /etc/passwd: the patch's own mode counts, not the one the source had.
    (tmp_path / "notes.txt").write_text("a")
    patch = (f"diff --git a/notes.txt b/notes\nsimilarity index 50%\nrename from notes.txt\nrename to notes\n"
             f"index {BLOB}..{BLOB2} 120000\n--- a/notes.txt\n+++ b/notes\n@@ -1 +1 @@\n-a\n"
             "\\ No newline at end of file\n+/etc/passwd\n\\ No newline at end of file\n").encode()
    report = guard(patch, tmp_path)
    assert refused_paths(report, "symlink") == {"notes"}


def test_a_rename_to_a_mode_git_cannot_produce_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("a\n")
    patch = (b"diff --git a/a b/b\nold mode 100644\nnew mode 100664\nsimilarity index 100%\n"
             b"rename from a\nrename to b\n")
    report = guard(patch, tmp_path)
    assert findings(report) == [("b", "mode")]
    assert "100664" in report.refused[0].reason


def test_a_mode_change_that_turns_an_in_tree_symlink_into_a_file_is_refused(tmp_path: Path) -> None:
    # A bare `old mode 120000 / new mode 100644` is not git's delete-then-add of a type change: writing a file
    # at a path that is a symlink in the real tree would write through it.
    (tmp_path / "target.txt").write_text("t\n")
    os.symlink("target.txt", tmp_path / "l")
    report = guard(b"diff --git a/l b/l\nold mode 120000\nnew mode 100644\n", tmp_path)
    assert report.changes[0].kind == "mode_change"
    assert [(f.path, f.reason) for f in report.refused] == [("l", "in-tree symlink edited as a file")]


def test_deleting_a_symlink_and_editing_it_as_a_file_reports_both_problems(tmp_path: Path) -> None:
    # Nothing is ever truncated: the reviewer sees every reason, not just the first.
    os.symlink("target.txt", tmp_path / "l")
    typechange = (f"diff --git a/l b/l\nold mode 120000\nnew mode 100644\nindex {BLOB}..{BLOB2}\n--- a/l\n"
                  "+++ b/l\n@@ -1 +1 @@\n-target.txt\n\\ No newline at end of file\n+x\n").encode()
    report = guard(deletion("l", "target.txt", "120000") + typechange, tmp_path)
    reasons = {f.reason for f in report.refused if f.path == "l"}
    assert "in-tree symlink edited as a file" in reasons
    assert any("more than once" in reason for reason in reasons)


# ------------------------------------------------------------------------ guard: the real tree cannot be asked


def test_a_name_the_filesystem_cannot_look_up_is_refused_with_the_reason(tmp_path: Path) -> None:
    # lstat fails with ENAMETOOLONG (not "missing"): the guard cannot know what is there, so it refuses and says
    # why, on the path concerned.
    long_name = "n" * 300
    report = guard(added(long_name), tmp_path)
    assert findings(report) == [(long_name, "symlink")]
    assert "too long" in report.refused[0].reason


def test_every_side_of_a_change_is_checked_even_when_one_cannot_be_inspected(tmp_path: Path) -> None:
    # The rename's source cannot be looked up; its destination is inside .git and must still be reported.
    long_name = "n" * 300
    patch = (f"diff --git a/{long_name} b/.git/hooks/post-checkout\nsimilarity index 100%\n"
             f"rename from {long_name}\nrename to .git/hooks/post-checkout\n").encode()
    report = guard(patch, tmp_path)
    assert ".git/hooks/post-checkout" in refused_paths(report, "git dir")
    assert long_name in refused_paths(report, "symlink")


# ------------------------------------------------------------------------ guard: links judged on the future tree


def test_a_link_through_a_real_symlink_the_patch_copies_is_refused(tmp_path: Path) -> None:
    # A copy leaves its source in place: `out -> /var/cache` still exists after the patch, so `x -> out/y`
    # resolves to /var/cache/y.
    os.symlink("/var/cache", tmp_path / "out")
    (tmp_path / "docs").mkdir()
    report = guard(moved("copy", "out", "out2", "/var/cache", "docs") + symlink("x", "out/y"), tmp_path)
    assert refused_paths(report, "symlink") == {"x"}
    assert "/var/cache" in report.refused[0].reason


def test_a_link_through_a_symlink_the_patch_deletes_is_judged_without_it(tmp_path: Path) -> None:
    # After the patch `out` no longer exists, so `x -> out/y` is a dangling link inside the repository, not a
    # link to /var/cache: the same patch must not be refused for where the deleted link used to point.
    os.symlink("/var/cache", tmp_path / "out")
    report = guard(deletion("out", "/var/cache", "120000") + symlink("x", "out/y"), tmp_path)
    assert report.ok, report.refused


def test_a_link_through_a_symlink_the_patch_renames_away_is_judged_without_it(tmp_path: Path) -> None:
    os.symlink("/var/cache", tmp_path / "out")
    (tmp_path / "docs").mkdir()
    report = guard(moved("rename", "out", "moved", "/var/cache", "docs") + symlink("x", "out/y"), tmp_path)
    assert report.ok, report.refused


def test_a_link_to_a_path_the_patch_makes_a_file_is_judged_on_the_future_tree(tmp_path: Path) -> None:
    # The patch writes a file at `l` (refused: the real `l` is a symlink to /etc and would be written through).
    # `x -> l` then points at that file, not at /etc: only `l` is refused, for its own reason, and the reviewer
    # is not sent after a second problem that the patched tree would not have.
    os.symlink("/etc", tmp_path / "l")
    report = guard(added("l") + symlink("x", "l"), tmp_path)
    assert [(f.path, f.reason) for f in report.refused] == [("l", "in-tree symlink edited as a file")]


# ------------------------------------------------------------------------ guard: size caps at their defaults


def test_the_default_size_cap_flags_one_byte_over_five_megabytes(tmp_path: Path) -> None:
    head = len(added("big.txt", "\n"))
    over = added("big.txt", "x" * (5_000_001 - head) + "\n")
    assert len(over) == 5_000_001
    assert [(f.path, f.category) for f in guard(over, tmp_path).flagged] == [("", "size")]
    at = added("big.txt", "x" * (5_000_000 - head) + "\n")
    assert guard(at, tmp_path).flagged == []


def test_the_default_file_cap_flags_the_five_hundred_and_first_file(tmp_path: Path) -> None:
    patch = b"".join(added(f"f{i}.txt") for i in range(501))
    report = guard(patch, tmp_path)
    assert report.ok and len(report.changes) == 501
    assert [(f.path, f.category) for f in report.flagged] == [("", "size")]
    assert "501" in report.flagged[0].reason


# ------------------------------------------------------------------------ path rules


@pytest.mark.parametrize("raw", [b".git\x80", b".git\xff", b".G\xe2\x80\x8cit\xc3"])
def test_dotgit_followed_by_malformed_utf8_is_dotgit_as_in_git(raw: bytes, tmp_path: Path) -> None:
    # git's next_hfs_char stops at malformed UTF-8, so git itself (core.protectHFS) refuses `.git\x80/config`:
    # HFS+ would store it as .git. The port must agree with git on every such byte.
    name = os.fsdecode(raw)
    assert is_hfs_dotgit(name) is True
    repo = tmp_path / "r"
    subprocess.run([*GIT, "init", "-q", str(repo)], env=CLEAN_ENV, check=True)
    result = subprocess.run([*GIT, "-C", str(repo), "-c", "core.protectHFS=true", "update-index", "--add",
                             "--cacheinfo", f"100644,{'e69de29bb2d1d6434b8b29ae775ad8c2e48c5391'},{name}/config"],
                            env=CLEAN_ENV, capture_output=True, check=False)
    assert result.returncode != 0 and b"nvalid path" in result.stderr
    assert touches_dotgit(name + "/config")


@pytest.mark.parametrize("name", [".git\ud800", ".g\udbffit", "\udfff.git"])
def test_a_name_that_is_dotgit_once_lone_surrogates_are_dropped_is_dotgit(name: str) -> None:
    # Names from the model's JSON may hold any lone surrogate (`"\\ud800"` is valid JSON); they are invisible
    # once escaped away, so the agent's tools must treat such a name as `.git` too.
    assert touches_dotgit(name + "/config")


@pytest.mark.parametrize("path", ["XXXX", "empty", "x"])
def test_ordinary_short_names_are_plain_paths(path: str, tmp_path: Path) -> None:
    assert path_problem(path) is None
    assert guard(added(path), tmp_path).ok


# ------------------------------------------------------------------------ derive_final


def test_derivation_does_not_depend_on_the_directory_smol_runs_from(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # smol started from a directory that was removed meanwhile (a deleted build dir, a checkout switched away):
    # every git call of the derivation runs in its own scratch directory, so it still derives the bytes.
    patch = real_diff(tmp_path, {"a.txt": b"one\n"}, {"a.txt": b"two\n"})
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    assert derive_final(files({"a.txt": b"one\n"}), patch, ["a.txt"]) == {"a.txt": FileState("file", b"two\n")}


def test_base_files_with_identical_content_are_derived(tmp_path: Path) -> None:
    # Two empty __init__.py files (or any two equal files) share one git object.
    before = {"pkg/__init__.py": b"", "pkg/sub/__init__.py": b"", "pkg/a.py": b"x = 1\n"}
    patch = real_diff(tmp_path, before, {"pkg/a.py": b"x = 2\n"})
    assert derive_final(files(before), patch, ["pkg/a.py"]) == {"pkg/a.py": FileState("file", b"x = 2\n")}


@pytest.mark.parametrize("after", [{"a.txt": b"two\n", "smuggled.txt": b"evil\n"}, {"a.txt": b"two\n", "b.txt": None}],
                         ids=["added", "deleted"])
def test_a_file_git_adds_or_deletes_that_the_review_did_not_list_is_a_mismatch(
        after: dict[str, bytes | None], tmp_path: Path) -> None:
    # Our patch reader and git must agree on every path a patch touches: a file only git sees would be written
    # (or removed) without having been reviewed.
    before = {"a.txt": b"one\n", "b.txt": b"b\n"}
    patch = real_diff(tmp_path, before, after)
    unlisted = next(name for name in after if name != "a.txt")
    with pytest.raises(PatchMismatchError, match=unlisted):
        derive_final(files(before), patch, ["a.txt"])


def test_a_sandbox_report_that_leaves_out_or_adds_a_path_disagrees() -> None:
    # The sandbox's report is a cross-check of the derived bytes: a file it does not mention, or one it
    # mentions that the patch does not produce, is a disagreement (absent and "deleted" are the same: None).
    derived: dict[str, FileState | None] = {"a.txt": FileState("file", b"two\n"), "b.txt": None,
                                            "new.txt": FileState("file", b"new\n")}
    assert first_disagreement(derived, dict(derived)) is None
    assert first_disagreement(derived, {"a.txt": FileState("file", b"two\n"),
                                        "new.txt": FileState("file", b"new\n")}) is None
    assert first_disagreement(derived, {"a.txt": FileState("file", b"two\n"), "b.txt": None}) == "new.txt"
    assert first_disagreement(derived, {**derived, "c.txt": FileState("file", b"c\n")}) == "c.txt"


def test_a_patch_failing_on_a_non_utf8_name_is_refused_with_git_s_reason(tmp_path: Path) -> None:
    # git's error names the file with its raw (non-UTF-8) bytes: the refusal must still carry it, not crash.
    name = os.fsdecode(b"caf\xe9.txt")
    raw = os.fsencode(name)
    patch = (b"diff --git a/" + raw + b" b/" + raw + b"\nindex " + BLOB.encode() + b".." + BLOB2.encode()
             + b" 100644\n--- a/" + raw + b"\n+++ b/" + raw + b"\n@@ -1 +1 @@\n-a\n+b\n")
    with pytest.raises(PatchMismatchError, match="does not apply") as caught:
        derive_final({name: FileState("file", b"not a\n")}, patch, [name])
    assert "patch failed: caf" in str(caught.value)


def test_a_failing_patch_is_refused_naming_the_file_not_a_whitespace_warning(tmp_path: Path) -> None:
    # The refusal quotes git's first line; warnings about trailing whitespace in the patch must not push the
    # actual failure (which file did not apply) out of it.
    patch = (f"diff --git a/a.txt b/a.txt\nindex {BLOB}..{BLOB2} 100644\n--- a/a.txt\n+++ b/a.txt\n"
             "@@ -1 +1 @@\n-zero\n+one  \n").encode()
    with pytest.raises(PatchMismatchError, match="patch failed: a.txt"):
        derive_final(files({"a.txt": b"not zero\n"}), patch, ["a.txt"])


def _failing_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, subcommand: str, message: bytes) -> None:
    """Put a `git` first on the derivation's PATH that fails `subcommand` with `message` (a full disk, a broken
    install, a killed process) and runs the real git for everything else."""
    real = shutil.which("git")
    assert real is not None
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "message").write_bytes(message)
    script = (f"#!/bin/sh\nskip=0\nfor a in \"$@\"; do\n"
              f"  if [ $skip = 1 ]; then skip=0; continue; fi\n"
              f"  case \"$a\" in -c) skip=1; continue;; -*) continue;; esac\n"
              f"  if [ \"$a\" = {subcommand} ]; then cat '{fake}/message' >&2; exit 1; fi\n"
              f"  break\ndone\nexec '{real}' \"$@\"\n")
    (fake / "git").write_text(script)
    (fake / "git").chmod(0o755)
    monkeypatch.setitem(promote_apply.GIT_ENV, "PATH", f"{fake}:{promote_apply.GIT_ENV['PATH']}")


@pytest.mark.parametrize("subcommand", ["init", "update-index", "cat-file"])
def test_git_failing_at_any_step_refuses_with_its_reason(subcommand: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # Fail closed and say why: a PatchMismatchError (reported as "refused, nothing was written"), with git's
    # message even when it holds bytes that are not UTF-8 -- never a crash, never a half-derived result.
    before = {"a.txt": b"one\n"}
    patch = real_diff(tmp_path, before, {"a.txt": b"two\n"})
    _failing_git(tmp_path, monkeypatch, subcommand, b"fatal: No space left on device in /tmp/\xff\n")
    with pytest.raises(PatchMismatchError, match="No space left on device"):
        derive_final(files(before), patch, ["a.txt"])


def test_git_apply_failing_silently_is_still_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = {"a.txt": b"one\n"}
    patch = real_diff(tmp_path, before, {"a.txt": b"two\n"})
    _failing_git(tmp_path, monkeypatch, "apply", b"")
    with pytest.raises(PatchMismatchError, match="does not apply"):
        derive_final(files(before), patch, ["a.txt"])


# Found by mutation testing: derive_final crashed with ValueError (cat-file reads the commit as missing).
def test_a_submodule_entry_is_refused_by_the_derivation_not_crashed_on() -> None:
    # The guard only flags gitlinks, so a user can say yes to one; the derivation must then refuse it cleanly
    # (the promotion flow only turns PatchMismatchError into "refused").
    commit = "1" * 40
    patch = (f"diff --git a/vendor b/vendor\nnew file mode 160000\nindex {ZERO}..{commit}\n--- /dev/null\n"
             f"+++ b/vendor\n@@ -0,0 +1 @@\n+Subproject commit {commit}\n").encode()
    with pytest.raises(PatchMismatchError, match="vendor"):
        derive_final({}, patch, ["vendor"])
