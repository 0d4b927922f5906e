"""The guard a sandbox patch passes before review and again right before anything is written.

The sandbox hands back a git patch (`git diff-tree -p --binary --full-index -M`). Before a human reviews it,
and again after the review (the real tree may have changed in between), the guard:

* reads the patch strictly (`runner.promote.patchread.parse_patch`): a patch it cannot read completely is refused
  as a whole, since a patch we cannot read completely is a patch we cannot review;
* REFUSES what must never reach the real tree: paths that leave the repository, anything inside `.git` in any
  spelling a filesystem might fold back to `.git` (the path rules: `runner.promote.paths`), symlinks that point
  outside the repository, writes through symlinks (of the real tree or created by the patch), in-tree symlinks
  the patch edits as regular files, and file modes git cannot produce;
* FLAGS what needs an explicit "yes" even though it is allowed: files that run code or steer tools and agents
  (the "runs code" rules: `runner.promote.runscode`), new executables, binary changes, names with control or
  bidi characters and patches over the size caps. Nothing is ever truncated: the full list is always reported.

The real tree is only inspected with `os.lstat`/`os.readlink`, component by component from the repository root,
so a symlink in the tree is never followed. Standard library only: the guard must work (and be testable)
without Docker.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from runner.promote.linecounts import LineCount, line_counts
from runner.promote.patchmodel import EXECUTABLE, GITLINK, KNOWN_MODES, REGULAR, SYMLINK, FileChange, PatchParseError
from runner.promote.patchread import parse_patch
from runner.promote.paths import components, is_hfs_dotgit, is_ntfs_dotgit, path_problem, touches_dotgit
from runner.promote.runscode import runs_code_reason
from runner.textsafe import has_unsafe_name_chars, sanitize_for_terminal
from runner.textsafe import one_line as _show


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
# The guard
# --------------------------------------------------------------------------------------------------------------


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
        if touches_dotgit("/".join(current)):
            return "resolves into .git"
        return None


def _infer_moved(repo: Path, change: FileChange) -> tuple[str | None, str | None]:
    """Mode and symlink target of a pure rename/copy, which git prints without a mode: the source's, read from
    the real tree (lstat only). (None, None) when the tree has no plain file or symlink there."""
    source = change.old_path
    if source is None or path_problem(source) is not None:
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
            problem = path_problem(path)
            if problem:
                refuse(path, problem, "path")
                continue  # never look at the real tree for such a path
            if touches_dotgit(path):
                refuse(path, "inside .git (or a name the filesystem may treat as .git)", "git dir")
            if has_unsafe_name_chars(path):
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
        if change.new_path is not None and new_mode == SYMLINK and path_problem(change.new_path) is None:
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
    if touches_dotgit(lexical):
        return f"symlink to {_show(target)} points into .git"
    if "\\" in target and ".." in components(target):
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




# The names importers have always taken from here: the guard is the front door of the promote checks.
__all__ = ["EXECUTABLE", "GITLINK", "KNOWN_MODES", "REGULAR", "SYMLINK", "FileChange", "Finding", "GuardReport",
           "LineCount", "PatchParseError", "describe", "guard", "is_hfs_dotgit", "is_ntfs_dotgit", "line_counts",
           "parse_patch", "runs_code_reason", "sanitize_for_terminal", "summarize", "touches_dotgit"]
