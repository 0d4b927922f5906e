"""The batch driver: which tasks still need running, in what order, on which executor; what their outcomes are.

Resumable and idempotent: the run store holds every task's state as it changes. Running the same batch again
skips finished tasks and re-runs only unfinished or infrastructure-failed ones; a task whose key (repo, its exact
state, prompt, model, settings) matches work already finished in any batch takes that outcome instead of running.
An unreachable Docker engine or model endpoint pauses the batch (no task is marked failed for it) until both answer
again, or until the pause outlasts `infra_wait` (then the batch stops, resumable)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.batch.pool import Executor
from runner.batch.store import BatchStore, TaskRow
from runner.batch.tasks import TaskSpec, task_key
from runner.batch.work import TaskJob, TaskResult, infrastructure_down
from runner.errors import ExitCode, SmolError, UsageError

Event = Callable[[str, dict[str, Any]], None]
"""(task id, what changed: state, status, detail, …) for the live progress."""

PROBE_EVERY_S = 5.0
_IRRELEVANT = ("phoenix_", "log_level", "suppress_warnings", "runs_db")


class InfrastructureDown(SmolError):
    """The Docker engine or the model endpoint stayed down past the batch's wait: stopped, resumable."""

    exit_code = ExitCode.DOCKER


@dataclass
class BatchOutcome:
    name: str
    rows: list[TaskRow] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for row in self.rows:
            word = row.status if row.state == "done" else row.state
            found[word] = found.get(word, 0) + 1
        return found


def settings_digest(settings: Any) -> str:
    """The settings that change what a task does (not where its traces or logs go)."""
    chosen = {key: value for key, value in settings.model_dump().items() if not key.startswith(_IRRELEVANT)}
    return hashlib.sha256(json.dumps(chosen, sort_keys=True, default=str).encode()).hexdigest()[:16]


def tree_state(repo: Path) -> str:
    """A fingerprint of the working tree: HEAD plus every file's path, size, mode and mtime (no file is read and no
    git filter runs; a file touched but unchanged only costs a re-run, never a wrong reuse)."""
    from runner.promote.apply import GIT_ENV, SAFE_GIT

    digest = hashlib.sha256()
    head = subprocess.run([*SAFE_GIT, "-c", f"safe.directory={repo}", "-C", str(repo), "rev-parse", "HEAD"],
                          capture_output=True, text=True, env=GIT_ENV)
    digest.update(head.stdout.strip().encode())
    for root, dirs, files in os.walk(repo):
        dirs[:] = sorted(d for d in dirs if not (root == str(repo) and d == ".git"))
        for name in sorted(files):
            path = os.path.join(root, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            digest.update(f"{os.path.relpath(path, repo)}\0{info.st_size}\0{info.st_mode}\0{info.st_mtime_ns}\n"
                          .encode(errors="surrogateescape"))
    return digest.hexdigest()


def clone(spec: TaskSpec, work_dir: Path) -> Path:
    """The batch's own clone of a git URL at its ref (reused when a resumed batch finds it). Host-side git with
    hooks off and only the ordinary transports allowed (no ext::)."""
    from runner.promote.apply import GIT_ENV

    target = work_dir / spec.id
    safe = ["git", "-c", "core.hooksPath=/dev/null", "-c", "protocol.ext.allow=never", "-c", "core.fsmonitor=false"]
    if not (target / ".git").is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        cloned = subprocess.run([*safe, "clone", "--quiet", "--no-checkout", "--", spec.repo, str(target)],
                                capture_output=True, text=True, env=GIT_ENV, timeout=900)
        if cloned.returncode != 0:
            raise UsageError(f"task {spec.id}: cannot clone {spec.repo}: {_first_line(cloned.stderr)}")
        checkout = subprocess.run([*safe, "-C", str(target), "checkout", "--quiet", spec.ref or "HEAD", "--"],
                                  capture_output=True, text=True, env=GIT_ENV)
        if checkout.returncode != 0:
            raise UsageError(f"task {spec.id}: cannot check out {spec.ref!r}: {_first_line(checkout.stderr)}")
    return target


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or ["git failed"])[0][:300]


