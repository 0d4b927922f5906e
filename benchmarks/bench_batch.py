"""Batch benchmarks (issue 10), written to BENCHMARKS.md:

1. Time to first command from the warm pool: a task whose sandbox the pool started ahead (while the previous task
   worked) against a task that starts its own sandbox; both measured from the moment the task begins until its first
   command (`true`) has run. Goal: warm <= 100 ms.
2. A batch of 8 scripted tasks with `--jobs 2` against the same batch with `--jobs 1`, the scripted model answering
   each turn after a fixed delay (a stand-in for a local model's think time; the delay is stated in the report).
   Goal: <= 0.6x the serial time.

    .venv/bin/python benchmarks/bench_batch.py [--reps N] [--tasks N] [--delay S] [--output BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from report import write_section  # noqa: E402 - benchmarks/report.py, next to this script

from runner.batch.pool import LocalPool  # noqa: E402
from runner.batch.tasks import TaskSpec  # noqa: E402
from runner.batch.work import TaskJob, load_task_settings, start_sandbox  # noqa: E402
from tests.fake_ollama import FakeOllama  # noqa: E402
from tests.test_agent_e2e import BUGGY  # noqa: E402
from tests.test_batch import FIX, ByTask  # noqa: E402

SMOL = str(Path(sys.executable).with_name("smol"))


def make_repo(where: Path) -> Path:
    repo = where / "calc"
    for name, text in BUGGY.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git = ["git", "-c", "user.email=b@b", "-c", "user.name=b", "-C", str(repo)]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    if os.geteuid() == 0:  # a user-owned repo gets overlay mode, as on a developer's machine
        subprocess.run(["chown", "-R", "1000:1000", str(repo)], check=True)
    return repo


def first_command(repo: Path, reps: int) -> tuple[list[float], list[float]]:
    job = TaskJob(batch="bench", spec=TaskSpec(id="t", repo=str(repo), task="x"), repo=str(repo), key="k")
    settings = load_task_settings(job)
    warm, cold = [], []
    for _ in range(reps):
        pool = LocalPool(jobs=1, warm=1)
        pool.upcoming(job)
        pool._warm[job.spec.id].result(timeout=120)  # the previous task's work time: the warm start is done
        began = time.perf_counter()
        sandbox = pool._take_warm(job)
        sandbox.exec(["true"])
        warm.append(time.perf_counter() - began)
        sandbox.close()
        pool.close()
        began = time.perf_counter()
        sandbox = start_sandbox(job, settings)
        sandbox.exec(["true"])
        cold.append(time.perf_counter() - began)
        sandbox.close()
    return warm, cold


def batch_time(repo: Path, work: Path, tasks: int, jobs: int, model_slots: int, delay: float) -> float:
    file = work / f"b{jobs}-{model_slots}.jsonl"
    file.write_text("".join(json.dumps({"id": f"t{n}", "repo": str(repo), "task": f"TASK-FIX number {n}: fix add"})
                            + "\n" for n in range(tasks)))
    env = {**os.environ, "PHOENIX_ENABLED": "false", "RUNS_DB": str(work / f"runs-{jobs}-{model_slots}.db")}
    with FakeOllama([ByTask({"TASK-FIX": FIX}, delay=delay)] * (tasks * 10)) as fake:
        began = time.perf_counter()
        result = subprocess.run([SMOL, "batch", "run", str(file), "--jobs", str(jobs), "--model-slots",
                                 str(model_slots), "--json"], env={**env, "MODEL_API_BASE": fake.url},
                                capture_output=True, text=True, stdin=subprocess.DEVNULL)
        took = time.perf_counter() - began
    statuses = {task["status"] for task in json.loads(result.stdout)["tasks"]}
    if result.returncode != 0 or statuses != {"verified"}:
        raise SystemExit(f"the batch did not verify every task: {statuses}\n{result.stderr[-2000:]}")
    return took


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} ms (p90 {sorted(values)[int(0.9 * (len(values) - 1))] * 1000:.0f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--delay", type=float, default=2.0, help="seconds the scripted model takes per turn")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        repo = make_repo(work)
        print("1. first command, warm vs cold ...", flush=True)
        warm, cold = first_command(repo, args.reps)
        print("2. batch, --jobs 1 vs --jobs 2 ...", flush=True)
        serial = batch_time(repo, work, args.tasks, 1, 1, args.delay)
        parallel = batch_time(repo, work, args.tasks, 2, 2, args.delay)
        one_slot = batch_time(repo, work, args.tasks, 2, 1, args.delay)
    warm_ms = statistics.median(warm) * 1000
    ratio = parallel / serial
    met_warm, met_batch = ("yes" if warm_ms <= 100 else "**no**"), ("yes" if ratio <= 0.6 else "**no**")
    rows = [
        f"| Time to first command | from the warm pool: {ms(warm)} | own sandbox start: {ms(cold)} | "
        f"{warm_ms:.0f} ms | ≤ 100 ms | {met_warm} |",
        f"| Batch of {args.tasks} tasks | `--jobs 2 --model-slots 2`: {parallel:.1f} s | `--jobs 1`: {serial:.1f} s | "
        f"{ratio:.2f}× | ≤ 0.6× | {met_batch} |",
        f"| (informational) | `--jobs 2 --model-slots 1`: {one_slot:.1f} s | `--jobs 1`: {serial:.1f} s | "
        f"{one_slot / serial:.2f}× | — | — |",
    ]
    table = "\n".join(rows)
    report = f"""## Batches (`benchmarks/bench_batch.py`)

Measured side by side in one run on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, the
real engine and image, a user-owned git repo (overlay mode).

| Benchmark | Measured | Baseline | Result | Goal | Met |
|---|---|---|---:|---|---|
{table}


Each task is the same scripted fix (3 model turns, each answered after {args.delay:g} s: a stand-in for a local
model's think time) followed by the re-verification in a fresh sandbox; every task ends `verified`. Different
prompts, so no task reuses another's outcome. With one model slot (Ollama's default, one request at a time) the
model is the bottleneck and two sandbox slots gain only what the sandboxes and verification cost; with
`OLLAMA_NUM_PARALLEL=2` and `--model-slots 2` the tasks overlap fully.
"""
    write_section(args.output, "bench_batch", report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
