"""Which files a patch names: quoted names, `a/`/`b/` prefixes, rename/copy headers, forged and missing names.

The guard judges the paths parse_patch returns, while `git apply` writes the paths it reads itself. So every name
git can write must be read exactly as git reads it (or a legitimate change is refused, or worse, judged under a
different name), and every block whose names disagree, are missing or are half-written must be refused: otherwise
a reviewer and a tool could each read a different path out of one block. Refusals point at the offending block's
`diff --git` line, so a user can find it in a patch of many files.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from runner.promote.guard import PatchParseError, guard, parse_patch
from tests.test_guard import BLOB, BLOB2, ZERO, Exe, Files, added, categories, edit, git_patch, modified, run_git


def moves(patch: bytes) -> set[tuple[str, str | None, str | None]]:
    return {(c.kind, c.old_path, c.new_path) for c in parse_patch(patch)}


def unquoted_patch(repo: Path) -> bytes:
    """The change git_patch committed, as git prints it with core.quotePath=false (raw bytes above 0x7f)."""
    return run_git(repo, "-c", "core.quotePath=false", "diff", "--binary", "--full-index", "-M", "HEAD", "ORIG_HEAD")


def refusal(patch: bytes) -> str:
    with pytest.raises(PatchParseError) as caught:
        parse_patch(patch)
    return str(caught.value)


def content(tag: str) -> str:
    """Distinct content per file, long enough that git pairs each rename with its own source."""
    return "".join(f"{tag} line {i}\n" for i in range(12))


# ------------------------------------------------------------------------ names git writes, read as git reads them


def test_renames_between_quoted_and_plain_names_keep_both_names(tmp_path: Path) -> None:
    # git quotes only the side that needs it: `diff --git "a/caf\351\tx" b/renamed` and
    # `diff --git a/plain "b/tab\tend "` (a quoted name ending in a space: its closing quote follows a space).
    # The rename lines are quoted the same way and must decode to the same names.
    base: Files = {"caf\udce9\tx": content("a"), "plain": content("b")}
    change = edit({"renamed": content("a"), "tab\tend ": content("b")}, remove=("caf\udce9\tx", "plain"))
    patch, _ = git_patch(tmp_path, base, change)
    assert b'diff --git "a/caf\\351\\tx" b/renamed\n' in patch
    assert b'diff --git a/plain "b/tab\\tend "\n' in patch
    assert moves(patch) == {("renamed", "caf\udce9\tx", "renamed"), ("renamed", "plain", "tab\tend ")}


def test_names_containing_b_slash_are_split_where_git_split_them(tmp_path: Path) -> None:
    # Unquoted names may contain spaces, so `diff --git a/p b/q b/p b/q` is only readable because git writes the
    # same name twice. A mode change has no other line naming the file: the header alone must give "p b/q".
    # Renames out of "s b/t" (two ` b/`) and "p B/q" (a capital B is no separator) must keep their names.
    base: Files = {"p b/q": content("p"), "s b/t": content("s"), "p B/q": content("P")}
    change = edit({"p b/q": Exe(content("p").encode()), "u": content("s"), "r": content("P")},
                  remove=("s b/t", "p B/q"))
    patch, repo = git_patch(tmp_path, base, change)
    assert b"diff --git a/p b/q b/p b/q\nold mode 100644\nnew mode 100755\n" in patch
    assert moves(patch) == {("mode_change", "p b/q", "p b/q"), ("renamed", "s b/t", "u"), ("renamed", "p B/q", "r")}
    assert guard(patch, repo).ok


def test_non_utf8_names_printed_raw_are_read_byte_for_byte(tmp_path: Path) -> None:
    # With core.quotePath=false git prints bytes above 0x7f raw, inside quotes too ("caf\xe9\tx" still needs them
    # for its tab) and in an unquoted header that only the rename lines can split. git apply reads both.
    base: Files = {"caf\udce9\tx": content("q"), "p b/caf\udce9": content("r")}
    change = edit({"caf\udce9\tx": content("q") + "more\n", "r b/s": content("r")}, remove=("p b/caf\udce9",))
    _, repo = git_patch(tmp_path, base, change)
    patch = unquoted_patch(repo)
    assert b'diff --git "a/caf\xe9\\tx" "b/caf\xe9\\tx"\n' in patch
    assert b"diff --git a/p b/caf\xe9 b/r b/s\n" in patch
    assert moves(patch) == {("modified", "caf\udce9\tx", "caf\udce9\tx"), ("renamed", "p b/caf\udce9", "r b/s")}
    assert {os.fsencode(c.path) for c in parse_patch(patch)} == {b"caf\xe9\tx", b"r b/s"}


def test_an_unquoted_name_ends_at_its_first_tab() -> None:
    # git quotes every name with a tab, so in an unquoted `---`/`+++` name a tab ends the name and whatever
    # follows (a timestamp, or more tab-separated junk) is not part of it - as git apply reads it.
    patch = modified("x").replace(b"--- a/x\n", b"--- a/x\t2026-01-01 00:00:00\tjunk\n")
    assert moves(patch) == {("modified", "x", "x")}


# ------------------------------------------------------------------------ forged or half-written names: refused

GOOD = modified("ok.txt")
"""A clean block in front of the forged one: the refusal must point at the forged block, not at the patch's end."""
FORGED_AT = GOOD.count(b"\n") + 1


