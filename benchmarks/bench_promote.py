"""Guarded promotion benchmark: guard + plan + apply (re-verification excluded) of a 10-file change into a
100k-file git repo. Goal: <= 1 s.

Usage: python benchmarks/bench_promote.py [--reps N] [--repo PATH]
The repo defaults to the 100k-file repo that benchmarks/bench_sandbox.py generates and caches.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner.promote.apply import apply_plan, make_plan, read_state  # noqa: E402
from runner.promote.flow import touched_paths  # noqa: E402
from runner.promote.guard import guard  # noqa: E402
from runner.sandbox.base import FileState  # noqa: E402

GIT = ["git", "-c", "safe.directory=*", "-c", "core.hooksPath=/dev/null"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--repo", type=Path, default=Path("/tmp/smol-bench-repos/files-100000"))
    args = parser.parse_args()
    repo: Path = args.repo
    if not (repo / ".git").is_dir():
        sys.exit(f"{repo} is not a generated benchmark repo: run benchmarks/bench_sandbox.py first")
    tracked = subprocess.run([*GIT, "-C", str(repo), "ls-files"], capture_output=True, text=True, check=True)
    files = tracked.stdout.splitlines()
    count = len(files)
    chosen = files[:: max(1, count // 10)][:10]
    base = {path: read_state(repo, path) for path in chosen}
    final: dict[str, FileState | None] = {}
    for path, state in base.items():
        assert state is not None
        final[path] = FileState("file", state.data + b"changed by the benchmark\n", state.executable)
    for path, state in final.items():
        (repo / path).write_bytes(state.data)  # type: ignore[union-attr]
    patch = subprocess.run([*GIT, "-C", str(repo), "diff", "--binary", "--full-index"], capture_output=True,
                           check=True).stdout
    subprocess.run([*GIT, "-C", str(repo), "checkout", "--", *chosen], check=True)

    samples = []
    for _ in range(args.reps):
        started = time.perf_counter()
        report = guard(patch, repo)
        assert report.ok, report.refused
        plan = make_plan(repo, base, final, touched_paths(patch))
        assert plan.ok and len(plan.changes) == 10
        apply_plan(repo, plan)
        samples.append(time.perf_counter() - started)
        undo = make_plan(repo, final, base, chosen)
        apply_plan(repo, undo)
    status = subprocess.run([*GIT, "-C", str(repo), "status", "--porcelain"], capture_output=True, text=True)
    assert status.stdout == "", status.stdout
    median = statistics.median(samples)
    print(f"repo: {count} files; change: 10 files, {len(patch)} bytes of patch")
    print(f"guard + plan + apply: median {median * 1000:.1f} ms, max {max(samples) * 1000:.1f} ms "
          f"over {args.reps} runs; goal <= 1000 ms: {'met' if median <= 1.0 else 'NOT met'}")


if __name__ == "__main__":
    main()
