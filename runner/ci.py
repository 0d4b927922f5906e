"""CI reports of one run: `result.json` (a versioned schema), `patch.diff`, `junit.xml`, `summary.md`, the GitHub step
summary and at most MAX_ANNOTATIONS workflow annotations. Pure functions of the run's summary: no click, no Docker."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Literal

from runner.errors import ExitCode
from runner.textsafe import sanitize_for_terminal

SCHEMA = "smol.ci/1"
"""Bumped on any change a consumer of result.json could notice; fields are only ever added within a version."""
MAX_ANNOTATIONS = 10
STEP_SUMMARY_LIMIT = 1024**2 - 1024  # GitHub refuses a step summary of 1 MiB or more
FailOn = Literal["unverified", "no-change", "never"]

OUTCOMES = ("verified", "unverified", "no-change", "guard-refused", "agent-incomplete", "model-error")


def classify(summary: dict[str, Any]) -> str:
    """The one word a CI job branches on, from the run's summary (status, diff, promotion, verification)."""
    if summary["status"] == "model_error":
        return "model-error"
    if summary["status"] != "completed":
        return "agent-incomplete"
    promotion = summary.get("promotion") or {}
    if promotion.get("outcome") == "nothing to promote" or not summary["diff"]["files"]:
        return "no-change"
    if promotion.get("refused"):
        return "guard-refused"
    verification = promotion.get("verification") or {}
    return "verified" if verification.get("status") == "passed" else "unverified"


def build_result(task: str, summary: dict[str, Any], findings: dict[str, list[dict[str, str]]],
                 fail_on: FailOn) -> dict[str, Any]:
    outcome = classify(summary)
    promotion = summary.get("promotion") or {}
    return {
        "schema": SCHEMA,
        "run_id": summary.get("run_id"),
        "task": task,
        "outcome": outcome,
        "status": summary["status"],
        "reason": summary.get("reason", ""),
        "answer": summary.get("answer", ""),
        "fail_on": fail_on,
        "exit_code": int(exit_code(outcome, fail_on)),
        "verification": promotion.get("verification"),
        "diff": summary["diff"],
        "guard": findings,
        "steps": summary["steps"],
        "tools_used": summary["tools_used"],
        "model_errors": summary.get("model_errors", []),
        "duration_s": summary.get("duration_s"),
    }


def exit_code(outcome: str, fail_on: FailOn) -> ExitCode:
    """A refused change is always a failure (it is a security finding); the rest follows --fail-on."""
    if outcome == "guard-refused":
        return ExitCode.REFUSED
    if outcome == "model-error":
        return ExitCode.MODEL
    if fail_on == "never":
        return ExitCode.OK
    if fail_on == "no-change":
        return ExitCode.FAILED if outcome in ("no-change", "agent-incomplete") else ExitCode.OK
    return ExitCode.OK if outcome == "verified" else ExitCode.FAILED


