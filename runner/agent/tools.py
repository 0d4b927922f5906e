"""The agent's 14 tools. Each acts only through the sandbox interface: reads see the sandbox's view (the agent's
own edits included) and writes land in the sandbox, never in the real tree.

Tool names and required parameters are a contract with the prompt and with users' expectations.
Every `forward` returns a dict or raises ToolError; `instrument` turns both into text for the model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from smolagents import Tool

from runner.agent.instrumentation import ToolError, check_relative_path
from runner.agent.state import TestOutcome
from runner.errors import SmolError
from runner.testcmd import Reader, classify_test_run, detect_test_command

if TYPE_CHECKING:
    from runner.agent.approval import ApprovalGate
    from runner.agent.state import RunState
    from runner.config import Settings
    from runner.policy import CommandPolicy
    from runner.sandbox.base import Sandbox

TOOL_TIMEOUT_S = 60.0
MAX_TEXT_BYTES = 8 * 1024 * 1024
"""The largest file the text tools take whole; read_file reads line ranges of larger ones."""
SNIPPET_CONTEXT_LINES = 5


def config_reader(sandbox: Any) -> Reader:
    """Reads a runner's configuration file in the sandbox for test-command detection (None when it cannot)."""

    def read(path: str) -> str | None:
        try:
            return bytes(sandbox.read(path, max_bytes=256 * 1024)).decode("utf-8", "replace")
        except SmolError:  # missing, too large, not a file: detection goes by the file names alone
            return None

    return read


@dataclass
class PendingPatch:
    id: str
    kind: str
    """"unified" or "replace"."""
    diff: str
    path: str | None = None
    old_text: str | None = None
    new_text: str | None = None
    applied: bool = False
    apply_with: str = "git"


@dataclass
class ToolContext:
    sandbox: Sandbox
    state: RunState
    settings: Settings
    policy: CommandPolicy
    gate: ApprovalGate
    patches: dict[str, PendingPatch] = field(default_factory=dict)
    test_command: str | None = None
    """The user's SMOL_TEST_COMMAND (set from the settings); never a command the agent proposed."""

    def __post_init__(self) -> None:
        if self.test_command is None and self.settings.smol_test_command.strip():
            self.test_command = self.settings.smol_test_command.strip()

    def new_patch_id(self) -> str:
        return f"p{len(self.patches) + 1}"


class SandboxTool(Tool):
    output_type = "string"
    inputs: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, context: ToolContext) -> None:
        self.ctx = context
        super().__init__()

    def run(self, command: list[str] | str, *, timeout: float = TOOL_TIMEOUT_S, stdin: bytes | None = None) -> Any:
        return self.ctx.sandbox.exec(command, timeout=timeout, stdin=stdin)


def _optional(kind: str, description: str) -> dict[str, Any]:
    return {"type": kind, "description": description, "nullable": True}


# ------------------------------------------------------------------------------------------- repo
class RepoInfo(SandboxTool):
    name = "repo_info"
    description = "Repo overview: VCS, languages, test command."
    inputs: ClassVar[dict[str, dict[str, Any]]] = {}

    def forward(self) -> dict[str, Any]:
        files = self.ctx.sandbox.list_files("*")
        languages = _languages(files)
        branch = self.run("git rev-parse --abbrev-ref HEAD 2>/dev/null && git status --porcelain | wc -l")
        lines = branch.stdout.split()
        vcs = f"git, branch {lines[0]}, {lines[1]} changed files" if branch.ok and len(lines) == 2 else "not a git repo"
        info = self.ctx.sandbox.info
        return {
            "root": "/workspace (all paths are relative to it)",
            "vcs": vcs,
            "files": len(files),
            "languages": ", ".join(f"{lang} ({count})" for lang, count in languages[:5]) or "none detected",
            "test_command": detect_test_command(files, config_reader(self.ctx.sandbox)) or "none detected",
            "sandbox": f"{info.mode.value} mode, network off" if not self.ctx.settings.sandbox_network
            else f"{info.mode.value} mode, network on",
            "top_level": sorted({f.split("/", 1)[0] + ("/" if "/" in f else "") for f in files})[:40],
        }


_EXTENSIONS = {".py": "Python", ".js": "JavaScript", ".ts": "TypeScript", ".go": "Go", ".rs": "Rust",
               ".java": "Java", ".c": "C", ".h": "C", ".cpp": "C++", ".rb": "Ruby", ".sh": "Shell", ".md": "Markdown"}


