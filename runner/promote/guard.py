"""The guard a sandbox patch passes before review and again right before anything is written.

The sandbox hands back a git patch (`git diff-tree -p --binary --full-index -M`). Before a human reviews it,
and again after the review (the real tree may have changed in between), the guard:

* parses the patch strictly (`parse_patch`): anything git would not have produced - a malformed header, a hunk
  whose line counts disagree with its header, names that disagree between headers, a corrupt binary literal -
  raises `PatchParseError`. A patch we cannot read completely is a patch we cannot review;
* REFUSES what must never reach the real tree: paths that leave the repository, anything inside `.git` in any
  spelling a filesystem might fold back to `.git`, symlinks that point outside the repository, writes through
  symlinks (of the real tree or created by the patch), in-tree symlinks the patch edits as regular files, and
  file modes git cannot produce;
* FLAGS what needs an explicit "yes" even though it is allowed: files that run code or steer tools and agents
  (git attributes, submodules, CI, hooks, build manifests, editor and agent configuration), new executables,
  binary changes and patches over the size caps. Nothing is ever truncated: the full list is always reported.

The real tree is only inspected with `os.lstat`/`os.readlink`, component by component from the repository root,
so a symlink in the tree is never followed. Standard library only: the guard must work (and be testable)
without Docker.
"""

from __future__ import annotations

import base64
import itertools
import os
import posixpath
import re
import stat
import unicodedata
import zlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from runner.errors import SmolError
from runner.textsafe import has_unsafe_name_chars as _has_unsafe_name_chars
from runner.textsafe import one_line as _show
from runner.textsafe import sanitize_for_terminal

REGULAR = "100644"
EXECUTABLE = "100755"
SYMLINK = "120000"
GITLINK = "160000"
KNOWN_MODES = frozenset({REGULAR, EXECUTABLE, SYMLINK, GITLINK})
"""The only modes a git tree entry for a file can have; anything else in a patch is forged or corrupt."""

ChangeKind = Literal["added", "modified", "deleted", "renamed", "copied", "mode_change"]


class PatchParseError(SmolError, ValueError):
    """The patch is not a well-formed git patch. The message is one line and names the offending patch line."""

    exit_code = 8  # the same code as any other promotion failure


@dataclass
class FileChange:
    """One `diff --git` block of the patch."""

    old_path: str | None
    """Repo-relative path before the change (None for an added file). Non-UTF-8 bytes are surrogate-escaped."""
    new_path: str | None
    """Repo-relative path after the change (None for a deleted file)."""
    kind: ChangeKind
    old_mode: str | None = None
    """Six octal digits as git prints them ("100644", "100755", "120000", "160000"), None when the patch does
    not say (an added file, or a pure rename/copy: git prints no mode when nothing about the file changed)."""
    new_mode: str | None = None
    binary: bool = False
    added_lines: int = 0
    removed_lines: int = 0
    symlink_target: str | None = None
    """For an added or modified symlink, its new target when the patch shows all of it; otherwise None."""
    size_bytes: int = 0
    """Bytes of this block in the patch."""
    similarity: int | None = None
    """Percent similarity of a rename or copy."""

    @property
    def path(self) -> str:
        """The path the change leaves behind (the old path for a deletion)."""
        return self.new_path if self.new_path is not None else (self.old_path or "")


@dataclass
class Finding:
    path: str
    """The repo-relative path concerned; "" for a finding about the whole patch (size caps, parse errors)."""
    reason: str
    category: str
    """Refused: "path", "git dir", "symlink", "mode", "parse". Flagged: "runs code", "executable", "binary",
    "size", "name"."""


