"""The CLI as a new user meets it (issue 14): typos refused before anything starts, --json answers every outcome
in JSON, one documented table of exit codes, --model/--max-steps, subdirectories, `runs list` / `runs show last`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runner.errors import EXIT_CODE_MEANINGS, ExitCode
from runner.gitroot import find_root
from runner.records import RunRecord, RunStore
from tests.fake_ollama import FakeOllama, final, tool
from tests.test_agent_e2e import BUGGY

SMOL = str(Path(sys.executable).with_name("smol"))
ROOT = Path(__file__).resolve().parents[1]


def smol(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
         timeout: float = 300) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PHOENIX_ENABLED": "false", **(env or {})}
    result = subprocess.run([SMOL, *args], capture_output=True, text=True, cwd=cwd, env=full_env,
                            stdin=subprocess.DEVNULL, timeout=timeout)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def sandbox_containers() -> set[str]:
    listed = subprocess.run(["docker", "ps", "-aq", "--filter", "label=smol.sandbox"], capture_output=True,
                            text=True, check=True).stdout
    return set(listed.split())


@pytest.fixture
def repo(make_repo: Callable[..., Path], sandbox_image: str) -> Path:
    return make_repo("calc", files=BUGGY, dirty=False)


# ---------------------------------------------------------------- options are validated before anything starts
def test_a_mistyped_exec_option_is_refused_before_a_sandbox_starts(repo: Path) -> None:
    before = sandbox_containers()
    result = smol("exec", "--repo", str(repo), "--patchout", "x.patch", "--", "true")
    assert result.returncode == ExitCode.USAGE, result
    assert "No such option '--patchout'" in result.stderr and "--patch-out" in result.stderr
    assert result.stdout == ""
    assert sandbox_containers() == before
    assert not (repo / "x.patch").exists()


def test_exec_passes_options_after_the_command_word_to_the_command(repo: Path) -> None:
    # The first word of COMMAND ends smol's options even without `--`.
    result = smol("exec", "--repo", str(repo), "python3", "-c", "import sys; print(sys.argv[1:])", "--json")
    assert result.returncode == 0, result
    assert "['--json']" in result.stdout


def test_a_mistyped_option_under_json_answers_in_json(repo: Path) -> None:
    result = smol("exec", "--json", "--repo", str(repo), "--patchout", "x.patch", "--", "true")
    assert result.returncode == ExitCode.USAGE
    error = json.loads(result.stdout)
    assert error == {"ok": False, "error": {"kind": "UsageError", "message": error["error"]["message"],
                                            "exit_code": 2}}
    assert "--patchout" in error["error"]["message"]


def test_run_json_reports_an_unreachable_model_as_one_json_object(repo: Path) -> None:
    # A port nothing listens on (loopback): the preflight fails before a sandbox starts.
    result = smol("run", "Fix add", "--repo", str(repo), "--json", env={"MODEL_API_BASE": "http://127.0.0.1:9"})
    assert result.returncode == ExitCode.MODEL, result
    error = json.loads(result.stdout)
    assert error["ok"] is False and error["error"]["exit_code"] == 6
    assert error["error"]["kind"] == "ModelUnavailableError"
    assert len(result.stdout.strip().splitlines()) == 1
    assert result.stderr.startswith("smol: error: ")


def test_a_missing_repo_under_json_answers_in_json(tmp_path: Path) -> None:
    result = smol("exec", "--repo", str(tmp_path / "nope"), "--json", "--", "true")
    assert result.returncode == ExitCode.USAGE
    assert json.loads(result.stdout)["error"]["message"].startswith("repo path")


# ---------------------------------------------------------------- exit codes: one table, everywhere
def test_help_and_readme_show_the_same_exit_code_table() -> None:
    shown = smol("--help").stdout
    readme = (ROOT / "README.md").read_text()
    for code, meaning in EXIT_CODE_MEANINGS.items():
        assert re.search(rf"^\s+{int(code)}\s+{re.escape(meaning[:40])}", shown, re.M), (code, shown)
        assert f"| {int(code)} | {meaning} |" in readme, code
    assert len(EXIT_CODE_MEANINGS) == len(ExitCode)


def test_help_stays_fast_without_litellm() -> None:
    probe = ("import sys, runner.cli as c; from click.testing import CliRunner; "
             "CliRunner().invoke(c.main, ['--help']); print('litellm' in sys.modules)")
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert shown.strip() == "False"


# ---------------------------------------------------------------- --model and --max-steps
def test_max_steps_flag_bounds_the_run(repo: Path) -> None:
    script = [tool("list_files", path="."), tool("read_file", path="src/app.py"), final("done")]
    with FakeOllama(script) as fake:
        result = smol("run", "Fix add", "--repo", str(repo), "--json", "--max-steps", "1", "--promote", "never",
                      env={"MODEL_API_BASE": fake.url})
    summary = json.loads(result.stdout)
    assert summary["status"] == "max_steps", summary
    assert "AGENT_MAX_STEPS (1)" in summary["reason"]
    assert result.returncode == ExitCode.INCOMPLETE


def test_model_flag_picks_the_model_and_is_validated(repo: Path) -> None:
    with FakeOllama([final("nothing to do")], models=("qwen2.5-coder:7b",)) as fake:
        result = smol("run", "Fix add", "--repo", str(repo), "--json", "--model", "ollama_chat/qwen2.5-coder:7b",
                      "--promote", "never", env={"MODEL_API_BASE": fake.url})
        assert result.returncode == 0, result
        assert json.loads(result.stdout)["status"] == "completed"
        asked = {request.get("model") for request in fake.requests}
        assert asked == {"qwen2.5-coder:7b"}, asked
    zero = smol("run", "Fix add", "--repo", str(repo), "--max-steps", "0")
    assert zero.returncode == ExitCode.USAGE and "--max-steps" in zero.stderr


# ---------------------------------------------------------------- a subdirectory means its repository
def test_find_root_walks_up_to_the_work_tree(tmp_path: Path) -> None:
    (tmp_path / "r/.git").mkdir(parents=True)
    (tmp_path / "r/a/b").mkdir(parents=True)
    assert find_root(tmp_path / "r/a/b") == ((tmp_path / "r").resolve(), "a/b")
    assert find_root(tmp_path / "r") == ((tmp_path / "r").resolve(), ".")
    (tmp_path / "plain").mkdir()
    assert find_root(tmp_path / "plain") == ((tmp_path / "plain").resolve(), ".")
    # Inside a repository's own metadata no work tree is above: the directory is taken as it is.
    assert find_root(tmp_path / "r/.git") == ((tmp_path / "r/.git").resolve(), ".")


def test_exec_from_a_subdirectory_sees_the_whole_repo_and_runs_there(repo: Path) -> None:
    result = smol("exec", "--", "bash", "-c", "pwd; git status --porcelain; ls ..", cwd=repo / "src")
    assert result.returncode == 0, result
    lines = result.stdout.splitlines()
    assert lines[0] == "/workspace/src"
    assert "tests" in lines  # the repo's root is the sandbox's /workspace
    assert f"working on the git repository at {repo.resolve()} (you are in its subdirectory src)" in result.stderr


# ---------------------------------------------------------------- runs list / runs show last
def _seed(store: RunStore, run_id: str, *, at: float, task: str, repo: str, status: str) -> None:
    store.save(RunRecord(id=run_id, created_at=at, task=task, repo=repo, base_state={}, model="m", status=status))


def test_runs_list_has_a_header_aligned_lines_and_filters(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    store = RunStore(db)
    now = time.time()
    _seed(store, "20260101-000000-aaaaaa", at=now - 30, task="first\nsecond line", repo="/r/one", status="completed")
    _seed(store, "20260101-000001-bbbbbb", at=now - 20, task="x" * 200, repo="/r/two", status="max_steps")
    _seed(store, "20260101-000002-cccccc", at=now - 10, task="third", repo="/r/one", status="stopped")
    env = {"RUNS_DB": str(db)}
    shown = smol("runs", "list", env=env).stdout.splitlines()
    assert shown[0].split() == ["RUN", "WHEN", "STATUS", "PROMOTION", "TASK"]
    assert [line.split()[0] for line in shown[1:]] == ["20260101-000002-cccccc", "20260101-000001-bbbbbb",
                                                       "20260101-000000-aaaaaa"]
    assert len({line.index(line.split()[3]) for line in shown[1:]}) == 1  # the status column is aligned
    assert shown[3].endswith("first second line")
    assert shown[2].endswith("x" * 59 + "…")
    assert [line.split()[0] for line in smol("runs", "list", "--status", "stopped", env=env).stdout.splitlines()[1:]] \
        == ["20260101-000002-cccccc"]
    gone = json.loads(smol("runs", "list", "--json", "--repo", "/r/one", env=env).stdout)  # a repo since deleted
    assert [run["id"] for run in gone] == ["20260101-000002-cccccc", "20260101-000000-aaaaaa"]
    (tmp_path / "one").mkdir()
    _seed(store, "20260101-000003-dddddd", at=now, task="t", repo=str((tmp_path / "one").resolve()), status="completed")
    mine = json.loads(smol("runs", "list", "--json", "--repo", str(tmp_path / "one"), env=env).stdout)
    assert [run["id"] for run in mine] == ["20260101-000003-dddddd"]
    limited = smol("runs", "list", "--limit", "0", env=env)
    assert limited.returncode == ExitCode.USAGE and "--limit" in limited.stderr


def test_runs_show_last_and_an_empty_store(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    env = {"RUNS_DB": str(db)}
    empty = smol("runs", "show", "last", env=env)
    assert empty.returncode == ExitCode.USAGE and "no runs recorded yet" in empty.stderr
    store = RunStore(db)
    _seed(store, "20260101-000000-aaaaaa", at=time.time() - 5, task="old", repo="/r", status="completed")
    _seed(store, "20260101-000001-bbbbbb", at=time.time(), task="new", repo="/r", status="completed")
    shown: dict[str, Any] = json.loads(smol("runs", "show", "last", "--json", env=env).stdout)
    assert shown["id"] == "20260101-000001-bbbbbb" and shown["task"] == "new"


def test_an_endpoint_that_is_no_ollama_is_named_in_one_line(repo: Path) -> None:
    import http.server
    import threading

    class NotOllama(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - the preflight's /api/tags passes, as behind a caching proxy
            self._answer(json.dumps({"models": [{"name": "qwen2.5-coder:14b"}]}).encode())

        def do_POST(self) -> None:  # noqa: N802
            self._answer(b"<html><body>502 proxy error</body></html>")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotOllama)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = smol("run", "Fix add", "--repo", str(repo), "--json", "--promote", "never",
                      env={"MODEL_API_BASE": f"http://127.0.0.1:{server.server_address[1]}"})
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == ExitCode.MODEL
    summary = json.loads(result.stdout)
    assert summary["status"] == "model_error"
    assert "is not Ollama's JSON" in summary["reason"] and "MODEL_API_BASE" in summary["reason"]
    assert "\n" not in summary["reason"] and "Traceback" not in summary["reason"]


# ---------------------------------------------------------------- promotion options checked before anything starts
@pytest.mark.parametrize(("args", "message"), [
    (["--promote", "auto-if-verified", "--no-verify"], "--promote auto-if-verified needs the verification"),
    (["--land", "branch", "--branch", "a..b"], "--branch 'a..b' is not a valid git branch name"),
    (["--land", "branch", "--branch", "-f"], "--branch '-f' is not a valid git branch name"),
    (["--branch", "smol/fine"], "--branch names the branch of --land branch: add --land branch"),
])
def test_promotion_options_are_refused_before_the_model_runs(tmp_path: Path, args: list[str], message: str) -> None:
    # The model endpoint does not exist: had the options not been refused first, the preflight would say so.
    env = {"MODEL_API_BASE": "http://127.0.0.1:9", "RUNS_DB": str(tmp_path / "runs.db")}
    for command in (["run", "Fix add", "--repo", str(tmp_path)], ["promote", "last"]):
        result = smol(*command, *args, env=env)
        assert result.returncode == ExitCode.USAGE, result
        assert message in result.stderr, result.stderr
        assert "model endpoint" not in result.stderr and "no runs recorded" not in result.stderr


def test_a_context_window_beyond_the_models_is_named_by_doctor_and_at_start(repo: Path) -> None:
    with FakeOllama([final("nothing")]) as fake:  # its /api/show says: context_length 32768
        env = {"MODEL_API_BASE": fake.url, "MODEL_NUM_CTX": "65536"}
        doctor = json.loads(smol("doctor", "--json", env=env).stdout)
        model = next(check for check in doctor["checks"] if check["name"] == "model endpoint")
        assert model["status"] == "warn" and "MODEL_NUM_CTX=65536 is more than" in model["detail"]
        assert "MODEL_NUM_CTX=32768" in model["fix"]
        result = smol("run", "x", "--repo", str(repo), "--json", "--promote", "never", env=env)
        assert "smol: warning: MODEL_NUM_CTX=65536 is more than ollama_chat/qwen2.5-coder:14b's context length " \
               "(32768)" in result.stderr
        fine = json.loads(smol("doctor", "--json", env={"MODEL_API_BASE": fake.url}).stdout)
        model = next(check for check in fine["checks"] if check["name"] == "model endpoint")
        assert model["status"] == "ok" and "context 32768 tokens, MODEL_NUM_CTX 16384" in model["detail"]
