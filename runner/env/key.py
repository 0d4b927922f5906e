"""The cache key of a prepared environment: a hash of everything that decides what the set-up phase installs.

Pure (no Docker): the sandbox asks it which image a repo's environment would have, and uses that image only when
it exists; it never builds one.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from runner.env.plan import EnvPlan

ENV_REPOSITORY = "smol-env"
RECIPE_VERSION = "1"
"""Bumped when the set-up recipe changes in a way the script text does not show (mounts, environment)."""
UV_VERSION = "0.13.9"
"""The uv release the set-up phase uses (pinned: an installer that changes under a cache key breaks the key)."""

LABEL = "smol.env"
"""On every environment image: the cache key. The other labels: the repo it was built for, its base image."""
LABEL_REPO = "smol.env.repo"
LABEL_BASE = "smol.env.base"
LABEL_SUMMARY = "smol.env.summary"


def input_hash(root: Path, plan: EnvPlan, base_image_id: str) -> str:
    """sha256 over the recipe, the base image, the scripts, the image's variables and each defining file."""
    digest = hashlib.sha256()
    header = {"recipe": RECIPE_VERSION, "uv": UV_VERSION if plan.needs_uv else "", "base": base_image_id,
              "root": plan.root_script, "user": plan.user_script, "env": plan.image_env}
    digest.update(json.dumps(header, sort_keys=True).encode() + b"\0")
    for rel in plan.inputs:
        digest.update(rel.encode() + b"\0")
        try:
            digest.update(hashlib.sha256((root / rel).read_bytes()).digest())
        except OSError:
            digest.update(b"<unreadable>")
    return digest.hexdigest()


def repo_slug(root: Path) -> str:
    """The repo directory's name as a tag fragment (lower case, [a-z0-9._-], at most 40 characters)."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", root.name.lower()).strip(".-_")[:40]
    return slug or "repo"


def env_tag(root: Path, plan: EnvPlan, base_image_id: str) -> str:
    """`smol-env:<repo>-<first 16 hex digits of the input hash>`."""
    return f"{ENV_REPOSITORY}:{repo_slug(root)}-{input_hash(root, plan, base_image_id)[:16]}"
