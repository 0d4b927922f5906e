"""The strict reader of a sandbox's git patch: every file change, or PatchParseError.

The sandbox hands back `git diff-tree -p --binary --full-index -M`. Anything git would not have produced - a
malformed header, a hunk whose line counts disagree with its header, names that disagree between headers, a corrupt
binary literal - raises `PatchParseError`: a patch we cannot read completely is a patch we cannot review. The reader
is our own rather than `git apply --numstat --summary`: git prints no symlink targets or per-line structure there,
accepts unified diffs with prose around them, and its errors would not name the offending line of this patch.
Binary hunks are inflated in bounded steps, so a zlib bomb cannot allocate its declared size.
"""

from __future__ import annotations

import base64
import re
import zlib
from dataclasses import dataclass, field

from runner.promote.patchmodel import SYMLINK, ChangeKind, FileChange, PatchParseError
from runner.promote.patchnames import file_line_name, header_name, split_git_header
from runner.textsafe import one_line as _show

_EXTENDED_HEADERS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("old_mode", re.compile(r"old mode ([0-7]{6})")),
    ("new_mode", re.compile(r"new mode ([0-7]{6})")),
    ("deleted_file_mode", re.compile(r"deleted file mode ([0-7]{6})")),
    ("new_file_mode", re.compile(r"new file mode ([0-7]{6})")),
    ("rename_from", re.compile(r"rename from (.+)")),
    ("rename_to", re.compile(r"rename to (.+)")),
    ("copy_from", re.compile(r"copy from (.+)")),
    ("copy_to", re.compile(r"copy to (.+)")),
    ("similarity", re.compile(r"similarity index (\d{1,3})%")),
    ("dissimilarity", re.compile(r"dissimilarity index (\d{1,3})%")),
    ("index", re.compile(r"index ([0-9a-f]{7,64})\.\.([0-9a-f]{7,64})(?: ([0-7]{6}))?")),
)
_HUNK_HEADER = re.compile(rb"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@(.*)")
_BINARY_HUNK = re.compile(rb"(literal|delta) (\d+)")
_BINARY_DIFFER = re.compile(rb"Binary files .+ and .+ differ")
_KEEP_LITERAL_BYTES = 64 * 1024
"""Binary literals up to this size are kept while verifying them (a binary-encoded symlink target needs it)."""


def _snippet(line: bytes) -> str:
    text = line.decode("utf-8", "surrogateescape")
    return repr(_show(text[:60] + ("…" if len(text) > 60 else "")))


@dataclass
class _Hunk:
    old_start: int
    old_count: int
    new_start: int
    new_count: int
    new_lines: list[bytes] = field(default_factory=list)
    new_ends_without_newline: bool = False


