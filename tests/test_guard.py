"""The promotion guard: strict patch parsing, refusals, flags, terminal safety.

Patches come from two sources: real `git` in temporary repositories (what the sandbox produces) and hand-built
text for what git would never produce but an attacker (or a confused model) could. Real-tree checks run
against real files, directories and symlinks under tmp_path.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.promote.guard import (
    FileChange,
    Finding,
    GuardReport,
    PatchParseError,
    describe,
    guard,
    is_hfs_dotgit,
    is_ntfs_dotgit,
    line_counts,
    parse_patch,
    runs_code_reason,
    sanitize_for_terminal,
    summarize,
)

ZERO = "0" * 40
BLOB = "e" * 40
BLOB2 = "f" * 40
GIT = ["git", "-c", "user.email=a@b", "-c", "user.name=a", "-c", "init.defaultBranch=main",
       "-c", "core.hooksPath=/dev/null", "-c", "core.symlinks=true", "-c", "core.quotePath=true"]
GIT_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_CONFIG_GLOBAL": "/dev/null",
           "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C", "HOME": "/nonexistent"}


# ------------------------------------------------------------------------ helpers


class Link(str):
    """A symlink target in a file spec."""


class Exe(bytes):
    """Executable file content in a file spec."""


Files = dict[str, "bytes | str"]


def run_git(repo: Path, *args: str) -> bytes:
    result = subprocess.run([*GIT, "-C", str(repo), *args], env=GIT_ENV, capture_output=True, check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


def write_files(root: Path, files: Files) -> None:
    for name, content in files.items():
        full = root / name
        full.parent.mkdir(parents=True, exist_ok=True)
        if os.path.isdir(full) and not os.path.islink(full):
            os.rmdir(full)  # an emptied directory replaced by a file or link
        elif os.path.lexists(full):
            os.unlink(full)
        if isinstance(content, Link):
            os.symlink(str(content), full)
        else:
            full.write_bytes(content if isinstance(content, bytes) else content.encode())
            os.chmod(full, 0o755 if isinstance(content, Exe) else 0o644)


def git_patch(tmp_path: Path, base: Files, change: Callable[[Path], None], *, diff_tree: bool = False,
              add_all: bool = True) -> tuple[bytes, Path]:
    """Commit `base`, apply `change`, commit, and return (patch between the commits, repo reset to base)."""
    repo = tmp_path / "repo"
    repo.mkdir(parents=True)
    run_git(repo, "init", "-q")
    write_files(repo, base)
    (repo / ".keep").write_text("")
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-qm", "base")
    change(repo)
    if add_all:
        run_git(repo, "add", "-A")
    run_git(repo, "commit", "-qm", "change")
    if diff_tree:
        patch = run_git(repo, "diff-tree", "-r", "-p", "--binary", "--full-index", "-M", "--no-ext-diff",
                        "--no-textconv", "--no-color", "HEAD~1", "HEAD")
    else:
        patch = run_git(repo, "diff", "--binary", "--full-index", "-M", "HEAD~1", "HEAD")
    run_git(repo, "reset", "-q", "--hard", "HEAD~1")  # the real tree is the base again, as at promotion time
    return patch, repo


def edit(files: Files, remove: tuple[str, ...] = ()) -> Callable[[Path], None]:
    def change(repo: Path) -> None:
        for name in remove:
            os.unlink(repo / name)
        write_files(repo, files)
    return change


def quote(path: str) -> str:
    """C-quote a name the way git does (core.quotePath=true) when it needs quoting."""
    raw = path.encode("utf-8", "surrogateescape")
    special = {9: "\\t", 10: "\\n", 13: "\\r", 34: '\\"', 92: "\\\\", 7: "\\a", 8: "\\b", 12: "\\f", 11: "\\v"}
    if not any(b < 0x20 or b >= 0x7F or b in (34, 92) for b in raw):
        return path
    out = "".join(special.get(b) or (chr(b) if 0x20 <= b < 0x7F else f"\\{b:03o}") for b in raw)
    return f'"{out}"'


def side(prefix: str, path: str) -> str:
    quoted = quote(path)
    return f'"{prefix}{quoted[1:]}' if quoted.startswith('"') else f"{prefix}{path}"


def added(path: str, content: str = "x\n", mode: str = "100644", *, no_newline: bool = False) -> bytes:
    lines = content.split("\n")[:-1] if content.endswith("\n") else content.split("\n")
    body = "".join(f"+{line}\n" for line in lines) + ("\\ No newline at end of file\n" if no_newline else "")
    count = "" if len(lines) == 1 else f",{len(lines)}"
    text = (f"diff --git {side('a/', path)} {side('b/', path)}\nnew file mode {mode}\nindex {ZERO}..{BLOB}\n"
            f"--- /dev/null\n+++ {side('b/', path)}\n@@ -0,0 +1{count} @@\n{body}")
    return text.encode("utf-8", "surrogateescape")


def symlink(path: str, target: str) -> bytes:
    return added(path, target, "120000", no_newline=True)


def modified(path: str, old: str = "a", new: str = "b", mode: str = "100644") -> bytes:
    text = (f"diff --git {side('a/', path)} {side('b/', path)}\nindex {BLOB}..{BLOB2} {mode}\n"
            f"--- {side('a/', path)}\n+++ {side('b/', path)}\n@@ -1 +1 @@\n-{old}\n+{new}\n")
    return text.encode("utf-8", "surrogateescape")


def categories(findings: list[Finding]) -> set[str]:
    return {f.category for f in findings}


def refused_paths(report: GuardReport, category: str | None = None) -> set[str]:
    return {f.path for f in report.refused if category is None or f.category == category}


def flagged(report: GuardReport, path: str) -> list[str]:
    return [f.category for f in report.flagged if f.path == path]


# ------------------------------------------------------------------------ parsing


def test_real_git_patch_parses_every_kind_of_change(tmp_path: Path) -> None:
    base: Files = {
        "keep.txt": "one\ntwo\nthree\n",
        "gone.txt": "bye\n",
        "old name.py": "".join(f"line {i}\n" for i in range(20)),
        "pure.txt": "same\n",
        "run.sh": "echo hi\n",
        "blob.bin": b"\x00\x01\x02" * 100,
    }
    change = edit({
        "keep.txt": "one\nTWO\nthree\nfour\n",
        "new name.py": "".join(f"line {i}\n" for i in range(20)).replace("line 3", "line three"),
        "moved/pure.txt": "same\n",
        "run.sh": Exe(b"echo hi\n"),
        "blob.bin": b"\x00\x01\x03" * 100,
        "link": Link("keep.txt"),
        "caf\udce9 \tx.txt": "non-utf8 name\n",
    }, remove=("gone.txt", "old name.py", "pure.txt"))
    patch, _ = git_patch(tmp_path, base, change)
    changes = {c.path: c for c in parse_patch(patch)}

    assert changes["keep.txt"].kind == "modified"
    assert (changes["keep.txt"].added_lines, changes["keep.txt"].removed_lines) == (2, 1)
    assert changes["keep.txt"].old_mode == changes["keep.txt"].new_mode == "100644"
    assert changes["gone.txt"].kind == "deleted" and changes["gone.txt"].new_path is None
    assert changes["gone.txt"].old_mode == "100644" and changes["gone.txt"].removed_lines == 1
    renamed = changes["new name.py"]
    assert (renamed.kind, renamed.old_path) == ("renamed", "old name.py")
    assert renamed.similarity is not None and b"similarity index %d%%" % renamed.similarity in patch
    assert (renamed.added_lines, renamed.removed_lines) == (1, 1)
    pure = changes["moved/pure.txt"]
    assert (pure.kind, pure.old_path, pure.similarity, pure.old_mode) == ("renamed", "pure.txt", 100, None)
    assert (changes["run.sh"].kind, changes["run.sh"].old_mode, changes["run.sh"].new_mode) == \
        ("mode_change", "100644", "100755")
    assert changes["blob.bin"].binary and changes["blob.bin"].kind == "modified"
    assert (changes["link"].kind, changes["link"].new_mode, changes["link"].symlink_target) == \
        ("added", "120000", "keep.txt")
    odd = changes["caf\udce9 \tx.txt"]
    assert odd.kind == "added" and os.fsencode(odd.path) == b"caf\xe9 \tx.txt"
    # Every byte of the patch belongs to exactly one block.
    assert sum(c.size_bytes for c in changes.values()) == len(patch)


def test_diff_tree_output_parses_like_git_diff(tmp_path: Path) -> None:
    base: Files = {"a.txt": "a\n", "b.txt": "b\n"}
    change = edit({"a.txt": "A\n", "c d.txt": "new\n"}, remove=("b.txt",))
    by_diff, _ = git_patch(tmp_path / "one", base, change)
    by_tree, _ = git_patch(tmp_path / "two", base, change, diff_tree=True)
    assert by_diff == by_tree
    assert [(c.kind, c.path) for c in parse_patch(by_tree)] == \
        [("modified", "a.txt"), ("deleted", "b.txt"), ("added", "c d.txt")]


def test_ambiguous_unquoted_headers_are_resolved_and_cross_checked(tmp_path: Path) -> None:
    # `diff --git a/p b/q b/r b/s` cannot be split on its own; the rename lines name the files and the header
    # must then be exactly what git would print for them.
    body = "".join(f"{i}\n" for i in range(30))
    patch, _ = git_patch(tmp_path, {"p b/q": body}, edit({"r b/s": body + "more\n"}, remove=("p b/q",)))
    assert patch.startswith(b"diff --git a/p b/q b/r b/s\n")
    (change,) = parse_patch(patch)
    assert (change.kind, change.old_path, change.new_path) == ("renamed", "p b/q", "r b/s")
    forged = patch.replace(b"diff --git a/p b/q b/r b/s", b"diff --git a/p b/q b/r b/t b/s")
    with pytest.raises(PatchParseError, match="header disagrees"):
        parse_patch(forged)


def test_clean_patch_passes_with_a_summary(tmp_path: Path) -> None:
    patch, repo = git_patch(tmp_path, {"src/app.py": "x = 1\n"}, edit({"src/app.py": "x = 2\n"}))
    report = guard(patch, repo)
    assert report.ok and report.refused == [] and report.flagged == []
    assert summarize(report) == ["modified    src/app.py (+1 -1)"]


def test_an_empty_patch_is_no_change() -> None:
    assert parse_patch(b"") == []
    report = guard(b"", Path("/nonexistent"))
    assert report.ok and report.changes == []


GARBAGE = {
    "not a patch": b"hello world\n",
    "leading junk": b"From abc Mon Sep 17\n" + modified("x"),
    "no trailing newline": modified("x")[:-1],
    "header only": b"diff --git a/x b/x\n",
    "truncated hunk": modified("x").replace(b"@@ -1 +1 @@", b"@@ -1,2 +1 @@"),
    "hunk longer than header": modified("x").replace(b"+b\n", b"+b\n+c\n"),
    "+++ names another file": modified("x").replace(b"+++ b/x", b"+++ b/.git/config"),
    "bad hunk line": modified("x").replace(b"-a\n", b"?a\n"),
    "blank line in hunk": modified("x").replace(b"-a\n", b"\n"),
    "--- without +++": b"diff --git a/x b/x\nindex " + BLOB.encode() + b".." + BLOB2.encode() + b" 100644\n--- a/x\n",
    "bad quoted escape": b'diff --git "a/\\q" "b/\\q"\nnew file mode 100644\n',
    "unterminated quote": b'diff --git "a/x b/x\nnew file mode 100644\n',
    "missing a/ prefix": modified("x").replace(b"diff --git a/x b/x", b"diff --git x x"),
    "new and deleted": added("x").replace(b"new file mode 100644", b"new file mode 100644\ndeleted file mode 100644"),
    "mode line not octal": added("x").replace(b"new file mode 100644", b"new file mode 10064x"),
    "combined diff": b"diff --cc x\n",
    "removed line in a new file": added("x").replace(b"+x\n", b"-x\n").replace(b"@@ -0,0 +1 @@", b"@@ -0,0 +0,0 @@"),
    "binary without data": b"diff --git a/x b/x\nindex " + BLOB.encode() + b".." + BLOB2.encode()
                           + b" 100644\nGIT binary patch\nliteral 5\n",
}


@pytest.mark.parametrize("patch", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_is_a_parse_error_and_the_guard_refuses_it(patch: bytes, tmp_path: Path) -> None:
    with pytest.raises(PatchParseError) as caught:
        parse_patch(patch)
    assert "\n" not in str(caught.value) and str(caught.value).startswith("unparseable patch")
    report = guard(patch, tmp_path)
    assert not report.ok and categories(report.refused) == {"parse"} and report.changes == []


def test_binary_literals_are_verified(tmp_path: Path) -> None:
    patch, repo = git_patch(tmp_path, {"img.bin": b"\x00" + bytes(range(256))},
                            edit({"img.bin": b"\x00" + bytes(range(255, -1, -1)), "new.bin": b"\x00\xff" * 50}))
    changes = {c.path: c for c in parse_patch(patch)}
    assert changes["img.bin"].binary and changes["new.bin"].binary and changes["new.bin"].kind == "added"
    report = guard(patch, repo)
    assert report.ok and flagged(report, "img.bin") == ["binary"] and flagged(report, "new.bin") == ["binary"]
    assert "binary" in describe(changes["new.bin"])

    lines = patch.split(b"\n")
    data_line = next(i for i, line in enumerate(lines) if line.startswith(b"literal ")) + 1
    corrupt = lines.copy()
    corrupt[data_line] = corrupt[data_line][:-1] + (b"#" if corrupt[data_line][-1:] != b"#" else b"$")
    with pytest.raises(PatchParseError, match="binary"):
        parse_patch(b"\n".join(corrupt))
    wrong_size = lines.copy()
    size = int(wrong_size[data_line - 1].split()[1])
    wrong_size[data_line - 1] = b"literal %d" % (size + 1)
    with pytest.raises(PatchParseError, match="declared size"):
        parse_patch(b"\n".join(wrong_size))


def test_binary_files_differ_without_data_is_still_flagged(tmp_path: Path) -> None:
    patch = (f"diff --git a/x.bin b/x.bin\nindex {BLOB}..{BLOB2} 100644\nBinary files a/x.bin and b/x.bin differ\n"
             ).encode()
    report = guard(patch, tmp_path)
    assert report.changes[0].binary and flagged(report, "x.bin") == ["binary"]


def test_renames_and_their_summary(tmp_path: Path) -> None:
    body = "".join(f"def f{i}():\n    return {i}\n" for i in range(10))
    patch, repo = git_patch(tmp_path, {"pkg/old.py": body},
                            edit({"pkg/new.py": body.replace("return 3", "return 33")}, remove=("pkg/old.py",)))
    (change,) = parse_patch(patch)
    assert (change.kind, change.old_path, change.new_path) == ("renamed", "pkg/old.py", "pkg/new.py")
    assert change.similarity is not None and 50 <= change.similarity < 100
    report = guard(patch, repo)
    assert report.ok
    assert summarize(report) == [f"renamed     pkg/old.py -> pkg/new.py ({change.similarity}% similar, +1 -1)"]


# ------------------------------------------------------------------------ refusals: paths


@pytest.mark.parametrize("path", ["../x", "a/../../x", "a/..", "/etc/passwd", "a//b", "./a", "a/./b",
                                  "..\\..\\x", "C:/x", "nul\x00byte"])
def test_paths_that_leave_the_repository_are_refused(path: str, tmp_path: Path) -> None:
    report = guard(added(path), tmp_path)
    assert not report.ok
    assert refused_paths(report, "path") == {path}


@pytest.mark.parametrize("path", [
    ".git/hooks/pre-commit", ".GIT/config", ".Git/HEAD", ".git./x", ".git /x", ".git. . /x",
    ".git::$INDEX_ALLOCATION/config", "GIT~1/config", "git~1/hooks/x", ".g\u200cit/x", ".gi\u200dt/x",
    "\u200e.git/x", ".git\ufeff/x", "sub/.git/config", ".git", "a\\.git\\config", "\uff0egit/x",
])
def test_every_spelling_of_dot_git_is_refused(path: str, tmp_path: Path) -> None:
    for patch in (added(path), modified(path)):
        report = guard(patch, tmp_path)
        assert refused_paths(report, "git dir") == {path}, path
        assert not report.ok


def test_deleting_or_renaming_out_of_dot_git_is_refused_too(tmp_path: Path) -> None:
    deletion = (f"diff --git a/.git/config b/.git/config\ndeleted file mode 100644\nindex {BLOB}..{ZERO}\n"
                "--- a/.git/config\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n").encode()
    rename = b"diff --git a/.GIT/hooks/x b/x\nsimilarity index 100%\nrename from .GIT/hooks/x\nrename to x\n"
    assert refused_paths(guard(deletion, tmp_path), "git dir") == {".git/config"}
    assert refused_paths(guard(rename, tmp_path), "git dir") == {".GIT/hooks/x"}


@pytest.mark.parametrize("path", [".github/x.yml", ".gitignore", ".gitkeep", "legit/x", "git~1x/y",
                                  ".git-blame-ignore-revs", "docs/.gitbook/x", "a.git/x"])
def test_names_that_only_resemble_dot_git_pass(path: str, tmp_path: Path) -> None:
    report = guard(added(path) + modified(path + "2"), tmp_path)
    assert report.ok and report.refused == []


def test_git_dotgit_rules_match_git() -> None:
    # Vectors from git's t0060 (is_ntfs_dotgit / is_hfs_dotgit).
    for name in [".git", ".GIT", ".git.", ".git ", ".git. .", "git~1", "GIT~1", ".git::$INDEX_ALLOCATION", ".git:x"]:
        assert is_ntfs_dotgit(name), name
    for name in [".gitfoo", "git~2", ".git~1", "gi", ".gi", "git~1x", ".git x"]:
        assert not is_ntfs_dotgit(name), name
    for name in [".git", ".GIT", ".g\u200cit", ".gi\u200dt", "\u200c.git", ".git\u200c", "\ufeff.git", ".g\u206ait"]:
        assert is_hfs_dotgit(name), name
    for name in [".gitfoo", ".g\u00e9it", ".git.", "git"]:
        assert not is_hfs_dotgit(name), name


def test_a_path_changed_twice_is_refused(tmp_path: Path) -> None:
    report = guard(modified("x") + modified("x", "b", "c"), tmp_path)
    assert refused_paths(report, "path") == {"x"}


@pytest.mark.parametrize("mode", ["100664", "020644", "040000", "100600"])
def test_unknown_modes_are_refused(mode: str, tmp_path: Path) -> None:
    report = guard(added("dev", mode=mode), tmp_path)
    assert [(f.path, f.category) for f in report.refused] == [("dev", "mode")]
    assert mode in report.refused[0].reason


def test_a_patch_without_modes_is_refused(tmp_path: Path) -> None:
    # A plain unified diff (no `new file mode`, no `index ... mode`) cannot say whether it writes a symlink.
    patch = b"diff --git a/x b/x\n--- /dev/null\n+++ b/x\n@@ -0,0 +1 @@\n+x\n"
    (change,) = parse_patch(patch)
    assert change.kind == "added" and change.new_mode is None
    report = guard(patch, tmp_path)
    assert categories(report.refused) == {"mode"}


# ------------------------------------------------------------------------ refusals: symlinks


def test_writing_through_a_symlink_in_the_real_tree_is_refused(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    os.symlink("/etc", repo / "link")
    (repo / "dir").mkdir()
    os.symlink("../dir", repo / "dir" / "inner")  # points inside the repo, still never written through
    deletion = (f"diff --git a/link/hosts b/link/hosts\ndeleted file mode 100644\nindex {BLOB}..{ZERO}\n"
                "--- a/link/hosts\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n").encode()
    patch = modified("link/passwd", "root:x:0:0", "root::0:0") + added("link/cron.d/evil") + deletion \
        + added("dir/inner/x")
    report = guard(patch, repo)
    assert not report.ok
    assert refused_paths(report, "symlink") == {"link/passwd", "link/cron.d/evil", "link/hosts", "dir/inner/x"}
    assert any("written through link" in f.reason for f in report.refused if f.path == "link/passwd")
    assert any("written through dir/inner" in f.reason for f in report.refused if f.path == "dir/inner/x")


def test_writing_through_a_symlink_the_patch_creates_is_refused(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    report = guard(symlink("d", "sub") + added("d/x"), tmp_path)
    assert [f.path for f in report.refused] == ["d/x"]
    assert "symlink this patch creates" in report.refused[0].reason


def test_a_directory_replaced_by_an_inside_symlink_is_allowed(tmp_path: Path) -> None:
    # git shows it as "delete d/x, add the link d": the deletion happens in the real directory, not through the
    # new link, so only writes below a link the patch creates are refused.
    patch, repo = git_patch(tmp_path, {"d/x": "x\n", "sub/y": "y\n"}, edit({"d": Link("sub")}, remove=("d/x",)))
    assert [(c.kind, c.path) for c in parse_patch(patch)] == [("added", "d"), ("deleted", "d/x")]
    report = guard(patch, repo)
    assert report.ok, report.refused
    refused = guard(patch + added("D/y"), repo)  # case-folding filesystems would write through the new link
    assert refused_paths(refused, "symlink") == {"D/y"}


@pytest.mark.parametrize("path,target", [("l", "../../x"), ("a/b/l", "../../../x"), ("l", "/etc/passwd"),
                                         ("l", "a/../../x"), ("hooks", ".git/hooks"), ("l", "..\\..\\x"),
                                         ("l", "sub/../.GIT/config")])
def test_new_symlinks_pointing_outside_or_into_dot_git_are_refused(path: str, target: str, tmp_path: Path) -> None:
    report = guard(symlink(path, target), tmp_path)
    assert refused_paths(report, "symlink") == {path}
    assert report.changes[0].symlink_target == target


@pytest.mark.parametrize("path,target", [("l", "README.md"), ("a/b/l", "../../x"), ("a/l", "."), ("l", "missing/file")])
def test_new_symlinks_inside_the_repository_are_allowed(path: str, target: str, tmp_path: Path) -> None:
    report = guard(symlink(path, target), tmp_path)
    assert report.ok, report.refused
    assert summarize(report) == [f"added       {path} (symlink -> {target}, +1 -0)"]


def test_a_symlink_target_the_patch_does_not_show_completely_is_refused(tmp_path: Path) -> None:
    # Without "\\ No newline at end of file" the new side may go on past the hunk: the target is unknown.
    patch = (f"diff --git a/l b/l\nindex {BLOB}..{BLOB2} 120000\n--- a/l\n+++ b/l\n@@ -1 +1 @@\n-a\n+b\n").encode()
    (change,) = parse_patch(patch)
    assert change.symlink_target is None
    report = guard(patch, tmp_path)
    assert [(f.path, f.category) for f in report.refused] == [("l", "symlink")]
    assert "does not show" in report.refused[0].reason


def test_symlink_chains_through_the_real_tree_are_followed(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    os.symlink("..", repo / "up")  # already in the tree: points at the repository's parent
    report = guard(symlink("x", "up/secret") + symlink("y", "missing/../up/secret") + symlink("z", "docs/../up"),
                   repo)
    assert refused_paths(report, "symlink") == {"x", "y", "z"}
    assert all("outside the repository" in f.reason for f in report.refused)


def test_symlink_chains_through_the_patch_are_followed(tmp_path: Path) -> None:
    report = guard(symlink("a", "b/..") + symlink("b", "..") + symlink("loop1", "loop2/x") + symlink("loop2", "loop1"),
                   tmp_path)
    assert {"a", "b"} <= refused_paths(report, "symlink")
    assert any(f.path == "loop1" and "loop" in f.reason for f in report.refused)


def test_a_renamed_symlink_that_now_escapes_is_refused(tmp_path: Path) -> None:
    # `d/e/l -> ../../top.txt` stays inside; moved to the root the same target climbs out. git prints a pure
    # rename without a mode, so the guard reads the link from the real tree.
    patch, repo = git_patch(tmp_path, {"top.txt": "t\n", "d/e/l": Link("../../top.txt")},
                            edit({"l": Link("../../top.txt")}, remove=("d/e/l",)))
    (change,) = parse_patch(patch)
    assert (change.kind, change.old_mode, change.symlink_target) == ("renamed", None, None)
    report = guard(patch, repo)
    assert refused_paths(report, "symlink") == {"l"}


def test_a_symlink_retargeted_outside_is_refused(tmp_path: Path) -> None:
    patch, repo = git_patch(tmp_path, {"a.txt": "a\n", "l": Link("a.txt")}, edit({"l": Link("../outside")}))
    (change,) = parse_patch(patch)
    assert (change.kind, change.new_mode, change.symlink_target) == ("modified", "120000", "../outside")
    assert refused_paths(guard(patch, repo), "symlink") == {"l"}


def test_an_in_tree_symlink_edited_as_a_file_is_refused(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "real.txt").write_text("a\n")
    os.symlink("real.txt", repo / "cfg")
    report = guard(modified("cfg", "a", "b"), repo)
    assert [(f.path, f.reason) for f in report.refused] == [("cfg", "in-tree symlink edited as a file")]


def test_a_symlink_turned_into_a_file_by_git_is_allowed(tmp_path: Path) -> None:
    patch, repo = git_patch(tmp_path, {"real.txt": "a\n", "cfg": Link("real.txt")},
                            edit({"cfg": "now a file\n"}, remove=("cfg",)))
    kinds = [(c.kind, c.old_mode, c.new_mode) for c in parse_patch(patch)]
    assert kinds == [("deleted", "120000", None), ("added", None, "100644")]
    report = guard(patch, repo)
    assert report.ok, report.refused


# ------------------------------------------------------------------------ flags


def test_new_executables_and_chmod_x_are_flagged(tmp_path: Path) -> None:
    patch, repo = git_patch(tmp_path, {"tool.sh": "echo\n"},
                            edit({"tool.sh": Exe(b"echo\n"), "bin/new": Exe(b"#!/bin/sh\nrm -rf ~\n")}))
    report = guard(patch, repo)
    assert report.ok
    reasons = {f.path: (f.category, f.reason) for f in report.flagged}
    assert reasons == {"bin/new": ("executable", "new executable file"), "tool.sh": ("executable", "made executable")}
    assert "added       bin/new (+2 -0, executable)" in summarize(report)
    assert "mode change tool.sh (mode 100644 -> 100755)" in summarize(report)


def test_gitattributes_filter_is_flagged_not_refused(tmp_path: Path) -> None:
    patch, repo = git_patch(tmp_path, {"a.txt": "a\n"},
                            edit({".gitattributes": "* filter=evil\n", "sub/.gitattributes": "*.py diff=x\n"}))
    report = guard(patch, repo)
    assert report.ok
    assert flagged(report, ".gitattributes") == ["runs code"] and flagged(report, "sub/.gitattributes") == ["runs code"]
    assert "filter" in report.flagged[0].reason


def test_gitlinks_are_flagged_not_refused(tmp_path: Path) -> None:
    def add_submodule(repo: Path) -> None:
        head = run_git(repo, "rev-parse", "HEAD").decode().strip()
        run_git(repo, "update-index", "--add", "--cacheinfo", f"160000,{head},vendor/lib")

    patch, repo = git_patch(tmp_path, {"a.txt": "a\n"}, add_submodule, add_all=False)
    (change,) = parse_patch(patch)
    assert (change.kind, change.new_mode, change.path) == ("added", "160000", "vendor/lib")
    report = guard(patch, repo)
    assert report.ok
    assert flagged(report, "vendor/lib") == ["runs code"] and "submodule" in report.flagged[0].reason
    assert "submodule" in summarize(report)[0]


@pytest.mark.parametrize("path", [
    ".gitattributes", "deep/dir/.gitattributes", ".GitAttributes", ".gitattributes.", "gi7d29~1", ".gitmodules",
    "GITMOD~1", ".github/workflows/ci.yml", ".gitlab-ci.yml", ".circleci/config.yml", "azure-pipelines.yml",
    "Jenkinsfile", ".travis.yml", ".husky/pre-commit", ".githooks/pre-push", ".pre-commit-config.yaml", ".envrc",
    ".vscode/tasks.json", ".devcontainer/devcontainer.json", ".idea/workspace.xml", "Makefile", "makefile",
    "GNUmakefile", "rules.mk", "package.json", "web/package.json", "setup.py", "setup.cfg", "pyproject.toml",
    "tests/conftest.py", "tox.ini", "noxfile.py", "Cargo.toml", "build.rs", "build.gradle.kts", "pom.xml",
    "CMakeLists.txt", "Dockerfile", "Dockerfile.dev", "docker-compose.override.yml", ".npmrc", ".pypirc",
    "AGENTS.md", "CLAUDE.md", ".cursorrules", ".cursor/rules/x.mdc", ".github/copilot-instructions.md",
    ".aider.conf.yml", ".smol/policy.toml", ".env", ".env.local",
    # standard-library names where they come first on sys.path: they replace the module for pytest itself
    "argparse.py", "json.py", "Inspect.py", "json/__init__.py", "src/argparse.py", "tests/argparse.py",
    "test/dataclasses.py", "logging/handlers.py",
])
def test_files_that_run_code_or_steer_agents_are_flagged(path: str, tmp_path: Path) -> None:
    report = guard(added(path), tmp_path)
    assert report.ok
    assert flagged(report, path) == ["runs code"], runs_code_reason(path)


@pytest.mark.parametrize("path", ["src/app.py", "README.md", "docs/makefile.md", "environment.py", "tests/test_x.py",
                                  "myapp/types.py", "src/myapp/logging.py", "docs/json.md", "_argparse.py"])
def test_ordinary_files_are_not_flagged(path: str, tmp_path: Path) -> None:
    report = guard(added(path), tmp_path)
    assert report.ok and report.flagged == []


def test_size_caps_flag_but_never_truncate(tmp_path: Path) -> None:
    patch = added("a.txt") + added("b.txt") + added("c.txt")
    report = guard(patch, tmp_path, max_bytes=len(patch) - 1, max_files=2)
    assert report.ok
    assert [(f.path, f.category) for f in report.flagged] == [("", "size"), ("", "size")]
    assert [c.path for c in report.changes] == ["a.txt", "b.txt", "c.txt"]
    assert len(summarize(report)) == 3
    within = guard(patch, tmp_path, max_bytes=len(patch), max_files=3)
    assert within.flagged == []


# ------------------------------------------------------------------------ terminal safety


def test_sanitize_neutralises_escapes_controls_and_bidi() -> None:
    text = "a\x1b[31mred\x1b]0;title\x07\x9b2J\rb\x7f\u202eevil\u2066x\u2069\u200f\u061c\x00\n\tend"
    clean = sanitize_for_terminal(text)
    assert clean == ("a\\x1b[31mred\\x1b]0;title\\x07\\x9b2J\\x0db\\x7f\\u202eevil\\u2066x\\u2069\\u200f\\u061c"
                     "\\x00\n\tend")
    assert sanitize_for_terminal("a\nb\tc", single_line=True) == "a\\x0ab\\x09c"
    assert sanitize_for_terminal("caf\udce9") == "caf\\xe9"
    assert sanitize_for_terminal("plain ünïcode ✓") == "plain ünïcode ✓"


def test_control_and_bidi_characters_in_names_and_content(tmp_path: Path) -> None:
    name = "evil\x1b[2J\u202etxt.py"
    patch, repo = git_patch(tmp_path, {"a.txt": "a\n"},
                            edit({name: "x = 1  # \u202e } \u2066 \x1b]8;;http://x\x07\n", "new\nline": "n\n"}))
    assert b"\x1b" not in patch.split(b"\n")[0]  # git quotes control characters in names
    changes = {c.path: c for c in parse_patch(patch)}
    assert set(changes) == {name, "new\nline"}
    report = guard(patch, repo)
    assert report.ok
    assert flagged(report, name) == ["name"] and flagged(report, "new\nline") == ["name"]
    lines = summarize(report)
    assert "added       evil\\x1b[2J\\u202etxt.py (+1 -0)" in lines
    assert "added       new\\x0aline (+1 -0)" in lines
    for line in lines:
        assert not any(ch in line for ch in "\x1b\n\r\u202e\u2066"), line
    shown = [sanitize_for_terminal(line) for line in patch.decode("utf-8", "surrogateescape").split("\n")]
    assert any("\\u202e" in line and "\\x1b]8" in line for line in shown)
    assert not any("\x1b" in line or "\u202e" in line for line in shown)


def test_non_utf8_file_names(tmp_path: Path) -> None:
    name = os.fsdecode(b"caf\xe9.txt")
    patch, repo = git_patch(tmp_path, {name: "a\n"}, edit({name: "b\n", os.fsdecode(b"\xff\xfe/n.txt"): "n\n"}))
    assert b'"a/caf\\351.txt"' in patch  # octal-quoted by git
    changes = {c.path: c for c in parse_patch(patch)}
    assert changes[name].kind == "modified" and os.fsencode(changes[name].path) == b"caf\xe9.txt"
    assert (repo / changes[name].path).read_bytes() == b"a\n"  # the decoded name is the real file's name
    report = guard(patch, repo)
    assert report.ok and report.flagged == []
    assert "modified    caf\\xe9.txt (+1 -1)" in summarize(report)
    assert "added       \\xff\\xfe/n.txt (+1 -0)" in summarize(report)


def test_quoted_and_unquoted_spellings_of_a_name_agree(tmp_path: Path) -> None:
    quoted = (b'diff --git "a/.g\\342\\200\\214it/x" "b/.g\\342\\200\\214it/x"\nnew file mode 100644\n'
              b'index ' + ZERO.encode() + b".." + BLOB.encode() + b'\n--- /dev/null\n+++ "b/.g\\342\\200\\214it/x"\n'
              b"@@ -0,0 +1 @@\n+x\n")
    (change,) = parse_patch(quoted)
    assert change.path == ".g\u200cit/x" == parse_patch(added(".g\u200cit/x"))[0].path
    assert refused_paths(guard(quoted, tmp_path), "git dir") == {".g\u200cit/x"}


def test_describe_covers_every_kind() -> None:
    assert describe(FileChange("a", None, "deleted", "100644", None, removed_lines=2)) == "deleted     a (+0 -2)"
    assert describe(FileChange("s", "s", "mode_change", "100755", "100644")) == \
        "mode change s (mode 100755 -> 100644)"
    assert describe(FileChange(None, "l", "added", None, "120000", symlink_target="t\x1b")) == \
        "added       l (symlink -> t\\x1b)"
    assert describe(FileChange("a", "b", "copied", None, None, similarity=100)) == "copied      a -> b (100% similar)"


# ------------------------------------------------------------------------ line counts


TRICKY_BASE = "keep\n-- a SQL comment\n--- a/fake\n++ counter\nend\n"
TRICKY_NEW = "keep\n++x\n+++ b/fake\n@@ -1 +1 @@\ndiff --git a/x b/x\nend\n"


def test_content_lines_that_look_like_headers_are_counted(tmp_path: Path) -> None:
    # Removed `-- a SQL comment` is `--- a SQL comment` in the patch and added `++x` is `+++x`: inside a hunk
    # every line starting with + or - is content, whatever follows the marker.
    patch, repo = git_patch(tmp_path, {"q.sql": TRICKY_BASE}, edit({"q.sql": TRICKY_NEW}))
    assert b"\n--- a SQL comment\n" in patch and b"\n+++x\n" in patch and b"\n---- a/fake\n" in patch
    (change,) = parse_patch(patch)
    assert (change.added_lines, change.removed_lines) == (4, 3)
    assert summarize(guard(patch, repo)) == ["modified    q.sql (+4 -3)"]


def test_line_counts_follow_hunk_structure(tmp_path: Path) -> None:
    base: Files = {"q.sql": TRICKY_BASE, "gone.txt": "--- x\n-- y\n", "blob.bin": b"\x00\x01" * 50}
    change = edit({"q.sql": TRICKY_NEW, "new.txt": "+++ b/new.txt\n++ z\n", "blob.bin": b"\x00\x02" * 50},
                  remove=("gone.txt",))
    patch, _ = git_patch(tmp_path, base, change)
    counts = {count.path: count for count in line_counts(patch)}
    assert set(counts) == {"q.sql", "gone.txt", "new.txt", "blob.bin"}
    assert (counts["q.sql"].added, counts["q.sql"].removed, counts["q.sql"].binary) == (4, 3, False)
    assert (counts["gone.txt"].added, counts["gone.txt"].removed) == (0, 2)
    assert (counts["new.txt"].added, counts["new.txt"].removed) == (2, 0)
    assert counts["blob.bin"].binary and (counts["blob.bin"].added, counts["blob.bin"].removed) == (0, 0)
    # The same numbers as the strict parser, which checks every hunk against its header.
    assert [(c.added_lines, c.removed_lines) for c in parse_patch(patch)] == \
        [(count.added, count.removed) for count in line_counts(patch)]


def test_line_counts_never_raise() -> None:
    # Unlike parse_patch, the counts are for display (`smol run` summaries): a malformed patch still counts.
    assert line_counts(b"") == []
    assert line_counts(b"not a patch\n+x\n") == []
    counts = line_counts(b"diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n+c")
    assert [(c.path, c.added, c.removed) for c in counts] == [("x", 2, 1)]
    quoted = line_counts(b'diff --git "a/sp ace\\t" "b/sp ace\\t"\n--- "a/sp ace\\t"\n+++ "b/sp ace\\t"\n'
                         b"@@ -1 +1 @@\n-a\n+b\n")
    assert [(c.path, c.added, c.removed) for c in quoted] == [("sp ace\t", 1, 1)]