def _languages(files: list[str]) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for name in files:
        suffix = "." + name.rsplit(".", 1)[-1] if "." in name.rsplit("/", 1)[-1] else ""
        if suffix in _EXTENSIONS:
            counts[_EXTENSIONS[suffix]] = counts.get(_EXTENSIONS[suffix], 0) + 1
    return sorted(counts.items(), key=lambda item: -item[1])


class ListFiles(SandboxTool):
    name = "list_files"
    description = "List files matching a glob."
    inputs: ClassVar[dict[str, dict[str, Any]]] = {"pattern": {"type": "string", "description": "e.g. **/*.py"}}

    def forward(self, pattern: str) -> dict[str, Any]:
        limit = self.ctx.settings.truncation_max_list_items
        files = self.ctx.sandbox.list_files(pattern or "*")
        if not files:
            raise ToolError(f"no files match {pattern!r}", error_type="not_found",
                            recovery="Try a broader glob such as '**/*.py', or repo_info for an overview.")
        result: dict[str, Any] = {"count": len(files), "files": files[:limit]}
        if len(files) > limit:
            result["note"] = f"showing {limit} of {len(files)}; use a narrower pattern to see the rest"
        return result


class RgSearch(SandboxTool):
    name = "rg_search"
    description = "Regex search in files (ripgrep)."
    inputs: ClassVar[dict[str, dict[str, Any]]] = {
        "pattern": {"type": "string", "description": "regex"},
        "path": _optional("string", "file or dir"),
    }

    def forward(self, pattern: str, path: str | None = None) -> dict[str, Any]:
        argv = ["rg", "--line-number", "--no-heading", "--color", "never", "--max-columns", "300",
                "--max-count", "20", "--sort", "path"]
        argv += ["-e", pattern, "--"]
        if path:
            check_relative_path(path)
            argv.append(path)
        result = self.run(argv)
        if result.exit_code == 1:
            raise ToolError(f"no matches for {pattern!r}", error_type="not_found",
                            recovery="Try a simpler or case-insensitive pattern (e.g. '(?i)name'), or list_files.")
        if result.exit_code != 0:
            raise ToolError(result.stderr.strip() or "rg failed", error_type="invalid_pattern",
                            recovery="Check the regex syntax; escape special characters like ( [ {.")
        matches = result.stdout.splitlines()
        limit = self.ctx.settings.truncation_max_list_items
        out: dict[str, Any] = {"count": len(matches), "matches": matches[:limit]}
        if len(matches) > limit:
            out["note"] = f"showing {limit} of {len(matches)}; narrow the pattern or pass path/glob"
        return out


# ------------------------------------------------------------------------------------------- files
def _text(ctx: ToolContext, path: str, *, exact: bool = False) -> str:
    """The file's text. For showing, bytes that are not UTF-8 read as U+FFFD; `exact` keeps them as surrogate
    escapes instead, so that an edit writes back, byte for byte, everything it did not change (a Latin-1 file
    stays Latin-1)."""
    from runner.sandbox.base import FileTooLargeError

    try:
        data = ctx.sandbox.read(path, max_bytes=MAX_TEXT_BYTES)
    except FileTooLargeError:
        raise ToolError(f"{path} is larger than {MAX_TEXT_BYTES} bytes: too large to read or edit whole",
                        error_type="file_too_large",
                        recovery="read_file it with start_line and end_line, find lines with rg_search, or edit it "
                                 "with run_cmd (e.g. sed).") from None
    if b"\x00" in data[:8192]:
        raise ToolError(f"{path} is a binary file", error_type="binary_file",
                        recovery="Binary files cannot be read as text; work with text files.")
    return data.decode("utf-8", errors="surrogateescape" if exact else "replace")


def _encoded(text: str) -> bytes:
    """The bytes of a text made by `_text(exact=True)` (and edited with surrogate-free text)."""
    return text.encode("utf-8", "surrogateescape")


def _shown(text: str) -> str:
    """A text with surrogate escapes as U+FFFD, as read_file shows it: what the model and the records may hold."""
    return _encoded(text).decode("utf-8", "replace")


