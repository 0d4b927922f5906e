"""Tracing against a real Phoenix (`phoenix serve` on 127.0.0.1), local traces, `smol doctor`, the compose file."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fake_ollama import FakeOllama, final, tool

SMOL = str(Path(sys.executable).with_name("smol"))
ROOT = Path(__file__).resolve().parents[1]

SCRIPT = [
    tool("read_file", path="src/app.py"),
    tool("read_file", path="missing.py"),
    tool("run_tests"),
    final("looked around"),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Phoenix server on loopback, with its own working directory."""
    executable = Path(sys.executable).with_name("phoenix")
    assert executable.exists(), "arize-phoenix must be installed in the test environment (pip install -e '.[test]')"
    port, grpc = free_port(), free_port()
    env = {**os.environ, "PHOENIX_HOST": "127.0.0.1", "PHOENIX_PORT": str(port), "PHOENIX_GRPC_PORT": str(grpc),
           "PHOENIX_WORKING_DIR": str(tmp_path_factory.mktemp("phoenix")), "PHOENIX_TELEMETRY_ENABLED": "false"}
    log = tmp_path_factory.mktemp("phoenix-log") / "phoenix.log"
    with open(log, "wb") as output:
        process = subprocess.Popen([str(executable), "serve"], env=env, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2):
                break
        except OSError:
            assert process.poll() is None, log.read_text()[-2000:]
            time.sleep(1)
    else:
        process.kill()
        pytest.fail("phoenix did not start: " + log.read_text()[-2000:])
    yield url
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture
def repo(make_repo: Callable[..., Path], sandbox_image: str) -> Path:
    return make_repo()


