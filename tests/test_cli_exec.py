"""`smol exec`, `smol gc`, `smol image`, through the real executable, with the real engine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import chown_tree, tree_fingerprint

SMOL = str(Path(sys.executable).with_name("smol"))


def smol(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
         timeout: float = 300) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([SMOL, *args], check=False, cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> None:
    assert result.returncode == code, result
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("smol: error:")]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def repo(make_repo: Callable[..., Path], sandbox_image: str) -> Path:
    return make_repo()


def test_exec_streams_output_and_passes_the_exit_code(repo: Path, tmp_path: Path) -> None:
    before = tree_fingerprint(repo)
    result = smol("exec", "--repo", str(repo), "--", "bash", "-c", "echo out; echo err >&2; exit 7")
    assert result.returncode == 7
    assert result.stdout == "out\n"
    assert "err" in result.stderr and "overlay mode" in result.stderr
    assert tree_fingerprint(repo) == before


def test_exec_writes_the_patch_and_never_touches_the_repo(repo: Path, tmp_path: Path) -> None:
    before = tree_fingerprint(repo)
    patch = tmp_path / "out.patch"
    result = smol("exec", "--repo", str(repo), "--patch-out", str(patch), "--",
                  "bash", "-c", "echo changed >> src/app.py && rm notes.txt")
    assert result.returncode == 0, result.stderr
    text = patch.read_text()
    assert "+changed" in text and "deleted file mode" in text
    assert tree_fingerprint(repo) == before
    subprocess.run(["git", "-c", "safe.directory=*", "apply", "--check", str(patch)], cwd=repo, check=True)


def test_exec_names_what_the_patch_leaves_out(repo: Path, tmp_path: Path) -> None:
    patch = tmp_path / "out.patch"
    result = smol("exec", "--repo", str(repo), "--patch-out", str(patch), "--",
                  "bash", "-c", "echo x > build.log && mkdir -p build && echo y > build/out.o && mkfifo pipe "
                                "&& echo changed >> README.md")
    assert result.returncode == 0, result.stderr
    assert "+changed" in patch.read_text() and "pipe" not in patch.read_text()
    assert "left out of the change: new files your ignore rules match: build.log, build/out.o" in result.stderr
    assert "left out of the change: FIFOs, sockets or devices a patch cannot carry: pipe" in result.stderr
    shown = json.loads(smol("exec", "--repo", str(repo), "--json", "--", "mkfifo", "fifo").stdout)
    assert shown["left_out"] == {"ignored": [], "special": ["fifo"], "git": []}
    shown = json.loads(smol("exec", "--repo", str(repo), "--json", "--", "bash", "-c",
                            "mkdir -p .GIT && echo x > .GIT/config && git init -q nested && echo y > nested/f").stdout)
    assert shown["left_out"] == {"ignored": [], "special": [], "git": [".GIT", "nested"]}
    assert shown["diff_bytes"] == 0


def test_exec_json(repo: Path) -> None:
    result = smol("exec", "--repo", str(repo), "--json", "--", "python3", "-m", "pytest", "-q")
    payload = json.loads(result.stdout)
    assert result.returncode == 0 == payload["exit_code"]
    assert "1 passed" in payload["stdout"]
    assert payload["sandbox"]["mode"] == "overlay" and payload["diff_bytes"] == 0
    assert payload["timed_out"] is False


def test_exec_defaults_to_the_current_directory(repo: Path) -> None:
    result = smol("exec", "--", "cat", "notes.txt", cwd=repo)
    assert result.returncode == 0 and result.stdout == "untracked note\n"


@pytest.mark.parametrize("name", ["with space", "with,comma", "with:colon", "all of, them:here"])
def test_odd_repo_paths_work(name: str, make_repo: Callable[..., Path], sandbox_image: str) -> None:
    repo = make_repo(name)
    result = smol("exec", "--repo", str(repo), "--json", "--", "bash", "-c", "cat notes.txt && echo x > y")
    payload = json.loads(result.stdout)
    assert payload["exit_code"] == 0 and payload["stdout"] == "untracked note\n"
    assert payload["sandbox"]["mode"] == "overlay"
    assert not (repo / "y").exists()


def test_empty_and_non_git_directories_work(tmp_path: Path, sandbox_image: str) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    chown_tree(empty, 1000, 1000)
    result = smol("exec", "--repo", str(empty), "--json", "--", "bash", "-c", "echo hi > new.txt")
    assert json.loads(result.stdout)["diff_bytes"] > 0
    plain = tmp_path / "plain"
    (plain / "sub").mkdir(parents=True)
    (plain / "sub" / "f.txt").write_text("x\n")
    result = smol("exec", "--repo", str(plain), "--patch-out", str(tmp_path / "p"), "--", "rm", "sub/f.txt")
    assert result.returncode == 0, result.stderr
    assert "deleted file mode" in (tmp_path / "p").read_text()
    assert (plain / "sub" / "f.txt").read_text() == "x\n"


def test_bad_input_gets_one_line_errors(tmp_path: Path, sandbox_image: str) -> None:
    assert_one_line_error(smol("exec", "--repo", str(tmp_path / "nope"), "--", "true"), 2, "does not exist", "--repo")
    (tmp_path / "file").write_text("x")
    assert_one_line_error(smol("exec", "--repo", str(tmp_path / "file"), "--", "true"), 2, "is a file")
    assert_one_line_error(smol("exec", "--repo", str(tmp_path), "--", "true", env={"SANDBOX_MEMORY": "lots"}),
                          2, "SANDBOX_MEMORY", "lots")
    assert_one_line_error(smol("exec", "--repo", str(tmp_path), "--", "true", env={"SANDBOX_CPUS": "-1"}),
                          2, "SANDBOX_CPUS")
    assert_one_line_error(smol("exec", "--repo", str(tmp_path), "--", "true",
                               env={"DOCKER_HOST": "tcp://127.0.0.1:1"}), 3, "Docker is not reachable", "DOCKER_HOST")
    assert_one_line_error(smol("exec", "--repo", str(tmp_path), "--", "true",
                               env={"SANDBOX_IMAGE": "smol-sandbox:does-not-exist"}), 4, "SANDBOX_IMAGE")
    assert_one_line_error(smol("exec", "--repo", str(tmp_path), "--patch-out", str(tmp_path / "no/dir/p"), "--",
                               "true"), 2, "does not exist")
    missing = smol("exec", "--repo", str(tmp_path))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_a_huge_repo_starts_in_overlay_mode(make_repo: Callable[..., Path], sandbox_image: str) -> None:
    files = {f"d{i // 500}/f{i}.txt": f"{i}\n" for i in range(20_000)}
    repo = make_repo("huge", files=files, dirty=False)
    result = smol("exec", "--repo", str(repo), "--json", "--", "bash", "-c", "ls d39 | wc -l")
    payload = json.loads(result.stdout)
    assert payload["stdout"].strip() == "500" and payload["sandbox"]["mode"] == "overlay"


def test_sigterm_removes_the_sandbox(repo: Path, docker_client: Any) -> None:
    process = subprocess.Popen([SMOL, "exec", "--repo", str(repo), "--", "sleep", "60"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    session = _wait_for_sandbox(docker_client, process.pid)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM
    assert "Traceback" not in process.stderr.read()  # type: ignore[union-attr]
    assert docker_client.containers.list(all=True, filters={"label": f"smol.sandbox={session}"}) == []
    assert docker_client.volumes.list(filters={"label": f"smol.sandbox={session}"}) == []


def test_ctrl_c_removes_the_sandbox(repo: Path, docker_client: Any) -> None:
    before = tree_fingerprint(repo)
    process = subprocess.Popen([SMOL, "exec", "--repo", str(repo), "--", "bash", "-c", "echo x >> README.md; sleep 60"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    session = _wait_for_sandbox(docker_client, process.pid)
    os.killpg(process.pid, signal.SIGINT)  # what the terminal sends to the foreground group
    assert process.wait(timeout=60) == 130
    stderr = process.stderr.read()  # type: ignore[union-attr]
    assert "Traceback" not in stderr and "interrupted" in stderr
    assert docker_client.containers.list(all=True, filters={"label": f"smol.sandbox={session}"}) == []
    assert docker_client.volumes.list(filters={"label": f"smol.sandbox={session}"}) == []
    assert tree_fingerprint(repo) == before


def test_gc_after_sigkill(repo: Path, docker_client: Any) -> None:
    before = tree_fingerprint(repo)
    process = subprocess.Popen([SMOL, "exec", "--repo", str(repo), "--", "sleep", "60"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    session = _wait_for_sandbox(docker_client, process.pid)
    process.kill()
    process.wait(timeout=30)
    label = {"label": f"smol.sandbox={session}"}
    assert len(docker_client.containers.list(all=True, filters=label)) == 2, "SIGKILL cannot clean up"
    result = smol("gc")
    assert result.returncode == 0
    assert f"smol-{session}-box" in result.stdout and f"smol-{session}-scratch" in result.stdout
    assert docker_client.containers.list(all=True, filters=label) == []
    assert docker_client.volumes.list(filters=label) == []
    assert tree_fingerprint(repo) == before


def _wait_for_sandbox(client: Any, pid: int) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for container in client.containers.list(filters={"label": "smol.role=box"}):
            owner = container.labels.get("smol.owner", "")
            if owner.split(":")[1:2] == [str(pid)] and container.status == "running":
                return container.labels["smol.sandbox"]
        time.sleep(0.2)
    raise AssertionError("the sandbox never started")


def test_version_help_and_image_commands(sandbox_image: str) -> None:
    from runner import __version__

    assert smol("--version").stdout.strip() == f"smol, version {__version__}"
    help_text = smol("--help").stdout
    for command in ("exec", "gc", "image"):
        assert command in help_text
    assert smol("image", "tag").stdout.strip() == sandbox_image
    build = smol("image", "build")
    assert build.returncode == 0 and "up to date" in build.stderr

