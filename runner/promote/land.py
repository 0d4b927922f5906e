"""Landing a plan as a git commit: on a new branch (the working tree and index untouched) or on the current branch.

Only git plumbing, on the user's repository's GIT_DIR with no work tree, from a temporary directory, with hooks,
fsmonitor and protocols off: a commit is built in a private index (`read-tree`, `update-index --cacheinfo`,
`write-tree`, `commit-tree`) and a ref moves only with its expected old value. The working-tree write itself is
`apply_plan` (runner.promote.apply), which this module wraps for `--land commit`.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from runner.promote.apply import GIT_ENV, SAFE_GIT, Plan, PromotionError, apply_plan
from runner.sandbox.base import FileState


def is_git_repo(repo: Path) -> bool:
    return (repo / ".git").exists()


class _RepoGit:
    """Plumbing on the user's repository: GIT_DIR only (no work tree), run from a temporary directory, safe config."""

    def __init__(self, repo: Path) -> None:
        if not is_git_repo(repo):
            raise PromotionError(f"{repo} is not a git repository: land the change in the working tree instead")
        self.repo = repo
        self.env = {**GIT_ENV, "GIT_DIR": str(repo / ".git"), "GIT_LITERAL_PATHSPECS": "1",
                    "GIT_AUTHOR_NAME": "smol", "GIT_AUTHOR_EMAIL": "smol@localhost",
                    "GIT_COMMITTER_NAME": "smol", "GIT_COMMITTER_EMAIL": "smol@localhost"}
        self.git = [*SAFE_GIT, "-c", f"safe.directory={repo}"]

    def call(self, *args: str, data: bytes | None = None, extra: dict[str, str] | None = None) \
            -> subprocess.CompletedProcess[bytes]:
        # The directory git runs in is its work tree, named as such: a `core.worktree` in the repository's config
        # would otherwise make git read every path relative to wherever the temporary directory is inside it.
        # No command here reads or writes a work tree.
        directory = tempfile.gettempdir()
        try:
            return subprocess.run([*self.git, *args], input=data, capture_output=True, check=False,
                                  env={**self.env, "GIT_WORK_TREE": directory, **(extra or {})}, cwd=directory)
        except OSError as error:  # E2BIG: the plan's paths are named on the command line, and thousands of long
            # ones exceed the kernel's limit; a refusal, not a traceback
            raise PromotionError(f"git {args[0]} could not be started ({error.strerror or error}); land the change "
                                 "in the working tree instead") from None

    def run(self, *args: str, data: bytes | None = None, extra: dict[str, str] | None = None) -> str:
        result = self.call(*args, data=data, extra=extra)
        if result.returncode != 0:
            raise PromotionError(f"git {args[0]} failed: {result.stderr.decode(errors='replace').strip()[:300]}")
        return result.stdout.decode("utf-8", "surrogateescape").strip()

    def head(self) -> str:
        result = self.call("rev-parse", "--verify", "--quiet", "HEAD^{commit}")
        if result.returncode != 0:
            raise PromotionError("the repository has no commit yet: land the change in the working tree instead")
        return result.stdout.decode().strip()

    @staticmethod
    def mode_of(state: FileState) -> str:
        return "120000" if state.kind == "symlink" else ("100755" if state.executable else "100644")

    def blob(self, state: FileState, *, write: bool) -> str:
        return self.run("hash-object", *(["-w"] if write else []), "--stdin", data=state.data)

    def commit_plan(self, plan: Plan, parent: str, message: str) -> tuple[str, list[tuple[str, str | None]]]:
        """A commit of `parent` plus the plan, made in a private index. Returns it and (path, cacheinfo) pairs."""
        entries: list[tuple[str, str | None]] = []
        with tempfile.TemporaryDirectory(prefix="smol-index-") as scratch:
            index = {"GIT_INDEX_FILE": str(Path(scratch, "index"))}
            self.run("read-tree", parent, extra=index)
            # Deletions first: a file may take the place of a directory whose files the plan removes, and git's
            # index refuses a file and a directory of one name.
            for change in sorted(plan.changes, key=lambda change: change.after is not None):
                if change.after is None:
                    self.run("update-index", "--force-remove", "--", change.path, extra=index)
                    entries.append((change.path, None))
                    continue
                info = f"{self.mode_of(change.after)},{self.blob(change.after, write=True)},{change.path}"
                self.run("update-index", "--add", "--cacheinfo", info, extra=index)
                entries.append((change.path, info))
            tree = self.run("write-tree", extra=index)
        return self.run("commit-tree", tree, "-p", parent, "-m", message), entries