class _Parser:
    def __init__(self, patch: bytes) -> None:
        if patch and not patch.endswith(b"\n"):
            raise PatchParseError("unparseable patch: it does not end with a newline (truncated, or not a git patch)")
        # Split on \n only: \r, form feeds and the other characters str.splitlines() breaks on are content.
        self.lines = patch.split(b"\n")[:-1] if patch else []
        self.pos = 0

    def fail(self, message: str, line: int | None = None) -> PatchParseError:
        number = self.pos if line is None else line
        where = f"line {number + 1}" if number < len(self.lines) else "end of patch"
        shown = f" ({_snippet(self.lines[number])})" if number < len(self.lines) else ""
        return PatchParseError(_show(f"unparseable patch at {where}{shown}: {message}"))

    def current(self) -> bytes | None:
        return self.lines[self.pos] if self.pos < len(self.lines) else None

    def text(self) -> str:
        return self.lines[self.pos].decode("utf-8", "surrogateescape")

    def parse(self) -> list[FileChange]:
        changes = []
        while self.pos < len(self.lines):
            changes.append(self.block())
        return changes

    def block(self) -> FileChange:
        start = self.pos
        header = self.text()
        if not header.startswith("diff --git "):
            raise self.fail("expected a `diff --git` header")
        try:
            header_names = split_git_header(header[len("diff --git "):])
        except ValueError as error:
            raise self.fail(str(error)) from None
        self.pos += 1

        headers: dict[str, re.Match[str]] = {}
        while (line := self.current()) is not None:
            text = line.decode("utf-8", "surrogateescape")
            for key, pattern in _EXTENDED_HEADERS:
                match = pattern.fullmatch(text)
                if match:
                    if key in headers:
                        raise self.fail(f"repeated `{key.replace('_', ' ')}` header")
                    headers[key] = match
                    break
            else:
                break
            self.pos += 1

        old_mode, new_mode, is_new, is_deleted = self.modes(headers, start)
        collect = new_mode == SYMLINK

        minus: str | None = None
        plus: str | None = None
        has_file_lines = False
        hunks: list[_Hunk] = []
        binary = False
        literal: bytes | None = None
        added = removed = 0
        line = self.current()
        if line is not None and line.startswith(b"--- "):
            has_file_lines = True
            try:
                minus = file_line_name(self.text()[4:], "a/")
                self.pos += 1
                if not (self.current() or b"").startswith(b"+++ "):
                    raise self.fail("`---` line without a `+++` line")
                plus = file_line_name(self.text()[4:], "b/")
            except ValueError as error:
                raise self.fail(str(error)) from None
            self.pos += 1
            while (self.current() or b"").startswith(b"@@ "):
                hunk, hunk_added, hunk_removed = self.hunk(collect)
                hunks.append(hunk)
                added += hunk_added
                removed += hunk_removed
            if not hunks:
                raise self.fail("`---`/`+++` lines without a hunk")
        elif line == b"GIT binary patch":
            binary = True
            self.pos += 1
            literal = self.binary_hunk(keep=collect)
            if _BINARY_HUNK.fullmatch(self.current() or b""):
                self.binary_hunk(keep=False)  # the reverse hunk, verified and dropped
        elif line is not None and _BINARY_DIFFER.fullmatch(line):
            binary = True
            self.pos += 1
        line = self.current()
        if line is not None and not line.startswith(b"diff --git "):
            raise self.fail("unexpected line in a diff block")

        if has_file_lines:
            if (is_new and minus is not None) or (is_deleted and plus is not None):
                raise self.fail("the `---`/`+++` lines disagree with the file being new or deleted", start)
            if minus is None and plus is None:
                raise self.fail("both sides of the diff are /dev/null", start)
            # Without a `new file mode`/`deleted file mode` header (plain unified diffs), /dev/null decides;
            # a mode for the missing side would then contradict it.
            if (minus is None and not is_new and old_mode is not None) or \
                    (plus is None and not is_deleted and new_mode is not None):
                raise self.fail("a file mode for a side that is /dev/null", start)
            is_new = is_new or minus is None
            is_deleted = is_deleted or plus is None
        old_path, new_path, kind, similarity = self.names(headers, header_names, minus, plus, is_new, is_deleted,
                                                          bool(hunks) or binary, old_mode, new_mode, start)
        # The hunks' old/new counts include context lines: a new file has no old line at all, not even as context
        # (git: "new file depends on old contents"), and a deleted file no new line (git: "still has contents").
        if is_new and any(hunk.old_count for hunk in hunks):
            raise self.fail("a new file with removed or context lines", start)
        if is_deleted and any(hunk.new_count for hunk in hunks):
            raise self.fail("a deleted file with added or context lines", start)

        target: str | None = None
        if new_mode == SYMLINK and not is_deleted:
            target = self.symlink_target(hunks, literal, is_new)
        size = sum(len(raw) + 1 for raw in self.lines[start:self.pos])
        return FileChange(old_path, new_path, kind, old_mode, new_mode, binary, added, removed, target, size,
                          similarity)

    def modes(self, headers: dict[str, re.Match[str]], start: int) -> tuple[str | None, str | None, bool, bool]:
        old_mode: str | None = None
        new_mode: str | None = None
        is_new = "new_file_mode" in headers
        is_deleted = "deleted_file_mode" in headers
        if is_new and is_deleted:
            raise self.fail("both `new file mode` and `deleted file mode`", start)
        if ("old_mode" in headers) != ("new_mode" in headers):
            raise self.fail("`old mode` and `new mode` must come together", start)
        if is_new:
            new_mode = headers["new_file_mode"].group(1)
        if is_deleted:
            old_mode = headers["deleted_file_mode"].group(1)
        if "old_mode" in headers:
            if is_new or is_deleted:
                raise self.fail("`old mode`/`new mode` on a new or deleted file", start)
            old_mode, new_mode = headers["old_mode"].group(1), headers["new_mode"].group(1)
            if old_mode == new_mode:
                raise self.fail("`old mode` equals `new mode`", start)
        index = headers.get("index")
        if index is not None and index.group(3) is not None:
            # git prints a mode on the index line only when the mode is the same on both sides.
            if old_mode is not None or new_mode is not None:
                raise self.fail("a mode on the `index` line and in a mode header", start)
            old_mode = new_mode = index.group(3)
        return old_mode, new_mode, is_new, is_deleted

    def names(self, headers: dict[str, re.Match[str]], header_names: tuple[str, str] | None, minus: str | None,
              plus: str | None, is_new: bool, is_deleted: bool, has_content: bool, old_mode: str | None,
              new_mode: str | None, start: int) -> tuple[str | None, str | None, ChangeKind, int | None]:
        rename = "rename_from" in headers or "rename_to" in headers
        copy = "copy_from" in headers or "copy_to" in headers
        if rename and copy:
            raise self.fail("both rename and copy headers", start)
        moved = "rename" if rename else "copy" if copy else None
        if moved and not (f"{moved}_from" in headers and f"{moved}_to" in headers):
            raise self.fail(f"`{moved} from` and `{moved} to` must come together", start)
        if moved and (is_new or is_deleted):
            raise self.fail(f"a {moved} of a new or deleted file", start)
        if ("similarity" in headers or "dissimilarity" in headers) and not moved:
            raise self.fail("similarity index without a rename or copy", start)
        try:
            moved_from = header_name(headers[f"{moved}_from"].group(1)) if moved else None
            moved_to = header_name(headers[f"{moved}_to"].group(1)) if moved else None
        except ValueError as error:
            raise self.fail(str(error), start) from None

        # Every place that names a side must name the same file, as `git apply` insists: otherwise a reviewer
        # and a tool could each read a different path out of one block.
        header_old, header_new = header_names if header_names else (None, None)
        old_names = {n for n in (header_old, moved_from, minus) if n is not None}
        new_names = {n for n in (header_new, moved_to, plus) if n is not None}
        if not moved:
            old_names |= new_names
            new_names = set(old_names)
        if len(old_names) > 1 or len(new_names) > 1:
            raise self.fail("the file names in this block disagree", start)
        if not old_names or not new_names:
            raise self.fail("cannot tell which file this block changes", start)
        old_name, new_name = old_names.pop(), new_names.pop()
        # A header that could not be split on its own must be exactly what git prints for these names.
        if header_names is None and \
                self.lines[start].decode("utf-8", "surrogateescape") != f"diff --git a/{old_name} b/{new_name}":
            raise self.fail("the `diff --git` header disagrees with the file names", start)

        similarity: int | None = None
        if "similarity" in headers:
            similarity = int(headers["similarity"].group(1))
            if similarity > 100:
                raise self.fail("similarity over 100%", start)
        kind: ChangeKind
        if is_new:
            kind = "added"
        elif is_deleted:
            kind = "deleted"
        elif moved == "rename":
            kind = "renamed"
        elif moved == "copy":
            kind = "copied"
        elif has_content:
            kind = "modified"
        elif old_mode is not None and new_mode is not None and old_mode != new_mode:
            kind = "mode_change"
        else:
            raise self.fail("the block changes nothing", start)
        return (None if is_new else old_name), (None if is_deleted else new_name), kind, similarity

    def hunk(self, collect: bool) -> tuple[_Hunk, int, int]:
        match = _HUNK_HEADER.fullmatch(self.lines[self.pos])
        if not match:
            raise self.fail("malformed hunk header")
        old_start, old_count, new_start, new_count = (int(g) if g is not None else 1 for g in match.groups()[:4])
        if old_count == 0 and new_count == 0:
            raise self.fail("empty hunk")
        hunk = _Hunk(old_start, old_count, new_start, new_count)
        self.pos += 1
        old_left, new_left = old_count, new_count
        added = removed = 0
        previous: bytes | None = None
        while old_left > 0 or new_left > 0 or (self.current() or b"").startswith(b"\\"):
            line = self.current()
            if line is None:
                raise self.fail("the patch ends inside a hunk")
            marker = line[:1]
            if marker == b"\\":
                # "\ No newline at end of file" belongs to the line just before it, and only one may follow.
                if previous not in (b" ", b"-", b"+"):
                    raise self.fail("misplaced `\\ No newline` marker")
                if previous in (b" ", b"+"):
                    hunk.new_ends_without_newline = True
                previous = marker
                self.pos += 1
                continue
            if marker == b" ":
                old_left -= 1
                new_left -= 1
            elif marker == b"-":
                old_left -= 1
                removed += 1
            elif marker == b"+":
                new_left -= 1
                added += 1
            else:
                raise self.fail("a hunk line must start with ' ', '-', '+' or '\\'")
            if old_left < 0 or new_left < 0:
                raise self.fail("the hunk has more lines than its header says")
            if collect and marker != b"-":
                hunk.new_lines.append(line[1:])
                hunk.new_ends_without_newline = False
            previous = marker
            self.pos += 1
        return hunk, added, removed

    def binary_hunk(self, *, keep: bool) -> bytes | None:
        """Verify one `literal N`/`delta N` block: base85 lines that inflate to exactly N bytes."""
        header = self.pos  # errors about the whole hunk point at its `literal N` line, not at the line after it
        match = _BINARY_HUNK.fullmatch(self.current() or b"")
        if not match:
            raise self.fail("expected `literal N` or `delta N` after `GIT binary patch`")
        size = int(match.group(2))
        self.pos += 1
        compressed = bytearray()
        while True:
            line = self.current()
            if line is None:
                raise self.fail("the patch ends inside a binary hunk")
            self.pos += 1
            if line == b"":
                break
            # The first character encodes the decoded length of the line: A-Z is 1-26, a-z is 27-52.
            first = line[:1]
            if b"A" <= first <= b"Z":
                length = first[0] - ord("A") + 1
            elif b"a" <= first <= b"z":
                length = first[0] - ord("a") + 27
            else:
                raise self.fail("bad length character in a binary hunk", self.pos - 1)
            encoded = line[1:]
            if len(encoded) != (length + 3) // 4 * 5:
                raise self.fail("binary hunk line length disagrees with its length character", self.pos - 1)
            try:
                compressed += base64.b85decode(encoded)[:length]
            except ValueError:
                raise self.fail("bad base85 data in a binary hunk", self.pos - 1) from None
        if not compressed:
            raise self.fail("empty binary hunk", header)
        # Inflate in bounded steps so a tiny zlib bomb cannot allocate its declared size; only small literals
        # are kept (to read a symlink target), the rest is counted and dropped.
        keep = keep and match.group(1) == b"literal" and size <= _KEEP_LITERAL_BYTES
        inflater = zlib.decompressobj()
        kept = bytearray()
        total = 0
        pending = bytes(compressed)
        try:
            while True:
                chunk = inflater.decompress(pending, 1 << 20)
                total += len(chunk)
                if total > size:
                    raise self.fail("binary hunk inflates past its declared size", header)
                if keep:
                    kept += chunk
                pending = inflater.unconsumed_tail
                if inflater.eof or (not chunk and not pending):
                    break
        except zlib.error:
            raise self.fail("corrupt zlib data in a binary hunk", header) from None
        if not inflater.eof or inflater.unused_data or total != size:
            raise self.fail("binary hunk does not inflate to its declared size", header)
        return bytes(kept) if keep else None

    @staticmethod
    def symlink_target(hunks: list[_Hunk], literal: bytes | None, is_new: bool) -> str | None:
        """The link's new target, or None unless the patch shows it completely."""
        if literal is not None:
            return literal.decode("utf-8", "surrogateescape")
        if len(hunks) != 1:
            return None
        hunk = hunks[0]
        # Complete only if the hunk starts at the first line and either the old side was empty (a new link) or
        # the new side ends with "\ No newline", i.e. it reaches the end of the content.
        if hunk.new_start != 1 or not (is_new or hunk.old_count == 0 or hunk.new_ends_without_newline):
            return None
        content = b"\n".join(hunk.new_lines) + (b"" if hunk.new_ends_without_newline else b"\n")
        return content.decode("utf-8", "surrogateescape")


def parse_patch(patch: bytes) -> list[FileChange]:
    """Every file change of a git patch, in patch order; raises PatchParseError on anything malformed."""
    if not isinstance(patch, (bytes, bytearray, memoryview)):
        raise PatchParseError(f"unparseable patch: a patch is bytes, not {type(patch).__name__}")
    return _Parser(bytes(patch)).parse()


__all__ = ["FileChange", "PatchParseError", "parse_patch"]
