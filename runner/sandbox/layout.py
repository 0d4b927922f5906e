"""Where things are inside the sandbox and the environments commands run with: shared by the deployment (which
mounts them) and the runtime (which runs commands over them)."""

from __future__ import annotations

WORKSPACE = "/workspace"
BASE = "/sandbox/base"
SCRATCH = "/sandbox/scratch"
HOME = "/home/sandbox"
HELPERS = "/opt/smol/bin"

BASE_ENV = {
    "PATH": f"{HELPERS}:/usr/local/bin:/usr/bin:/bin",
    "HOME": HOME,
    "USER": "sandbox",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "GIT_OPTIONAL_LOCKS": "0",
    "GIT_CONFIG_COUNT": "1",
    "GIT_CONFIG_KEY_0": "safe.directory",
    "GIT_CONFIG_VALUE_0": "*",
    "GIT_PAGER": "cat",
    "PAGER": "cat",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTEST_ADDOPTS": "-p no:cacheprovider",
}

HELPER_ENV = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/nonexistent",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
}
"""The whole environment of the commands smol itself runs in the sandbox (read, write, list, export, diff, sweep):
nothing from SANDBOX_ENV_ALLOWLIST, no PYTHON* variables, and a HOME that does not exist, so no file the agent
can write ($HOME/.gitconfig, a .pth or usercustomize in the user site, rc files) is consulted."""

PYTHON = ["/usr/bin/python3", "-I", "-S"]
"""How helpers in Python run: isolated (no script directory or cwd on sys.path, no user site, PYTHON* ignored) and
without site (nothing of site-packages either); with `/` as their working directory, never the repo."""


def keeper_uid(uid: int) -> int:
    """The uid the containers' own processes run as: never the sandbox user, so its `kill -1` cannot reach them."""
    return 65534 if uid != 65534 else 65533
