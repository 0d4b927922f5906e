"""Prepared environments, measured on a real project (flask 3.1.3 from its PyPI sdist: uv.lock, PEP 735 groups,
runtime dependencies), written to BENCHMARKS.md.

    .venv/bin/python benchmarks/bench_env.py [--reps N] [--output BENCHMARKS.md]

Side by side in one run (the two sides of each comparison alternate, so drift hits both alike):

1. set-up: `smol env build` cold (`--force`: a fresh set-up container, every package downloaded through the
   registry's proxy; only uv's binary is cached on the host) vs cached (the image exists: hash the inputs, look it
   up). Informational, no goal.
2. sandbox ready: `DockerSandbox(repo).start()` + one `exec(["true"])` on the prepared environment vs the same on
   the bare sandbox image. Goal <= 1.1x.
3. the project's whole suite (`python3 -m pytest -q -p no:cacheprovider`): in a running sandbox on the environment
   vs a host venv built by the same steps. Goal <= 1.15x. Alongside, the engine's floor: the same image and uid in a
   plain `docker run` (no smol, no limits), which tells smol's cost apart from the engine's.

The section is per storage driver of the engine (`overlay2`, `fuse-overlayfs`, ...): on fuse-overlayfs every path a
non-root process resolves from `/` costs a FUSE round trip, which no sandbox setting can avoid (see BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner.config import load_settings  # noqa: E402
from runner.env.build import build_environment  # noqa: E402
from runner.env.plan import VENV, plan_for  # noqa: E402
from runner.env.tools import ensure_uv  # noqa: E402
from runner.sandbox.docker_sandbox import DockerSandbox  # noqa: E402
from runner.sandbox.engine import connect  # noqa: E402
from runner.sandbox.image import resolve_image  # noqa: E402
from runner.testcmd import parse_test_counts  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_section  # noqa: E402 - benchmarks/report.py, next to this script

PROJECT, VERSION = "flask", "3.1.3"
CACHE = Path("/tmp/smol-bench-env")
SUITE = ["python3", "-m", "pytest", "-q", "-p", "no:cacheprovider"]
HOST_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
"""The host venv's interpreter: the same Debian python3 as the image's where the host has it (a fair comparison)."""
OWNER = 1000


def project() -> Path:
    """The sdist, unpacked as a git repo owned by an ordinary user (cached between runs)."""
    repo = CACHE / f"{PROJECT}-{VERSION}"
    if (repo / ".git").is_dir():
        return repo
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "--quiet",
                    f"{PROJECT}=={VERSION}", "-d", str(CACHE)], check=True)
    with tarfile.open(next(CACHE.glob(f"{PROJECT}-{VERSION}.tar.gz"))) as archive:
        archive.extractall(CACHE, filter="data")
    git = ["git", "-c", "user.email=b@example.com", "-c", "user.name=bench", "-C", str(repo)]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "sdist"]):
        subprocess.run([*git, *args], check=True)
    subprocess.run(["chown", "-R", f"{OWNER}:{OWNER}", str(repo)], check=True)
    return repo


def host_venv(repo: Path) -> Path:
    """A host venv built by the same plan as the environment (same uv, same lockfile, same steps)."""
    venv = CACHE / "host-venv"
    if (venv / "bin" / "python").exists():
        return venv
    uv = ensure_uv(None, print)
    copy = CACHE / "host-copy"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(repo, copy, symlinks=True)
    script = plan_for(copy).user_script.replace(VENV, str(venv)).replace("/usr/bin/python3", HOST_PYTHON) \
        .replace("/tmp/smol-locked.txt", str(CACHE / "locked.txt"))
    env = {**os.environ, "PATH": f"{uv.parent}:{venv}/bin:{os.environ['PATH']}", "VIRTUAL_ENV": str(venv),
           "UV_NATIVE_TLS": "1", "UV_PYTHON_DOWNLOADS": "never", "UV_COMPILE_BYTECODE": "1"}
    subprocess.run(["bash", "-c", script], cwd=copy, env=env, check=True)
    return venv


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--cold", type=int, default=2, help="cold set-ups (each downloads everything)")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    settings = load_settings()
    engine = connect()
    base = resolve_image(settings)
    repo = project()
    quiet: Callable[[str], None] = lambda message: None  # noqa: E731

    # 1. set-up, cold vs cached
    cold, cached = [], []
    for _ in range(args.cold):
        cold.append(timed(lambda: build_environment(engine, repo, settings, base, quiet, force=True)))
        cached.append(timed(lambda: build_environment(engine, repo, settings, base, quiet)))
    for _ in range(args.reps - args.cold):
        cached.append(timed(lambda: build_environment(engine, repo, settings, base, quiet)))
    tag = build_environment(engine, repo, settings, base, quiet).tag

    # 2. sandbox ready on the environment vs on the bare image
    def ready(image: str | None) -> float:
        started = time.perf_counter()
        with DockerSandbox(repo, settings, image=image) as box:
            box.exec(["true"])
            elapsed = time.perf_counter() - started
            assert box.info.image == (image or tag), box.info.image
        return elapsed

    ready(None)
    ready(base)  # warm both (page cache, image layers)
    on_env, on_bare = [], []
    for _ in range(args.reps):
        on_env.append(ready(None))
        on_bare.append(ready(base))

    # 3. the suite in a sandbox on the environment vs the host venv: with the default CPU limit, and with the
    # limit at the machine's cores (the environment's own cost, apart from the sandbox's CPU quota)
    venv = host_venv(repo)
    host_env = {**os.environ, "PATH": f"{venv}/bin:{os.environ['PATH']}", "VIRTUAL_ENV": str(venv),
                "PYTHONDONTWRITEBYTECODE": "1"}
    cores = float(os.cpu_count() or 1)
    in_box, in_full_box, on_host = [], [], []
    counts_box: dict[str, int] = {}
    counts_host: dict[str, int] = {}
    with DockerSandbox(repo, settings) as box, DockerSandbox(repo, load_settings(sandbox_cpus=cores)) as full:
        for _ in range(max(3, args.reps // 2)):
            for sandbox, into in ((box, in_box), (full, in_full_box)):
                started = time.perf_counter()
                result = sandbox.exec(SUITE)
                into.append(time.perf_counter() - started)
                counts_box = parse_test_counts(result.stdout + result.stderr)
            started = time.perf_counter()
            done = subprocess.run(SUITE, cwd=CACHE / "host-copy", env=host_env, capture_output=True, text=True)
            on_host.append(time.perf_counter() - started)
            counts_host = parse_test_counts(done.stdout + done.stderr)
    assert counts_box == counts_host and counts_box["passed"] > 0, (counts_box, counts_host)
    on_floor = engine_floor(tag, repo, settings.sandbox_uid, max(3, args.reps // 2))

    driver = str(engine.info().get("Driver", "?"))

    size = next((image.size for image in engine.images("smol.env") if tag in image.tags), 0)
    base_size = next((image.size for image in engine.images("smol.image") if base in image.tags), 0)
    env_ratio, suite_ratio = median(on_env) / median(on_bare), median(in_full_box) / median(on_host)
    limited_ratio = median(in_box) / median(on_host)
    floor_ratio = median(on_floor) / median(on_host)
    rows = [
        ("Set-up, cold (`smol env build --force`)", f"{median(cold):.1f} s", "—", "—", "informational", "—"),
        ("Set-up, cached (inputs unchanged)", f"{median(cached) * 1000:.0f} ms", "—", "—", "informational", "—"),
        ("Sandbox ready + `exec(['true'])`", f"env image {median(on_env) * 1000:.0f} ms",
         f"bare image {median(on_bare) * 1000:.0f} ms", f"{env_ratio:.2f}×", "≤ 1.1×",
         "yes" if env_ratio <= 1.1 else "no"),
        (f"{PROJECT} suite ({counts_box['passed']} passed), SANDBOX_CPUS={cores:g} (the machine's cores)",
         f"sandbox {median(in_full_box):.2f} s", f"host venv {median(on_host):.2f} s", f"{suite_ratio:.2f}×",
         "≤ 1.15×", "yes" if suite_ratio <= 1.15 else "no"),
        (f"{PROJECT} suite, SANDBOX_CPUS={settings.sandbox_cpus:g} (the default limit)",
         f"sandbox {median(in_box):.2f} s", f"host venv {median(on_host):.2f} s", f"{limited_ratio:.2f}×",
         "informational", "—"),
        (f"{PROJECT} suite, plain `docker run` of the same image as uid {settings.sandbox_uid} (the engine's floor)",
         f"container {median(on_floor):.2f} s", f"host venv {median(on_host):.2f} s", f"{floor_ratio:.2f}×",
         "informational", "—"),
    ]
    lines = [f"## Prepared environments on {driver} (`benchmarks/bench_env.py`)", "",
             f"{PROJECT} {VERSION} from its PyPI sdist (uv.lock, group `tests`, runtime dependencies), measured side "
             f"by side in one run (`python benchmarks/bench_env.py --reps {args.reps} --cold {args.cold}`), "
             f"{dt.date.today().isoformat()}, {platform.machine()}, {os.cpu_count()} cores, load average "
             f"{os.getloadavg()[0]:.1f} at the end; Docker storage driver {driver}; medians. The environment image "
             f"adds {(size - base_size) / 1e6:.0f} MB to the sandbox image.", "",
             "| Benchmark | Measured | Baseline | Ratio | Goal | Met |", "|---|---|---|---:|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", f"Cold set-up runs: {', '.join(f'{s:.1f} s' for s in cold)}. Suite counts: sandbox {counts_box}, "
              f"host {counts_host}. The host venv uses the same Debian python3 as the image."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output is not None:
        write_section(args.output, f"bench_env {driver}", text)


def engine_floor(image: str, repo: Path, uid: int, reps: int) -> list[float]:
    """The suite in a plain container of the same image, as the same uid, without smol (no overlay, no limits,
    the repo bind-mounted read-only): what this engine costs before smol adds anything."""
    name = f"smol-bench-floor-{os.getpid()}"
    subprocess.run(["docker", "run", "-d", "--rm", "--name", name, "--network", "none", "--user", f"{uid}:{uid}",
                    "--tmpfs", "/tmp", "-v", f"{repo}:/workspace:ro", "-w", "/workspace", image,
                    "sleep", "infinity"], check=True, capture_output=True)
    try:
        times = []
        for _ in range(reps + 1):  # the first run warms the page cache
            started = time.perf_counter()
            subprocess.run(["docker", "exec", name, *SUITE], capture_output=True, check=False)
            times.append(time.perf_counter() - started)
        return times[1:]
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


if __name__ == "__main__":
    main()
