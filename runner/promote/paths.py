"""Path rules for a patch: plain relative paths inside the repository, and `.git` in none of its spellings.

`.git` (and `.gitmodules`, `.gitattributes`) is recognised in every spelling a filesystem may fold back to it:
ports of git's own checks in path.c and utf8.c (NTFS trailing dots and spaces, alternate streams and 8.3 short
names; HFS+ ignorable code points; ASCII case folding), plus a stricter visual check of our own.
"""

from __future__ import annotations

import re
import unicodedata

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


def components(path: str) -> list[str]:
    # Backslash separates directories on Windows, and git's own dotgit checks split on it everywhere.
    return re.split(r"[/\\]", path)


def touches_dotgit(path: str) -> bool:
    """Whether any component of `path` is `.git` in a spelling some filesystem folds back to it (`.GIT`,
    `.git.`, `git~1`, `.g\u200cit`, ...): what the guard refuses, for callers outside it (the agent's tools)."""
    return any(_is_dotgit_component(part) for part in components(path))


def is_dot_file(name: str, dotname: str, ntfs_prefix: str) -> bool:
    return (_ascii_lower(name) == "." + dotname or _is_ntfs_dot_generic(name, dotname, ntfs_prefix)
            or _is_hfs_dot(name, dotname) or _looks_like(name, "." + dotname))


def path_problem(path: str) -> str | None:
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
    if any(part in ("..", ".") for part in components(path)):
        return "path has a '.' or '..' component (it could leave the repository)"
    return None


__all__ = ["components", "is_dot_file", "is_hfs_dotgit", "is_ntfs_dotgit", "path_problem", "touches_dotgit"]
