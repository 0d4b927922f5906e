"""The agent's editing tools: patches proposed (unified diffs or text replacements, located fuzzily), shown and
applied inside the sandbox; never a path into .git, never outside the repo."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from runner.agent.instrumentation import ToolError, check_relative_path
from runner.agent.toolbase import (
    TOOL_TIMEOUT_S,
    PendingPatch,
    SandboxTool,
    ToolContext,
)
from runner.agent.tools_read import _encoded, _has_surrogates, _shown, _text

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
