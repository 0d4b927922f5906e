"""The node side of a cluster batch: what a Ray worker runs. Imports no Ray at module level (ray_pool wraps these
plain functions as Ray tasks), so it is testable and importable anywhere.

A node uses its own Docker engine, its own model endpoint and its own configuration (environment, config file);
only the batch's command-line settings travel with the job. The repo arrives as a `RepoPack` and is rebuilt in a
scratch directory; the run is recorded into a scratch store and the record travels back. Nothing is re-verified or
promoted here: that stays on the reviewer's machine."""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.batch.ship import RepoPack, unpack_repo
from runner.batch.work import TaskControl, TaskJob, TaskResult, run_task
from runner.errors import SmolError

SANDBOX_RESOURCE = "smol_sandbox"
"""The Ray resource a node offers per sandbox slot (tasks running at once there)."""
MODEL_RESOURCE = "smol_model"
"""The Ray resource naming a node's model slots (requests in flight to its endpoint); never held by a task."""


@dataclass
class NodeReport:
    node_id: str
    host: str
    slots: int
    ready: bool
    problem: str = ""
    image: str = ""


@dataclass
class RemoteOutcome:
    result: TaskResult
    record: Any
    """The RunRecord from the node's scratch store (None when the task ended before recording)."""
    node_id: str
    host: str


def _node() -> tuple[str, str]:
    import ray

    return ray.get_runtime_context().get_node_id(), socket.gethostname()


def _node_resource(node_id: str, name: str, default: float) -> float:
    import ray

    for node in ray.nodes():
        if node.get("NodeID") == node_id:
            return float(node.get("Resources", {}).get(name, default))
    return default


def probe_node(overrides: dict[str, Any], slots: int) -> NodeReport:
    """Can this node run tasks? Its engine answers, the sandbox image exists (built here if missing, as `smol image
    build` does), the model endpoint answers. Sandboxes a killed worker left behind are removed first."""
    from runner.agent.model import preflight
    from runner.config import load_settings_and_warnings
    from runner.sandbox.engine import connect
    from runner.sandbox.image import build_image
    from runner.sandbox.labels import collect_garbage

    node_id, host = _node()
    report = NodeReport(node_id, host, slots, ready=False)
    try:
        with tempfile.TemporaryDirectory(prefix="smol-probe-") as scratch:
            settings = load_settings_and_warnings(scratch, **overrides)[0]
        engine = connect()
        try:
            collect_garbage(engine)
            report.image = build_image(engine, settings, lambda line: None)
        finally:
            engine.close()
        preflight(settings, timeout=10)
    except SmolError as error:
        report.problem = str(error).splitlines()[0]
        return report
    except Exception as error:  # noqa: BLE001 - a node that cannot even check itself receives no tasks
        report.problem = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        return report
    report.ready = True
    return report


def run_on_node(job: TaskJob, pack: RepoPack, timeout: float | None) -> RemoteOutcome:
    """One task on this node: rebuild the repo, run the agent (no re-verification), hand back result and record."""
    from runner.records import RunStore

    node_id, host = _node()
    scratch = Path(tempfile.mkdtemp(prefix="smol-ray-task-"))
    control = TaskControl(time.monotonic() + timeout if timeout else None)
    timer = threading.Timer(timeout, control.stop, args=("timeout: the task's deadline passed",)) if timeout else None
    try:
        repo = unpack_repo(pack, scratch / "repo")
        store_path = scratch / "runs.db"
        local = dataclasses.replace(job, repo=str(repo), overrides={**job.overrides, "runs_db": str(store_path)})
        if timer is not None:
            timer.start()
        slots = int(_node_resource(node_id, MODEL_RESOURCE, 1) or 1)
        result = run_task(local, control, model_gate=_ModelGate.factory(node_id, local, slots), verify=False)
        record = RunStore(store_path).get(result.run_id) if result.run_id else None
        return RemoteOutcome(result, record, node_id, host)
    except BaseException:
        control.stop("interrupted: the task was cancelled")  # Ray's cancel raises KeyboardInterrupt here
        raise
    finally:
        if timer is not None:
            timer.cancel()
        shutil.rmtree(scratch, ignore_errors=True)
        _drain_spares()


def _drain_spares() -> None:
    """A Ray worker process lives on after its task: spare sandboxes nobody will take are removed now."""
    try:
        from runner.sandbox.spares import POOL

        POOL.drain()
    except Exception:  # noqa: BLE001 - best effort; `smol gc` on the node removes what is left
        pass


class _ModelGate:
    """Model slots of one node, shared by the node's worker processes: N lock files per endpoint, a request holds
    one with flock (released by the kernel when a worker dies, so a lost task never leaks a slot)."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self.fd: int | None = None

    @classmethod
    def factory(cls, node_id: str, job: TaskJob, slots: int) -> Callable[[], _ModelGate] | None:
        from runner.batch.work import load_task_settings

        try:
            endpoint = load_task_settings(job).model_api_base.rstrip("/")
        except Exception:  # noqa: BLE001 - run_task reports the same settings error as the task's outcome
            return None
        key = hashlib.sha256(f"{node_id}\0{endpoint}".encode()).hexdigest()[:16]
        directory = Path(tempfile.gettempdir()) / f"smol-model-slots-{os.getuid()}"
        directory.mkdir(mode=0o700, exist_ok=True)
        paths = [directory / f"{key}-{index}.lock" for index in range(max(1, slots))]
        return lambda: cls(paths)

    def __enter__(self) -> None:
        while True:
            for path in self.paths:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                self.fd = fd
                return
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the flock
            self.fd = None
