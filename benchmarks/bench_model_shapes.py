"""Small-model output shapes (tests/model_shapes.py): the share that reaches the fix without a wasted step.

Each shape runs through the real agent loop (`smol run`, the real engine, the scripted model answering in that
shape). Side by side, in the same run, each shape is also given to what smolagents does without our reader (its
native-call path, then `get_tool_call_from_text` on the text, with the tool and argument names taken as written):
the baseline. Goal: >= 90 % with the reader.

Usage: python benchmarks/bench_model_shapes.py   (needs Docker and the sandbox image, as the tests do)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import GIT  # noqa: E402 - the checkout's test helpers
from tests.model_shapes import SHAPES, Shape  # noqa: E402
from tests.test_agent_e2e import BUGGY  # noqa: E402
from tests.test_model_shapes import TOOLS, reached_the_fix_cleanly, run_shape  # noqa: E402


def baseline(shape: Shape) -> bool:
    """Would smolagents alone have run propose_patch with the right arguments from this answer?"""
    from smolagents.models import get_tool_call_from_text, parse_json_if_needed

    answer = shape.answer
    try:
        if "tool" in answer:
            name, arguments = answer["tool"], answer["arguments"]
        else:
            call = get_tool_call_from_text(answer["content"], "name", "arguments")
            name, arguments = call.function.name, parse_json_if_needed(call.function.arguments)
    except Exception:  # noqa: BLE001 - any failure is a wasted step
        return False
    return name == "propose_patch" and isinstance(arguments, dict) and set(arguments) == TOOLS["propose_patch"]


def fresh_repo() -> Path:
    root = Path(tempfile.mkdtemp(prefix="smol-shapes-")) / "calc"
    for path, content in BUGGY.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(content)
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "calc"]):
        subprocess.run([*GIT, "-C", str(root), *args], check=True)
    return root


def main() -> None:
    rows: list[dict[str, Any]] = []
    for shape in SHAPES:
        summary, _ = run_shape(fresh_repo(), shape.answer)
        rows.append({"shape": shape.name, "family": shape.family, "reader": reached_the_fix_cleanly(summary),
                     "baseline": baseline(shape), "repairs": summary["output_repairs"]})
    ours = sum(row["reader"] for row in rows) / len(rows)
    base = sum(row["baseline"] for row in rows) / len(rows)
    print("| shape | family | with the reader | smolagents alone |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['shape']} | {row['family']} | {'fix, no wasted step' if row['reader'] else 'WASTED STEP'} "
              f"| {'ok' if row['baseline'] else 'wasted step'} |")
    print(f"\nreached the fix without a wasted step: {ours:.0%} with the reader ({sum(r['reader'] for r in rows)}"
          f"/{len(rows)}), {base:.0%} for smolagents alone (goal >= 90 %: {'met' if ours >= 0.9 else 'NOT met'})")
    print(json.dumps({"reader": ours, "baseline": base, "shapes": len(rows)}))


if __name__ == "__main__":
    main()
