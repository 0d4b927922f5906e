"""The structure issue 12 asks for, kept true by a test: data flows one way (cli → agent/promote → sandbox →
engine), only the engine facade imports docker, the sandbox knows neither smolagents nor click, the services know
no click, and no module grows past what one reads in a sitting."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

RUNNER = Path(__file__).resolve().parents[1] / "runner"
MAX_LINES = 420
"""About 400: a module one reads in one sitting (a little slack, never a second concern)."""


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(RUNNER.rglob("*.py")):
        parts = path.relative_to(RUNNER.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path) -> set[str]:
    """Every module this file imports, at any depth (lazy imports inside functions count: they run too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def importers_of(prefixes: tuple[str, ...]) -> dict[str, set[str]]:
    found = {}
    for name, path in modules().items():
        hits = {imported for imported in imports(path) if imported.startswith(prefixes)}
        if hits:
            found[name] = hits
    return found


def test_only_the_engine_facade_imports_docker() -> None:
    docker_users = importers_of(("docker", "requests"))
    assert set(docker_users) == {"runner.sandbox.engine"}, docker_users


@pytest.mark.parametrize(("package", "forbidden"), [
    ("runner.sandbox", ("smolagents", "click", "litellm", "runner.agent", "runner.promote", "runner.cli",
                        "runner.batch")),
    ("runner.promote", ("click", "runner.cli", "runner.batch")),
    ("runner.replay", ("click", "runner.cli")),
    ("runner.agent", ("click", "runner.cli", "runner.batch")),
    ("runner.batch", ("click", "runner.cli")),
    ("runner.policy", ("click", "runner.cli", "runner.agent", "runner.promote", "runner.sandbox", "docker")),
    ("runner.textsafe", ("runner.",)),
])
def test_imports_flow_one_way(package: str, forbidden: tuple[str, ...]) -> None:
    offenders = {}
    for name, path in modules().items():
        if name == package or name.startswith(package + "."):
            bad = {imported for imported in imports(path) if imported.startswith(forbidden)}
            if bad:
                offenders[name] = sorted(bad)
    assert offenders == {}, offenders


def test_no_module_is_longer_than_one_sitting() -> None:
    long = {name: count for name, path in modules().items()
            if (count := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}, long
