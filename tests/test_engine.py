"""The engine facade: docker-py's, requests' and the socket's failures arrive as our own errors, mapped once; an
engine that goes away mid-run ends smol with one line and the DOCKER exit code, never a traceback.

"Going away" is made real, not mocked: smol talks to the real engine through a small unix-socket proxy (on a tmp
path, never TCP) that the test cuts in the middle of a command."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.errors import DockerUnavailableError, ExitCode, ImageError, SandboxError, SmolError
from runner.sandbox.engine import engine_errors

SMOL = str(Path(sys.executable).with_name("smol"))
ENGINE_SOCKET = "/var/run/docker.sock"


# ---------------------------------------------------------------------------------------------- the mapping
def _raise(error: BaseException, **kwargs: Any) -> SmolError:
    with pytest.raises(SmolError) as caught, engine_errors("doing it", **kwargs):
        raise error
    assert caught.value.__cause__ is error, "the original stays the cause"
    assert "\n" not in str(caught.value)
    return caught.value


def test_each_foreign_error_maps_to_one_of_ours_by_its_own_class() -> None:
    import docker.errors
    import requests.exceptions

    answered = docker.errors.APIError("500 Server Error", explanation="Error processing tar file(exit status 1): "
                                      "no space left on device\nmore detail")
    error = _raise(answered)
    assert type(error) is SandboxError and str(error) == "doing it failed: no space left on device"
    # APIError is also a requests HTTPError (a RequestException): its own class decides, not its parent's.
    assert isinstance(answered, requests.exceptions.RequestException)
    assert type(_raise(docker.errors.NotFound("404 Client Error", explanation="No such container: x"))) \
        is SandboxError
    assert type(_raise(docker.errors.ImageNotFound("404", explanation="No such image: x"), failure=ImageError)) \
        is ImageError
    for gone in (requests.exceptions.ConnectionError("('Connection aborted.', FileNotFoundError(2))"),
                 requests.exceptions.ReadTimeout("read timed out"), docker.errors.DockerException("no socket"),
                 ConnectionResetError(104, "Connection reset by peer"), BrokenPipeError(32, "Broken pipe")):
        error = _raise(gone)
        assert type(error) is DockerUnavailableError and error.exit_code == ExitCode.DOCKER, gone
        assert "stopped answering while doing it" in str(error) and "smol gc" in str(error)


def test_our_own_errors_and_unknown_ones_pass_through_untouched() -> None:
    ours = SandboxError("already ours")
    with pytest.raises(SandboxError) as caught, engine_errors("doing it"):
        raise ours
    assert caught.value is ours
    with pytest.raises(ValueError, match="a bug"), engine_errors("doing it"):
        raise ValueError("a bug")


def test_no_module_but_the_engine_imports_docker() -> None:
    root = Path(__file__).resolve().parents[1] / "runner"
    importers = sorted(str(path.relative_to(root)) for path in root.rglob("*.py")
                       if any(word in path.read_text() for word in ("import docker", "from docker", "docker.errors",
                                                                     "requests.exceptions")))
    assert importers == ["sandbox/engine.py"]


# ---------------------------------------------------------------------------------------------- a real engine, cut
class SocketProxy:
    """Forwards a unix socket to the engine's, byte for byte (hijacked exec streams included), until cut."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(64)
        self.listener.settimeout(0.2)
        self.sockets: list[socket.socket] = []
        self.cut_done = threading.Event()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def _accept(self) -> None:
        while not self.cut_done.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(ENGINE_SOCKET)
            with self._lock:
                if self.cut_done.is_set():
                    client.close()
                    upstream.close()
                    return
                self.sockets += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        while True:
            try:
                data = source.recv(1 << 16)
                if not data:
                    target.shutdown(socket.SHUT_WR)  # a half-close (stdin sent) goes through as one
                    return
                target.sendall(data)
            except OSError:
                return

    def cut(self) -> None:
        """The engine goes away: no new connection, every open one reset."""
        with self._lock:
            self.cut_done.set()
            self.listener.close()
            self.path.unlink(missing_ok=True)
            for sock in self.sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()


@pytest.fixture
def proxy() -> Iterator[SocketProxy]:
    directory = Path(tempfile.mkdtemp(prefix="smol-proxy-", dir="/tmp"))  # short: a socket path has 108 bytes
    running = SocketProxy(directory / "docker.sock")
    yield running
    running.cut()
    shutil.rmtree(directory, ignore_errors=True)


