"""The sandbox against the real engine and the real image: isolation, containment, visibility."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runner.errors import SandboxError, SandboxPathError
from runner.sandbox import SandboxMode
from tests.conftest import tree_fingerprint


@pytest.fixture
def repo(make_repo: Callable[..., Path]) -> Path:
    return make_repo()


def test_container_is_hardened(repo: Path, open_sandbox: Callable[..., Any], docker_client: Any,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMOL_TEST_SECRET", "hunter2")
    sandbox = open_sandbox(repo)
    assert sandbox.info.mode is SandboxMode.OVERLAY
    status = sandbox.exec("grep -E '^(CapEff|CapPrm|NoNewPrivs)' /proc/self/status; id -u; id -g")
    assert status.exit_code == 0
    lines = status.stdout.split()
    assert lines[lines.index("CapEff:") + 1] == "0000000000000000"
    assert lines[lines.index("CapPrm:") + 1] == "0000000000000000"
    assert lines[lines.index("NoNewPrivs:") + 1] == "1"
    assert lines[-2:] == ["1000", "1000"]

    attrs = docker_client.containers.get(sandbox.info.container_id).attrs
    host = attrs["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["NetworkMode"] == "none"
    assert host["Init"] is True
    assert host["PidsLimit"] == 128
    assert host["Memory"] == 768 * 1024**2
    assert host["NanoCpus"] == 1_000_000_000
    assert attrs["Config"]["Labels"]["smol.sandbox"] == sandbox.session
    assert not any("docker.sock" in str(m.get("Source")) for m in attrs["Mounts"])

    env = sandbox.exec(["env"])
    assert "hunter2" not in env.stdout and "SMOL_TEST_SECRET" not in env.stdout


def test_writes_outside_the_overlay_fail(repo: Path, open_sandbox: Callable[..., Any]) -> None:
    sandbox = open_sandbox(repo)
    for target in ("/etc/passwd", "/usr/bin/evil", "/sandbox/base/README.md", "/opt/smol/bin/smol-exec", "/x"):
        result = sandbox.exec(["bash", "-c", f"echo pwned > {target}"])
        assert result.exit_code != 0, target
        assert "Read-only file system" in result.stderr or "Permission denied" in result.stderr
    assert sandbox.exec("echo ok > /tmp/scratch && echo ok > ~/home-file && echo ok > inside.txt").ok
    assert not (repo / "inside.txt").exists()


def test_network_is_unreachable(repo: Path, open_sandbox: Callable[..., Any]) -> None:
    sandbox = open_sandbox(repo)
    probe = (
        "import socket\n"
        "for host in [('1.1.1.1', 53), ('172.17.0.1', 2375), ('10.0.0.1', 80)]:\n"
        "    s = socket.socket(); s.settimeout(2)\n"
        "    try:\n"
        "        s.connect(host); print('CONNECTED', host)\n"
        "    except OSError as e:\n"
        "        print('refused', host, e.errno)\n"
        "print(sorted(__import__('os').listdir('/sys/class/net')))\n"
    )
    result = sandbox.exec(["python3", "-c", probe])
    assert result.exit_code == 0, result.stderr
    assert "CONNECTED" not in result.stdout
    assert result.stdout.count("refused") == 3
    assert "['lo']" in result.stdout


def test_dirty_and_untracked_files_are_visible_and_git_works(repo: Path, open_sandbox: Callable[..., Any]) -> None:
    before = tree_fingerprint(repo)
    sandbox = open_sandbox(repo)
    assert sandbox.read("README.md") == b"# demo\n\nuncommitted edit\n"
    assert sandbox.read("notes.txt") == b"untracked note\n"
    status = sandbox.exec("git status --porcelain")
    assert status.exit_code == 0, status.stderr
    assert " M README.md" in status.stdout and "?? notes.txt" in status.stdout
    log = sandbox.exec(["git", "log", "--oneline"])
    assert "initial" in log.stdout
    assert "README.md" in sandbox.list_files("*.md")
    assert sandbox.list_files("**/*.py") == ["src/app.py", "src/util/helpers.py", "tests/test_app.py"]
    assert sandbox.diff() == b"", "reading and git status must not count as changes"
    tests = sandbox.exec(["python3", "-m", "pytest", "-q"])
    assert tests.exit_code == 0 and "1 passed" in tests.stdout, tests.stdout + tests.stderr
    assert tree_fingerprint(repo) == before


def test_read_write_and_paths(repo: Path, open_sandbox: Callable[..., Any]) -> None:
    sandbox = open_sandbox(repo)
    sandbox.write("new/dir/file.txt", b"hello\x00world")
    assert sandbox.read("new/dir/file.txt") == b"hello\x00world"
    sandbox.write("tool.sh", b"#!/bin/sh\necho tool\n", executable=True)
    assert sandbox.exec(["./tool.sh"]).stdout == "tool\n"
    for bad in ("/etc/passwd", "../outside", "src/../../x", "~/.ssh/id_rsa"):
        with pytest.raises(SandboxPathError):
            sandbox.read(bad)
        with pytest.raises(SandboxPathError):
            sandbox.write(bad, b"x")
    with pytest.raises(SandboxError, match="No such file"):
        sandbox.read("missing.txt")
    # A symlink that points out of the repo only reaches what the container sees: not the host.
    sandbox.exec("ln -s /etc/hostname escape")
    assert sandbox.read("escape").strip() == b"sandbox"
    assert not (repo / "new").exists()


CONTAINMENT: list[tuple[str, str, Callable[[Any], bool]]] = [
    ("fork bomb", "bomb() { bomb | bomb & }; bomb; sleep 30",
     lambda r: r.timed_out and "Resource temporarily unavailable" in r.stderr),
    ("memory bomb", "python3 -c 'x = []\nwhile True: x.append(bytearray(64 * 1024 * 1024))'",
     lambda r: r.exit_code == 137 and not r.timed_out and any("memory limit (SANDBOX_MEMORY) was reached" in n
                                                                for n in r.notes)),
    ("disk filler", "cat /dev/zero > big.bin; echo status=$?; df -k . | tail -1",
     lambda r: "No space left on device" in r.stderr and "status=1" in r.stdout),
    ("loop ignoring SIGTERM", "trap '' TERM; while :; do :; done",
     lambda r: r.timed_out and r.exit_code in (124, 137)),
    ("detached background child", "setsid nohup sleep 1000 >/dev/null 2>&1 & nohup sleep 999 >/dev/null 2>&1 & echo started",
     lambda r: r.exit_code == 0 and r.stdout == "started\n" and r.duration_s < 4),
    ("background child holding stdout", "sleep 1000 & echo started",
     lambda r: r.exit_code == 0 and r.stdout == "started\n" and not r.timed_out and r.duration_s < 4),
    ("100 MB without newlines", "head -c 100000000 /dev/zero | tr '\\0' x",
     lambda r: r.truncated and r.stdout_bytes == 100_000_000 and len(r.stdout) < 2 * 1024**2),
]


@pytest.mark.parametrize(("name", "script", "contained"), CONTAINMENT, ids=[c[0] for c in CONTAINMENT])
def test_hostile_commands_are_contained(name: str, script: str, contained: Callable[[Any], bool], repo: Path,
                                        open_sandbox: Callable[..., Any]) -> None:
    before = tree_fingerprint(repo)
    sandbox = open_sandbox(repo, sandbox_pids=64, sandbox_memory="512m", sandbox_disk="128m")
    sandbox.write("keep.txt", b"work in progress\n")
    started = time.monotonic()
    result = sandbox.exec(script, timeout=6)
    elapsed = time.monotonic() - started
    assert contained(result), f"{name}: {result}"
    assert elapsed < 6 + 15, f"{name} held the host for {elapsed:.1f}s"
    # Nothing the command started survives it, and the sandbox is still usable with its state.
    leftovers = sandbox.exec("ps -eo user=,comm= | awk '$1 != \"nobody\"' | grep -v -E '^\\S+ +(ps|awk|grep|bash|smol-exec|timeout)$' || true")
    assert leftovers.stdout.strip() == "", f"{name}: {leftovers.stdout}"
    assert sandbox.read("keep.txt") == b"work in progress\n"
    assert sandbox.exec(["true"]).ok
    assert tree_fingerprint(repo) == before


def test_timeout_keeps_overlay_state(repo: Path, open_sandbox: Callable[..., Any]) -> None:
    sandbox = open_sandbox(repo)
    sandbox.exec("echo edited >> src/app.py")
    result = sandbox.exec("sleep 100", timeout=1)
    assert result.timed_out and result.duration_s < 6
    assert sandbox.read("src/app.py").endswith(b"edited\n")
    assert b"+edited" in sandbox.diff()


def test_a_root_owned_repo_as_root_is_overlaid_through_an_idmapped_mount(make_repo: Callable[..., Path],
                                                                         open_sandbox: Callable[..., Any]) -> None:
    """CI runs as root over a root-owned checkout: overlay mode still (no copy), the sandbox user never root, the
    host tree untouched, and no mount left once the sandbox is closed. (Run by a user that is not root, a
    root-owned repo is copied: the mount needs root.)"""
    repo = make_repo(owner=None)  # created by root, as on CI
    before = tree_fingerprint(repo)
    sandbox = open_sandbox(repo)
    if os.geteuid() != 0:
        assert sandbox.info.mode is SandboxMode.COPY and "owned by root" in sandbox.info.mode_reason
    else:
        assert sandbox.info.mode is SandboxMode.OVERLAY
        assert "idmapped mount" in sandbox.info.mode_reason
    assert sandbox.info.uid != 0
    assert sandbox.read("notes.txt") == b"untracked note\n"
    assert sandbox.exec("echo more >> README.md && rm notes.txt").ok
    patch = sandbox.diff()
    assert b"+more" in patch and b"deleted file mode" in patch
    assert tree_fingerprint(repo) == before
    sandbox.close()
    assert str(repo) not in Path("/proc/self/mountinfo").read_text()


def test_falls_back_to_copy_mode_when_the_engine_sees_another_tree(repo: Path, open_sandbox: Callable[..., Any],
                                                                   docker_client: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """As with an engine in a VM whose daemon finds a different directory at the repo's path: the overlay objects
    are removed and copy mode takes over, with the same view of the tree."""
    from runner.sandbox import overlaymode

    monkeypatch.setattr(overlaymode, "daemon_sees", lambda deployment, box, root, user: False)
    before = tree_fingerprint(repo)
    sandbox = open_sandbox(repo)
    assert sandbox.info.mode is SandboxMode.COPY
    assert "sees a different tree" in sandbox.info.mode_reason
    assert sandbox.read("notes.txt") == b"untracked note\n"
    assert sandbox.exec("echo more >> README.md").ok and b"+more" in sandbox.diff()
    roles = {c.labels["smol.role"] for c in docker_client.containers.list(
        all=True, filters={"label": f"smol.sandbox={sandbox.session}"})}
    assert roles == {"keeper", "box"}
    volumes = {v.name.rsplit("-", 1)[-1] for v in docker_client.volumes.list(
        filters={"label": f"smol.sandbox={sandbox.session}"})}
    assert "overlay" not in volumes and "scratch" not in volumes
    assert tree_fingerprint(repo) == before


def test_close_removes_everything(repo: Path, open_sandbox: Callable[..., Any], docker_client: Any) -> None:
    sandbox = open_sandbox(repo)
    session = {"label": f"smol.sandbox={sandbox.session}"}
    assert len(docker_client.containers.list(all=True, filters=session)) == 2
    assert len(docker_client.volumes.list(filters=session)) == 2
    sandbox.close()
    sandbox.close()
    assert docker_client.containers.list(all=True, filters=session) == []
    assert docker_client.volumes.list(filters=session) == []
