"""Root-owned repos through an idmapped mount (CI runs as root): the mount itself, what the sandbox can do with it,
and `smol gc` after a process that made one was killed. Run as a user that is not root, the mount is never made:
these tests then check that nothing is mounted and copy mode is used instead."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runner.sandbox import SandboxMode, idmap
from tests.conftest import tree_fingerprint

SMOL = str(Path(sys.executable).with_name("smol"))
AS_ROOT = os.geteuid() == 0


def _mounts() -> str:
    return Path("/proc/self/mountinfo").read_text()


def test_the_mount_shows_roots_files_as_the_users_read_only_and_goes_away(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "sub").mkdir(parents=True)
    (repo / "sub" / "file.txt").write_text("root's\n")
    if not AS_ROOT:
        assert idmap.available() == "the host process is not root"
        return
    mounted = idmap.mount(repo, f"test-{os.getpid()}", 1000, 1000)
    try:
        assert (mounted.path / "sub" / "file.txt").stat().st_uid == 1000
        assert (repo / "sub" / "file.txt").stat().st_uid == 0, "the tree itself is not re-owned"
        with pytest.raises(OSError, match="Read-only file system"):
            (mounted.path / "sub" / "file.txt").write_text("even root cannot write through it\n")
        assert os.stat(idmap.IDMAP_ROOT).st_mode & 0o777 == 0o700, "no other host user can reach it"
        assert str(mounted.path) in _mounts()
    finally:
        mounted.release()
    assert str(mounted.path) not in _mounts() and not mounted.directory.exists()
    assert (repo / "sub" / "file.txt").read_text() == "root's\n"
    mounted.release()  # idempotent


def test_gc_releases_only_the_mounts_of_dead_processes(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "f").write_text("x\n")
    if not AS_ROOT:
        assert idmap.collect() == []
        return
    alive = idmap.mount(repo, f"alive-{os.getpid()}", 1000, 1000)
    dead = idmap.mount(repo, f"dead-{os.getpid()}", 1000, 1000)
    (dead.directory / "owner").write_text(f"{os.uname().nodename}:999999999:1")  # a process that is gone
    try:
        released = idmap.collect()  # another `smol gc` running at the same time may have taken it first
        assert alive.directory.name not in released
        assert not dead.directory.exists() and str(dead.path) not in _mounts()
        assert str(alive.path) in _mounts()
    finally:
        alive.release()
        dead.release()
    assert (repo / "f").read_text() == "x\n"


def test_the_sandbox_can_change_nothing_of_the_root_owned_tree(make_repo: Callable[..., Path],
                                                               open_sandbox: Callable[..., Any]) -> None:
    repo = make_repo(owner=None)
    before = tree_fingerprint(repo)
    sandbox = open_sandbox(repo)
    assert sandbox.info.mode is (SandboxMode.OVERLAY if AS_ROOT else SandboxMode.COPY)
    # It looks like the sandbox user's own tree, but the lower layer is read-only and the real tree unreachable.
    attempt = sandbox.exec("echo pwn >> /sandbox/base/README.md; echo pwn > /sandbox/base/new.txt; "
                           "chmod 777 /sandbox/base/src; grep -c CapEff:.0000000000000000 /proc/self/status")
    assert attempt.stdout.strip() == "1", "no capabilities"
    assert attempt.stderr.count("Read-only file system") + attempt.stderr.count("Permission denied") >= 3, attempt
    assert sandbox.exec("echo mine >> README.md && chmod +x README.md && mkdir -p new/dir && mv src moved").ok
    patch = sandbox.diff()
    assert b"+mine" in patch and b"moved/app.py" in patch and b"pwn" not in patch
    assert tree_fingerprint(repo) == before


def test_gc_after_sigkill_unmounts_the_repo(make_repo: Callable[..., Path], sandbox_image: str,
                                            docker_client: Any) -> None:
    repo = make_repo(owner=None)
    before = tree_fingerprint(repo)
    process = subprocess.Popen([SMOL, "exec", "--repo", str(repo), "--", "sleep", "60"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    session = _wait_for_box(docker_client, process.pid)
    mounted = idmap.IDMAP_ROOT / session / "tree"
    assert (str(mounted) in _mounts()) is AS_ROOT
    process.kill()
    process.wait(timeout=30)
    assert (str(mounted) in _mounts()) is AS_ROOT, "SIGKILL cannot clean up"
    result = subprocess.run([SMOL, "gc"], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert f"smol-{session}-box" in result.stdout
    assert (f"removed idmapped mount {idmap.IDMAP_ROOT}/{session}" in result.stdout) is AS_ROOT, result.stdout
    assert str(mounted) not in _mounts() and not (idmap.IDMAP_ROOT / session).exists()
    assert docker_client.containers.list(all=True, filters={"label": f"smol.sandbox={session}"}) == []
    assert tree_fingerprint(repo) == before


def _wait_for_box(client: Any, pid: int) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for container in client.containers.list(filters={"label": "smol.role=box"}):
            owner = container.labels.get("smol.owner", "")
            if owner.split(":")[1:2] == [str(pid)] and container.status == "running":
                return str(container.labels["smol.sandbox"])
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    raise AssertionError("the sandbox never started")
