"""Where a search/replace edit goes when a small model's `old_text` is not byte-exact.

Tried in order, each only when the previous found nothing: the exact text; the same with the file's CRLF line
endings; line by line ignoring trailing whitespace; ignoring indentation (the replacement is re-indented by the
same amount); a close match (difflib ratio >= CLOSE_RATIO, and no other window near it). Each step accepts exactly
one location: two candidates are refused, never guessed, so an edit never lands at the wrong place in silence."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

CLOSE_RATIO = 0.9
"""How alike a window of the file and old_text must be for a close match..."""
RUNNER_UP_MARGIN = 0.05
"""...and how far ahead of the next best window it must be."""


class EditError(ValueError):
    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind  # "no_match" or "ambiguous_match"


@dataclass
class Edit:
    updated: str
    how: str
    """"exact", or how the location was found ("ignoring indentation", ...): shown to the model with the hunk."""


def apply_edit(current: str, old_text: str, new_text: str) -> Edit:
    count = current.count(old_text)
    if count == 1:
        return Edit(current.replace(old_text, new_text, 1), "exact")
    if count > 1:
        raise EditError(f"old_text occurs {count} times", "ambiguous_match")
    if "\r\n" in current and "\r" not in old_text:
        crlf_old, crlf_new = old_text.replace("\n", "\r\n"), new_text.replace("\n", "\r\n")
        found = current.count(crlf_old)
        if found == 1:
            return Edit(current.replace(crlf_old, crlf_new, 1), "with the file's CRLF line endings")
        if found > 1:
            raise EditError(f"old_text occurs {found} times", "ambiguous_match")
    lines = current.splitlines(keepends=True)
    wanted = old_text.splitlines()
    if not wanted or not "".join(wanted).strip():
        raise EditError("old_text not found", "no_match")
    for how, same in (("ignoring trailing whitespace", lambda a, b: a.rstrip() == b.rstrip()),
                      ("ignoring indentation", lambda a, b: a.strip() == b.strip())):
        starts = [i for i in range(len(lines) - len(wanted) + 1)
                  if all(same(lines[i + k].rstrip("\r\n"), wanted[k]) for k in range(len(wanted)))]
        if len(starts) > 1:
            raise EditError(f"old_text matches {len(starts)} places {how}: include more lines", "ambiguous_match")
        if starts:
            return _replace_window(lines, starts[0], len(wanted), old_text, new_text, how)
    return _close_match(lines, wanted, old_text, new_text)


def _close_match(lines: list[str], wanted: list[str], old_text: str, new_text: str) -> Edit:
    target = "\n".join(line.strip() for line in wanted)
    scored = []
    for i in range(len(lines) - len(wanted) + 1):
        window = "\n".join(lines[i + k].strip() for k in range(len(wanted)))
        scored.append((difflib.SequenceMatcher(None, window, target).ratio(), i))
    scored.sort(reverse=True)
    if not scored or scored[0][0] < CLOSE_RATIO:
        raise EditError("old_text not found", "no_match")
    if len(scored) > 1 and scored[1][0] > scored[0][0] - RUNNER_UP_MARGIN:
        raise EditError("old_text is close to several places: copy the exact lines", "ambiguous_match")
    ratio, start = scored[0]
    return _replace_window(lines, start, len(wanted), old_text, new_text, f"by a close match ({ratio:.0%} alike)")


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _replace_window(lines: list[str], start: int, length: int, old_text: str, new_text: str, how: str) -> Edit:
    window = lines[start:start + length]
    ending = "\r\n" if window[0].endswith("\r\n") else "\n"
    # Re-indent the replacement by what separates the file's lines from old_text's (first non-blank line of each).
    file_first = next((line for line in window if line.strip()), "")
    old_first = next((line for line in old_text.splitlines() if line.strip()), "")
    have, gave = _indent(file_first.rstrip("\r\n")), _indent(old_first)
    replaced = []
    for line in new_text.splitlines():
        if line.strip() and gave != have:
            line = have + line[len(gave):] if line.startswith(gave) else have + line.lstrip()
        replaced.append(line)
    text = ending.join(replaced)
    last = window[-1]
    trailing = last[len(last.rstrip("\r\n")):]  # the window's own line ending, kept unless old_text had one
    if old_text.endswith("\n") and new_text.endswith("\n"):
        text += ending
    elif not old_text.endswith("\n"):
        text += trailing
    updated = "".join(lines[:start]) + text + "".join(lines[start + length:])
    return Edit(updated, how)


def hunk_edits(diff: str) -> list[tuple[str, str, str]] | None:
    """A unified diff as (path, old_text, new_text) edits, one per hunk, read by content only (the line numbers
    and counts of a small model's hunk headers are often wrong). None when the diff creates, deletes or renames
    a file, or has no hunk: those are not edits by content."""
    edits: list[tuple[str, str, str]] = []
    path: str | None = None
    old: list[str] = []
    new: list[str] = []
    in_hunk = False

    def flush() -> None:
        if path is not None and (old or new):
            edits.append((path, "\n".join(old), "\n".join(new)))
        old.clear()
        new.clear()

    for line in diff.splitlines():
        # Inside a hunk, "--- x" may be a removed line "-- x": only a/ b/ /dev/null names are headers there.
        header = line.startswith(("--- a/", "+++ b/", "--- /dev/null", "+++ /dev/null"))
        if line.startswith(("--- ", "+++ ")) and (header or not in_hunk):
            flush()
            in_hunk = False
            name = line[4:].split("\t")[0].strip()
            if name == "/dev/null":
                return None
            if line.startswith("+++ "):
                path = name[2:] if name.startswith("b/") else name
            continue
        if line.startswith("@@"):
            flush()
            in_hunk = path is not None
            continue
        if line.startswith(("rename ", "copy ", "new file", "deleted file")):
            return None
        if not in_hunk or line.startswith("\\"):
            continue
        tag, body = line[:1], line[1:]
        if tag in (" ", ""):
            old.append(body)
            new.append(body)
        elif tag == "-":
            old.append(body)
        elif tag == "+":
            new.append(body)
        else:
            in_hunk = False
    flush()
    return edits or None