@dataclass
class GuardReport:
    refused: list[Finding] = field(default_factory=list)
    flagged: list[Finding] = field(default_factory=list)
    changes: list[FileChange] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is refused (flagged files still need an explicit confirmation each)."""
        return not self.refused


# --------------------------------------------------------------------------------------------------------------
# Patch parsing
# --------------------------------------------------------------------------------------------------------------

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
_C_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, '"': 34}
_DEV_NULL = "/dev/null"
_KEEP_LITERAL_BYTES = 64 * 1024
"""Binary literals up to this size are kept while verifying them (a binary-encoded symlink target needs it)."""


def _snippet(line: bytes) -> str:
    text = line.decode("utf-8", "surrogateescape")
    return repr(_show(text[:60] + ("…" if len(text) > 60 else "")))


def _unquote_at(text: str, start: int) -> tuple[str, int]:
    """Decode the C-quoted string (git's quote_c_style) starting at text[start] == '"'.

    Returns the name and the index just past the closing quote. Octal escapes are raw bytes, so the result is
    built as bytes and decoded with surrogateescape: a non-UTF-8 name survives the round trip to the filesystem.
    """
    out = bytearray()
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == '"':
            return bytes(out).decode("utf-8", "surrogateescape"), i + 1
        if ch == "\\":
            escape = text[i + 1:i + 2]
            if escape and escape in _C_ESCAPES:
                out.append(_C_ESCAPES[escape])
                i += 2
            elif re.fullmatch(r"[0-3][0-7]{2}", text[i + 1:i + 4]):
                out.append(int(text[i + 1:i + 4], 8))
                i += 4
            else:
                raise ValueError(f"bad escape \\{escape} in a quoted name")
        else:
            out += ch.encode("utf-8", "surrogateescape")
            i += 1
    raise ValueError("unterminated quoted name")


def _unquote_whole(text: str) -> str:
    name, end = _unquote_at(text, 0)
    if end != len(text):
        raise ValueError("text after a quoted name")
    return name


def _strip_prefix(name: str, prefix: str) -> str:
    if not name.startswith(prefix) or len(name) == len(prefix):
        raise ValueError(f"name {name!r} lacks the {prefix!r} prefix")
    return name[len(prefix):]


def _split_git_header(rest: str) -> tuple[str, str] | None:
    """The two names of `diff --git a/X b/Y`, or None when unquoted names with spaces make the split ambiguous
    (then the `rename`/`---`/`+++` lines name the file and the header is checked against them)."""
    if rest.startswith('"'):
        first, end = _unquote_at(rest, 0)
        if rest[end:end + 1] != " ":
            raise ValueError("no space after the first quoted name")
        tail = rest[end + 1:]
        second = _unquote_whole(tail) if tail.startswith('"') else tail
        return _strip_prefix(first, "a/"), _strip_prefix(second, "b/")
    # git quotes any name containing `"`, so in an unquoted first name a ` "` starts the quoted second name.
    quoted = rest.find(' "')
    if quoted != -1:
        return _strip_prefix(rest[:quoted], "a/"), _strip_prefix(_unquote_whole(rest[quoted + 1:]), "b/")
    # Both unquoted: the same name twice (everything but renames and copies) splits exactly in the middle.
    half = len(rest) // 2
    if len(rest) % 2 == 1 and rest[half] == " " and rest[:half][2:] == rest[half + 1:][2:]:
        return _strip_prefix(rest[:half], "a/"), _strip_prefix(rest[half + 1:], "b/")
    splits = [m.start() for m in re.finditer(" b/", rest)]
    if len(splits) == 1:
        return _strip_prefix(rest[:splits[0]], "a/"), _strip_prefix(rest[splits[0] + 1:], "b/")
    return None


def _file_line_name(value: str, prefix: str) -> str | None:
    """The name of a `---`/`+++` line (None for /dev/null). git appends a tab after names with spaces."""
    if value == _DEV_NULL:
        return None
    if value.startswith('"'):
        name, end = _unquote_at(value, 0)
        if value[end:] not in ("", "\t"):
            raise ValueError("text after a quoted name")
    else:
        # Unquoted names never contain a tab (git quotes them), so a tab ends the name.
        name = value.split("\t", 1)[0]
    return _strip_prefix(name, prefix)


def _header_name(value: str) -> str:
    return _unquote_whole(value) if value.startswith('"') else value


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
            header_names = _split_git_header(header[len("diff --git "):])
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
                minus = _file_line_name(self.text()[4:], "a/")
                self.pos += 1
                if not (self.current() or b"").startswith(b"+++ "):
                    raise self.fail("`---` line without a `+++` line")
                plus = _file_line_name(self.text()[4:], "b/")
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
        if is_new and removed:
            raise self.fail("a new file with removed lines", start)
        if is_deleted and added:
            raise self.fail("a deleted file with added lines", start)

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
            moved_from = _header_name(headers[f"{moved}_from"].group(1)) if moved else None
            moved_to = _header_name(headers[f"{moved}_to"].group(1)) if moved else None
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
            raise self.fail("empty binary hunk")
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
                    raise self.fail("binary hunk inflates past its declared size")
                if keep:
                    kept += chunk
                pending = inflater.unconsumed_tail
                if inflater.eof or (not chunk and not pending):
                    break
        except zlib.error:
            raise self.fail("corrupt zlib data in a binary hunk") from None
        if not inflater.eof or inflater.unused_data or total != size:
            raise self.fail("binary hunk does not inflate to its declared size")
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


@dataclass(frozen=True)
class LineCount:
    """Added and removed lines of one file of a patch, for display."""

    path: str
    added: int
    removed: int
    binary: bool = False


def _lenient_name(header: str, plus: str | None, minus: str | None, renamed_to: str | None) -> str:
    try:
        names = _split_git_header(header[len("diff --git "):])
    except ValueError:
        names = None
    if names is not None:
        return names[1]
    for value, prefix in ((renamed_to, ""), (plus, "b/"), (minus, "a/")):
        if value is None:
            continue
        try:
            name = _header_name(value) if not prefix else _file_line_name(value, prefix)
        except ValueError:
            continue
        if name is not None:
            return name
    return header[len("diff --git "):]


def line_counts(patch: bytes) -> list[LineCount]:
    """Per-file added/removed line counts of a git patch, in patch order, for display; never raises.

    Lines are counted by hunk structure, not by prefix: the headers of a file's section (`---`, `+++`, `index`,
    `rename to`, ...) only come before its first `@@` line, and from there on every line that starts with `+`
    or `-` is content. So an added `++x` (`+++x` in the patch) or a removed `-- comment` (`--- comment`) counts
    like any other line. Nothing is verified (that is `parse_patch`'s job): a malformed patch still gets numbers.
    """
    counts: list[LineCount] = []
    header: str | None = None
    plus = minus = renamed_to = None
    added = removed = 0
    binary = in_hunk = False

    def flush() -> None:
        if header is not None:
            counts.append(LineCount(_lenient_name(header, plus, minus, renamed_to), added, removed, binary))

    for raw in bytes(patch).split(b"\n"):
        text = raw.decode("utf-8", "surrogateescape")
        if text.startswith("diff --git "):
            flush()
            header, plus, minus, renamed_to = text, None, None, None
            added = removed = 0
            binary = in_hunk = False
        elif header is None:
            continue
        elif text.startswith("@@"):
            in_hunk = True
        elif in_hunk:
            if text.startswith("+"):
                added += 1
            elif text.startswith("-"):
                removed += 1
        elif text.startswith("+++ "):
            plus = text[4:]
        elif text.startswith("--- "):
            minus = text[4:]
        elif text.startswith("rename to "):
            renamed_to = text[len("rename to "):]
        elif text == "GIT binary patch" or (text.startswith("Binary files ") and text.endswith(" differ")):
            binary = True
    flush()
    return counts


# --------------------------------------------------------------------------------------------------------------
# .git and friends, in every spelling a filesystem may fold back to them (ports of git's path.c and utf8.c)
# --------------------------------------------------------------------------------------------------------------

_HFS_IGNORABLE = frozenset(chr(c) for c in (0x200C, 0x200D, 0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D,
                                            0x202E, 0x206A, 0x206B, 0x206C, 0x206D, 0x206E, 0x206F, 0xFEFF))
"""Code points HFS+ drops from names (git's next_hfs_char): `.g\\u200cit` is `.git` on a Mac."""


def _ascii_lower(text: str) -> str:
    # git's tolower() only folds ASCII; str.lower() would also fold e.g. the Kelvin sign.
    return "".join(c.lower() if c.isascii() else c for c in text)


def _spaces_and_periods_until_stream(rest: str) -> bool:
    # NTFS drops trailing spaces and periods, and `name:stream` is the same file as `name`.
    for c in rest:
        if c == ":":
            return True
        if c not in " .":
            return False
    return True


def is_ntfs_dotgit(name: str) -> bool:
    """git's is_ntfs_dotgit for one path component: `.git`, `.GIT. .`, `.git::$INDEX_ALLOCATION`, `GIT~1`."""
    if name[:1] == "." and _ascii_lower(name[1:4]) == "git":
        rest = name[4:]
    elif _ascii_lower(name[:5]) == "git~1":
        rest = name[5:]
    else:
        return False
    for c in rest:
        if c in "\\/:":
            return True
        if c not in ". ":
            return False
    return True


def _is_ntfs_dot_generic(name: str, dotgit_name: str, shortname_prefix: str) -> bool:
    """git's is_ntfs_dot_generic: `.gitmodules` with NTFS trailing junk, or one of its 8.3 short names."""
    length = len(dotgit_name)
    if name[:1] == "." and _ascii_lower(name[1:1 + length]) == dotgit_name:
        return _spaces_and_periods_until_stream(name[length + 1:])
    if _ascii_lower(name[:6]) == dotgit_name[:6] and name[6:7] == "~" and name[7:8] in ("1", "2", "3", "4"):
        return _spaces_and_periods_until_stream(name[8:])
    # The fall-back short name: up to 6 characters of the name's hash prefix, `~`, then digits, 8 in all.
    i = 0
    saw_tilde = False
    while i < 8:
        if i >= len(name):
            return False
        c = name[i]
        if saw_tilde:
            if not "0" <= c <= "9":
                return False
        elif c == "~":
            i += 1
            if i >= len(name) or not "1" <= name[i] <= "9":
                return False
            saw_tilde = True
        elif i >= 6 or not c.isascii() or c.lower() != shortname_prefix[i]:
            return False
        i += 1
    return _spaces_and_periods_until_stream(name[8:])


def _is_hfs_dot(name: str, needle: str) -> bool:
    """git's is_hfs_dot_generic for one component: `.` + needle, ignoring HFS+ ignorables, ASCII case-folded."""
    chars: list[str] = []
    for c in name:
        if 0xDC80 <= ord(c) <= 0xDCFF:
            break  # git's next_hfs_char treats malformed UTF-8 as the end of the name
        if c not in _HFS_IGNORABLE:
            chars.append(c)
    folded = "".join(chars)
    if folded[:1] != ".":
        return False
    body = folded[1:1 + len(needle)]
    if len(body) != len(needle) or not body.isascii() or body.lower() != needle:
        return False
    return folded[1 + len(needle):] in ("", "/")


def is_hfs_dotgit(name: str) -> bool:
    return _is_hfs_dot(name, "git")


def _looks_like(name: str, dotname: str) -> bool:
    """Stricter than git, on purpose: drop every invisible format character, fold compatibility forms and
    case, cut an NTFS stream and trailing spaces/periods. Anything that would *display* as `.git` to the
    reviewer is treated as `.git`; no real project needs such a name."""
    visible = "".join(c for c in name if unicodedata.category(c) != "Cf" and not 0xD800 <= ord(c) <= 0xDFFF)
    folded = unicodedata.normalize("NFKC", visible).casefold().split(":", 1)[0].rstrip(" .")
    return folded == dotname


def _is_dotgit_component(name: str) -> bool:
    return (is_ntfs_dotgit(name) or is_hfs_dotgit(name) or _looks_like(name, ".git")
            or re.fullmatch(r"git~[0-9]+[. ]*", _ascii_lower(name)) is not None)


def _components(path: str) -> list[str]:
    # Backslash separates directories on Windows, and git's own dotgit checks split on it everywhere.
    return re.split(r"[/\\]", path)


def _touches_dotgit(path: str) -> bool:
    return any(_is_dotgit_component(part) for part in _components(path))


def touches_dotgit(path: str) -> bool:
    """Whether any component of `path` is `.git` in a spelling some filesystem folds back to it (`.GIT`,
    `.git.`, `git~1`, `.g\u200cit`, ...): what the guard refuses, for callers outside it (the agent's tools)."""
    return _touches_dotgit(path)


def _is_dot_file(name: str, dotname: str, ntfs_prefix: str) -> bool:
    return (_ascii_lower(name) == "." + dotname or _is_ntfs_dot_generic(name, dotname, ntfs_prefix)
            or _is_hfs_dot(name, dotname) or _looks_like(name, "." + dotname))


# --------------------------------------------------------------------------------------------------------------
# Files that run code or steer tools
# --------------------------------------------------------------------------------------------------------------

_CI_FILES = frozenset({".gitlab-ci.yml", "azure-pipelines.yml", "jenkinsfile", ".travis.yml",
                       "bitbucket-pipelines.yml"})
_HOOK_FILES = frozenset({".pre-commit-config.yaml", ".pre-commit-hooks.yaml", "lefthook.yml", ".lefthook.yml"})
_EDITOR_DIRS = frozenset({".vscode", ".devcontainer", ".idea"})
_BUILD_FILES = frozenset({
    "makefile", "gnumakefile", "package.json", "setup.py", "setup.cfg", "pyproject.toml", "conftest.py",
    "tox.ini", "noxfile.py", "cargo.toml", "build.rs", "pom.xml", "cmakelists.txt", ".npmrc", ".pypirc",
    ".yarnrc", ".yarnrc.yml", "sitecustomize.py", "usercustomize.py", "gradlew", "mvnw",
})
# A change that configures or replaces the test runner chooses what "verified" means: pytest's own config files,
# and modules that shadow a runner (`python -m pytest` puts the working directory first on sys.path).
_TEST_RUNNER_FILES = frozenset({"pytest.ini", ".pytest.ini", "pytest.py", "py.py", "pluggy.py", "unittest.py",
                                "nose.py", "nose2.py", "hypothesis.py", ".mocharc.json", ".mocharc.yml",
                                ".mocharc.js", "karma.conf.js"})
_TEST_RUNNER_PREFIXES = ("jest.config.", "vitest.config.", "playwright.config.")
_TEST_RUNNER_PACKAGES = frozenset({"pytest", "_pytest", "pluggy", "unittest", "nose", "nose2"})
_AGENT_FILES = frozenset({"agents.md", "claude.md", "gemini.md", ".cursorrules", ".windsurfrules", ".clinerules"})
_AGENT_DIRS = frozenset({".cursor", ".claude"})


def runs_code_reason(path: str) -> str | None:
    """Why a change to `path` could run code or steer a tool or agent (None when it cannot, as far as we know).

    Names are compared case-insensitively and in any directory: over-flagging costs one question, missing a
    CI file on a case-insensitive filesystem costs a compromised pipeline.
    """
    raw_parts = path.split("/")
    parts = [p.casefold() for p in raw_parts]
    base, name = parts[-1], raw_parts[-1]
    if _is_dot_file(name, "gitattributes", "gi7d29"):
        return "git attributes can configure filters and diff/merge drivers that run commands"
    if _is_dot_file(name, "gitmodules", "gi7eba"):
        return "submodule configuration makes git fetch and check out other repositories"
    if any(a == ".github" and b in ("workflows", "actions") for a, b in itertools.pairwise(parts)) \
            or ".circleci" in parts[:-1] or base in _CI_FILES:
        return "CI configuration runs code on the CI machines"
    if ".husky" in parts[:-1] or ".githooks" in parts[:-1] or base in _HOOK_FILES:
        return "git hook configuration runs code on commit or push"
    if base == ".envrc":
        return "direnv runs .envrc when you enter the directory"
    if _EDITOR_DIRS & set(parts):
        return "editor/devcontainer configuration can run tasks and commands"
    if (base in _BUILD_FILES or base.endswith((".mk", ".pth", ".dockerfile"))
            or base.startswith(("build.gradle", "settings.gradle", "dockerfile"))
            or (base.startswith(("docker-compose", "compose.")) and base.endswith((".yml", ".yaml")))):
        return "build script or manifest runs code when you build, install or test"
    if (base in _AGENT_FILES or _AGENT_DIRS & set(parts) or parts[-2:] == [".github", "copilot-instructions.md"]
            or any(p.startswith((".aider", ".smol")) for p in parts)):
        return "agent configuration steers what coding agents do next time"
    if base.startswith(".env"):
        return "environment file: tools (smol itself included) load settings and secrets from it"
    if base in _TEST_RUNNER_FILES or base.startswith(_TEST_RUNNER_PREFIXES) or parts[0] in _TEST_RUNNER_PACKAGES:
        return "configures or shadows the test runner: it decides what re-verification counts as passing"
    return None


# --------------------------------------------------------------------------------------------------------------
# The guard
# --------------------------------------------------------------------------------------------------------------


def _path_problem(path: str) -> str | None:
    """Why `path` is not a plain relative path inside the repository, or None."""
    if path == "":
        return "empty path"
    if "\x00" in path:
        return "path contains a NUL byte"
    if path.startswith(("/", "\\")) or re.match(r"[A-Za-z]:[/\\]", path):
        return "absolute path"
    parts = path.split("/")
    if "" in parts:
        return "path has an empty component"
    if any(part in ("..", ".") for part in _components(path)):
        return "path has a '.' or '..' component (it could leave the repository)"
    return None


def _first_symlink_parent(repo: Path, path: str) -> str | None:
    """The first parent directory of `path` that is a symlink in the real tree, or None.

    Walks down from the repository root with lstat, so no link is ever followed; stops at the first component
    that is missing or not a directory (nothing below it can exist).
    """
    parts = path.split("/")
    current = repo
    for i, part in enumerate(parts[:-1]):
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat.S_ISLNK(mode):
            return "/".join(parts[:i + 1])
        if not stat.S_ISDIR(mode):
            return None
    return None


def _lstat_or_none(full: Path) -> os.stat_result | None:
    try:
        return os.lstat(full)
    except (FileNotFoundError, NotADirectoryError):
        return None


class _FutureTree:
    """What the tree will look like for symlink resolution: the patch's entries over the real tree."""

    def __init__(self, repo: Path, changes: list[FileChange], effective: list[tuple[str | None, str | None]]) -> None:
        self.repo = repo
        self.links: dict[str, str | None] = {}
        self.not_links: set[str] = set()
        for change, (new_mode, target) in zip(changes, effective, strict=True):
            if change.old_path is not None and change.kind in ("deleted", "renamed"):
                self.not_links.add(change.old_path)
            if change.new_path is not None:
                if new_mode == SYMLINK:
                    self.links[change.new_path] = target
                else:
                    self.not_links.add(change.new_path)
        self.links_folded = {path.casefold() for path in self.links}

    def resolve(self, link_path: str, target: str) -> str | None:
        """Follow `target` from the directory of `link_path` through every symlink of the future tree, the way
        the kernel would (a `..` after a link climbs from where the link led).

        Returns why the chain leaves the repository or enters `.git`, or None when it stays inside. The real tree
        is consulted for a component only while every component before it is a real directory there, so these
        lstat calls never traverse a symlink of the real tree either.
        """
        current: list[str] = []
        real_dirs: list[bool] = []  # real_dirs[i]: current[:i + 1] is a real directory in the real tree
        pending = deque(link_path.split("/")[:-1] + target.split("/"))
        hops = 0
        while pending:
            part = pending.popleft()
            if part in ("", "."):
                continue
            if part == "..":
                if not current:
                    return "resolves outside the repository"
                current.pop()
                real_dirs.pop()
                continue
            parent_is_real = all(real_dirs)
            current.append(part)
            here = "/".join(current)
            link: str | None = None
            is_link = is_dir = False
            if here in self.links:
                is_link, link = True, self.links[here]
            elif here not in self.not_links and parent_is_real:
                try:
                    st = _lstat_or_none(self.repo / here)
                    if st is not None and stat.S_ISLNK(st.st_mode):
                        is_link, link = True, os.readlink(self.repo / here)
                except OSError as error:
                    return f"cannot be followed in your tree ({error.strerror or error})"
                is_dir = st is not None and stat.S_ISDIR(st.st_mode)
            if not is_link:
                real_dirs.append(is_dir)
                continue
            current.pop()
            hops += 1
            if link is None:
                return f"goes through the symlink {_show(here)} whose target the patch does not show"
            if hops > 40:
                return "is a symlink loop"
            if link.startswith("/"):
                return f"goes through the symlink {_show(here)}, which points to the absolute path {_show(link)}"
            pending.extendleft(reversed(link.split("/")))
        if _touches_dotgit("/".join(current)):
            return "resolves into .git"
        return None


def _infer_moved(repo: Path, change: FileChange) -> tuple[str | None, str | None]:
    """Mode and symlink target of a pure rename/copy, which git prints without a mode: the source's, read from
    the real tree (lstat only). (None, None) when the tree has no plain file or symlink there."""
    source = change.old_path
    if source is None or _path_problem(source) is not None:
        return None, None
    try:
        if _first_symlink_parent(repo, source) is not None:
            return None, None
        st = _lstat_or_none(repo / source)
        if st is None:
            return None, None
        if stat.S_ISLNK(st.st_mode):
            return SYMLINK, os.readlink(repo / source)
    except OSError:
        return None, None
    if stat.S_ISREG(st.st_mode):
        return (EXECUTABLE if st.st_mode & 0o100 else REGULAR), None
    return None, None


def guard(patch: bytes, repo: Path, *, max_bytes: int = 5_000_000, max_files: int = 500) -> GuardReport:
    """Check a sandbox patch against the real tree at `repo`. Read-only: nothing is ever written.

    A patch that cannot be parsed is refused as a whole (a "parse" finding with path ""), so callers that only
    look at `report.ok` still fail closed.
    """
    report = GuardReport()
    seen: set[tuple[str, str, str]] = set()

    def add(findings: list[Finding], path: str, reason: str, category: str) -> None:
        reason = _show(reason)  # callers print reasons as they are: they must be terminal-safe and one line
        if (path, reason, category) not in seen:
            seen.add((path, reason, category))
            findings.append(Finding(path, reason, category))

    def refuse(path: str, reason: str, category: str) -> None:
        add(report.refused, path, reason, category)

    def flag(path: str, reason: str, category: str) -> None:
        add(report.flagged, path, reason, category)

    try:
        changes = parse_patch(patch)
    except PatchParseError as error:
        refuse("", str(error), "parse")
        return report
    report.changes = changes
    repo = Path(repo)

    # Size caps never truncate anything: the whole patch is still listed and checked, it just needs a "yes".
    if len(patch) > max_bytes:
        flag("", f"the patch is {len(patch)} bytes, over the {max_bytes}-byte limit: approve it explicitly",
             "size")
    if len(changes) > max_files:
        flag("", f"the patch changes {len(changes)} files, over the {max_files}-file limit: approve it explicitly",
             "size")

    # A path may be consumed (deleted, renamed away, modified) once and produced (added, renamed to, modified)
    # once; a delete-then-add pair is how git shows a file turning into a symlink and back.
    consumed: dict[str, int] = {}
    produced: dict[str, int] = {}
    for change in changes:
        if change.old_path is not None and change.kind != "copied":
            consumed[change.old_path] = consumed.get(change.old_path, 0) + 1
        if change.new_path is not None:
            produced[change.new_path] = produced.get(change.new_path, 0) + 1
    for path in sorted({p for p, n in consumed.items() if n > 1} | {p for p, n in produced.items() if n > 1}):
        refuse(path, "the patch changes this path more than once", "path")

    # The new mode (and symlink target) of every change; pure renames/copies take theirs from the real tree.
    effective: list[tuple[str | None, str | None]] = []
    for change in changes:
        if change.kind in ("renamed", "copied") and change.old_mode is None and change.new_mode is None:
            effective.append(_infer_moved(repo, change))
        else:
            effective.append((change.new_mode, change.symlink_target))
    future = _FutureTree(repo, changes, effective)
    symlink_deletions = {c.old_path for c in changes if c.kind == "deleted" and c.old_mode == SYMLINK}

    for change, (new_mode, target) in zip(changes, effective, strict=True):
        if change.new_path is not None and new_mode is None:
            refuse(change.path, "the patch gives no file mode for this file", "mode")
        old_mode = change.old_mode if change.old_mode is not None or change.old_path is None else new_mode
        sides: list[tuple[str, str | None, str]] = []
        if change.old_path is not None:
            sides.append((change.old_path, old_mode, "old"))
        if change.new_path is not None:
            sides.append((change.new_path, new_mode, "new"))
        for path, mode, side in sides:
            problem = _path_problem(path)
            if problem:
                refuse(path, problem, "path")
                continue  # never look at the real tree for such a path
            if _touches_dotgit(path):
                refuse(path, "inside .git (or a name the filesystem may treat as .git)", "git dir")
            if _has_unsafe_name_chars(path):
                flag(path, "the file name contains control or bidi characters (shown escaped)", "name")
            if mode is not None and mode not in KNOWN_MODES:
                refuse(path, f"unsupported file mode {mode}", "mode")
            if side == "old" and mode is None:
                refuse(path, "the patch gives no file mode for this file", "mode")
            reason = runs_code_reason(path)
            if reason:
                flag(path, reason, "runs code")

            if side == "new":
                # Deletions and rename sources act on the real tree before anything is created; writes must not
                # land under a link the patch itself creates (casefolded: macOS and Windows fold names).
                for parent in _parent_paths(path):
                    if parent.casefold() in future.links_folded:
                        refuse(path, f"written through {_show(parent)}, a symlink this patch creates", "symlink")
            try:
                through = _first_symlink_parent(repo, path)
                if through is not None:
                    refuse(path, f"written through {_show(through)}, a symlink in your tree", "symlink")
                    continue
                st = _lstat_or_none(repo / path)
            except OSError as error:
                refuse(path, f"cannot inspect your tree here: {error.strerror or error}", "symlink")
                continue
            real_is_link = st is not None and stat.S_ISLNK(st.st_mode)
            if real_is_link and mode in (REGULAR, EXECUTABLE) and not (
                    side == "new" and path in symlink_deletions and change.kind != "modified"):
                refuse(path, "in-tree symlink edited as a file", "symlink")

        if GITLINK in (change.old_mode, change.new_mode):
            flag(change.path, "submodule (gitlink) change: points the repository at other code", "runs code")
        if change.new_path is not None and change.new_mode == EXECUTABLE and change.old_mode != EXECUTABLE:
            flag(change.new_path, "new executable file" if change.kind == "added" else "made executable",
                 "executable")
        if change.binary:
            flag(change.path, "binary change: review cannot show its content", "binary")
        if change.new_path is not None and new_mode == SYMLINK and _path_problem(change.new_path) is None:
            problem = _symlink_problem(change.new_path, target, future)
            if problem:
                refuse(change.new_path, problem, "symlink")
    return report


def _parent_paths(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _symlink_problem(link_path: str, target: str | None, future: _FutureTree) -> str | None:
    if target is None:
        return "symlink whose target the patch does not show completely"
    if target == "" or "\x00" in target or "\n" in target:
        return "symlink with an empty or multi-line target"
    if target.startswith(("/", "\\")) or re.match(r"[A-Za-z]:[/\\]", target):
        return f"symlink to the absolute path {_show(target)}"
    lexical = posixpath.normpath(posixpath.join(posixpath.dirname(link_path), target))
    if lexical == ".." or lexical.startswith("../"):
        return f"symlink to {_show(target)} points outside the repository"
    if _touches_dotgit(lexical):
        return f"symlink to {_show(target)} points into .git"
    if "\\" in target and ".." in _components(target):
        # On Windows (or a Windows checkout of this repo) a backslash is a separator: `..\..\x` escapes.
        return f"symlink to {_show(target)} climbs with backslash separators"
    chained = future.resolve(link_path, target)
    if chained:
        return f"symlink to {_show(target)} {chained}"
    return None


# --------------------------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------------------------

_LABELS: dict[str, str] = {"added": "added", "modified": "modified", "deleted": "deleted", "renamed": "renamed",
                           "copied": "copied", "mode_change": "mode change"}


def describe(change: FileChange) -> str:
    """One terminal-safe line for a change: kind, path(s) and what kind of file it is."""
    if change.kind in ("renamed", "copied"):
        name = f"{_show(change.old_path)} -> {_show(change.new_path)}"
    else:
        name = _show(change.path)
    details: list[str] = []
    if change.similarity is not None:
        details.append(f"{change.similarity}% similar")
    if change.new_mode == SYMLINK and change.new_path is not None:
        details.append(f"symlink -> {_show(change.symlink_target) if change.symlink_target is not None else '?'}")
    elif change.old_mode == SYMLINK:
        details.append("symlink")
    if GITLINK in (change.old_mode, change.new_mode):
        details.append("submodule")
    if change.binary:
        details.append("binary")
    elif change.added_lines or change.removed_lines:
        details.append(f"+{change.added_lines} -{change.removed_lines}")
    if change.old_mode and change.new_mode and change.old_mode != change.new_mode:
        details.append(f"mode {change.old_mode} -> {change.new_mode}")
    elif change.kind == "added" and change.new_mode == EXECUTABLE:
        details.append("executable")
    return f"{_LABELS[change.kind]:<11} {name}" + (f" ({', '.join(details)})" if details else "")


def summarize(report: GuardReport) -> list[str]:
    """One line per changed file, in patch order, safe to print."""
    return [describe(change) for change in report.changes]


__all__ = ["EXECUTABLE", "GITLINK", "KNOWN_MODES", "REGULAR", "SYMLINK", "FileChange", "Finding", "GuardReport",
           "LineCount", "PatchParseError", "describe", "guard", "is_hfs_dotgit", "is_ntfs_dotgit", "line_counts",
           "parse_patch", "runs_code_reason", "sanitize_for_terminal", "summarize", "touches_dotgit"]