def block(header: str, *lines: str, hunk: bool = True, old: str = "x", new: str = "x") -> bytes:
    """GOOD, then one hand-built block: `diff --git` line, extended headers and (unless hunk=False) a one-line edit."""
    body = "".join(f"{line}\n" for line in lines)
    if hunk:
        body += f"--- {old}\n+++ {new}\n@@ -1 +1 @@\n-a\n+b\n"
    return GOOD + f"diff --git {header}\n{body}".encode("utf-8", "surrogateescape")


def rename(old: str, new: str, *extra: str, header: str | None = None) -> bytes:
    lines = [*extra, "similarity index 90%", f"rename from {old}", f"rename to {new}", f"index {BLOB}..{BLOB2} 100644"]
    return block(header or f"a/{old} b/{new}", *lines, old=f"a/{old}", new=f"b/{new}")


INDEX = f"index {BLOB}..{BLOB2} 100644"
NEW_Y = b"--- /dev/null\n+++ b/y\n@@ -0,0 +1 @@\n+b\n"
GONE_X = b"--- a/x\n+++ /dev/null\n@@ -1 +0,0 @@\n-a\n"
FORGED = {
    # Half a rename or copy: with the other half ignored, the block would pass as an edit of x while
    # git apply reads the `rename from` (or `copy to`) name.
    "lone rename from": (block("a/x b/x", "rename from .git/config", INDEX, old="a/x", new="b/x"), "rename to"),
    "lone rename to": (block("a/x b/x", "rename to .git/config", INDEX, old="a/x", new="b/x"), "rename from"),
    "lone copy from": (block("a/x b/x", "copy from .git/config", INDEX, old="a/x", new="b/x"), "copy to"),
    "lone copy to": (block("a/x b/x", "copy to .git/config", INDEX, old="a/x", new="b/x"), "copy from"),
    "rename and copy": (rename("x", "y", "copy from x", "copy to y"), "copy"),
    # A rename/copy source must exist: a new file has none, a deleted file has no target.
    "rename of a new file": (block("a/x b/y", "new file mode 100644", "rename from x", "rename to y",
                                   f"index {ZERO}..{BLOB}", hunk=False) + NEW_Y,
                             "rename"),
    "copy of a deleted file": (block("a/x b/y", "deleted file mode 100644", "copy from x", "copy to y",
                                     f"index {BLOB}..{ZERO}", hunk=False) + GONE_X,
                               "copy"),
    # A similarity index belongs to a rename or copy; on a plain edit it hides what the block is.
    "similarity without a rename": (block("a/x b/x", "similarity index 90%", INDEX, old="a/x", new="b/x"),
                                    "similarity"),
    "dissimilarity without a rename": (block("a/x b/x", "dissimilarity index 60%", INDEX, old="a/x", new="b/x"),
                                       "similarity"),
    "similarity over 100%": (rename("x", "y").replace(b"similarity index 90%", b"similarity index 101%"), "similarity"),
    # A quoted rename name with an escape git never writes cannot be read at all.
    "bad escape in rename from": (rename("x", "y").replace(b"rename from x", b'rename from "\\q"'), "\\q"),
    # Each side named twice, differently: git apply would read one name and the guard the other.
    "rename from names another file": (rename("x", "y").replace(b"rename from x", b"rename from .git/config"), None),
    "rename to names another file": (rename("x", "y").replace(b"rename to y", b"rename to .git/config"), None),
    "edit whose sides differ": (block("a/x b/y", INDEX, old="a/x", new="b/y"), None),
    "--- names another file": (block("a/x b/x", INDEX, old="a/.git/config", new="b/x"), None),
    # A header git cannot have written for the names the other lines give.
    "unsplittable header, no other names": (block("a/p b/q b/r b/s", "old mode 100644", "new mode 100755",
                                                  hunk=False), None),
    "unsplittable header disagrees": (rename("p b/q", "r b/s", header="a/p b/q b/x b/r b/s"), None),
    "rename to an empty name": (block("a/x b/", "similarity index 100%", "rename from x", 'rename to ""', hunk=False),
                                "b/"),
    "header without the a/ prefix": (block("zzx b/x", INDEX, old="a/x", new="b/x"), "a/"),
    "header without a separating space": (block("a/xzb/x", INDEX, old="a/x", new="b/x"), None),
    "--- without the a/ prefix": (block("a/x b/x", INDEX, old="zzx", new="b/x"), "a/"),
    "name that is only the prefix": (block("a/ b/", "old mode 100644", "new mode 100755", hunk=False), "a/"),
    # A block must change something: an index line whose mode is the same on both sides is no mode change.
    "changes nothing": (block("a/x b/x", INDEX, hunk=False), None),
}