def head_states(repo: Path, paths: list[str]) -> tuple[str, dict[str, FileState | None]]:
    """HEAD and the state of each path in it (None where HEAD has no such file), read with plumbing only."""
    git = _RepoGit(repo)
    head = git.head()
    states: dict[str, FileState | None] = dict.fromkeys(paths)
    if not paths:
        return head, states
    listing = git.call("ls-tree", "-r", "-z", "--full-tree", head, "--", *paths)
    if listing.returncode != 0:
        raise PromotionError(f"git ls-tree failed: {listing.stderr.decode(errors='replace').strip()[:300]}")
    for entry in filter(None, listing.stdout.split(b"\0")):
        meta, _, raw = entry.partition(b"\t")
        mode, kind, blob = meta.decode().split(" ")
        path = os.fsdecode(raw)
        if kind != "blob" or path not in states:
            continue
        data = git.call("cat-file", "blob", blob).stdout
        states[path] = FileState("symlink", data) if mode == "120000" else FileState("file", data, mode == "100755")
    return head, states


def land_on_branch(repo: Path, plan: Plan, branch: str, message: str, *, head: str | None = None) -> str:
    """Commit the plan on a new branch from HEAD with git plumbing: the working tree and index stay untouched.

    The plan must have been made against HEAD (`make_plan(..., against=head_states(...))`): the commit is HEAD plus
    the agent's change, never the user's uncommitted lines. `head` is the commit the plan was made against; when
    HEAD moved since, nothing is written."""
    git = _RepoGit(repo)
    if not plan.ok:
        raise PromotionError("conflicts in: " + plan.describe_conflicts())
    if git.call("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}").returncode == 0:
        raise PromotionError(f"branch {branch} already exists: pick another name with --branch")
    parent = git.head()
    if head is not None and parent != head:
        raise PromotionError("HEAD moved while the change was being reviewed: run `smol promote` again")
    commit, _ = git.commit_plan(plan, parent, message)
    git.run("update-ref", f"refs/heads/{branch}", commit, "0" * 40)
    return commit


def dirty_paths(repo: Path, plan: Plan) -> list[str]:
    """The plan's paths whose working-tree state or staged state differs from HEAD: the user's uncommitted work."""
    git = _RepoGit(repo)
    head = git.head()
    paths = [change.path for change in plan.changes]
    if not paths:
        return []
    listing = git.run("ls-tree", "-r", "-z", "--full-tree", head, "--", *paths)
    committed: dict[str, tuple[str, str]] = {}
    for entry in filter(None, listing.split("\0")):
        meta, _, path = entry.partition("\t")
        mode, _, blob = meta.split(" ")
        committed[path] = (mode, blob)
    dirty = []
    for change in plan.changes:
        current = None if change.current is None else (git.mode_of(change.current),
                                                        git.blob(change.current, write=False))
        if current != committed.get(change.path):
            dirty.append(change.path)
    staged = git.run("diff-index", "--cached", "--name-only", "-z", head, "--", *paths)
    dirty += [path for path in staged.split("\0") if path and path not in dirty]
    return dirty


def land_on_current_branch(repo: Path, plan: Plan, message: str, *,
                           after_write: Callable[[str], None] | None = None) -> tuple[str, str | None]:
    """Write the plan into the working tree and commit exactly its paths on top of HEAD (the current branch).

    Refused with nothing written when a path the plan touches has uncommitted or staged changes: those are the
    user's work and must not end up in smol's commit. HEAD moves only if the tree write succeeds (it is put back
    otherwise). Returns the commit and, when the index could not be refreshed afterwards, why.
    """
    git = _RepoGit(repo)
    if not plan.ok:
        raise PromotionError("conflicts in: " + plan.describe_conflicts())
    head = git.head()
    paths = [change.path for change in plan.changes]
    dirty = dirty_paths(repo, plan)
    if dirty:
        raise PromotionError(f"uncommitted changes in {', '.join(sorted(dirty))} would end up in smol's commit: "
                             "commit or stash them first, or use --land worktree or --land branch")
    commit, entries = git.commit_plan(plan, head, message)
    git.run("update-ref", "HEAD", commit, head)
    try:
        apply_plan(repo, plan, after_write=after_write)
    except BaseException:
        git.call("update-ref", "HEAD", head, commit)
        raise
    # The index still holds the old blobs for these paths; without this, `git status` would show the change
    # staged in reverse.
    for path, info in entries:
        result = git.call("update-index", *(["--add", "--cacheinfo", info] if info else ["--force-remove"]),
                          *([] if info else ["--", path]))
        if result.returncode != 0:
            reason = result.stderr.decode(errors="replace").strip().splitlines()[:1]
            return commit, (f"the index could not be refreshed ({reason[0] if reason else 'git update-index failed'})"
                            f": run `git reset -q -- {' '.join(paths)}`")
    return commit, None


__all__ = ["dirty_paths", "head_states", "is_git_repo", "land_on_branch", "land_on_current_branch"]
