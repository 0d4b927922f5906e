"""Ray benchmarks (issue 13), written to BENCHMARKS.md. Real local clusters on loopback (`ray.cluster_utils`), the
real engine and image, `smol batch run --ray` as a user runs it; each node has its own scripted model endpoint.

1. The same batch of scripted tasks on a 2-node cluster against a 1-node cluster, every node with the same slots
   (2 sandbox slots, 2 model slots). The scripted model answers each turn after a fixed delay: real tasks wait
   mostly on the model, which is what another node adds capacity for (this machine has 2 cores; without the delay
   the comparison would measure CPU contention between two "nodes" on one box). Goal: <= 0.6x the 1-node time.
2. The cost Ray adds per task: the same tasks, one at a time and with no model delay, on a 1-node cluster against
   the local pool (`--jobs 1`, its default warm sandbox). Cluster start-up is not counted.

    .venv/bin/python benchmarks/bench_ray.py [--tasks N] [--delay S] [--output BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from report import write_section  # noqa: E402 - benchmarks/report.py, next to this script

from benchmarks.bench_batch import make_repo  # noqa: E402
from tests.test_batch import FIX, LOOK, ByTask, routed  # noqa: E402

SMOL = str(Path(sys.executable).with_name("smol"))
NODE = {"num_cpus": 2, "object_store_memory": 100 * 1024**2, "include_dashboard": False,
        "node_ip_address": "127.0.0.1"}


def batch(work: Path, label: str, tasks: list[dict[str, Any]], args: list[str], env: dict[str, str]) -> float:
    file = work / f"{label}.jsonl"
    file.write_text("".join(json.dumps(task) + "\n" for task in tasks))
    began = time.perf_counter()
    result = subprocess.run([SMOL, "batch", "run", str(file), "--json", *args],
                            env={**os.environ, "PHOENIX_ENABLED": "false", "RUNS_DB": str(work / f"{label}.db"),
                                 **env}, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    took = time.perf_counter() - began
    if result.returncode != 0:
        raise SystemExit(f"{label} failed:\n{result.stderr[-3000:]}")
    statuses = {task["status"] for task in json.loads(result.stdout)["tasks"]}
    expected = {"verified"} if "fix" in label else {"no-change"}
    if statuses != expected:
        raise SystemExit(f"{label}: {statuses}\n{result.stderr[-3000:]}")
    return took


def on_cluster(work: Path, label: str, nodes: int, slots: int, tasks: list[dict[str, Any]], delay: float) -> float:
    from ray.cluster_utils import Cluster

    with ExitStack() as stack:
        urls = [stack.enter_context(routed(ByTask({"TASK-FIX": FIX, "TASK-LOOK": LOOK}, delay=delay))).url
                for _ in range(nodes)]

        def args(url: str) -> dict[str, Any]:
            return {**NODE, "resources": {"smol_sandbox": slots, "smol_model": slots},
                    "env_vars": {"PHOENIX_ENABLED": "false", "MODEL_API_BASE": url}}

        cluster = Cluster(initialize_head=True, connect=False, head_node_args=args(urls[0]))
        try:
            for url in urls[1:]:
                cluster.add_node(**args(url))
            return batch(work, label, tasks, ["--ray", cluster.address], {"MODEL_API_BASE": "http://127.0.0.1:9"})
        finally:
            cluster.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--delay", type=float, default=8.0,
                        help="seconds the scripted model takes per turn (a local 7B model's turn: 5-20 s)")
    parser.add_argument("--overhead-tasks", type=int, default=6)
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        repo = make_repo(work)
        fixes = [{"id": f"t{n}", "repo": str(repo), "task": f"TASK-FIX number {n}: fix add"}
                 for n in range(args.tasks)]
        looks = [{"id": f"l{n}", "repo": str(repo), "task": f"TASK-LOOK number {n}: look"}
                 for n in range(args.overhead_tasks)]
        print("1. 2 nodes vs 1 node ...", flush=True)
        one_node = on_cluster(work, "fix-1node", 1, 2, fixes, args.delay)
        two_nodes = on_cluster(work, "fix-2nodes", 2, 2, fixes, args.delay)
        print("2. Ray per task vs the local pool ...", flush=True)
        with routed(ByTask({"TASK-LOOK": LOOK})) as fake:
            local = batch(work, "look-local", looks, ["--jobs", "1"], {"MODEL_API_BASE": fake.url})
        ray = on_cluster(work, "look-ray", 1, 1, looks, 0.0)
    ratio = two_nodes / one_node
    per_task = (ray - local) / args.overhead_tasks
    rows = [
        f"| Batch of {args.tasks} tasks | 2 nodes: {two_nodes:.1f} s | 1 node: {one_node:.1f} s | {ratio:.2f}× | "
        f"≤ 0.6× | {'yes' if ratio <= 0.6 else '**no**'} |",
        f"| Cost per task | Ray, 1 node × 1 slot: {ray / args.overhead_tasks:.2f} s/task | local pool `--jobs 1`: "
        f"{local / args.overhead_tasks:.2f} s/task | +{per_task:.2f} s/task | — | — |",
    ]
    report = f"""## Past one machine: Ray (`benchmarks/bench_ray.py`)

Measured side by side in one run on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs:
real local Ray clusters on loopback (`ray.cluster_utils`, every node 2 sandbox and 2 model slots and `num_cpus=2`,
its own scripted model endpoint), the real engine and image, `smol batch run --ray` as a user runs it; cluster
start-up not counted.

| Benchmark | Measured | Baseline | Result | Goal | Met |
|---|---|---|---:|---|---|
{chr(10).join(rows)}

Row 1: each task is the same scripted fix (3 model turns, each answered after {args.delay:g} s: a stand-in for a local
model's think time, which dominates real tasks) plus the re-verification, done on the driver; every task ends
`verified`. On this 2-core machine both "nodes" share the CPU and the Docker engine, so only the waiting on the
model overlaps; on real machines each node also brings its own cores. Row 2: {args.overhead_tasks} tasks that look
and change nothing, no model delay, one at a time: what shipping the repo (bundle + state), the Ray task, the node's
fresh repo copy and the record's way back cost against the local pool's thread and warm sandbox.
"""
    print(report, flush=True)
    write_section(args.output, "bench_ray", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
