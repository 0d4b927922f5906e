"""`RayPool`: the batch's executor on a Ray cluster (`smol batch run --ray ADDRESS`). The only module that imports
Ray, and only when a pool is made: `smol --help` and every command without `--ray` never load it.

Each task is a Ray task needing one `smol_sandbox` resource, so Ray places it on a node with a free sandbox slot
(each node declares its slots when it starts: `ray start --resources '{"smol_sandbox": 2, "smol_model": 1}'`).
A node lost mid-task makes Ray run the task again elsewhere (`max_retries`); the driver only ever receives one
result per task, so each task finishes once in the driver's store. The driver keeps that store: the repo travels
as a `RepoPack`, the run comes back as its record, which the driver saves (with `repo` set to its own path) and
re-verifies here, on the reviewer's machine, as the local pool does.

Before the first task every node offering slots is probed (its engine, its image, its model endpoint); a node that
fails is reported and its slots are held by an idle actor, so Ray gives it no task."""

from __future__ import annotations

import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.batch.remote import SANDBOX_RESOURCE, NodeReport, RemoteOutcome, probe_node, run_on_node
from runner.batch.ship import RepoPack, pack_repo
from runner.batch.work import Progress, TaskJob, TaskResult, load_task_settings, verify_recorded
from runner.errors import ExitCode, SmolError, UsageError

STOP_GRACE_S = 30.0
"""Past a task's deadline plus this, the driver reports the timeout itself and cancels the Ray task by force."""
PROBE_TIMEOUT_S = 900.0
"""A node may build its sandbox image during the probe (debootstrap: a minute or more)."""
RETRIES = 3
"""How often Ray runs a task again after its node or worker process died."""
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class ClusterUnavailable(SmolError):
    """The Ray cluster cannot be reached, or no node of it can run tasks."""

    exit_code = ExitCode.DOCKER


@dataclass
class _Running:
    job: TaskJob
    pack: RepoPack
    deadline: float | None
    ref: Any


class _Holder:
    """An idle actor holding a node's sandbox slots, so that Ray schedules no task on a node that cannot run one."""

    def ready(self) -> bool:
        return True


def _import_ray(address: str) -> Any:
    host = address.split("://")[-1].rsplit(":", 1)[0].strip("[]")
    if host in _LOOPBACK:
        # Ray rewrites a loopback address to the machine's own (ray-project/ray#59110) unless it believes clusters
        # are off; a cluster bound to loopback is then reachable. Read once, when ray is first imported.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")  # a cancelled task's error is ours to report
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray: pip install 'smol-instruments[ray]'") from None
    return ray


def _notices_to_stderr(say: Any) -> None:
    """Ray's driver prints the cluster's notices ("Task … failed. There are 3 retries remaining") on stdout, where
    `--json` writes its one document: they become progress lines on stderr instead, one line each."""
    from ray._private import worker

    from runner.textsafe import sanitize_for_terminal

    def forward(data: dict[str, Any], ignore_prefix: bool = False) -> None:
        for line in data.get("lines", []):
            if str(line).strip():
                say("ray: " + sanitize_for_terminal(str(line), single_line=True)[:200])

    if hasattr(worker, "print_to_stdstream"):
        worker.print_to_stdstream = forward  # looked up by name in Ray's listener thread


