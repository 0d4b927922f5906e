"""The agent's reading tools: the repo's shape, files, searches and git's view, all as the sandbox sees them
(the agent's own edits included)."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from runner.agent.instrumentation import ToolError, check_relative_path
from runner.agent.toolbase import (
    MAX_TEXT_BYTES,
    SNIPPET_CONTEXT_LINES,
    SandboxTool,
    ToolContext,
    _optional,
    config_reader,
)
from runner.testcmd import detect_test_command


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
