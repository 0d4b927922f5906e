"""Agent-layer benchmarks, each measured side by side in one run:

1. `smol --help` vs `python -c "import click"` (goal <= 2x: litellm and smolagents stay off that path).
2. Host overhead of one tool call outside the sandbox exec (goal <= 2 ms): the instrumented read_file and
   run_cmd tools over an in-memory sandbox whose exec answers instantly, vs calling the bare handler.
3. Prompt size: our system prompt plus the 15 tool schemas (goal <= 900 tokens) vs the default smolagents
   ToolCallingAgent prompt with the same tools.

Usage: python benchmarks/bench_agent.py [--reps N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed_command(argv: list[str], reps: int) -> list[float]:
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return samples


def bench_help(reps: int) -> dict[str, Any]:
    smol = str(Path(sys.executable).with_name("smol"))
    help_times, click_times = [], []
    for _ in range(reps):  # interleaved, so machine noise hits both alike
        help_times += timed_command([smol, "--help"], 1)
        click_times += timed_command([sys.executable, "-c", "import click"], 1)
    help_median, click_median = statistics.median(help_times), statistics.median(click_times)
    return {"smol --help (ms)": help_median * 1000, "import click (ms)": click_median * 1000,
            "ratio": help_median / click_median, "goal": 2.0}


def bench_tool_overhead(reps: int) -> dict[str, Any]:
    from runner.agent.approval import ApprovalGate
    from runner.agent.state import RunState
    from runner.agent.tools import ToolContext, build_tools
    from runner.config import load_settings
    from runner.policy import CommandPolicy
    from runner.sandbox.base import ExecResult
    from runner.sandbox.memory import MemorySandbox

    canned = ExecResult(exit_code=0, stdout="ok\n", stderr="", duration_s=0.0)
    sandbox = MemorySandbox({"src/app.py": b"".join(b"line %d\n" % i for i in range(200))},
                            handler=lambda argv, stdin: canned)
    sandbox.start()
    settings = load_settings()
    state = RunState()
    context = ToolContext(sandbox, state, settings, CommandPolicy.default(), ApprovalGate(state, asker=None))
    tools = {tool.name: tool for tool in build_tools(context)}
    calls = {
        "read_file": lambda i: tools["read_file"](path="src/app.py", start_line=1 + i % 50, end_line=60 + i % 50),
        "run_cmd": lambda i: tools["run_cmd"](command=f"python3 -m pytest -q tests/test_{i}.py"),
    }
    results: dict[str, Any] = {}
    for name, call in calls.items():
        samples = []
        for i in range(reps):
            state.steps.clear()  # keep the loop detector's history short, as in a real run
            start = time.perf_counter()
            call(i)
            samples.append(time.perf_counter() - start)
        results[f"{name} per call (ms)"] = statistics.median(samples) * 1000
    bare = []
    for _ in range(reps):
        start = time.perf_counter()
        sandbox.read("src/app.py")
        bare.append(time.perf_counter() - start)
    results["bare sandbox.read (ms)"] = statistics.median(bare) * 1000
    results["goal (ms)"] = 2.0
    return results


def bench_prompt_tokens() -> dict[str, Any]:
    from runner.agent.prompt import PROMPT_BUDGET_TOKENS, prompt_token_counts
    from runner.sandbox.memory import MemorySandbox

    counts = prompt_token_counts(MemorySandbox())
    ours_prompt, schema_tokens, default_prompt = (counts["system_prompt"], counts["schemas"],
                                                  counts["default_system_prompt"])
    return {"our system prompt": ours_prompt, f"tool schemas ({counts['tools']})": schema_tokens,
            "ours total": ours_prompt + schema_tokens, "default smolagents prompt": default_prompt,
            "default total": default_prompt + schema_tokens, "goal (ours total)": PROMPT_BUDGET_TOKENS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args()
    report = {"help": bench_help(args.reps), "tool overhead": bench_tool_overhead(args.reps * 20),
              "prompt tokens": bench_prompt_tokens()}
    for section, values in report.items():
        print(f"## {section}")
        for key, value in values.items():
            print(f"  {key}: {value:.3f}" if isinstance(value, float) else f"  {key}: {value}")


if __name__ == "__main__":
    main()
