"""What a repo declares, and the script that installs it in the set-up container.

Everything read here comes from the repo under work and is untrusted: only file *names* from fixed lists and group
or extra names from a fixed set (test, tests, testing, dev) ever reach the script, each quoted; the repo's own code
runs only inside the set-up container (setup.py, build backends, its `.smol/setup.sh`), which is opt-in.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

SETUP_SCRIPT = ".smol/setup.sh"
"""The user's own set-up script: when present it replaces detection."""
VENV = "/opt/smol-env"
"""The Python environment of the image; a venv of the image's python3, on PATH in the sandbox."""
GO_ROOT = "/opt/smol-go"
UV_DIR = "/opt/smol/uv"
"""Where the uv binary is mounted (read-only) in the set-up container; it is not part of the image."""
WORKSPACE = "/workspace"
BASE_PATH = "/opt/smol/bin:/usr/local/bin:/usr/bin:/bin"
"""The sandbox image's PATH (its helpers first): an environment adds its own directories after the helpers."""

TEST_SETS = ("test", "tests", "testing", "dev")
"""Extras (PEP 621) and dependency groups (PEP 735) that hold what a project's tests need."""
PYTHON_FILES = ("pyproject.toml", "uv.lock", "setup.py", "setup.cfg")
_REQUIREMENTS = re.compile(r"^requirements[\w.-]*\.(txt|in)$")
_REQUIREMENTS_DIR = re.compile(r"^requirements/[\w.-]+\.txt$")
_MAX_FILE = 1024**2
_MAX_SCRIPT_FILES = 64


@dataclass(frozen=True)
class EnvPlan:
    """What the set-up phase does for one repo. `kinds` is empty when the repo declares nothing to install."""

    kinds: tuple[str, ...]
    inputs: tuple[str, ...]
    """Repo-relative paths of the files that define the environment (hashed into the cache key)."""
    user_script: str
    """Bash run as an unprivileged user in a copy of the repo at /workspace, network on."""
    root_script: str = ""
    """Bash run as root before it, only to add a toolchain from Debian packages (empty: nothing to add)."""
    image_env: dict[str, str] = field(default_factory=dict)
    """Variables the committed image carries (PATH, VIRTUAL_ENV, GO*) for every command in the sandbox."""
    owned_dirs: tuple[str, ...] = ()
    """Directories created for the unprivileged set-up user before it runs."""
    summary: tuple[str, ...] = ()
    """What was detected, one phrase each ("uv.lock (groups: tests)"), for progress lines and `smol env show`."""
    needs_uv: bool = False

    @property
    def declares_dependencies(self) -> bool:
        return bool(self.kinds)


def _read_text(root: Path, rel: str) -> str | None:
    path = root / rel
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > _MAX_FILE:
            return None
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _toml(root: Path, rel: str) -> dict[str, object]:
    text = _read_text(root, rel)
    if text is None:
        return {}
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return {}


def _table(data: object, *keys: str) -> dict[str, object]:
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data if isinstance(data, dict) else {}


def _present(root: Path, rel: str) -> bool:
    path = root / rel
    return path.is_file() and not path.is_symlink()


def requirement_files(root: Path) -> list[str]:
    """requirements*.txt at the root and requirements/*.txt, without documentation-only ones."""
    found: list[str] = []
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return []
    found += [n for n in names if _REQUIREMENTS.match(n) and n.endswith(".txt") and _present(root, n)]
    if (root / "requirements").is_dir() and not (root / "requirements").is_symlink():
        found += [f"requirements/{n}" for n in sorted(os.listdir(root / "requirements"))
                  if _REQUIREMENTS_DIR.match(f"requirements/{n}") and _present(root, f"requirements/{n}")]
    return [name for name in found if "doc" not in name.lower()]


def _setup_extras(root: Path) -> set[str]:
    """Test extras a setup.cfg or setup.py names (setup.py is code: only a literal `"tests": [` is recognised)."""
    extras: set[str] = set()
    text = _read_text(root, "setup.cfg")
    if text is not None:
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read_string(text)
            if parser.has_section("options.extras_require"):
                extras |= set(parser.options("options.extras_require"))
        except configparser.Error:
            pass
    text = _read_text(root, "setup.py")
    if text is not None and "extras_require" in text:
        extras |= set(re.findall(r"""["'](test|tests|testing|dev)["']\s*:\s*\[""", text))
    return extras & set(TEST_SETS)


def _test_sets(declared: object) -> list[str]:
    """The test sets a project declares; `dev` only when there is no test set (it often holds linters, docs and
    release tools that tests never import)."""
    names = [name for name in TEST_SETS if isinstance(declared, dict | set) and name in declared]
    return [name for name in names if name != "dev"] or names