def _remove_labelled(docker_client: Any, label: str) -> list[str]:
    """What the cut left on the real engine, removed; returns the container names found."""
    containers = docker_client.containers.list(all=True, filters={"label": label})
    for container in containers:
        container.remove(force=True)
    for volume in docker_client.volumes.list(filters={"label": label}):
        volume.remove(force=True)
    return [container.name for container in containers]


def test_an_engine_gone_mid_command_is_a_docker_error_and_close_still_returns(
        make_repo: Callable[..., Path], sandbox_image: str, settings_factory: Callable[..., Any],
        docker_client: Any, proxy: SocketProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.sandbox.docker_sandbox import DockerSandbox

    monkeypatch.setenv("DOCKER_HOST", proxy.url)
    sandbox = DockerSandbox(make_repo(), settings_factory(), image=sandbox_image)
    try:
        sandbox.start()
        assert sandbox.exec(["true"]).ok, "the proxy carries an ordinary run"

        def cut_when_ready(name: str, chunk: bytes) -> None:
            if b"ready" in chunk:
                proxy.cut()

        with pytest.raises(DockerUnavailableError) as caught:
            sandbox.exec("echo ready; sleep 60", on_output=cut_when_ready)
        assert "\n" not in str(caught.value) and proxy.url in str(caught.value)
        sandbox.close()  # the engine is gone: what it holds is left for `smol gc`, and close says so, not raises
    finally:
        sandbox.close()
        removed = _remove_labelled(docker_client, f"smol.sandbox={sandbox.session}")
    assert sorted(removed) == [f"smol-{sandbox.session}-box", f"smol-{sandbox.session}-keeper"]


def test_smol_exec_with_the_engine_gone_mid_run_prints_one_line_and_exits_3(
        make_repo: Callable[..., Path], sandbox_image: str, docker_client: Any, proxy: SocketProxy) -> None:
    repo = make_repo()
    process = subprocess.Popen([SMOL, "exec", "--repo", str(repo), "--", "bash", "-c", "echo ready; sleep 60"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "DOCKER_HOST": proxy.url})
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        proxy.cut()
        code = process.wait(timeout=60)
        stderr = process.stderr.read() if process.stderr else ""
    finally:
        process.kill()
        process.wait()
        removed = _remove_labelled(docker_client, f"smol.owner={_owner_of(docker_client, process.pid)}")
    assert code == ExitCode.DOCKER, stderr
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("smol: error:")]
    assert len(errors) == 1, stderr
    assert "stopped answering" in errors[0] and "smol gc" in errors[0]
    assert len(removed) == 2, "the engine was gone: smol could not remove its sandbox, `smol gc` can"


def _owner_of(docker_client: Any, pid: int) -> str:
    for container in docker_client.containers.list(all=True, filters={"label": "smol.role=box"}):
        owner = container.labels.get("smol.owner", "")
        if owner.split(":")[1:2] == [str(pid)]:
            return owner
    return f"none-for-{pid}"


# ---------------------------------------------------------------------------------------------- the agent
def test_a_tool_that_meets_a_gone_engine_stops_the_run_rather_than_asking_the_model(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from typing import ClassVar

    from smolagents import Tool

    from runner.agent.instrumentation import ToolError, instrument
    from runner.agent.state import RunState
    from runner.config import load_settings

    class Reads(Tool):
        name = "read_file"
        description = "read"
        inputs: ClassVar[dict[str, dict[str, Any]]] = {"path": {"type": "string", "description": "p"}}
        output_type = "string"

        def forward(self, path: str) -> dict[str, Any]:
            try:
                raise DockerUnavailableError("the Docker engine at x stopped answering while reading")
            except Exception as error:  # as tools do: every failure becomes a ToolError for the model
                raise ToolError(str(error), error_type="file_not_found", recovery="check the path") from None

    monkeypatch.chdir(tmp_path)
    state = RunState()
    output = instrument(Reads(), state, load_settings())(path="a.py")
    assert "error_type: docker_unavailable" in output and "internal_error" not in output
    assert "file_not_found" not in output
    assert state.stop_reason == "the Docker engine at x stopped answering while reading"