def _has_surrogates(text: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def _numbered(lines: list[str], first: int) -> str:
    return "\n".join(f"{first + offset:>5}| {line}" for offset, line in enumerate(lines))


class ReadFile(SandboxTool):
    name = "read_file"
    description = "Read a file with line numbers."
    inputs: ClassVar[dict[str, dict[str, Any]]] = {
        "path": {"type": "string", "description": "file"},
        "start_line": _optional("integer", "1-based"),
        "end_line": _optional("integer", "inclusive"),
    }

    def forward(self, path: str, start_line: int | None = None, end_line: int | None = None) -> dict[str, Any]:
        try:
            text = _text(self.ctx, path)
        except ToolError as error:
            if error.error_type == "file_too_large" and start_line is not None and end_line is not None:
                return self._range_of_large_file(path, start_line, end_line)
            raise
        except Exception as error:
            raise ToolError(str(error), error_type="file_not_found",
                            recovery="Check the path with list_files (paths are relative to the repo root).") from None
        lines = text.splitlines()
        first = max(start_line or 1, 1)
        last = min(end_line or len(lines), len(lines))
        if start_line is not None and end_line is not None and end_line < start_line:
            raise ToolError("end_line is before start_line", error_type="invalid_range",
                            recovery="Pass start_line <= end_line.")
        if last - first + 1 > self.ctx.settings.validation_max_line_range:
            raise ToolError(f"range of {last - first + 1} lines exceeds {self.ctx.settings.validation_max_line_range}",
                            error_type="invalid_range", recovery="Read a smaller range of lines.")
        if lines and first > len(lines):
            raise ToolError(f"{path} has only {len(lines)} lines", error_type="invalid_range",
                            recovery=f"Use start_line between 1 and {len(lines)}.")
        return {"path": path, "lines": f"{first}-{last} of {len(lines)}",
                "content": _numbered(lines[first - 1:last], first)}

    def _range_of_large_file(self, path: str, start_line: int, end_line: int) -> dict[str, Any]:
        """Lines of a file too large to read whole, streamed by sed in the sandbox (it stops at the last line)."""
        first, last = max(start_line, 1), end_line
        if last < first:
            raise ToolError("end_line is before start_line", error_type="invalid_range",
                            recovery="Pass start_line <= end_line.")
        if last - first + 1 > self.ctx.settings.validation_max_line_range:
            raise ToolError(f"range of {last - first + 1} lines exceeds {self.ctx.settings.validation_max_line_range}",
                            error_type="invalid_range", recovery="Read a smaller range of lines.")
        result = self.run(["sed", "-n", f"{first},{last}p;{last}q", "--", path])
        if not result.ok:
            raise ToolError(result.stderr.strip() or f"cannot read {path}", error_type="file_not_found",
                            recovery="Check the path with list_files.")
        lines = result.stdout.splitlines()
        if not lines:
            raise ToolError(f"{path} has fewer than {first} lines", error_type="invalid_range",
                            recovery="Use a smaller start_line; rg_search shows line numbers.")
        return {"path": path, "lines": f"{first}-{first + len(lines) - 1} (a large file)",
                "content": _numbered(lines, first)}


class ReadFileSnippet(SandboxTool):
    name = "read_file_snippet"
    description = "Lines around regex matches."
    inputs: ClassVar[dict[str, dict[str, Any]]] = {
        "path": {"type": "string", "description": "file"},
        "pattern": {"type": "string", "description": "regex"},
    }

    def forward(self, path: str, pattern: str) -> dict[str, Any]:
        try:
            regex = re.compile(pattern)
        except re.error as error:
            raise ToolError(f"invalid regex: {error}", error_type="invalid_pattern",
                            recovery="Escape special characters, or search for a plain word.") from None
        try:
            lines = _text(self.ctx, path).splitlines()
        except ToolError:
            raise
        except Exception as error:
            raise ToolError(str(error), error_type="file_not_found",
                            recovery="Check the path with list_files.") from None
        context = SNIPPET_CONTEXT_LINES
        hits = [index for index, line in enumerate(lines) if regex.search(line)][:3]
        if not hits:
            raise ToolError(f"{pattern!r} not found in {path}", error_type="not_found",
                            recovery="Use rg_search to find which file contains it.")
        blocks = []
        for hit in hits:
            start, stop = max(0, hit - context), min(len(lines), hit + context + 1)
            blocks.append(_numbered(lines[start:stop], start + 1))
        return {"path": path, "matches": len(hits), "snippets": "\n  ...\n".join(blocks)}


# ------------------------------------------------------------------------------------------- git
class GitStatus(SandboxTool):
    name = "git_status"
    description = "git status."
    inputs: ClassVar[dict[str, dict[str, Any]]] = {}

    def forward(self) -> dict[str, Any]:
        result = self.run(["git", "status", "--short", "--branch"])
        if not result.ok:
            raise ToolError(result.stderr.strip(), error_type="not_a_git_repo",
                            recovery="This repo has no git; use list_files and read_file instead.")
        return {"status": result.stdout.strip() or "clean"}


class GitDiff(SandboxTool):
    name = "git_diff"
    description = "Diff of your changes so far."
    inputs: ClassVar[dict[str, dict[str, Any]]] = {}

    def forward(self) -> dict[str, Any]:
        patch = self.ctx.sandbox.diff().decode("utf-8", errors="replace")
        return {"diff": patch or "no changes yet"}


class GitLog(SandboxTool):
    name = "git_log"
    description = "Recent commits."
    inputs: ClassVar[dict[str, dict[str, Any]]] = {}

    def forward(self) -> dict[str, Any]:
        result = self.run(["git", "log", "--max-count=15", "--format=%h %ad %an: %s", "--date=short"])
        if not result.ok:
            raise ToolError(result.stderr.strip(), error_type="not_a_git_repo",
                            recovery="This repo has no git history; use list_files and read_file.")
        return {"log": result.stdout.strip() or "no commits"}


# ------------------------------------------------------------------------------------------- patches
_DIFF_PATH = re.compile(r"^(?:\+\+\+|---) (?:[ab]/)?(.+?)\s*$", re.MULTILINE)
_DIFF_NAME = re.compile(r"^(?:\+\+\+|---) (.+?)\s*$", re.MULTILINE)
_MOVE_PATH = re.compile(r"^(?:rename|copy) (?:from|to) (.+?)\s*$", re.MULTILINE)


def _refuse_git_dir(path: str) -> None:
    # Every spelling a filesystem may fold back to `.git` (`.GIT/config`, `.git./x`, `sub/.git/hooks/...`): such a
    # change never reaches the user's tree, so the model learns it here instead of losing the work at review.
    from runner.promote.paths import touches_dotgit

    if touches_dotgit(path):
        raise ToolError(f"{path} is inside .git (or a name a filesystem may treat as .git): patches may not touch "
                        "git's metadata", error_type="invalid_path", recovery="Edit project files only.")


def _check_patch_paths(diff: str) -> list[str]:
    paths = []
    for match in _DIFF_PATH.finditer(diff):
        path = match.group(1).split("\t")[0]
        if path == "/dev/null":
            continue
        check_relative_path(path)
        _refuse_git_dir(path)
        paths.append(path)
    # What the appliers make of the names: both strip one component (-p1) whatever it is (`x/../../y` is
    # `../../y` to them), and git's rename/copy headers name paths of their own.
    names = [m.group(1).split("\t")[0] for m in _DIFF_NAME.finditer(diff)]
    stripped = [name.split("/", 1)[-1] for name in names if name != "/dev/null"]
    for path in [*stripped, *(m.group(1) for m in _MOVE_PATH.finditer(diff))]:
        check_relative_path(path)
        _refuse_git_dir(path)
    if not paths:
        raise ToolError("this is not a unified diff (no ---/+++ file headers)", error_type="invalid_patch",
                        recovery="Send a unified diff with '--- a/path' and '+++ b/path' lines, "
                                 "or use propose_patch(path, old_text, new_text) instead.")
    return sorted(set(paths))


class ProposePatchUnified(SandboxTool):
    name = "propose_patch_unified"
    description = "Store a unified diff as a patch."
    inputs: ClassVar[dict[str, dict[str, Any]]] = {"diff": {"type": "string", "description": "unified diff"}}

    def forward(self, diff: str) -> dict[str, Any]:
        if not diff.endswith("\n"):
            diff += "\n"
        files = _check_patch_paths(diff)
        method, problem = self._check(diff)
        by_content = False
        if problem:
            rebuilt = self._by_content(diff)
            if rebuilt is not None and self._check(rebuilt)[0] == "git":
                diff, method, problem, by_content = rebuilt, "git", None, True
        patch = PendingPatch(self.ctx.new_patch_id(), "unified", diff, apply_with=method or "git")
        self.ctx.patches[patch.id] = patch
        result: dict[str, Any] = {"patch_id": patch.id, "files": files}
        if problem:
            result.update(check="does NOT apply", problem=problem,
                          recovery_suggestion="read_file the exact current lines and make a new diff, "
                                              "or use propose_patch(path, old_text, new_text).")
        elif by_content:
            result.update(check=f"applies by content (the hunk headers did not fit the file); call "
                                f"apply_patch('{patch.id}')", diff=_shown(diff))
        else:
            result["check"] = f"applies cleanly; call apply_patch('{patch.id}')"
        return result

    def _by_content(self, diff: str) -> str | None:
        """The same change rebuilt from the hunks' content (runner.agent.fuzzy: each hunk at exactly one place),
        as a diff git applies; None when that is not unambiguous."""
        import difflib

        from runner.agent.fuzzy import EditError, apply_edit, hunk_edits

        edits = hunk_edits(diff)
        if edits is None:
            return None
        texts: dict[str, tuple[str, str]] = {}
        try:
            for path, old_text, new_text in edits:
                if not old_text.strip():
                    return None
                before, current = texts.get(path) or (2 * (current_text(self.ctx, path, old_text, new_text),))
                texts[path] = (before, apply_edit(current, old_text, new_text).updated)
        except (EditError, ToolError):
            return None
        return "".join("".join(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                                    f"a/{path}", f"b/{path}"))
                       for path, (before, after) in texts.items())

    def _check(self, diff: str) -> tuple[str | None, str | None]:
        git = self.run(["git", "apply", "--check", "--recount", "--whitespace=nowarn", "-"], stdin=diff.encode())
        if git.ok:
            return "git", None
        fuzzy = self.run(["patch", "-p1", "--dry-run", "--batch", "--forward", "--fuzz=2", "-s"], stdin=diff.encode())
        if fuzzy.ok:
            return "patch", None
        return None, (git.stderr or fuzzy.stdout).strip()[:600]


