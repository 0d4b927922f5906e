"""`smol batch run --ray` (issue 13) on a real local Ray cluster: two nodes on loopback, each with its own model
endpoint (a scripted fake per node), the real engine and image. No part of Ray is mocked. Plus the repo shipping
(git bundle + uncommitted state) on real repos, and `smol` without --ray never importing Ray."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.batch.ship import ShipError, pack_repo, unpack_repo
from tests.conftest import git, tree_fingerprint
from tests.test_agent_e2e import BUGGY
from tests.test_batch import FIX, LOOK, SMOL, ByTask, routed, smol, write_tasks

NODE = {"num_cpus": 1, "object_store_memory": 100 * 1024**2, "include_dashboard": False,
        "node_ip_address": "127.0.0.1"}
"""Small nodes bound to loopback: this machine has 2 cores, and Ray must listen nowhere else."""


@pytest.fixture
def clusters() -> Iterator[Callable[..., Any]]:
    """Start local clusters (`ray.cluster_utils.Cluster`: real GCS, raylets and workers); shut down after the test.
    Each node gets its own environment: its own model endpoint, as a real node would have."""
    from ray.cluster_utils import Cluster

    made: list[Any] = []

    def make(node_envs: list[dict[str, str]], slots: int = 1) -> tuple[Any, list[Any]]:
        def args(env: dict[str, str]) -> dict[str, Any]:
            return {**NODE, "resources": {"smol_sandbox": slots, "smol_model": 1},
                    "env_vars": {"PHOENIX_ENABLED": "false", **env}}

        cluster = Cluster(initialize_head=True, connect=False, head_node_args=args(node_envs[0]))
        made.append(cluster)
        nodes = [cluster.head_node] + [cluster.add_node(**args(env)) for env in node_envs[1:]]
        return cluster, nodes

    yield make
    for cluster in made:
        cluster.shutdown()
    # A worker killed mid-task (a removed node, a cluster shut down) leaves its sandbox on the shared engine, as a
    # real node's would on its own: `smol gc` there removes it, here once every worker process is gone.
    cleaned = smol(["gc"], {})
    assert cleaned.returncode == 0, cleaned.stderr


def said(request: dict[str, Any]) -> str:
    """What the user side of one model request said (the task's prompt is in it)."""
    return " ".join(str(m.get("content", "")) for m in request.get("messages", []) if m.get("role") == "user")


def runs_by_task(db: Path) -> dict[str, list[dict[str, Any]]]:
    """Every run record of the driver's store, grouped by the batch task it belongs to."""
    found: dict[str, list[dict[str, Any]]] = {}
    for repo, summary in sqlite3.connect(db).execute("SELECT repo, summary FROM runs"):
        data = json.loads(summary)
        found.setdefault(data["batch"]["task"], []).append({"repo": repo, **data})
    return found


@pytest.fixture
def repo(make_repo: Callable[..., Path], sandbox_image: str) -> Path:
    return make_repo("calc", files=BUGGY, dirty=False)


def test_a_batch_spreads_over_two_nodes_each_with_its_own_endpoint(repo: Path, tmp_path: Path,
                                                                    clusters: Callable[..., Any]) -> None:
    before = tree_fingerprint(repo)
    tasks = write_tasks(tmp_path / "spread.jsonl", [
        {"id": "fix-a", "repo": str(repo), "task": "TASK-FIX a: fix add"},
        {"id": "fix-b", "repo": str(repo), "task": "TASK-FIX b: fix add"},
        {"id": "look-a", "repo": str(repo), "task": "TASK-LOOK a: look"},
        {"id": "look-b", "repo": str(repo), "task": "TASK-LOOK b: look"}])
    db = tmp_path / "runs.db"
    with routed(ByTask({"TASK-FIX": FIX, "TASK-LOOK": LOOK}, delay=1.0)) as one, \
            routed(ByTask({"TASK-FIX": FIX, "TASK-LOOK": LOOK}, delay=1.0)) as two:
        cluster, nodes = clusters([{"MODEL_API_BASE": one.url}, {"MODEL_API_BASE": two.url}])
        # The driver's own endpoint is nobody: every model call must go to a node's own endpoint.
        result = smol(["batch", "run", str(tasks), "--ray", cluster.address, "--json"],
                      {"RUNS_DB": str(db), "MODEL_API_BASE": "http://127.0.0.1:9"})
    assert result.returncode == 0, result.stderr
    rows = {task["id"]: task for task in json.loads(result.stdout)["tasks"]}
    assert {task_id: row["status"] for task_id, row in rows.items()} == {
        "fix-a": "verified", "fix-b": "verified", "look-a": "no-change", "look-b": "no-change"}
    assert all(row["attempts"] == 1 for row in rows.values())
    runs = runs_by_task(db)
    assert sorted(runs) == sorted(rows) and all(len(found) == 1 for found in runs.values())
    node_of = {task_id: found[0]["ray"]["node_id"] for task_id, found in runs.items()}
    ids = [node.node_id for node in nodes]
    assert set(node_of.values()) == set(ids), node_of  # both nodes ran tasks
    for fake, node_id in ((one, ids[0]), (two, ids[1])):  # each node asked its own endpoint only
        asked = {task_id for task_id, row in rows.items() for request in fake.requests if row["task"] in said(request)}
        assert asked == {task_id for task_id, node in node_of.items() if node == node_id}
    assert all(found[0]["repo"] == str(repo) for found in runs.values())  # the driver's path, not the node's copy
    assert tree_fingerprint(repo) == before
    assert "ray node" in result.stderr and ": ready" in result.stderr


def test_a_node_lost_mid_task_reruns_it_elsewhere_and_every_task_finishes_once(
        repo: Path, tmp_path: Path, clusters: Callable[..., Any]) -> None:
    tasks = write_tasks(tmp_path / "lost.jsonl", [
        {"id": f"fix-{n}", "repo": str(repo), "task": f"TASK-FIX {n}: fix add"} for n in range(3)])
    db = tmp_path / "runs.db"
    with routed(ByTask({"TASK-FIX": FIX}, delay=1.5)) as one, routed(ByTask({"TASK-FIX": FIX}, delay=1.5)) as two:
        cluster, nodes = clusters([{"MODEL_API_BASE": one.url}, {"MODEL_API_BASE": two.url}])
        process = subprocess.Popen([SMOL, "batch", "run", str(tasks), "--ray", cluster.address, "--json"],
                                   env={**os.environ, "PHOENIX_ENABLED": "false", "RUNS_DB": str(db)},
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not two.requests and process.poll() is None:
            time.sleep(0.2)
        assert two.requests, "no task reached the second node"
        lost_text = said(two.requests[0])
        cluster.remove_node(nodes[1])  # the node dies mid-task (its raylet and workers are killed)
        out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert out.startswith("{"), (out[:3000], err[-3000:])
    rows = {task["id"]: task for task in json.loads(out)["tasks"]}
    assert {row["status"] for row in rows.values()} == {"verified"} and len(rows) == 3
    assert all(row["attempts"] == 1 for row in rows.values())  # Ray's retry is invisible to the batch
    runs = runs_by_task(db)
    assert sorted(runs) == sorted(rows) and all(len(found) == 1 for found in runs.values()), runs
    lost_id = next(task_id for task_id, row in rows.items() if row["task"] in lost_text)
    assert runs[lost_id][0]["ray"]["node_id"] == nodes[0].node_id  # finished on the node that stayed
    gc = smol(["gc"], {"RUNS_DB": str(db)})  # what the lost node's worker left on the (shared) engine
    assert gc.returncode == 0, gc.stderr


def test_a_node_without_docker_gets_no_task_and_a_batch_resumes_after_the_cluster_is_gone(
        repo: Path, tmp_path: Path, clusters: Callable[..., Any]) -> None:
    tasks = write_tasks(tmp_path / "gone.jsonl", [
        {"id": f"look-{n}", "repo": str(repo), "task": f"TASK-LOOK {n}: look"} for n in range(3)])
    db = tmp_path / "runs.db"
    env = {**os.environ, "PHOENIX_ENABLED": "false", "RUNS_DB": str(db)}
    with routed(ByTask({"TASK-LOOK": LOOK}, delay=1.5)) as fake:
        # A second node without a Docker engine: reported, and its slot held so that it receives no task.
        cluster, nodes = clusters([{"MODEL_API_BASE": fake.url},
                                   {"MODEL_API_BASE": fake.url, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}])
        process = subprocess.Popen([SMOL, "batch", "run", str(tasks), "--ray", cluster.address], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 180
        done: list[Any] = []
        while time.monotonic() < deadline and not done and process.poll() is None:
            time.sleep(0.3)
            if db.exists():
                done = sqlite3.connect(db).execute("SELECT task_id FROM batch_tasks WHERE state = 'done'").fetchall()
        assert done, "no task finished on the cluster"
        cluster.shutdown()  # the whole cluster is gone; the driver and its store are not
        try:
            _, err = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
    assert process.returncode != 0  # Ray ends a driver whose cluster is gone; its store keeps what finished
    assert smol(["gc"], {"RUNS_DB": str(db)}).returncode == 0  # the sandboxes of the killed workers
    states = dict(sqlite3.connect(db).execute("SELECT task_id, state FROM batch_tasks").fetchall())
    assert 1 <= list(states.values()).count("done") < 3, states
    assert f"ray node {nodes[1].node_id[:12]}" in err and "receives no tasks" in err, err
    assert {found[0]["ray"]["node_id"] for found in runs_by_task(db).values()} == {nodes[0].node_id}
    with routed(ByTask({"TASK-LOOK": LOOK})) as fake:  # resumed here, without any cluster
        resumed = smol(["batch", "run", "--resume", "gone", "--json"], {"RUNS_DB": str(db), "MODEL_API_BASE": fake.url})
    summary = json.loads(resumed.stdout)
    assert {task["status"] for task in summary["tasks"]} == {"no-change"}
    assert sorted(summary["skipped"]) == sorted(task_id for task_id, state in states.items() if state == "done")
    assert all(len(found) == 1 for found in runs_by_task(db).values())


def test_smol_without_ray_never_imports_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    script = f"""
import sys
from runner.cli import main
for args in (["--help"], ["batch", "--help"], ["batch", "run", "--help"], ["batch", "list"], ["queue"],
             ["batch", "run", {str(bad)!r}], ["runs", "list"], ["config"]):
    try:
        main.main(args, prog_name="smol", standalone_mode=False)
    except BaseException:
        pass
loaded = sorted(name for name in sys.modules if name == "ray" or name.startswith("ray."))
print("RAY:", loaded)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "RUNS_DB": str(tmp_path / "runs.db"), "PHOENIX_ENABLED": "false"})
    assert "RAY: []" in result.stdout, result.stdout[-2000:] + result.stderr[-2000:]


def test_a_repo_travels_as_a_bundle_plus_its_uncommitted_state(make_repo: Callable[..., Path],
                                                               tmp_path: Path) -> None:
    repo = make_repo("shipped")  # committed files, then an edited README and an untracked notes.txt
    (repo / "src/util/helpers.py").unlink()
    (repo / "scripts/run.sh").chmod(0o644)
    (repo / "debug.log").write_text("ignored, stays home\n")
    os.symlink("README.md", repo / "link")
    (repo / ".gitattributes").write_text("*.py text eol=crlf\n")  # a checkout must not convert what travels
    pack = pack_repo(repo)
    assert set(pack.files) == {"README.md", "notes.txt", "scripts/run.sh", "link", ".gitattributes"}
    assert pack.deleted == ["src/util/helpers.py"] and pack.head == git(repo, "rev-parse", "HEAD").strip()
    target = unpack_repo(pack, tmp_path / "out")
    expected = {path: state for path, state in tree_fingerprint(repo, include_git=False).items()
                if path != "debug.log"}
    got = tree_fingerprint(target, include_git=False)
    strip = {path: value.rsplit(":", 1)[0] if value.startswith("file:") else value for path, value in got.items()}
    assert strip == {path: value.rsplit(":", 1)[0] if value.startswith("file:") else value
                     for path, value in expected.items()}
    assert git(target, "rev-parse", "HEAD") == git(repo, "rev-parse", "HEAD")
    assert git(target, "status", "--porcelain") == git(repo, "status", "--porcelain").replace("?? debug.log\n", "")
    assert pack_repo(target).digest == pack.digest


def test_a_pack_cannot_write_outside_its_directory(tmp_path: Path) -> None:
    from runner.batch.ship import RepoPack
    from runner.sandbox.base import FileState

    for path in ("../escape", "/etc/x", ".git/hooks/post-checkout", "a/../../b"):
        pack = RepoPack(head=None, branch=None, git=False, files={path: FileState("file", b"x")})
        with pytest.raises(ShipError, match="refusing"):
            unpack_repo(pack, tmp_path / f"out-{abs(hash(path))}")
    assert not (tmp_path / "escape").exists()