class RayPool:
    def __init__(self, address: str, *, overrides: dict[str, Any], jobs: int | None = None, verify_jobs: int = 2,
                 progress: Progress | None = None, say: Any = None) -> None:
        self._ray = ray = _import_ray(address)
        self._overrides = overrides
        self._progress = progress or (lambda task_id, line: None)
        self._say = say or (lambda line: None)
        host = address.split("://")[-1].rsplit(":", 1)[0].strip("[]")
        try:
            ray.init(address=address, namespace="smol", log_to_driver=False, logging_level="ERROR",
                     _node_ip_address="127.0.0.1" if host in _LOOPBACK else None)
        except Exception as error:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError …
            raise ClusterUnavailable(f"cannot reach the Ray cluster at {address}: {str(error).splitlines()[0]}. "
                                     "Start it with `ray start --head` (see README: Past one machine)") from None
        _notices_to_stderr(self._say)
        self._task = ray.remote(run_on_node)
        self._probe = ray.remote(probe_node)
        self._holder_class = ray.remote(num_cpus=0)(_Holder)
        self._holders: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._running: dict[str, _Running] = {}
        self._verifying: set[str] = set()
        self._results: queue.Queue[TaskResult] = queue.Queue()
        self._packs: dict[str, tuple[str, Any]] = {}
        self._verify = ThreadPoolExecutor(max_workers=verify_jobs, thread_name_prefix="smol-ray-verify")
        self.nodes = self.check_nodes()
        ready = [node for node in self.nodes if node.ready]
        if not ready:
            raise ClusterUnavailable(f"no node of the Ray cluster at {address} can run tasks: {self._problems()}")
        # A finished task is re-verified here while its node slot already runs the next one: Ray holds the
        # `verify_jobs` extra tasks in its queue until a slot frees.
        self.capacity = sum(node.slots for node in ready) + verify_jobs
        if jobs is not None:
            self.capacity = min(self.capacity, jobs)

    # ------------------------------------------------------------------ nodes
    def check_nodes(self) -> list[NodeReport]:
        """Probe every live node that offers sandbox slots; hold the slots of those that cannot run tasks."""
        ray = self._ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        offered = [(node["NodeID"], int(node["Resources"].get(SANDBOX_RESOURCE, 0)))
                   for node in ray.nodes() if node.get("Alive") and node["Resources"].get(SANDBOX_RESOURCE, 0) >= 1]
        if not offered:
            raise ClusterUnavailable(f"no node of the cluster offers the {SANDBOX_RESOURCE!r} resource: start each "
                                     f"node with --resources '{{\"{SANDBOX_RESOURCE}\": 2, \"smol_model\": 1}}'")
        refs = {node_id: self._probe.options(num_cpus=0, max_retries=0,
                                             scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False))
                .remote(self._overrides, slots) for node_id, slots in offered}
        reports: list[NodeReport] = []
        for node_id, slots in offered:
            try:
                reports.append(ray.get(refs[node_id], timeout=PROBE_TIMEOUT_S))
            except Exception as error:  # noqa: BLE001 - a node that died or hung while probed gets no task
                reports.append(NodeReport(node_id, "?", slots, ready=False,
                                          problem=f"did not answer the probe ({type(error).__name__})"))
        for report in reports:
            self._hold(report, NodeAffinitySchedulingStrategy)
            state = "ready" if report.ready else f"receives no tasks: {report.problem}"
            self._say(f"ray node {report.node_id[:12]} ({report.host}, {report.slots} slot(s)): {state}")
        self.nodes = reports
        return reports

    def _hold(self, report: NodeReport, strategy: Any) -> None:
        holder = self._holders.pop(report.node_id, None)
        if report.ready:
            if holder is not None:
                self._ray.kill(holder)
            return
        if holder is None:
            holder = self._holder_class.options(
                resources={SANDBOX_RESOURCE: report.slots},
                scheduling_strategy=strategy(report.node_id, soft=False)).remote()
        self._holders[report.node_id] = holder

    def _problems(self) -> str:
        return "; ".join(f"node {n.node_id[:12]} ({n.host}): {n.problem}" for n in self.nodes if not n.ready)

    def infrastructure_down(self, job: TaskJob) -> SmolError | None:
        """The driver's probe during a pause: down only while no node of the cluster can run tasks."""
        try:
            nodes = self.check_nodes()
        except SmolError as error:
            return error
        if any(node.ready for node in nodes):
            return None
        return ClusterUnavailable(f"no node of the Ray cluster can run tasks: {self._problems()}")

    # ------------------------------------------------------------------ running
    def upcoming(self, job: TaskJob | None) -> None:
        """Warm sandboxes live on the nodes' own machines: nothing to prepare from here."""

    def _pack(self, job: TaskJob) -> tuple[RepoPack, Any]:
        pack = pack_repo(Path(job.repo))
        digest = pack.digest
        with self._lock:
            known = self._packs.get(job.repo)
            if known is not None and known[0] == digest:
                return pack, known[1]
        ref = self._ray.put(pack)  # one upload per repo state, however many tasks use it
        with self._lock:
            self._packs[job.repo] = (digest, ref)
        return pack, ref

    def submit(self, job: TaskJob, *, timeout: float | None) -> None:
        with self._lock:
            if len(self._running) + len(self._verifying) >= self.capacity:
                raise RuntimeError("the batch driver submitted past the pool's capacity")
        try:
            pack, pack_ref = self._pack(job)
        except SmolError as error:
            self._results.put(TaskResult(job.spec.id, "error", str(error).splitlines()[0]))
            return
        ref = self._task.options(num_cpus=0, resources={SANDBOX_RESOURCE: 1}, max_retries=RETRIES,
                                 retry_exceptions=False).remote(job, pack_ref, timeout)
        deadline = time.monotonic() + timeout if timeout else None
        with self._lock:
            self._running[job.spec.id] = _Running(job, pack, deadline, ref)
        self._progress(job.spec.id, "on the Ray cluster")

    def running(self) -> list[str]:
        with self._lock:
            return [*self._running, *self._verifying]

    def results(self, wait: float) -> list[TaskResult]:
        self._collect(min(wait, 0.25))
        found: list[TaskResult] = []
        try:
            found.append(self._results.get(timeout=max(0.0, wait - 0.25)))
            while True:
                found.append(self._results.get_nowait())
        except queue.Empty:
            pass
        return found

    def _collect(self, wait: float) -> None:
        with self._lock:
            running = list(self._running.items())
        entries = {entry.ref: task_id for task_id, entry in running}
        now = time.monotonic()
        for task_id, started in running:
            if started.deadline is not None and now > started.deadline + STOP_GRACE_S:
                self._ray.cancel(started.ref, force=True)  # stuck past its own deadline: the node's timer failed
                self._give(task_id, TaskResult(task_id, "timeout", "timeout: the task's deadline passed"))
        if not entries:
            time.sleep(wait)
            return
        ready, _ = self._ray.wait(list(entries), num_returns=1, timeout=wait)
        if ready:
            ready, _ = self._ray.wait(list(entries), num_returns=len(entries), timeout=0)
        for ref in ready:
            task_id = entries[ref]
            with self._lock:
                entry = self._running.get(task_id)
            if entry is not None and entry.ref == ref:
                self._finish(task_id, entry)

    def _give(self, task_id: str, result: TaskResult) -> None:
        with self._lock:
            self._running.pop(task_id, None)
        self._results.put(result)

    def _finish(self, task_id: str, entry: _Running) -> None:
        ray = self._ray
        try:
            outcome: RemoteOutcome = ray.get(entry.ref)
        except ray.exceptions.TaskCancelledError:
            self._give(task_id, TaskResult(task_id, "interrupted", "interrupted: the task was cancelled"))
            return
        except ray.exceptions.RayTaskError as error:
            self._give(task_id, TaskResult(task_id, "error", str(error.cause or error).splitlines()[0][:300]))
            return
        except ray.exceptions.RayError as error:  # node or worker lost past every retry: not the task's fault
            self._give(task_id, TaskResult(task_id, "infra-error", f"lost on the Ray cluster: {type(error).__name__}",
                                           infra=True))
            return
        with self._lock:
            self._running.pop(task_id, None)
            self._verifying.add(task_id)
        self._verify.submit(self._land, task_id, entry, outcome)

    def _land(self, task_id: str, entry: _Running, outcome: RemoteOutcome) -> None:
        """Save the node's record in the driver's store as a run of the driver's repo; re-verify a change here."""
        from runner.records import RunStore

        result = outcome.result
        try:
            if outcome.record is not None:
                record = outcome.record
                record.repo = entry.job.repo
                record.base_state = entry.pack.base_state
                record.summary["ray"] = {"node_id": outcome.node_id, "host": outcome.host}
                settings = load_task_settings(entry.job)
                store = RunStore(settings.runs_db or None)
                store.save(record)
                if record.status == "completed" and record.diff and result.status == "unverified":
                    self._progress(task_id, "re-verifying here in a fresh sandbox")
                    try:
                        result.status, result.detail, result.verification = verify_recorded(record, store, settings)
                    except SmolError as error:
                        result.detail = f"not re-verified here ({str(error).splitlines()[0]}): `smol queue " \
                                        "review` verifies it"
        except Exception as error:  # noqa: BLE001 - the task must still be reported, as an error
            result = TaskResult(task_id, "error", f"cannot save the run: {str(error).splitlines()[0][:300]}")
        result.detail = f"{result.detail} [node {outcome.host}/{outcome.node_id[:8]}]".strip()
        with self._lock:
            self._verifying.discard(task_id)
        self._results.put(result)

    def stop_all(self, reason: str) -> None:
        with self._lock:
            running = list(self._running.items())
        for task_id, entry in running:
            self._ray.cancel(entry.ref)  # KeyboardInterrupt on the node: its sandboxes are removed there
            self._give(task_id, TaskResult(task_id, "timeout" if reason.startswith("timeout") else "interrupted",
                                           reason))

    def close(self) -> None:
        self._verify.shutdown(wait=True, cancel_futures=False)
        for holder in self._holders.values():
            try:
                self._ray.kill(holder)
            except Exception:  # noqa: BLE001 - the cluster may be gone already
                pass
        try:
            self._ray.shutdown()
        except Exception:  # noqa: BLE001 - nothing left to release
            pass
