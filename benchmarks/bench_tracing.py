"""What tracing costs a run when Phoenix is disabled, down (connection refused) or silent (accepts, never answers).

The same scripted `smol run` (fake Ollama, real sandbox, 4 model calls, 3 tool calls) is timed in the three
settings, interleaved, in one process. Goal (issue 5): Phoenix down or slow delays a run by a fraction of a second.

Usage: python benchmarks/bench_tracing.py [--reps N]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fake_ollama import FakeOllama, final, tool  # noqa: E402

SMOL = str(Path(sys.executable).with_name("smol"))
SCRIPT = [tool("read_file", path="app.py"), tool("list_files", pattern="*"), tool("git_status"), final("done")]


def make_repo() -> Path:
    repo = Path(tempfile.mkdtemp(prefix="smol-bench-trace-")) / "repo"
    repo.mkdir()
    (repo / "app.py").write_text("print('hi')\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    for dirpath, dirnames, filenames in os.walk(repo):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            os.lchown(name, 1000, 1000)
    return repo


def silent_server() -> tuple[int, threading.Event]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.2)
    stop, held = threading.Event(), []

    def serve() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1], stop


def timed_run(repo: Path, env: dict[str, str]) -> float:
    with FakeOllama(list(SCRIPT)) as fake:
        started = time.perf_counter()
        subprocess.run([SMOL, "run", "look", "--repo", str(repo), "--json", "--promote", "never"],
                       env={**os.environ, "MODEL_API_BASE": fake.url, **env}, capture_output=True, check=True,
                       stdin=subprocess.DEVNULL)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="smol-bench-state-")
    repo = make_repo()
    silent_port, stop = silent_server()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        refused_port = probe.getsockname()[1]
    settings = {
        "disabled": {"PHOENIX_ENABLED": "false"},
        "down (refused)": {"PHOENIX_ENABLED": "true", "PHOENIX_ENDPOINT": f"http://127.0.0.1:{refused_port}/v1/traces"},
        "silent (never answers)": {"PHOENIX_ENABLED": "true",
                                   "PHOENIX_ENDPOINT": f"http://127.0.0.1:{silent_port}/v1/traces"},
    }
    samples: dict[str, list[float]] = {name: [] for name in settings}
    for _ in range(args.reps):
        for name, env in settings.items():
            samples[name].append(timed_run(repo, env))
    stop.set()
    base = statistics.median(samples["disabled"])
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"{name:<24} median {median * 1000:7.0f} ms   delay vs disabled {(median - base) * 1000:+6.0f} ms")


if __name__ == "__main__":
    main()