def run_task(repo: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], float]:
    with FakeOllama(list(SCRIPT)) as fake:
        full_env = {**os.environ, "MODEL_API_BASE": fake.url, **env}
        started = time.monotonic()
        result = subprocess.run([SMOL, "run", "Look around", "--repo", str(repo), "--json"], env=full_env,
                                capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result, json.loads(result.stdout), elapsed


def test_local_trace_is_kept_with_the_run(repo: Path) -> None:
    result, summary, _ = run_task(repo, {"PHOENIX_ENABLED": "false"})
    assert "warning" not in result.stderr
    shown = subprocess.run([SMOL, "runs", "show", summary["run_id"], "--json", "--trace"], capture_output=True,
                           text=True, check=True)
    spans = json.loads(shown.stdout)["trace"]
    kinds = {span["kind"] for span in spans}
    assert {"AGENT", "CHAIN", "LLM", "TOOL"} <= kinds, kinds
    tools = [s for s in spans if s["kind"] == "TOOL" and s["attributes"].get("tool.name") == "read_file"]
    assert len(tools) == 2
    ok, failed = tools
    for span in tools:
        for key in ("tool.args_hash", "tool.input_size", "tool.output_size", "tool.duration_ms", "tool.truncated"):
            assert key in span["attributes"], key
    assert failed["attributes"]["tool.error_type"] == "file_not_found"
    assert "list_files" in failed["attributes"]["tool.recovery_hint"]
    assert "tool.error_type" not in ok["attributes"]
    llm = [s for s in spans if s["kind"] == "LLM"]
    assert len(llm) == 4 and all(s["attributes"].get("llm.token_count.prompt") == 100 for s in llm)
    names = {s["name"] for s in spans}
    assert {"sandbox.start", "sandbox.exec", "sandbox.diff", "promotion"} <= names
    start = next(s for s in spans if s["name"] == "sandbox.start")
    assert start["attributes"]["sandbox.mode"] == "overlay"
    execs = [s for s in spans if s["name"] == "sandbox.exec"]
    assert all("exec.exit_code" in s["attributes"] and "exec.timed_out" in s["attributes"] for s in execs)
    # The tree drawn in the terminal: the agent at the root, its steps and tools below.
    drawn = subprocess.run([SMOL, "runs", "show", summary["run_id"], "--trace"], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    assert drawn[0].startswith("smol run [CHAIN]")  # the command's root span, alone at the top
    assert [line for line in drawn if not line.startswith(" ")] == [drawn[0]]
    agent_line = next(line for line in drawn if "[AGENT]" in line)
    assert agent_line.startswith("  ") and not agent_line.startswith("   ")
    assert any(line.startswith("      ") and "[TOOL]" in line for line in drawn)
    # One run, one trace: the sandbox starts, the agent, the diff, the re-verification and the promotion.
    assert len({span["trace_id"] for span in spans}) == 1
    root = next(s for s in spans if s["name"] == "smol run")
    assert root["parent_id"] is None and sum(1 for s in spans if s["parent_id"] is None) == 1
    assert any("ERROR file_not_found" in line for line in drawn)


def test_spans_reach_a_real_phoenix(repo: Path, phoenix: str) -> None:
    project = f"smol-test-{uuid.uuid4().hex[:8]}"
    result, summary, _ = run_task(repo, {"PHOENIX_ENABLED": "true", "PHOENIX_ENDPOINT": f"{phoenix}/v1/traces",
                                         "PHOENIX_PROJECT": project})
    assert "warning" not in result.stderr
    spans: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{phoenix}/v1/projects/{project}/spans?limit=1000", timeout=5) as response:
                spans = json.loads(response.read())["data"]
        except OSError:
            spans = []
        if any(s["span_kind"] == "AGENT" for s in spans):
            break
        time.sleep(1)
    kinds = {s["span_kind"] for s in spans}
    assert {"AGENT", "LLM", "TOOL"} <= kinds, kinds

    def attribute(span: dict[str, Any], key: str) -> Any:
        value: Any = span["attributes"]
        if key in value:
            return value[key]
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value

    failed = [s for s in spans if s["span_kind"] == "TOOL" and attribute(s, "tool.error_type") == "file_not_found"]
    assert len(failed) == 1, [s["attributes"] for s in spans if s["span_kind"] == "TOOL"]
    for key in ("tool.args_hash", "tool.output_size", "tool.recovery_hint", "tool.duration_ms"):
        assert attribute(failed[0], key) is not None, key
    assert any(s["name"] == "sandbox.start" for s in spans)
    assert len({s["context"]["trace_id"] for s in spans}) == 1, "one run is one trace in Phoenix"
    assert any(s["name"] == "smol run" and s["parent_id"] is None for s in spans)


def test_phoenix_down_costs_one_warning_line(repo: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}/v1/traces"
    result, summary, _ = run_task(repo, {"PHOENIX_ENABLED": "true", "PHOENIX_ENDPOINT": endpoint})
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "Phoenix is not reachable" in warnings[0], result.stderr
    assert summary["status"] == "completed"
    shown = subprocess.run([SMOL, "runs", "show", summary["run_id"], "--json", "--trace"], capture_output=True,
                           text=True, check=True)
    assert any(span["kind"] == "AGENT" for span in json.loads(shown.stdout)["trace"])


def test_a_phoenix_that_never_answers_costs_one_warning_line(repo: Path) -> None:
    """Accepts connections, never replies: the exporter's short timeout, not the run, absorbs it."""
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept_forever() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept_forever, daemon=True)
    thread.start()
    try:
        port = listener.getsockname()[1]
        result, summary, _ = run_task(repo, {"PHOENIX_ENABLED": "true",
                                             "PHOENIX_ENDPOINT": f"http://127.0.0.1:{port}/v1/traces"})
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        listener.close()
    assert summary["status"] == "completed"
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "Phoenix is not reachable" in warnings[0], result.stderr
    assert held, "the exporter never tried to reach the silent Phoenix"


def doctor(env: dict[str, str]) -> tuple[int, dict[str, dict[str, str]]]:
    result = subprocess.run([SMOL, "doctor", "--json"], env={**os.environ, "PHOENIX_ENABLED": "false", **env},
                            capture_output=True, text=True, timeout=300)
    assert "Traceback" not in result.stderr
    payload = json.loads(result.stdout)
    return result.returncode, {check["name"]: check for check in payload["checks"]}


def test_doctor(sandbox_image: str) -> None:
    with FakeOllama([]) as fake:
        code, checks = doctor({"MODEL_API_BASE": fake.url})
    assert code == 0, checks
    assert checks["docker engine"]["status"] == "ok" and "storage driver" in checks["docker engine"]["detail"]
    assert checks["sandbox image"]["status"] == "ok" and sandbox_image in checks["sandbox image"]["detail"]
    assert checks["sandbox"]["status"] == "ok"
    assert checks["model endpoint"]["status"] == "ok"
    # path lookups timed in the sandbox: slow exactly where the engine's storage is FUSE (a round trip per lookup)
    driver = subprocess.run(["docker", "info", "--format", "{{.Driver}}"], capture_output=True, text=True).stdout
    access = checks["file access"]
    assert re.search(r"takes [0-9.]+ µs in the sandbox", access["detail"]), access
    assert access["status"] == ("warn" if driver.strip() == "fuse-overlayfs" else "ok"), (driver, access)
    if access["status"] == "warn":
        assert "overlay2" in access["fix"], access

    code, checks = doctor({"MODEL_API_BASE": "http://127.0.0.1:9"})
    assert code == 1 and checks["model endpoint"]["status"] == "fail"
    assert "ollama" in checks["model endpoint"]["fix"].lower()

    code, checks = doctor({"DOCKER_HOST": "tcp://127.0.0.1:9"})
    assert code == 1 and checks["docker engine"]["status"] == "fail"
    assert "DOCKER_HOST" in checks["docker engine"]["fix"]

    code, checks = doctor({"SANDBOX_IMAGE": "smol-sandbox:missing"})
    assert code == 1 and checks["sandbox image"]["status"] == "fail"

    code, checks = doctor({"SANDBOX_MEMORY": "lots"})
    assert code == 1 and checks["configuration"]["status"] == "fail" and "SANDBOX_MEMORY" in checks[
        "configuration"]["detail"]


def test_compose_file_is_valid() -> None:
    compose = shutil.which("docker-compose")
    command = [compose, "config", "-q"] if compose else ["docker", "compose", "config", "-q"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    config = subprocess.run([*command[:-1]], cwd=ROOT, capture_output=True, text=True).stdout
    assert "phoenix" in config and "ollama" in config and "healthcheck" in config


def test_a_later_promotion_is_its_own_trace_linked_to_the_runs(repo: Path) -> None:
    _, summary, _ = run_task(repo, {"PHOENIX_ENABLED": "false"})
    env = {**os.environ, "PHOENIX_ENABLED": "false"}
    promoted = subprocess.run([SMOL, "promote", summary["run_id"], "--promote", "never"], capture_output=True,
                              text=True, env=env, stdin=subprocess.DEVNULL)
    assert promoted.returncode == 0, promoted.stderr
    shown = subprocess.run([SMOL, "runs", "show", summary["run_id"], "--json", "--trace"], capture_output=True,
                           text=True, check=True, env=env)
    spans = json.loads(shown.stdout)["trace"]
    run_root = next(s for s in spans if s["name"] == "smol run")
    promote_root = next(s for s in spans if s["name"] == "smol promote")
    assert promote_root["parent_id"] is None and promote_root["trace_id"] != run_root["trace_id"]
    assert promote_root["links"] == [{"trace_id": run_root["trace_id"], "span_id": run_root["span_id"]}]
    later = [s for s in spans if s["trace_id"] == promote_root["trace_id"]]
    assert any(s["name"] == "promotion" for s in later)