class ProposePatch(SandboxTool):
    name = "propose_patch"
    description = "Store a search/replace edit as a patch."
    inputs: ClassVar[dict[str, dict[str, Any]]] = {
        "path": {"type": "string", "description": "file"},
        "old_text": {"type": "string", "description": "exact unique text, '' for new file"},
        "new_text": {"type": "string", "description": "replacement"},
    }

    def forward(self, path: str, old_text: str, new_text: str) -> dict[str, Any]:
        import difflib

        _refuse_git_dir(path)
        current = current_text(self.ctx, path, old_text, new_text)
        updated, how = located_edit(path, current, old_text, new_text)
        diff = _shown("".join(difflib.unified_diff(current.splitlines(keepends=True),
                                                   updated.splitlines(keepends=True), f"a/{path}", f"b/{path}")))
        patch = PendingPatch(self.ctx.new_patch_id(), "replace", diff, path=path, old_text=old_text,
                             new_text=new_text)
        self.ctx.patches[patch.id] = patch
        where = "cleanly" if how == "exact" else f"with old_text found {how}: check the hunk below"
        return {"patch_id": patch.id, "check": f"applies {where}; call apply_patch('{patch.id}')", "diff": diff}


def located_edit(path: str, current: str, old_text: str, new_text: str) -> tuple[str, str]:
    """The file's text after the edit, and how old_text was found (runner.agent.fuzzy): exact, or forgiving of
    whitespace, indentation, line endings and near misses, but only ever at exactly one place."""
    from runner.agent.fuzzy import EditError, apply_edit

    if not old_text:
        return new_text, "exact"
    try:
        found = apply_edit(current, old_text, new_text)
    except EditError as error:
        recovery = ("Include more surrounding lines in old_text so it occurs exactly once."
                    if error.kind == "ambiguous_match" else
                    "read_file the file and copy the exact lines, including indentation.")
        raise ToolError(f"{error} in {path}", error_type=error.kind, recovery=recovery) from None
    return found.updated, found.how