@pytest.mark.parametrize(("patch", "names"), FORGED.values(), ids=FORGED.keys())
def test_forged_names_are_refused_at_their_block(patch: bytes, names: str | None, tmp_path: Path) -> None:
    message = refusal(patch)
    # The refusal points at a line of the forged block (its header, or the `---` line it could not read) and
    # shows that line ...
    cited = re.match(r"unparseable patch at line (\d+) \((.*)\): (.*)$", message)
    assert cited is not None, message
    number, shown, reason = int(cited.group(1)), cited.group(2), cited.group(3)
    assert number >= FORGED_AT and patch.split(b"\n")[number - 1].decode()[:40] in shown, message
    # ... and, where one header is missing, wrong or unreadable, the reason names it (the fix).
    if names is not None:
        assert names in reason, message
    report = guard(patch, tmp_path)
    assert not report.ok and categories(report.refused) == {"parse"} and report.changes == []


def test_clean_blocks_around_the_forged_ones_pass() -> None:
    # The table above is only meaningful if its scaffolding is valid: the clean block, a correct rename and a
    # correct mode change built the same way parse.
    assert moves(GOOD) == {("modified", "ok.txt", "ok.txt")}
    assert moves(rename("x", "y")) == {("modified", "ok.txt", "ok.txt"), ("renamed", "x", "y")}
    assert moves(block("a/x b/x", "old mode 100644", "new mode 100755", hunk=False)) == \
        {("modified", "ok.txt", "ok.txt"), ("mode_change", "x", "x")}
    assert moves(added("new")) == {("added", None, "new")}
