"""`smol batch` and `smol queue` (issue 10) end to end: the real engine and image, real git repos, the scripted model
answering each task's conversation; statuses, resume, a killed batch, a lost model endpoint, the review queue."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runner.errors import ExitCode
from tests.conftest import tree_fingerprint
from tests.fake_ollama import Answer, FakeOllama, final, tool
from tests.test_agent_e2e import BUGGY

SMOL = str(Path(sys.executable).with_name("smol"))
FIX = [tool("propose_patch", path="src/app.py", old_text="def add(a, b):\n    return a - b",
            new_text="def add(a, b):\n    return a + b"),
       tool("apply_patch", patch_id="p1"), final("fixed add")]
BREAK = [tool("propose_patch", path="src/app.py", old_text="def sub(a, b):\n    return a - b",
              new_text="def sub(a, b):\n    return a * b"),
         tool("apply_patch", patch_id="p1"), final("changed sub")]
LOOK = [tool("list_files", pattern="*"), final("nothing to change")]
LOOP = [tool("read_file", path="README.md")] * 8


class ByTask:
    """Answers each conversation from its own script: the task's words pick the script, the number of answers the
    model already gave in that conversation picks the step (so concurrent tasks never take each other's turns)."""

    def __init__(self, scripts: dict[str, list[Answer]], *, delay: float = 0.0) -> None:
        self.scripts = scripts
        self.delay = delay
        self.tasks_seen: list[str] = []

    def __call__(self, request: dict[str, Any]) -> Answer:
        messages = request.get("messages", [])
        text = " ".join(str(m.get("content", "")) for m in messages if m.get("role") == "user")
        given = sum(1 for m in messages if m.get("role") == "assistant")
        for marker, script in self.scripts.items():
            if marker in text:
                if given == 0:
                    self.tasks_seen.append(marker)
                answer = script[given] if given < len(script) else final("script exhausted")
                return {**answer, "delay": self.delay} if self.delay else answer
        return final("no script for this task")


def routed(router: ByTask) -> FakeOllama:
    return FakeOllama([router] * 500)


def write_tasks(path: Path, tasks: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(task) + "\n" for task in tasks))
    return path