def current_text(ctx: ToolContext, path: str, old_text: str, new_text: str) -> str:
    """The file's exact text (see `_text`), checked for a search/replace edit: the file exists ('' old_text: it
    does not), and the edit is expressible in the file's bytes. Where old_text goes is `located_edit`'s job."""
    if _has_surrogates(old_text) or _has_surrogates(new_text):
        raise ToolError("old_text or new_text holds lone surrogates, which are not text", error_type="invalid_text",
                        recovery="Send plain Unicode text.")
    exists = ctx.sandbox.exec(["test", "-f", path], timeout=TOOL_TIMEOUT_S).ok
    if not old_text:
        if exists:
            raise ToolError(f"{path} exists; old_text is empty", error_type="file_exists",
                            recovery="To edit an existing file, pass the exact text to replace as old_text.")
        return ""
    if not exists:
        raise ToolError(f"{path} does not exist", error_type="file_not_found",
                        recovery="Check the path with list_files; pass old_text='' to create a new file.")
    current = _text(ctx, path, exact=True)
    not_utf8 = _has_surrogates(current)
    count = current.count(old_text)
    if count == 0 and not_utf8 and "\ufffd" in old_text:
        raise ToolError(f"{path} is not UTF-8 text: the bytes read_file shows as \ufffd are not that character, "
                        "so old_text cannot match them", error_type="not_utf8",
                        recovery="Pick old_text from lines without \ufffd, or edit those lines with run_cmd (sed).")
    if not_utf8 and not new_text.isascii():
        # The file's encoding is not UTF-8 and unknown (Latin-1? cp1252?): writing UTF-8 bytes into it would mix
        # two encodings in one file, and guessing could write the wrong bytes.
        raise ToolError(f"{path} is not UTF-8 text (Latin-1 or another legacy encoding): non-ASCII characters in "
                        "new_text cannot be written in its encoding", error_type="not_utf8",
                        recovery="Write new_text in ASCII only (e.g. escapes such as \\xe9 in code), or edit the "
                                 "file with run_cmd.")
    return current


