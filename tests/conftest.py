"""Shared fixtures. Sandbox tests use the real Docker engine and the real image: when Docker is missing they
fail (never skip), because a skipped sandbox test would hide exactly what this project promises."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
# Run records and saved patches of the suite go to a scratch state directory, never the developer's own.
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="smol-test-state-")
os.environ.pop("RUNS_DB", None)
os.environ.pop("RAY_ADDRESS", None)  # `smol batch run` would otherwise send the suite's batches to a cluster
# Nor may the developer's own ~/.config/smol/config.env change what the suite sees.
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="smol-test-config-")

REPO_OWNER = 1000
"""Test repos belong to an ordinary user (uid 1000), as a developer's checkout would; CI runs as root."""

GIT = ["git", "-c", "safe.directory=*", "-c", "user.email=test@example.com", "-c", "user.name=Test",
       "-c", "init.defaultBranch=main", "-c", "core.hooksPath=/dev/null"]


def git(repo: Path, *args: str) -> str:
    return subprocess.run([*GIT, "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def chown_tree(root: Path, uid: int, gid: int) -> None:
    os.lchown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, gid)


def tree_fingerprint(root: Path, *, include_git: bool = True) -> dict[str, str]:
    """Every entry under root with its type, mode and content hash: equal fingerprints mean byte-identical trees."""
    result: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if not include_git and ".git" in dirnames and Path(dirpath) == root:
            dirnames.remove(".git")
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                result[rel] = f"link:{os.readlink(full)}"
            elif stat.S_ISDIR(st.st_mode):
                result[rel] = f"dir:{st.st_mode & 0o7777:o}"
            elif not stat.S_ISREG(st.st_mode):  # a FIFO would block a read
                result[rel] = f"special:{st.st_mode:o}:{st.st_mtime_ns}"
            else:
                digest = hashlib.sha256(Path(full).read_bytes()).hexdigest()
                result[rel] = f"file:{st.st_mode & 0o7777:o}:{digest}:{st.st_mtime_ns}"
    return result


@pytest.fixture(scope="session")
def docker_client() -> Any:
    """docker-py's own client, for tests that look at the engine behind smol's back (smol itself goes through
    runner.sandbox.engine, the one module of runner/ that imports docker)."""
    from runner.errors import DockerUnavailableError
    from runner.sandbox.engine import connect

    try:
        connect().close()
    except DockerUnavailableError as error:
        pytest.fail(f"these tests need the Docker engine: {error}", pytrace=False)
    import docker

    return docker.from_env(timeout=120)


@pytest.fixture(scope="session")
def sandbox_image(docker_client: Any) -> str:
    """The real sandbox image, built from this checkout if it is missing (never pulled)."""
    from runner.config import load_settings
    from runner.sandbox.engine import connect
    from runner.sandbox.image import build_image

    return build_image(connect(), load_settings(), lambda message: print(message))


def list_containers(client: Any, filters: dict[str, Any]) -> list[Any]:
    """docker-py's `containers.list(all=True)`: it lists, then inspects each container, so one removed in between
    (by another process's cleanup) is a 404 for the whole listing: list again."""
    import docker.errors

    for _ in range(20):
        try:
            return list(client.containers.list(all=True, filters=filters))
        except docker.errors.NotFound:
            time.sleep(0.05)
    raise AssertionError("containers kept disappearing while being listed")


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind() -> Iterator[None]:
    """After the whole suite, no sandbox container or volume made by this run may remain: neither ours nor one
    whose creating process (a `smol` the tests started) has exited. Other live processes' sandboxes are theirs."""
    yield
    from runner.sandbox.spares import POOL

    POOL.drain()  # spares this process made and nobody took; the CLI drains its own at exit
    try:
        import docker

        from runner.sandbox.labels import OWNER, owner_alive, owner_label

        client = docker.from_env()
        containers = list_containers(client, {"label": "smol.sandbox"})
        volumes = client.volumes.list(filters={"label": "smol.sandbox"})
    except Exception:  # Docker missing: the docker tests already failed loudly
        return

    def ours_or_orphaned(owner: str) -> bool:
        return owner == owner_label() or not owner_alive(owner)

    leftovers = [c.name for c in containers if ours_or_orphaned((c.labels or {}).get(OWNER, ""))]
    leftovers += [v.name for v in volumes if ours_or_orphaned((v.attrs.get("Labels") or {}).get(OWNER, ""))]
    assert not leftovers, f"left behind: {leftovers}"


@pytest.fixture
def settings_factory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., Any]:
    """Settings with small limits so containment tests finish quickly; `.env` of the checkout is not read."""
    from runner.config import load_settings

    monkeypatch.chdir(tmp_path)

    def make(**overrides: Any) -> Any:
        values: dict[str, Any] = {
            "sandbox_memory": "768m", "sandbox_disk": "256m", "sandbox_tmp_size": "64m",
            "sandbox_pids": 128, "sandbox_command_timeout": 60,
        }
        values.update(overrides)
        return load_settings(**values)

    return make


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[..., Path]:
    """A real git repo with one commit, then uncommitted edits and an untracked file on top."""

    def make(name: str = "repo", *, owner: int | None = REPO_OWNER, files: dict[str, bytes | str] | None = None,
             dirty: bool = True) -> Path:
        repo = tmp_path / name
        repo.mkdir(parents=True)
        git(repo, "init", "-q")
        content = files if files is not None else {
            "README.md": "# demo\n",
            "src/app.py": "def add(a, b):\n    return a + b\n",
            "src/util/helpers.py": "X = 1\n",
            "tests/test_app.py": "from src.app import add\n\ndef test_add():\n    assert add(1, 2) == 3\n",
            "data/blob.bin": bytes(range(256)) * 4,
            "scripts/run.sh": "#!/bin/sh\necho run\n",
        }
        for rel, data in content.items():
            path = repo / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data.encode() if isinstance(data, str) else data)
        if (repo / "scripts/run.sh").exists():
            (repo / "scripts/run.sh").chmod(0o755)
        (repo / ".gitignore").write_text("*.log\nbuild/\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "initial")
        if dirty:
            (repo / "README.md").write_text("# demo\n\nuncommitted edit\n")
            (repo / "notes.txt").write_text("untracked note\n")
        if owner is not None:
            chown_tree(repo, owner, owner)
        return repo

    return make


@pytest.fixture
def open_sandbox(sandbox_image: str, settings_factory: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """Start real sandboxes; every one is closed after the test, whatever happened."""
    from runner.sandbox.docker_sandbox import DockerSandbox

    opened: list[DockerSandbox] = []

    def start(repo: Path, **overrides: Any) -> DockerSandbox:
        sandbox = DockerSandbox(repo, settings_factory(**overrides), image=sandbox_image)
        opened.append(sandbox)
        sandbox.start()
        return sandbox

    yield start
    for sandbox in opened:
        sandbox.close()
    from runner.sandbox.spares import POOL

    POOL.drain()


DOCKER_FIXTURES = {"docker_client", "sandbox_image", "open_sandbox"}
DOCKER_MODULES = {"test_adversarial_fs.py", "test_adversarial_flow.py", "test_env_real.py"}
"""Modules whose every test checks the engine for leftovers (an autouse fixture of their own)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that reaches the engine (through a fixture, or a module marked `docker`) gets the `docker`
    marker, so `pytest -m "not docker"` runs the fast unit tests alone in seconds."""
    for item in items:
        if DOCKER_FIXTURES & set(getattr(item, "fixturenames", ())) or item.path.name in DOCKER_MODULES:
            item.add_marker(pytest.mark.docker)
