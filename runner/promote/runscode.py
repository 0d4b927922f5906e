"""The "runs code" rules: files whose change could run code or steer a tool or agent, and so need a "yes".

Git attributes and submodules, CI, hooks, build manifests, interpreter start-up files (`.pth`, sitecustomize),
test-runner configuration and modules that shadow a test runner, editor and agent configuration, `.env` files.
"""

from __future__ import annotations

import itertools
import sys

from runner.promote.paths import is_dot_file

_CI_FILES = frozenset({".gitlab-ci.yml", "azure-pipelines.yml", "jenkinsfile", ".travis.yml",
                       "bitbucket-pipelines.yml"})
_HOOK_FILES = frozenset({".pre-commit-config.yaml", ".pre-commit-hooks.yaml", "lefthook.yml", ".lefthook.yml"})
_EDITOR_DIRS = frozenset({".vscode", ".devcontainer", ".idea"})
_BUILD_FILES = frozenset({
    "makefile", "gnumakefile", "package.json", "setup.py", "setup.cfg", "pyproject.toml", "conftest.py",
    "tox.ini", "noxfile.py", "cargo.toml", "build.rs", "pom.xml", "cmakelists.txt", ".npmrc", ".pypirc",
    ".yarnrc", ".yarnrc.yml", "sitecustomize.py", "usercustomize.py", "gradlew", "mvnw",
})
# A change that configures or replaces the test runner chooses what "verified" means: pytest's own config files,
# and modules that shadow a runner (`python -m pytest` puts the working directory first on sys.path).
_TEST_RUNNER_FILES = frozenset({"pytest.ini", ".pytest.ini", "pytest.py", "py.py", "pluggy.py", "unittest.py",
                                "nose.py", "nose2.py", "hypothesis.py", ".mocharc.json", ".mocharc.yml",
                                ".mocharc.js", "karma.conf.js"})
_TEST_RUNNER_PREFIXES = ("jest.config.", "vitest.config.", "playwright.config.")
_TEST_RUNNER_PACKAGES = frozenset({"pytest", "_pytest", "pluggy", "unittest", "nose", "nose2"})
# A module named like the standard library's, where an interpreter or pytest puts it first on sys.path (the working
# directory, a `src/` root, a test directory without __init__.py), replaces that module for everything imported
# after it: a root `argparse.py` can print "5 passed" and exit 0 for pytest itself, faking a verification.
_STDLIB = frozenset(name.casefold() for name in sys.stdlib_module_names if not name.startswith("_"))
_IMPORT_ROOTS = frozenset({"src", "lib", "tests", "test", "testing"})
_AGENT_FILES = frozenset({"agents.md", "claude.md", "gemini.md", ".cursorrules", ".windsurfrules", ".clinerules"})
_AGENT_DIRS = frozenset({".cursor", ".claude"})


def runs_code_reason(path: str) -> str | None:
    """Why a change to `path` could run code or steer a tool or agent (None when it cannot, as far as we know).

    Names are compared case-insensitively and in any directory: over-flagging costs one question, missing a
    CI file on a case-insensitive filesystem costs a compromised pipeline.
    """
    raw_parts = path.split("/")
    parts = [p.casefold() for p in raw_parts]
    base, name = parts[-1], raw_parts[-1]
    if is_dot_file(name, "gitattributes", "gi7d29"):
        return "git attributes can configure filters and diff/merge drivers that run commands"
    if is_dot_file(name, "gitmodules", "gi7eba"):
        return "submodule configuration makes git fetch and check out other repositories"
    if any(a == ".github" and b in ("workflows", "actions") for a, b in itertools.pairwise(parts)) \
            or ".circleci" in parts[:-1] or base in _CI_FILES:
        return "CI configuration runs code on the CI machines"
    if ".husky" in parts[:-1] or ".githooks" in parts[:-1] or base in _HOOK_FILES:
        return "git hook configuration runs code on commit or push"
    if base == ".envrc":
        return "direnv runs .envrc when you enter the directory"
    if _EDITOR_DIRS & set(parts):
        return "editor/devcontainer configuration can run tasks and commands"
    if (base in _BUILD_FILES or base.endswith((".mk", ".pth", ".dockerfile"))
            or base.startswith(("build.gradle", "settings.gradle", "dockerfile"))
            or (base.startswith(("docker-compose", "compose.")) and base.endswith((".yml", ".yaml")))):
        return "build script or manifest runs code when you build, install or test"
    if (base in _AGENT_FILES or _AGENT_DIRS & set(parts) or parts[-2:] == [".github", "copilot-instructions.md"]
            or any(p.startswith((".aider", ".smol")) for p in parts)):
        return "agent configuration steers what coding agents do next time"
    if base.startswith(".env"):
        return "environment file: tools (smol itself included) load settings and secrets from it"
    if base in _TEST_RUNNER_FILES or base.startswith(_TEST_RUNNER_PREFIXES) or parts[0] in _TEST_RUNNER_PACKAGES:
        return "configures or shadows the test runner: it decides what re-verification counts as passing"
    if _shadows_stdlib(parts):
        return ("has the name of a standard-library module where it comes first on the import path: it replaces "
                "that module for the tests and the re-verification too")
    return None


_MODULE_SUFFIXES = (".py", ".pyc", ".so")
"""What Python imports as a module from a directory on the path: source, a sourceless `.pyc` (`json.pyc` next to
the tests is imported as `json`), an extension module (`json.so`, `json.cpython-311-x86_64-linux-gnu.so`)."""


def _shadows_stdlib(parts: list[str]) -> bool:
    """`argparse.py` or `json/__init__.py` at the root, or directly under a usual import root (src/, tests/)."""
    for depth in (0, 1):
        if depth and (len(parts) < 2 or parts[0] not in _IMPORT_ROOTS):
            break
        rest = parts[depth:]
        module = rest[0].split(".", 1)[0] if len(rest) == 1 and rest[0].endswith(_MODULE_SUFFIXES) else \
            (rest[0] if len(rest) > 1 else None)
        if module is not None and module in _STDLIB:
            return True
    return False


__all__ = ["runs_code_reason"]
