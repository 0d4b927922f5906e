"""Diff round trips: every kind of change made in the sandbox, applied with `git apply` to a copy of the original
tree, reproduces the sandbox's view exactly (files, symlinks, exec bits, bytes), in both sandbox modes."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import chown_tree, git, tree_fingerprint

MANIFEST = r"""
import hashlib, json, os, stat, sys
root = sys.argv[1]
out = {}
for dirpath, dirs, files in os.walk(root):
    dirs[:] = [d for d in dirs if not (dirpath == root and d == '.git')]
    for name in dirs + files:
        full = os.path.join(dirpath, name)
        rel = os.path.relpath(full, root)
        st = os.lstat(full)
        if stat.S_ISLNK(st.st_mode):
            out[rel] = 'link:' + os.readlink(full)
        elif stat.S_ISREG(st.st_mode):
            out[rel] = 'file:%s:%s' % ('x' if st.st_mode & 0o100 else '-', hashlib.sha256(open(full, 'rb').read()).hexdigest())
sys.stdout.write(json.dumps(out, sort_keys=True))
"""

ODD = "odd name, with: colon \u00e9\u6f22 'quote' \"dq\""

CHANGES: dict[str, str] = {
    "modify": "printf 'def add(a, b):\\n    return a + b + 0\\n' > src/app.py",
    "add": "mkdir -p pkg/deep && echo new > pkg/deep/new.py",
    "delete": "rm tests/test_app.py",
    "rename": "mv src/util/helpers.py src/util/renamed_helpers.py",
    "mode change": "chmod +x src/app.py && chmod -x scripts/run.sh",
    "symlink added": "ln -s src/app.py app_link",
    "symlink retargeted": "rm link_to_readme && ln -s src/app.py link_to_readme",
    "binary": "head -c 3000 /dev/urandom > data/blob.bin && printf '\\x00\\xff\\x10' > data/new.bin",
    "odd names": f"printf 'odd\\n' > \"{ODD}\" && printf 'tab\\n' > \"$(printf 'with\\ttab')\"",
    "dir replaced by file": "rm -rf src/util && echo now-a-file > src/util",
    "file replaced by dir": "rm README.md && mkdir README.md && echo inside > README.md/x.txt",
    "dir deleted and recreated": "rm -rf src && mkdir src && echo fresh > src/fresh.py",
    "directory renamed": "mv tests tests_renamed",
    "untracked file edited": "echo more >> notes.txt",
    "git internals are never part of it": "git add -A && git -c user.email=a@b -c user.name=a commit -qm x "
                                         "&& echo junk > .git/junk",
    "ignored new file left out": "echo build-output > app.log",
}


def sandbox_manifest(sandbox: Any) -> dict[str, str]:
    result = sandbox.exec(["python3", "-c", MANIFEST, "/workspace"], output_limit=64 * 1024**2)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def host_manifest(root: Path) -> dict[str, str]:
    result = subprocess.run(["python3", "-c", MANIFEST, str(root)], check=True, capture_output=True, text=True)
    return json.loads(result.stdout)


def apply_to_copy(original: Path, patch: bytes, tmp_path: Path) -> Path:
    copy = tmp_path / "applied"
    shutil.copytree(original, copy, symlinks=True)
    if patch:
        subprocess.run(["git", "apply", "--check", "--binary", "-"], cwd=copy, input=patch, check=True,
                       capture_output=True)
        subprocess.run(["git", "apply", "--binary", "-"], cwd=copy, input=patch, check=True, capture_output=True)
    return copy


@pytest.fixture
def diff_repo(make_repo: Callable[..., Path]) -> Callable[..., Path]:
    def make(owner: int | None) -> Path:
        repo = make_repo(owner=owner)
        (repo / "link_to_readme").symlink_to("README.md")
        if owner is not None:
            import os

            os.lchown(repo / "link_to_readme", owner, owner)
        return repo

    return make


@pytest.mark.parametrize("mode", ["overlay", "copy"])
@pytest.mark.parametrize("change", list(CHANGES), ids=list(CHANGES))
def test_diff_round_trip(change: str, mode: str, diff_repo: Callable[..., Path],
                         open_sandbox: Callable[..., Any], tmp_path: Path) -> None:
    repo = diff_repo(1000 if mode == "overlay" else None)
    before = tree_fingerprint(repo)
    sandbox = open_sandbox(repo, sandbox_mode=mode)
    assert sandbox.info.mode.value == mode
    result = sandbox.exec(CHANGES[change])
    assert result.exit_code == 0, result.stderr
    patch = sandbox.diff()
    assert b"/.git/" not in patch and b" .git/" not in patch
    applied = apply_to_copy(repo, patch, tmp_path)
    expected = sandbox_manifest(sandbox)
    if change == "ignored new file left out":
        assert patch == b""
        expected.pop("app.log")
        assert sandbox.left_out == {"ignored": ["app.log"], "special": [], "git": []}
    else:
        assert sandbox.left_out == {"ignored": [], "special": [], "git": []}
    if change == "git internals are never part of it":
        assert patch == b""
    assert host_manifest(applied) == expected
    assert tree_fingerprint(repo) == before


def test_all_changes_at_once(diff_repo: Callable[..., Path], open_sandbox: Callable[..., Any],
                             tmp_path: Path) -> None:
    repo = diff_repo(1000)
    sandbox = open_sandbox(repo)
    script = " && ".join(command for name, command in CHANGES.items()
                         if name not in ("dir replaced by file", "dir deleted and recreated", "rename",
                                         "git internals are never part of it", "ignored new file left out"))
    assert sandbox.exec(script).exit_code == 0
    patch = sandbox.diff()
    assert b"rename from" in patch or b"deleted file mode" in patch
    assert b"GIT binary patch" in patch
    assert host_manifest(apply_to_copy(repo, patch, tmp_path)) == sandbox_manifest(sandbox)


GIT_SPELLINGS = (
    "mkdir -p .GIT .Git/hooks src/.gIt 'git~1' '.git.' && echo evil > .GIT/config && echo hook > .Git/hooks/x "
    "&& echo y > src/.gIt/config && echo z > 'git~1/a' && echo w > '.git./b' && echo bare > .GiT "
    "&& git init -q nested && echo inner > nested/file.txt && echo real >> README.md"
)


@pytest.mark.parametrize("mode", ["overlay", "copy"])
def test_git_spellings_and_nested_repos_are_named_not_dropped_silently(mode: str, diff_repo: Callable[..., Path],
                                                                       open_sandbox: Callable[..., Any],
                                                                       tmp_path: Path) -> None:
    repo = diff_repo(1000 if mode == "overlay" else None)
    sandbox = open_sandbox(repo, sandbox_mode=mode)
    assert sandbox.info.mode.value == mode
    result = sandbox.exec(GIT_SPELLINGS)
    assert result.exit_code == 0, result.stderr
    patch = sandbox.diff()
    assert b"+real" in patch
    for name in (b".GIT", b".Git", b"gIt", b"git~1", b".git.", b".GiT", b"nested"):
        assert name not in patch, name
    assert sandbox.left_out["git"] == [".GIT", ".GiT", ".Git", ".git.", "git~1", "nested", "src/.gIt"]
    assert sandbox.left_out["ignored"] == [] and sandbox.left_out["special"] == []
    apply_to_copy(repo, patch, tmp_path)
    # Once they are gone again, nothing is left out.
    assert sandbox.exec("rm -rf .GIT .Git src/.gIt git~1 .git. .GiT nested").ok
    sandbox.diff()
    assert sandbox.left_out["git"] == []


def test_a_nested_repository_of_the_start_is_left_as_it_is(make_repo: Callable[..., Path],
                                                          open_sandbox: Callable[..., Any]) -> None:
    """Changing files inside a nested repository (or turning a directory into one) never puts them in the patch,
    in either mode, and is named; leaving it alone says nothing."""
    for mode, owner in (("overlay", 1000), ("copy", None)):
        repo = make_repo(f"repo-{mode}", owner=owner)
        git(repo, "init", "-q", "third_party")
        (repo / "third_party" / "lib.py").write_text("lib\n")
        if owner is not None:
            chown_tree(repo, owner, owner)
        sandbox = open_sandbox(repo, sandbox_mode=mode)
        assert sandbox.info.mode.value == mode
        assert sandbox.diff() == b"" and sandbox.left_out["git"] == []
        assert sandbox.exec("git init -q vendor && echo v > vendor/v.txt").ok
        sandbox.diff()
        assert sandbox.left_out["git"] == ["vendor"]
        assert sandbox.exec("git init -q src && echo changed >> src/app.py").ok
        patch = sandbox.diff()
        assert b"src/" not in patch, "a directory that became a repository is neither changed nor deleted"
        assert sandbox.left_out["git"] == ["src", "vendor"]


def test_more_than_a_hundred_left_out_paths_are_counted_not_named(diff_repo: Callable[..., Path],
                                                                 open_sandbox: Callable[..., Any]) -> None:
    sandbox = open_sandbox(diff_repo(1000))
    assert sandbox.exec("for i in $(seq 1 150); do echo x > f$i.log; done").ok
    assert sandbox.diff() == b""
    ignored = sandbox.left_out["ignored"]
    assert len(ignored) == 100 and all(name.endswith(".log") for name in ignored), ignored[-3:]
    assert not any(name.startswith("...") for name in ignored)