def junit_xml(result: dict[str, Any]) -> str:
    """Three test cases GitLab and GitHub test reporters render: the agent's run, the guard, the verification
    (its pass/fail counts; the project's own tests are not itemised)."""
    suite = ET.Element("testsuite", name="smol", tests="3")
    failures = skipped = 0

    def case(name: str, failure: str | None = None, skip: str | None = None, out: str = "") -> None:
        nonlocal failures, skipped
        element = ET.SubElement(suite, "testcase", classname="smol", name=name)
        if failure is not None:
            failures += 1
            ET.SubElement(element, "failure", message=failure[:500]).text = failure
        elif skip is not None:
            skipped += 1
            ET.SubElement(element, "skipped", message=skip[:500])
        if out:
            ET.SubElement(element, "system-out").text = out

    completed = result["status"] == "completed"
    case("agent run", None if completed else f"{result['status']}: {result['reason']}", out=result["answer"])
    refused = result["guard"]["refused"]
    case("guard", "; ".join(f"{f['path']}: {f['reason']}" for f in refused) if refused else None)
    verification = result["verification"] or {}
    status = verification.get("status", "skipped")
    counts = f"{verification.get('passed', 0)} passed, {verification.get('failed', 0)} failed"
    command = f" with `{verification.get('command')}`" if verification.get("command") else ""
    if status == "passed":
        case("verification", out=f"{counts}{command}")
    elif result["outcome"] in ("no-change", "agent-incomplete", "model-error", "guard-refused"):
        case("verification", skip=f"not verified: {result['outcome']}")
    else:
        case("verification", f"{status}: {counts}{command}. {verification.get('note', '')}".strip(),
             out=verification.get("output_tail", ""))
    suite.set("failures", str(failures))
    suite.set("skipped", str(skipped))
    suite.set("errors", "0")
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def summary_markdown(result: dict[str, Any]) -> str:
    verification = result["verification"] or {}
    lines = [
        f"### smol: {result['outcome']}",
        "",
        "| | |",
        "|---|---|",
        f"| task | {_cell(result['task'])} |",
        f"| run | `{result['run_id']}` ({result['status']}, {result['steps']} steps) |",
        f"| verification | {_cell(verification.get('status', 'not run'))}"
        + (f" ({verification.get('passed', 0)} passed, {verification.get('failed', 0)} failed, "
           f"`{_cell(verification.get('command'))}`, {_cell(verification.get('source', ''))})"
           if verification.get("command") else "") + " |",
        f"| change | {len(result['diff']['files'])} file(s), +{result['diff']['added']} -{result['diff']['removed']} |",
    ]
    for finding in result["guard"]["refused"]:
        lines.append(f"| refused | `{_cell(finding['path'])}`: {_cell(finding['reason'])} |")
    for finding in result["guard"]["flagged"]:
        lines.append(f"| needs review | `{_cell(finding['path'])}`: {_cell(finding['reason'])} |")
    if result["diff"]["files"]:
        lines += ["", "Files: " + ", ".join(f"`{_cell(f['path'])}` (+{f['added']} -{f['removed']})"
                                              for f in result["diff"]["files"][:50])]
        lines += ["", "Apply it with `git apply patch.diff` from the job's artifacts."]
    return "\n".join(lines) + "\n"


def workflow_commands(result: dict[str, Any]) -> list[str]:
    """GitHub workflow commands (`::error`/`::warning`), at most MAX_ANNOTATIONS, one line each."""
    def clean(text: str) -> str:  # workflow commands end at a newline; `%` starts an escape; logs render ANSI
        return sanitize_for_terminal(text).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")

    found = [f"::error title=smol guard::{clean(f['path'])}: {clean(f['reason'])}" for f in result["guard"]["refused"]]
    found += [f"::warning title=smol guard::{clean(f['path'])} needs review: {clean(f['reason'])}"
              for f in result["guard"]["flagged"]]
    verification = result["verification"] or {}
    if result["outcome"] == "unverified":
        found.append(f"::error title=smol verification::{clean(str(verification.get('status', 'not run')))}: "
                     f"{verification.get('passed', 0)} passed, {verification.get('failed', 0)} failed")
    if result["outcome"] in ("agent-incomplete", "model-error"):
        found.append(f"::error title=smol run::{clean(result['status'])}: {clean(result['reason'])}")
    return found[:MAX_ANNOTATIONS]


def write_outputs(out_dir: Path, result: dict[str, Any], patch: bytes) -> list[Path]:
    """Write every report into `out_dir` (created) and append the summary to $GITHUB_STEP_SUMMARY when set."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {
        "result.json": json.dumps(result, indent=2, default=str) + "\n",
        "junit.xml": junit_xml(result),
        "summary.md": summary_markdown(result),
    }
    paths = []
    for name, text in written.items():
        (out_dir / name).write_text(text, encoding="utf-8")
        paths.append(out_dir / name)
    (out_dir / "patch.diff").write_bytes(patch)
    paths.append(out_dir / "patch.diff")
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        text = written["summary.md"]
        encoded = text.encode()
        if len(encoded) > STEP_SUMMARY_LIMIT:
            text = encoded[:STEP_SUMMARY_LIMIT].decode("utf-8", "ignore") + "\n\n(trimmed)\n"
        with open(step_summary, "a", encoding="utf-8") as handle:
            handle.write(text)
    return paths
