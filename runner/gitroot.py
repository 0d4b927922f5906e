"""Which directory is "the repo": the root of the git work tree a path lies in, found as git finds it (the nearest
directory upwards holding a `.git` entry), without running git on a tree we do not trust yet."""

from __future__ import annotations

import os
from pathlib import Path


def find_root(path: Path) -> tuple[Path, str]:
    """The work tree root above the resolved `path` and `path` relative to it (POSIX, "." for the root itself).
    A path in no git work tree is its own root: smol works on plain directories too."""
    resolved = path.resolve()
    for candidate in (resolved, *resolved.parents):
        if candidate.name == ".git":
            break  # inside a repository's own metadata: that is no working directory
        if os.path.lexists(candidate / ".git"):
            return candidate, resolved.relative_to(candidate).as_posix()
    return resolved, "."
