"""How git writes file names in a patch: C-quoted names (`quote_c_style`) and the `a/`/`b/` prefixes.

Shared by the strict reader (patchread) and the lenient display counts (linecounts). A name with bytes that are
not UTF-8 is decoded with surrogateescape, so it survives the round trip to the filesystem byte for byte.
"""

from __future__ import annotations

import re

_C_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, '"': 34}
DEV_NULL = "/dev/null"


def unquote_at(text: str, start: int) -> tuple[str, int]:
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


def unquote_whole(text: str) -> str:
    name, end = unquote_at(text, 0)
    if end != len(text):
        raise ValueError("text after a quoted name")
    return name


def _strip_prefix(name: str, prefix: str) -> str:
    if not name.startswith(prefix) or len(name) == len(prefix):
        raise ValueError(f"name {name!r} lacks the {prefix!r} prefix")
    return name[len(prefix):]


def split_git_header(rest: str) -> tuple[str, str] | None:
    """The two names of `diff --git a/X b/Y`, or None when unquoted names with spaces make the split ambiguous
    (then the `rename`/`---`/`+++` lines name the file and the header is checked against them)."""
    if rest.startswith('"'):
        first, end = unquote_at(rest, 0)
        if rest[end:end + 1] != " ":
            raise ValueError("no space after the first quoted name")
        tail = rest[end + 1:]
        second = unquote_whole(tail) if tail.startswith('"') else tail
        return _strip_prefix(first, "a/"), _strip_prefix(second, "b/")
    # git quotes any name containing `"`, so in an unquoted first name a ` "` starts the quoted second name.
    quoted = rest.find(' "')
    if quoted != -1:
        return _strip_prefix(rest[:quoted], "a/"), _strip_prefix(unquote_whole(rest[quoted + 1:]), "b/")
    # Both unquoted: the same name twice (everything but renames and copies) splits exactly in the middle.
    half = len(rest) // 2
    if len(rest) % 2 == 1 and rest[half] == " " and rest[:half][2:] == rest[half + 1:][2:]:
        return _strip_prefix(rest[:half], "a/"), _strip_prefix(rest[half + 1:], "b/")
    splits = [m.start() for m in re.finditer(" b/", rest)]
    if len(splits) == 1:
        return _strip_prefix(rest[:splits[0]], "a/"), _strip_prefix(rest[splits[0] + 1:], "b/")
    return None


def file_line_name(value: str, prefix: str) -> str | None:
    """The name of a `---`/`+++` line (None for /dev/null). git appends a tab after names with spaces."""
    if value == DEV_NULL:
        return None
    if value.startswith('"'):
        name, end = unquote_at(value, 0)
        if value[end:] not in ("", "\t"):
            raise ValueError("text after a quoted name")
    else:
        # Unquoted names never contain a tab (git quotes them), so a tab ends the name.
        name = value.split("\t", 1)[0]
    return _strip_prefix(name, prefix)


def header_name(value: str) -> str:
    return unquote_whole(value) if value.startswith('"') else value


__all__ = ["DEV_NULL", "file_line_name", "header_name", "split_git_header", "unquote_at", "unquote_whole"]
