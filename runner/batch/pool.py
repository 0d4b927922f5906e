"""Where batch tasks run. `Executor` is the small interface the batch driver speaks; `LocalPool` runs tasks on this
machine, a cluster backend (Ray) implements the same interface elsewhere.

The local pool bounds two things separately: sandbox slots (tasks running at once, each with its containers) and
model slots per endpoint (requests in flight to one model server). It keeps warm sandboxes: while a task works, the
sandbox of the next queued task is already started, so that task's first command runs at once. Deadlines are
enforced from here, not by the task: past its deadline a task's containers are removed and its agent stopped."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol

from runner.batch.work import Progress, TaskControl, TaskJob, TaskResult, load_task_settings, run_task, start_sandbox

STOP_GRACE_S = 30.0
"""After a deadline or Ctrl-C, how long a stopped task may take to wind down before it is reported anyway."""


class Executor(Protocol):
    """Runs TaskJobs and hands back TaskResults; the driver never submits more than `capacity` at once."""

    capacity: int

    def submit(self, job: TaskJob, *, timeout: float | None) -> None:
        """Start `job`; `timeout` is its wall-clock budget in seconds, enforced by the executor."""

    def upcoming(self, job: TaskJob | None) -> None:
        """The job likely to be submitted next (or None): an executor may prepare for it (a warm sandbox)."""

    def results(self, wait: float) -> list[TaskResult]:
        """Results that arrived, waiting up to `wait` seconds for the first one."""

    def stop_all(self, reason: str) -> None:
        """Stop every running job; each still yields a result (status interrupted)."""

    def close(self) -> None:
        """Release everything (warm sandboxes, threads)."""


class LocalPool:
    def __init__(self, *, jobs: int, model_slots: int = 1, warm: int = 1, tracing: Any = None,
                 progress: Progress | None = None) -> None:
        self.capacity = jobs
        self._model_slots = model_slots
        self._gates: dict[str, threading.BoundedSemaphore] = {}
        self._warm_limit = warm
        self._warm: dict[str, Future[Any]] = {}
        self._tracing = tracing
        self._progress = progress
        self._lock = threading.Lock()
        self._results: queue.Queue[TaskResult] = queue.Queue()
        self._running: dict[str, tuple[TaskControl, float | None]] = {}
        self._closed = threading.Event()
        self._watch = threading.Thread(target=self._watchdog, name="smol-batch-deadlines", daemon=True)
        self._watch.start()

    # ------------------------------------------------------------------ model slots
    def model_gate(self, endpoint: str) -> Callable[[], Any]:
        """A context manager factory bounding concurrent requests to one endpoint (api base + model server)."""
        with self._lock:
            gate = self._gates.setdefault(endpoint, threading.BoundedSemaphore(self._model_slots))

        class _Held:
            def __enter__(self) -> None:
                gate.acquire()

            def __exit__(self, *exc: object) -> None:
                gate.release()

        return _Held

    # ------------------------------------------------------------------ warm sandboxes
    def upcoming(self, job: TaskJob | None) -> None:
        if job is None or self._warm_limit <= 0 or self._closed.is_set():
            return
        with self._lock:
            if job.spec.id in self._warm or len(self._warm) >= self._warm_limit:
                return
            future: Future[Any] = Future()
            self._warm[job.spec.id] = future

        def make() -> None:
            try:
                future.set_result(start_sandbox(job, load_task_settings(job)))
            except BaseException as error:  # noqa: BLE001 - the task starts its own sandbox instead
                future.set_exception(error)

        threading.Thread(target=make, name="smol-batch-warm", daemon=True).start()

    def _take_warm(self, job: TaskJob) -> Any:
        with self._lock:
            future = self._warm.pop(job.spec.id, None)
        if future is None:
            return None
        try:
            return future.result(timeout=120)  # started earlier: never slower than starting one now
        except Exception:  # noqa: BLE001 - a failed warm start is retried by the task, which reports why
            return None

    # ------------------------------------------------------------------ running
    def submit(self, job: TaskJob, *, timeout: float | None) -> None:
        deadline = time.monotonic() + timeout if timeout else None
        control = TaskControl(deadline)
        with self._lock:
            if len(self._running) >= self.capacity:
                raise RuntimeError("the batch driver submitted past the pool's capacity")
            self._running[job.spec.id] = (control, None)
        threading.Thread(target=self._work, args=(job, control), name=f"smol-task-{job.spec.id}",
                         daemon=True).start()

    def _work(self, job: TaskJob, control: TaskControl) -> None:
        try:
            settings = load_task_settings(job)
            gate = self.model_gate(settings.model_api_base.rstrip("/"))
        except Exception:  # noqa: BLE001 - run_task reports the same error as the task's outcome
            gate = None
        result = run_task(job, control, tracing=self._tracing, sandbox=self._take_warm(job), model_gate=gate,
                          progress=self._progress)
        self._report(job.spec.id, control, result)

    def _report(self, task_id: str, control: TaskControl, result: TaskResult) -> None:
        with self._lock:
            entry = self._running.get(task_id)
            if entry is None or entry[0] is not control:
                return  # this attempt was already reported by the watchdog (or superseded): a late finish is dropped
            del self._running[task_id]
        self._results.put(result)

    def _watchdog(self) -> None:
        while not self._closed.wait(0.2):
            now = time.monotonic()
            with self._lock:
                running = list(self._running.items())
            for task_id, (control, stopped_at) in running:
                if stopped_at is None and control.deadline is not None and now >= control.deadline:
                    self._stop(task_id, control, "timeout: the task's deadline passed")
                elif stopped_at is not None and now - stopped_at > STOP_GRACE_S:
                    # The task is stuck in a model call that outlives its deadline: report it, let it die later.
                    reason = control.reason or "stopped"
                    status = "timeout" if reason.startswith("timeout") else "interrupted"
                    self._report(task_id, control, TaskResult(task_id, status, reason))

    def _stop(self, task_id: str, control: TaskControl, reason: str) -> None:
        with self._lock:
            if task_id in self._running:
                self._running[task_id] = (control, time.monotonic())
        threading.Thread(target=control.stop, args=(reason,), daemon=True).start()

    def stop_all(self, reason: str) -> None:
        with self._lock:
            running = list(self._running.items())
        for task_id, (control, _) in running:
            self._stop(task_id, control, reason)

    def running(self) -> list[str]:
        with self._lock:
            return list(self._running)

    def results(self, wait: float) -> list[TaskResult]:
        found: list[TaskResult] = []
        try:
            found.append(self._results.get(timeout=wait))
            while True:
                found.append(self._results.get_nowait())
        except queue.Empty:
            pass
        return found

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            warm, self._warm = list(self._warm.values()), {}
        for future in warm:
            try:
                future.result(timeout=120).close()
            except Exception:  # noqa: BLE001 - nothing to remove
                pass