def smol(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([SMOL, *args], env={**os.environ, "PHOENIX_ENABLED": "false", **env},
                            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.fixture
def repo(make_repo: Callable[..., Path], sandbox_image: str) -> Path:
    return make_repo("calc", files=BUGGY, dirty=False)


def test_a_batch_gives_each_task_a_status_that_means_something(repo: Path, tmp_path: Path) -> None:
    before = tree_fingerprint(repo)
    tasks = write_tasks(tmp_path / "nightly.jsonl", [
        {"id": "fix", "repo": str(repo), "task": "TASK-FIX: fix add"},
        {"id": "break", "repo": str(repo), "task": "TASK-BREAK: change sub"},
        {"id": "look", "repo": str(repo), "task": "TASK-LOOK: look around"},
        {"id": "loop", "repo": str(repo), "task": "TASK-LOOP: read the readme", "max_steps": 12},
    ])
    router = ByTask({"TASK-FIX": FIX, "TASK-BREAK": BREAK, "TASK-LOOK": LOOK, "TASK-LOOP": LOOP})
    env = {"RUNS_DB": str(tmp_path / "runs.db")}
    with routed(router) as fake:
        env["MODEL_API_BASE"] = fake.url
        result = smol(["batch", "run", str(tasks), "--jobs", "2", "--json"], env)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    statuses = {task["id"]: task["status"] for task in summary["tasks"]}
    assert statuses == {"fix": "verified", "break": "unverified", "look": "no-change", "loop": "loop"}
    assert all(task["state"] == "done" and task["attempts"] == 1 for task in summary["tasks"])
    assert tree_fingerprint(repo) == before  # a batch never writes a tree
    # progress: one plain line per change when stderr is not a terminal
    assert "smol: fix: running" in result.stderr and "smol: fix: done verified" in result.stderr

    # The review queue holds the two changes: verified first, the conflict between them (same file) named.
    listed = smol(["queue", "--json"], env)
    queue = json.loads(listed.stdout)
    assert [entry["batch"]["task"] for entry in queue] == ["fix", "break"]
    assert queue[0]["verified"] and not queue[1]["verified"]
    assert queue[0]["conflicts"] == [queue[1]["run_id"]] and queue[0]["files"] == ["src/app.py"]
    shown = smol(["queue"], env).stdout
    assert "verified (" in shown and "UNVERIFIED (failed" in shown and "touches the same files" in shown

    # Run again: everything finished is skipped; the model is not asked anything.
    with routed(ByTask({})) as fake:
        again = smol(["batch", "run", str(tasks), "--json"], {**env, "MODEL_API_BASE": fake.url})
        assert fake.requests == []
    assert sorted(json.loads(again.stdout)["skipped"]) == ["break", "fix", "look", "loop"]

    # The review walks the queue through the ordinary promotion: the verified change is applied; the other one is
    # re-verified against the tree that now holds the first (its edit merges: another function of the same file),
    # fails there, and stays queued with nothing of it written.
    reviewed = smol(["queue", "review", "--promote", "auto-if-verified"], env)
    assert reviewed.returncode == 0, reviewed.stdout + reviewed.stderr
    assert "reviewed: 1 applied, 1 saved" in reviewed.stdout
    assert "verification: failed (1 passed, 1 failed)" in reviewed.stdout
    assert (repo / "src/app.py").read_text() == BUGGY["src/app.py"].replace("return a - b", "return a + b", 1)
    assert [entry["run_id"] for entry in json.loads(smol(["queue", "--json"], env).stdout)] == [queue[1]["run_id"]]
    dropped = smol(["queue", "drop", queue[1]["run_id"]], env)
    assert dropped.returncode == 0 and "dropped" in dropped.stdout
    assert json.loads(smol(["queue", "--json"], env).stdout) == []
    again_drop = smol(["queue", "drop", queue[1]["run_id"]], env)
    assert again_drop.returncode == ExitCode.USAGE and "not waiting for review" in again_drop.stderr


def test_the_same_work_in_another_batch_is_not_done_twice(repo: Path, tmp_path: Path) -> None:
    env = {"RUNS_DB": str(tmp_path / "runs.db")}
    first = write_tasks(tmp_path / "a.jsonl", [{"id": "fix", "repo": str(repo), "task": "TASK-FIX: fix add"}])
    second = write_tasks(tmp_path / "b.jsonl", [{"id": "fix-again", "repo": str(repo), "task": "TASK-FIX: fix add"},
                                                {"id": "other", "repo": str(repo), "task": "TASK-LOOK: look"}])
    with routed(ByTask({"TASK-FIX": FIX, "TASK-LOOK": LOOK})) as fake:
        env["MODEL_API_BASE"] = fake.url
        assert smol(["batch", "run", str(first)], env).returncode == 0
        router_calls = len(fake.requests)
        result = smol(["batch", "run", str(second), "--json"], env)
    summary = json.loads(result.stdout)
    assert summary["reused"] == ["fix-again"]
    rows = {task["id"]: task for task in summary["tasks"]}
    assert rows["fix-again"]["status"] == "verified" and "same work as a/fix" in rows["fix-again"]["detail"]
    assert rows["other"]["status"] == "no-change"
    assert len(fake.requests) - router_calls == len(LOOK)  # only the new task talked to the model


def test_a_task_past_its_deadline_is_stopped_from_the_host(repo: Path, tmp_path: Path) -> None:
    tasks = write_tasks(tmp_path / "slow.jsonl", [
        {"id": "slow", "repo": str(repo), "task": "TASK-LOOP: read", "timeout": 4, "max_steps": 50},
        {"id": "quick", "repo": str(repo), "task": "TASK-LOOK: look"}])
    router = ByTask({"TASK-LOOP": [tool("list_files", pattern=f"*{n}") for n in range(50)], "TASK-LOOK": LOOK},
                    delay=1.0)
    env = {"RUNS_DB": str(tmp_path / "runs.db")}
    started = time.monotonic()
    with routed(router) as fake:
        result = smol(["batch", "run", str(tasks), "--jobs", "2", "--json"], {**env, "MODEL_API_BASE": fake.url})
    took = time.monotonic() - started
    rows = {task["id"]: task for task in json.loads(result.stdout)["tasks"]}
    assert rows["slow"]["status"] == "timeout" and rows["quick"]["status"] == "no-change"
    assert took < 60, took  # 50 one-second steps would take far longer than the 4 s deadline


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_lost_model_endpoint_pauses_the_batch_instead_of_failing_tasks(repo: Path, tmp_path: Path) -> None:
    port = free_port()
    tasks = write_tasks(tmp_path / "t.jsonl", [{"id": "fix", "repo": str(repo), "task": "TASK-FIX: fix add"}])
    env = {**os.environ, "PHOENIX_ENABLED": "false", "RUNS_DB": str(tmp_path / "runs.db"),
           "MODEL_API_BASE": f"http://127.0.0.1:{port}"}
    process = subprocess.Popen([SMOL, "batch", "run", str(tasks), "--json"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    time.sleep(4)  # the first attempt finds nobody listening: the batch pauses and probes
    with FakeOllama([ByTask({"TASK-FIX": FIX})] * 50, port=port):
        out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert "Traceback" not in err and "paused" in err
    row = json.loads(out)["tasks"][0]
    assert row["status"] == "verified" and row["attempts"] == 2  # the paused attempt is not a failure


def test_the_pause_has_an_end_and_the_batch_resumes_later(repo: Path, tmp_path: Path) -> None:
    tasks = write_tasks(tmp_path / "t.jsonl", [{"id": "fix", "repo": str(repo), "task": "TASK-FIX: fix add"}])
    env = {"RUNS_DB": str(tmp_path / "runs.db"), "MODEL_API_BASE": f"http://127.0.0.1:{free_port()}"}
    result = smol(["batch", "run", str(tasks), "--infra-wait", "1"], env)
    assert result.returncode == ExitCode.MODEL, result.stderr
    assert "Nothing was marked failed" in result.stderr and "--resume t" in result.stderr
    with routed(ByTask({"TASK-FIX": FIX})) as fake:
        resumed = smol(["batch", "run", "--resume", "t", "--json"], {**env, "MODEL_API_BASE": fake.url})
    assert json.loads(resumed.stdout)["tasks"][0]["status"] == "verified"


def test_a_killed_batch_leaves_nothing_half_written_and_resumes(repo: Path, tmp_path: Path,
                                                                docker_client: Any) -> None:
    tasks = write_tasks(tmp_path / "k.jsonl", [
        {"id": "one", "repo": str(repo), "task": "TASK-LOOK: look"},
        {"id": "two", "repo": str(repo), "task": "TASK-FIX: fix add"}])
    db = tmp_path / "runs.db"
    env = {**os.environ, "PHOENIX_ENABLED": "false", "RUNS_DB": str(db)}
    with routed(ByTask({"TASK-LOOK": LOOK, "TASK-FIX": FIX}, delay=2.0)) as fake:
        process = subprocess.Popen([SMOL, "batch", "run", str(tasks), "--jobs", "1"],
                                   env={**env, "MODEL_API_BASE": fake.url}, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not fake.requests:
            time.sleep(0.2)
        assert fake.requests, "the batch never reached the model"
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    states = sqlite3.connect(db).execute("SELECT task_id, state FROM batch_tasks ORDER BY position").fetchall()
    assert states == [("one", "running"), ("two", "queued")]
    gc = smol(["gc"], {"RUNS_DB": str(db)})
    assert gc.returncode == 0, gc.stderr
    with routed(ByTask({"TASK-LOOK": LOOK, "TASK-FIX": FIX})) as fake:
        resumed = smol(["batch", "run", str(tasks), "--json"], {"RUNS_DB": str(db), "MODEL_API_BASE": fake.url})
    rows = {task["id"]: task for task in json.loads(resumed.stdout)["tasks"]}
    assert rows["one"]["status"] == "no-change" and rows["one"]["attempts"] == 2
    assert rows["two"]["status"] == "verified" and rows["two"]["attempts"] == 1


@pytest.mark.parametrize(("content", "message"), [
    ('{"id": "a", "repo": ".", "task": "x", "timout": 5}\n', "unknown key 'timout' (did you mean 'timeout'?)"),
    ('{"id": "a", "repo": ".", "task": "x"}\n{"id": "a", "repo": ".", "task": "y"}\n', "already used at 1"),
    ('{"id": "a", "repo": "./missing", "task": "x"}\n', "is not a directory"),
    ('{"id": "a", "repo": "."}\n', "task: is required"),
    ("not json\n", ":1: not a JSON object"),
    ("", "holds no tasks"),
])
def test_a_bad_task_file_is_refused_before_anything_runs(tmp_path: Path, content: str, message: str) -> None:
    tasks = tmp_path / "bad.jsonl"
    tasks.write_text(content)
    result = smol(["batch", "run", str(tasks)], {"RUNS_DB": str(tmp_path / "runs.db"),
                                                 "MODEL_API_BASE": "http://127.0.0.1:9"})
    assert result.returncode == ExitCode.USAGE and message in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1


def test_a_yaml_task_file_reads_like_jsonl(tmp_path: Path) -> None:
    from runner.batch.tasks import load_tasks

    (tmp_path / "r").mkdir()
    path = tmp_path / "n.yaml"
    path.write_text("tasks:\n  - id: a\n    repo: r\n    task: fix it\n    timeout: 60\n"
                    "  - id: b\n    repo: https://example.invalid/x.git\n    ref: v1\n    task: t\n")
    first, second = load_tasks(path)
    assert first.repo == str((tmp_path / "r").resolve()) and first.timeout == 60
    assert second.is_remote and second.ref == "v1"


def test_a_git_url_task_runs_on_the_batchs_own_clone_at_its_ref(make_repo: Callable[..., Path], sandbox_image: str,
                                                                 tmp_path: Path) -> None:
    repo = make_repo("upstream", owner=os.geteuid(), files=BUGGY, dirty=False)  # git serves only its owner's repos
    git = ["git", "-c", "safe.directory=*", "-c", "user.email=t@t", "-c", "user.name=t", "-C", str(repo)]
    subprocess.run([*git, "checkout", "-q", "-b", "feature"], check=True)
    (repo / "FEATURE.md").write_text("only on the branch\n")
    subprocess.run([*git, "add", "FEATURE.md"], check=True)
    subprocess.run([*git, "commit", "-qm", "feature"], check=True)
    subprocess.run([*git, "checkout", "-q", "-"], check=True)
    before = tree_fingerprint(repo)
    tasks = write_tasks(tmp_path / "remote.jsonl", [
        {"id": "fix", "repo": f"file://{repo}", "ref": "feature", "task": "TASK-FIX: fix add"}])
    env = {"RUNS_DB": str(tmp_path / "state" / "runs.db")}
    with routed(ByTask({"TASK-FIX": FIX})) as fake:
        result = smol(["batch", "run", str(tasks), "--json"], {**env, "MODEL_API_BASE": fake.url})
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)["tasks"][0]
    assert row["status"] == "verified", result.stderr
    (entry,) = json.loads(smol(["queue", "--json"], env).stdout)
    clone = Path(entry["repo"])
    assert clone.is_relative_to(tmp_path / "state") and (clone / "FEATURE.md").is_file()  # the ref was checked out
    assert tree_fingerprint(repo) == before  # the source repo is only read


def test_a_repo_that_cannot_be_cloned_is_that_tasks_outcome(repo: Path, tmp_path: Path) -> None:
    tasks = write_tasks(tmp_path / "t.jsonl", [
        {"id": "gone", "repo": f"file://{tmp_path}/no-such-repo", "task": "TASK-LOOK: look"},
        {"id": "here", "repo": str(repo), "task": "TASK-LOOK: look"}])
    with routed(ByTask({"TASK-LOOK": LOOK})) as fake:
        result = smol(["batch", "run", str(tasks), "--json"], {"RUNS_DB": str(tmp_path / "runs.db"),
                                                               "MODEL_API_BASE": fake.url})
    assert result.returncode == 0, result.stderr
    rows = {task["id"]: task for task in json.loads(result.stdout)["tasks"]}
    assert rows["gone"]["status"] == "repo-error" and "cannot clone" in rows["gone"]["detail"]
    assert rows["here"]["status"] == "no-change"


def test_a_url_smol_does_not_clone_is_refused(tmp_path: Path) -> None:
    tasks = write_tasks(tmp_path / "bad.jsonl", [{"id": "x", "repo": "ext::sh -c touch% /tmp/pwned", "task": "t"}])
    result = smol(["batch", "run", str(tasks)], {"RUNS_DB": str(tmp_path / "runs.db")})
    assert result.returncode == ExitCode.USAGE and "is not a directory" in result.stderr
    assert not Path("/tmp/pwned").exists()


def test_a_batch_task_builds_its_repos_environment_when_allowed(tmp_path: Path, sandbox_image: str) -> None:
    """The task's `setup: true` is consent: the repo's environment (here from a wheelhouse, no network) is built
    before its sandbox starts, so the agent and the re-verification import the project's dependency."""
    from tests.test_env_real import AIR_GAPPED, make_tinycalc, make_wheelhouse

    wheelhouse = make_wheelhouse(tmp_path)
    repo = make_tinycalc(tmp_path, {**AIR_GAPPED, "tinycalc/__init__.py":
                                    AIR_GAPPED["tinycalc/__init__.py"].replace("a + b", "a - b")})
    fix = [tool("propose_patch", path="tinycalc/__init__.py", old_text="return a - b", new_text="return a + b"),
           tool("apply_patch", patch_id="p1"), final("fixed add")]
    tasks = write_tasks(tmp_path / "env.jsonl", [
        {"id": "no-consent", "repo": str(repo), "task": "TASK-LOOK: look", "setup": False},
        {"id": "fix", "repo": str(repo), "task": "TASK-FIX: fix add", "setup": True}])
    env = {"RUNS_DB": str(tmp_path / "runs.db"), "SMOL_ENV_WHEELHOUSE": str(wheelhouse),
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    smol(["env", "rm", "--repo", str(repo)], env)
    with routed(ByTask({"TASK-FIX": fix, "TASK-LOOK": LOOK})) as fake:
        result = smol(["batch", "run", str(tasks), "--jobs", "1", "--warm", "0", "--json"],
                      {**env, "MODEL_API_BASE": fake.url})
    assert result.returncode == 0, result.stderr
    rows = {task["id"]: task for task in json.loads(result.stdout)["tasks"]}
    assert rows["no-consent"]["status"] == "no-change"
    assert rows["fix"]["status"] == "verified" and "2 passed, 0 failed" in rows["fix"]["detail"], rows["fix"]
    shown = json.loads(smol(["env", "show", "--repo", str(repo), "--json"], env).stdout)
    assert "ready" in json.dumps(shown).lower(), shown
