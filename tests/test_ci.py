"""`smol ci` (issue 10): one task as a CI job with the real engine, real git and the scripted model; the reports it
writes (result.json, patch.diff, junit.xml, summary.md, the GitHub step summary, annotations); the README's example
workflows."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.ci import MAX_ANNOTATIONS, STEP_SUMMARY_LIMIT, build_result, exit_code, junit_xml, workflow_commands
from runner.errors import ExitCode
from tests.conftest import tree_fingerprint
from tests.fake_ollama import Answer, FakeOllama, final, tool
from tests.test_agent_e2e import BUGGY

SMOL = str(Path(sys.executable).with_name("smol"))
ROOT = Path(__file__).resolve().parents[1]
FIX = [tool("propose_patch", path="src/app.py", old_text="def add(a, b):\n    return a - b",
            new_text="def add(a, b):\n    return a + b"),
       tool("apply_patch", patch_id="p1"), final("fixed add")]


@pytest.fixture
def repo(make_repo: Callable[..., Path], sandbox_image: str) -> Path:
    return make_repo("calc", files=BUGGY, dirty=False)


def smol_ci(repo: Path, script: list[Answer], out: Path, *args: str,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    with FakeOllama(list(script)) as fake:
        full_env = {**os.environ, "MODEL_API_BASE": fake.url, "PHOENIX_ENABLED": "false", **(env or {})}
        result = subprocess.run([SMOL, "ci", "Fix add", "--repo", str(repo), "--out", str(out), *args],
                                env=full_env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_a_verified_change_writes_every_report_and_leaves_the_tree_alone(repo: Path, tmp_path: Path) -> None:
    before = tree_fingerprint(repo)
    out = tmp_path / "out"
    step_summary = tmp_path / "step-summary.md"
    step_summary.write_text("earlier step\n")
    result = smol_ci(repo, FIX, out, env={"GITHUB_STEP_SUMMARY": str(step_summary)})
    assert result.returncode == 0, result.stderr
    assert tree_fingerprint(repo) == before  # a CI job never writes the tree
    data = json.loads((out / "result.json").read_text())
    assert data["schema"] == "smol.ci/1" and data["outcome"] == "verified" and data["exit_code"] == 0
    assert data["verification"]["status"] == "passed" and data["verification"]["passed"] >= 1
    assert data["verification"]["source"].startswith("detected")
    assert [f["path"] for f in data["diff"]["files"]] == ["src/app.py"]
    # patch.diff is what `git apply` needs to reproduce the change.
    subprocess.run(["git", "-c", "safe.directory=*", "apply", "--check", str(out / "patch.diff")], cwd=repo,
                   check=True)
    suite = ET.fromstring((out / "junit.xml").read_text())
    assert suite.get("tests") == "3" and suite.get("failures") == "0" and suite.get("skipped") == "0"
    summary = (out / "summary.md").read_text()
    assert summary.startswith("### smol: verified") and f"`{data['run_id']}`" in summary
    assert step_summary.read_text() == "earlier step\n" + summary
    assert "::error" not in result.stdout
    assert "smol: verified (exit 0)" in result.stderr


def test_an_unverified_change_fails_the_job_with_an_annotation(repo: Path, tmp_path: Path) -> None:
    breaks = [tool("propose_patch", path="src/app.py", old_text="def add(a, b):\n    return a - b",
                   new_text="def add(a, b):\n    return a * b"),
              tool("apply_patch", patch_id="p1"), final("changed add")]
    out = tmp_path / "out"
    result = smol_ci(repo, breaks, out)
    assert result.returncode == ExitCode.FAILED, result.stderr
    data = json.loads((out / "result.json").read_text())
    assert data["outcome"] == "unverified" and data["verification"]["status"] == "failed"
    suite = ET.fromstring((out / "junit.xml").read_text())
    failed = [case.get("name") for case in suite if case.find("failure") is not None]
    assert failed == ["verification"]
    assert re.search(r"^::error title=smol verification::failed: \d+ passed, \d+ failed$", result.stdout, re.M)
    never = smol_ci(repo, breaks, tmp_path / "again", "--fail-on", "never")
    assert never.returncode == 0 and json.loads((tmp_path / "again/result.json").read_text())["outcome"] \
        == "unverified"


def test_no_change_passes_or_fails_as_fail_on_says(repo: Path, tmp_path: Path) -> None:
    nothing = [final("nothing to do")]
    assert smol_ci(repo, nothing, tmp_path / "a").returncode == ExitCode.FAILED  # not verified
    assert smol_ci(repo, nothing, tmp_path / "b", "--fail-on", "no-change").returncode == ExitCode.FAILED
    assert smol_ci(repo, nothing, tmp_path / "c", "--fail-on", "never").returncode == 0
    data = json.loads((tmp_path / "c/result.json").read_text())
    assert data["outcome"] == "no-change" and (tmp_path / "c/patch.diff").read_bytes() == b""
    suite = ET.fromstring((tmp_path / "c/junit.xml").read_text())
    assert suite.get("skipped") == "1"


def test_usage_mistakes_are_refused_before_anything_runs(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    env = {**os.environ, "MODEL_API_BASE": "http://127.0.0.1:9"}
    for args, message in ((["--out", str(tmp_path / "file")], "is a file"),
                          (["--fail-on", "sometimes"], "Invalid value for '--fail-on'"),
                          ([], "Missing option '--out'")):
        result = subprocess.run([SMOL, "ci", "Fix add", "--repo", str(tmp_path), *args], capture_output=True,
                                text=True, env=env, stdin=subprocess.DEVNULL)
        assert result.returncode == ExitCode.USAGE and message in result.stderr, result.stderr


# ---------------------------------------------------------------- the report functions
def _summary(**overrides: Any) -> dict[str, Any]:
    summary = {"status": "completed", "reason": "", "answer": "ok", "steps": 3, "tools_used": {},
               "diff": {"files": [{"path": "a.py", "added": 1, "removed": 0, "binary": False}], "added": 1,
                        "removed": 0},
               "promotion": {"outcome": "saved", "verification": {"status": "passed", "passed": 2, "failed": 0,
                                                                  "command": "pytest", "source": "detected"}},
               "run_id": "r1", "model_errors": [], "duration_s": 1.0}
    summary.update(overrides)
    return summary


def test_a_refused_change_always_fails_whatever_fail_on_says() -> None:
    refused = {"outcome": "refused", "refused": [{"path": "x", "reason": "symlink"}]}
    findings = {"refused": [{"path": "x", "reason": "a symlink out of the repo"}], "flagged": []}
    result = build_result("t", _summary(promotion=refused), findings, "never")
    assert result["outcome"] == "guard-refused" and result["exit_code"] == ExitCode.REFUSED
    assert exit_code("guard-refused", "never") == ExitCode.REFUSED
    assert exit_code("model-error", "never") == ExitCode.MODEL
    assert workflow_commands(result)[0] == "::error title=smol guard::x: a symlink out of the repo"
    suite = ET.fromstring(junit_xml(result))
    assert [case.get("name") for case in suite if case.find("failure") is not None] == ["guard"]


def test_annotations_are_capped_and_cannot_inject_workflow_commands() -> None:
    flagged = [{"path": f"f{i}", "reason": "runs code\n::error::forged"} for i in range(30)]
    result = build_result("t", _summary(), {"refused": [], "flagged": flagged}, "unverified")
    commands = workflow_commands(result)
    assert len(commands) == MAX_ANNOTATIONS
    # A workflow command ends at a newline: escaped, the forged one stays text inside the first.
    assert all("\n" not in line and "\r" not in line and line.startswith("::warning title=smol guard::f")
               for line in commands)
    assert "%0A::error::forged" in commands[0]


def test_the_step_summary_stays_under_githubs_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.ci import write_outputs

    target = tmp_path / "summary"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(target))
    files = [{"path": "p" * 4000 + str(i), "added": 1, "removed": 0, "binary": False} for i in range(50)]
    huge = _summary(task="t", diff={"files": files, "added": 50, "removed": 0})
    result = build_result("x" * (2 * 1024**2), huge, {"refused": [], "flagged": []}, "unverified")
    write_outputs(tmp_path / "out", result, b"")
    assert target.stat().st_size <= STEP_SUMMARY_LIMIT + 64
    assert target.read_text().endswith("(trimmed)\n")


def test_the_readmes_example_workflows_parse_and_call_smol_ci_with_real_options() -> None:
    from click.testing import CliRunner

    from runner.cli import main

    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, re.S)
    commands = []
    for block in blocks:
        document = yaml.safe_load(block)
        assert isinstance(document, dict)
        commands += re.findall(r"\./scripts/smol (ci .*)", block)
    assert len(commands) == 2, commands
    for command in commands:
        words = [w.strip('"') for w in re.findall(r'"[^"]*"|\S+', command)]
        # --help after the real options: click parses (and would refuse) every option before printing help.
        shown = CliRunner().invoke(main, [*words, "--help"])
        assert shown.exit_code == 0, shown.output
    github = yaml.safe_load(blocks[0])
    assert any("upload-artifact" in str(step.get("uses", "")) for step in github["jobs"]["fix"]["steps"])
    gitlab = yaml.safe_load(blocks[1])
    assert gitlab["smol"]["artifacts"]["reports"]["junit"] == "smol-out/junit.xml"
