"""Per-file added/removed line counts of a patch, for display (the run summary, `runs show`, diff stats).

Lenient where the reader (patchread) is strict: it never raises, and a malformed patch still gets numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from runner.promote.patchnames import file_line_name, header_name, split_git_header


@dataclass(frozen=True)
class LineCount:
    """Added and removed lines of one file of a patch, for display."""

    path: str
    added: int
    removed: int
    binary: bool = False


def _lenient_name(header: str, plus: str | None, minus: str | None, renamed_to: str | None) -> str:
    try:
        names = split_git_header(header[len("diff --git "):])
    except ValueError:
        names = None
    if names is not None:
        return names[1]
    for value, prefix in ((renamed_to, ""), (plus, "b/"), (minus, "a/")):
        if value is None:
            continue
        try:
            name = header_name(value) if not prefix else file_line_name(value, prefix)
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


__all__ = ["LineCount", "line_counts"]