def _python(root: Path) -> tuple[list[str], list[str], list[str]] | None:
    """(script lines, inputs, summary) for a Python project, or None when it declares nothing."""
    pyproject = _toml(root, "pyproject.toml")
    project = _table(pyproject, "project")
    installable = bool(project) or bool(_table(pyproject, "build-system")) or bool(_table(pyproject, "tool", "poetry"))
    installable = installable or _present(root, "setup.py") or _present(root, "setup.cfg")
    requirements = requirement_files(root)
    locked = _present(root, "uv.lock")
    if not (installable or requirements or locked):
        return None
    groups = _test_sets(_table(pyproject, "dependency-groups"))
    extras = _test_sets(_table(project, "optional-dependencies") if project else _setup_extras(root))
    inputs = [name for name in PYTHON_FILES if _present(root, name)] + requirements
    summary: list[str] = []
    lines = [f"uv venv --quiet {VENV} --python /usr/bin/python3"]
    if locked:
        selected = [f"--group {shlex.quote(g)}" for g in groups] + [f"--extra {shlex.quote(e)}" for e in extras]
        lines.append("uv export --frozen --no-hashes --no-emit-project --quiet " +
                     " ".join(selected + ["-o /tmp/smol-locked.txt"]))
        lines.append("uv pip install -r /tmp/smol-locked.txt")
        summary.append("uv.lock" + (f" ({', '.join(groups + extras)})" if groups or extras else ""))
    if requirements:
        lines.append("uv pip install " + " ".join(f"-r {shlex.quote(name)}" for name in requirements))
        summary.append(", ".join(requirements))
    if installable:
        target = "." + (f"[{','.join(extras)}]" if extras and not locked else "")
        group_flags = "".join(f" --group {shlex.quote(g)}" for g in groups) if not locked else ""
        lines.append(f"uv pip install -e {shlex.quote(target)}{group_flags}")
        what = "pyproject.toml" if project or pyproject else ("setup.py" if _present(root, "setup.py") else "setup.cfg")
        if not locked:
            sets = extras + [f"group {g}" for g in groups]
            what += f" ({', '.join(sets)})" if sets else ""
        summary.append(f"{what}, installed editable from /workspace")
    # A project whose test needs are not declared still gets a runner.
    lines.append("python -c 'import pytest' 2>/dev/null || uv pip install pytest")
    return lines, inputs, summary


def _go(root: Path) -> tuple[str, list[str], list[str], list[str]] | None:
    if not _present(root, "go.mod"):
        return None
    root_script = ("command -v go >/dev/null || { apt-get -o APT::Sandbox::User=root update -qq && "
                   "apt-get -o APT::Sandbox::User=root install -y -qq --no-install-recommends golang-go "
                   "&& rm -rf /var/lib/apt/lists/*; }")
    lines = ["go mod download", "go build ./... >/dev/null"]
    inputs = [name for name in ("go.mod", "go.sum") if _present(root, name)]
    return root_script, lines, inputs, ["go.mod: modules downloaded (toolchain: Debian golang-go)"]


GO_ENV = {
    "GOPATH": GO_ROOT, "GOMODCACHE": f"{GO_ROOT}/pkg/mod", "GOCACHE": "/tmp/go-build", "GOPROXY": "off",
    "GOTOOLCHAIN": "local", "GOFLAGS": "-modcacherw",
}
"""Modules come from the image, the build cache goes to the sandbox's /tmp, and nothing is ever fetched."""


def plan_for(root: Path) -> EnvPlan:
    """The set-up plan for the repo at `root`: its own script when it has one, else detection."""
    python = _python(root)
    go = _go(root)
    path = BASE_PATH
    image_env: dict[str, str] = {}
    if python is not None or _present(root, SETUP_SCRIPT):
        path = f"/opt/smol/bin:{VENV}/bin:/usr/local/bin:/usr/bin:/bin"
        image_env["VIRTUAL_ENV"] = VENV
    if go is not None:
        image_env.update(GO_ENV)
    image_env["PATH"] = path
    owned = [WORKSPACE, VENV] + ([GO_ROOT] if go is not None else [])
    if _present(root, SETUP_SCRIPT):
        inputs = sorted({*_script_inputs(root), *(python[1] if python else []), *(go[2] if go else [])})
        lines = [f"uv venv --quiet {VENV} --python /usr/bin/python3", f"bash {SETUP_SCRIPT}"]
        return EnvPlan(("script",), tuple(inputs), _join(lines), go[0] if go else "", image_env, tuple(owned),
                       (f"{SETUP_SCRIPT} (your set-up script)",), needs_uv=True)
    kinds: list[str] = []
    lines, inputs, summary = [], [], []
    root_script = ""
    if python is not None:
        kinds.append("python")
        lines += python[0]
        inputs += python[1]
        summary += python[2]
    if go is not None:
        kinds.append("go")
        root_script = go[0]
        lines += go[1]
        inputs += go[2]
        summary += go[3]
    if not kinds:
        return EnvPlan((), (), "")
    return EnvPlan(tuple(kinds), tuple(sorted(inputs)), _join(lines), root_script, image_env, tuple(owned),
                   tuple(summary), needs_uv=python is not None)


def _script_inputs(root: Path) -> list[str]:
    """Every regular file under `.smol/` (a set-up script may read its neighbours), capped."""
    found: list[str] = []
    base = root / ".smol"
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if not (Path(dirpath) / d).is_symlink())
        for name in sorted(filenames):
            rel = str((Path(dirpath) / name).relative_to(root))
            if _present(root, rel):
                found.append(rel)
            if len(found) >= _MAX_SCRIPT_FILES:
                return found
    return found


def _join(lines: list[str]) -> str:
    # -x: each step is echoed, so the progress lines and a failure's tail say which step it was.
    return "set -eux\n" + "\n".join(lines) + "\n"