class ShowPatch(SandboxTool):
    name = "show_patch"
    description = "Show a pending patch."
    inputs: ClassVar[dict[str, dict[str, Any]]] = {"patch_id": {"type": "string", "description": "e.g. p1"}}

    def forward(self, patch_id: str) -> dict[str, Any]:
        patch = _find_patch(self.ctx, patch_id)
        return {"patch_id": patch.id, "applied": patch.applied, "diff": patch.diff}


def _find_patch(ctx: ToolContext, patch_id: str) -> PendingPatch:
    patch = ctx.patches.get(patch_id.strip())
    if patch is None:
        known = ", ".join(ctx.patches) or "none yet"
        raise ToolError(f"no pending patch {patch_id!r} (known: {known})", error_type="unknown_patch",
                        recovery="Create one with propose_patch or propose_patch_unified first.")
    return patch


class ApplyPatch(SandboxTool):
    name = "apply_patch"
    description = "Apply a patch, all or nothing."
    inputs: ClassVar[dict[str, dict[str, Any]]] = {"patch_id": {"type": "string", "description": "e.g. p1"}}

    def forward(self, patch_id: str) -> dict[str, Any]:
        patch = _find_patch(self.ctx, patch_id)
        if patch.applied:
            raise ToolError(f"{patch.id} is already applied", error_type="already_applied",
                            recovery="Run the tests, or propose the next change.")
        if patch.kind == "replace":
            assert patch.path is not None and patch.old_text is not None and patch.new_text is not None
            current = current_text(self.ctx, patch.path, patch.old_text, patch.new_text)
            updated, _ = located_edit(patch.path, current, patch.old_text, patch.new_text)
            self.ctx.sandbox.write(patch.path, _encoded(updated))
        else:
            if patch.apply_with == "patch":
                # patch(1) is not atomic by itself: only a clean dry run may go ahead.
                dry = self.run(["patch", "-p1", "--dry-run", "--batch", "--forward", "--fuzz=2", "-s"],
                               stdin=patch.diff.encode())
                result = self.run(["patch", "-p1", "--batch", "--forward", "--fuzz=2", "-s", "--no-backup-if-mismatch"],
                                  stdin=patch.diff.encode()) if dry.ok else dry
            else:
                result = self.run(["git", "apply", "--recount", "--whitespace=nowarn", "-"], stdin=patch.diff.encode())
            if not result.ok:
                raise ToolError(f"{patch.id} does not apply: {(result.stderr or result.stdout).strip()[:600]}",
                                error_type="patch_failed",
                                recovery="Nothing was changed. read_file the current lines and propose a new patch.")
        patch.applied = True
        return {"status": f"{patch.id} applied", "next": "run_tests to check the change"}