class BatchDriver:
    def __init__(self, store: BatchStore, executor: Executor, *, load_settings: Callable[[TaskJob], Any],
                 overrides: dict[str, Any], work_dir: Path, infra_wait: float = 600.0,
                 event: Event | None = None) -> None:
        self.store = store
        self.executor = executor
        self.load_settings = load_settings
        self.overrides = overrides
        self.work_dir = work_dir
        self.infra_wait = infra_wait
        self.event = event or (lambda task_id, change: None)

    def run(self, name: str, source: str, specs: list[TaskSpec]) -> BatchOutcome:
        rows = self.store.open_batch(name, source, specs, self.overrides)
        outcome = BatchOutcome(name)
        pending: deque[TaskRow] = deque()
        for row in rows:
            if row.finished:
                outcome.skipped.append(row.spec.id)
                self.event(row.spec.id, {"state": "done", "status": row.status, "detail": "finished earlier"})
                continue
            if row.state != "queued":
                self.store.requeue(name, row.spec.id)  # cut short by a killed batch or an infrastructure pause
            pending.append(row)
            self.event(row.spec.id, {"state": "queued"})
        try:
            self._loop(name, pending, outcome)
        except BaseException:
            self.executor.stop_all("interrupted: the batch was stopped")
            self._drain(name, grace=10.0)
            raise
        outcome.rows = self.store.tasks(name)
        return outcome

    def _job(self, name: str, row: TaskRow) -> TaskJob:
        repo = clone(row.spec, self.work_dir / name) if row.spec.is_remote else Path(row.spec.repo)
        job = TaskJob(batch=name, spec=row.spec, repo=str(repo), key="", overrides=dict(self.overrides))
        job.key = task_key(row.spec, tree_state(repo), settings_digest(self.load_settings(job)))
        return job

    def _loop(self, name: str, pending: deque[TaskRow], outcome: BatchOutcome) -> None:
        running: dict[str, TaskJob] = {}
        prepared: dict[str, TaskJob] = {}
        while pending or running:
            while pending and len(running) < self.executor.capacity:
                row = pending.popleft()
                try:
                    job = prepared.pop(row.spec.id, None) or self._job(name, row)
                except SmolError as error:  # a clone that fails is this task's outcome, not the batch's end
                    self.store.start(name, row.spec.id, "")
                    self.store.finish(name, row.spec.id, "repo-error", str(error), None)
                    self.event(row.spec.id, {"state": "done", "status": "repo-error", "detail": str(error)})
                    continue
                earlier = self.store.done_with_key(job.key)
                if earlier is not None and (earlier.batch, earlier.spec.id) != (name, row.spec.id):
                    detail = f"same work as {earlier.batch}/{earlier.spec.id}: {earlier.detail}"
                    self.store.start(name, row.spec.id, job.key)
                    self.store.finish(name, row.spec.id, earlier.status, detail, earlier.run_id)
                    outcome.reused.append(row.spec.id)
                    self.event(row.spec.id, {"state": "done", "status": earlier.status, "detail": detail})
                    continue
                self.store.start(name, row.spec.id, job.key)
                self.executor.submit(job, timeout=row.spec.timeout)
                running[row.spec.id] = job
                self.event(row.spec.id, {"state": "running"})
                if pending:  # the next task's sandbox starts while this one works
                    upcoming = pending[0]
                    try:
                        prepared[upcoming.spec.id] = prepared.get(upcoming.spec.id) or self._job(name, upcoming)
                    except SmolError:
                        continue  # reported when its turn comes
                    self.executor.upcoming(prepared[upcoming.spec.id])
            paused: list[TaskJob] = []
            for result in self.executor.results(wait=0.5):
                job = running.pop(result.task_id)
                if result.infra:
                    self.store.finish(name, result.task_id, result.status, result.detail, None, infra=True)
                    self.event(result.task_id, {"state": "paused", "status": result.status, "detail": result.detail})
                    paused.append(job)
                    continue
                self.store.finish(name, result.task_id, result.status, result.detail, result.run_id)
                self.event(result.task_id, {"state": "done", "status": result.status, "detail": result.detail,
                                            "run_id": result.run_id, "duration_s": result.duration_s})
            if paused:
                self._pause(name, paused, running, pending)

    def _pause(self, name: str, paused: list[TaskJob], running: dict[str, TaskJob], pending: deque[TaskRow]) -> None:
        """Stop dispatching; let the running tasks end; wait for the engine and the endpoint; then put the paused
        tasks back at the front of the queue."""
        for job in paused:
            self.store.requeue(name, job.spec.id)
        rows = {row.spec.id: row for row in self.store.tasks(name)}
        for job in reversed(paused):
            pending.appendleft(rows[job.spec.id])
        started = time.monotonic()
        probe = paused[0]
        probe_down = getattr(self.executor, "infrastructure_down", infrastructure_down)  # a cluster probes its nodes
        while True:
            down = probe_down(probe)
            if down is None:
                for job in paused:
                    self.event(job.spec.id, {"state": "queued", "detail": "infrastructure back: queued again"})
                return
            if time.monotonic() - started > self.infra_wait:
                self.executor.stop_all("interrupted: infrastructure down")
                self._drain(name, grace=30.0)
                raise InfrastructureDown(f"the batch is paused and stopped: {down}. Nothing was marked failed: "
                                         f"`smol batch run --resume {name}` continues it once that is fixed",
                                         exit_code=down.exit_code)
            for job in paused:
                self.event(job.spec.id, {"state": "paused", "detail": f"waiting: {down}"})
            time.sleep(PROBE_EVERY_S)

    def _drain(self, name: str, *, grace: float) -> None:
        """After a stop: record the stopped tasks as unfinished (queued), so a resume runs them again."""
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            results: list[TaskResult] = self.executor.results(wait=0.5)
            for result in results:
                self.store.requeue(name, result.task_id)
            if not getattr(self.executor, "running", lambda: [])():
                break
        for row in self.store.tasks(name):
            if row.state == "running":
                self.store.requeue(name, row.spec.id)