# ------------------------------------------------------------------------------------------- commands
class RunCmd(SandboxTool):
    name = "run_cmd"
    description = "Run one shell command."
    inputs: ClassVar[dict[str, dict[str, Any]]] = {
        "command": {"type": "string", "description": "command"},
    }

    def forward(self, command: str) -> dict[str, Any]:
        argv = authorise(self.ctx, command)
        result = self.ctx.sandbox.exec(argv, timeout=self.ctx.settings.sandbox_command_timeout)
        return _command_result(result)


def authorise(ctx: ToolContext, command: str) -> str:
    """Policy first; REQUIRE_APPROVAL goes to the gate. The command then runs as the very shell line the policy
    analysed (globs and quoting included), inside the sandbox."""
    from runner.policy import Decision

    verdict = ctx.policy.evaluate(command)
    if verdict.decision is Decision.DENY:
        raise ToolError(f"command denied by policy: {verdict.reason}", error_type="policy_denied",
                        recovery="Use a simpler, single command without pipes or redirections, or another tool.")
    if verdict.decision is Decision.REQUIRE_APPROVAL and not ctx.gate.request("command", command):
        raise ToolError(f"command needs approval and was not approved ({verdict.reason})",
                        error_type="approval_denied",
                        recovery="Do the work with allowed commands (tests, linters, read-only tools) or other tools.")
    return command


def _command_result(result: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"exit_code": result.exit_code}
    if result.timed_out:
        out["timed_out"] = "yes: the command was stopped"
    out["stdout"] = result.stdout
    out["stderr"] = result.stderr
    if result.truncated:
        out["note"] = "output was very long; only its beginning and end are shown"
    return out


class RunTests(SandboxTool):
    name = "run_tests"
    description = "Run the tests; pass/fail counts."
    inputs: ClassVar[dict[str, dict[str, Any]]] = {"command": _optional("string", "override")}

    def forward(self, command: str | None = None) -> dict[str, Any]:
        # The agent's own command is judged by the policy on every call and never remembered: neither a later
        # run_tests() nor the re-verification before promotion ever runs a command the agent chose.
        if command:
            chosen = argv = authorise(self.ctx, command)
        else:
            found = self.ctx.test_command or detect_test_command(self.ctx.sandbox.list_files("*"),
                                                                 config_reader(self.ctx.sandbox))
            if not found:
                raise ToolError("no test command detected", error_type="no_tests",
                                recovery="Pass command, e.g. run_tests(command='python3 -m pytest -q').")
            chosen = argv = found
        result = self.ctx.sandbox.exec(argv, timeout=float(self.ctx.settings.sandbox_command_timeout))
        verdict = classify_test_run(chosen, result.exit_code, result.stdout + "\n" + result.stderr,
                                    timed_out=result.timed_out)
        self.ctx.state.last_tests = TestOutcome(chosen, result.exit_code, verdict.passed, verdict.failed,
                                                verdict.errors, verdict.skipped, result.timed_out, verdict.status)
        summary = (f"{verdict.status.upper()}: {verdict.passed} passed, {verdict.failed} failed, "
                   f"{verdict.errors} errors")
        if verdict.status == "unavailable":
            raise ToolError(verdict.note, error_type="test_runner_missing",
                            recovery="Run the tests another way with run_cmd, or finish and say the tests could "
                                     "not run in the sandbox.")
        answer = {"summary": summary, "command": chosen, **_command_result(result)}
        if verdict.note:
            answer["note"] = verdict.note
        return answer


class FinalAnswer(Tool):
    """smolagents' final_answer with a shorter schema: every token of the tool list is paid on every call."""

    name = "final_answer"
    description = "Finish with a short summary."
    inputs: ClassVar[dict[str, dict[str, Any]]] = {"answer": {"type": "string", "description": "summary"}}
    output_type = "string"

    def forward(self, answer: str) -> str:
        return answer


TOOL_CLASSES: tuple[type[SandboxTool], ...] = (
    RepoInfo, ListFiles, RgSearch, ReadFile, ReadFileSnippet, GitStatus, GitDiff, GitLog,
    ProposePatchUnified, ProposePatch, ShowPatch, ApplyPatch, RunCmd, RunTests,
)


def build_tools(context: ToolContext) -> list[Tool]:
    from runner.agent.instrumentation import instrument

    tools: list[Tool] = [instrument(cls(context), context.state, context.settings) for cls in TOOL_CLASSES]
    return [*tools, FinalAnswer()]
