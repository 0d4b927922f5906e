"""One batch task, start to end, with no terminal: settings, sandbox, agent, record, re-verification, outcome.

This is what an executor runs (a thread of the local pool, or a worker process of a cluster backend): plain
arguments in, a `TaskResult` out, never a prompt and never a write to the repo's tree (the change waits in the
review queue). A failure of the Docker engine or the model endpoint is reported as `infra`, which the batch treats
as a pause, not as the task's failure."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from runner.batch.tasks import TaskSpec
from runner.errors import ConfigError, DockerUnavailableError, ImageError, SmolError

if TYPE_CHECKING:
    from runner.sandbox.docker_sandbox import DockerSandbox

Progress = Callable[[str, str], None]
"""(task id, one line of what it is doing now)."""


@dataclass
class TaskJob:
    """Everything a worker needs; plain data, so a cluster backend can ship it."""

    batch: str
    spec: TaskSpec
    repo: str
    """The local directory the task works on (a batch's clone for a git URL)."""
    key: str
    overrides: dict[str, Any] = field(default_factory=dict)
    """Settings of the batch's command line (the task's own come on top)."""


@dataclass
class TaskResult:
    task_id: str
    status: str
    """verified, unverified, no-change, guard-refused, conflict, loop, format-errors, step-limit, model-error,
    timeout, interrupted, config-error, sandbox-error or infra-error."""
    detail: str = ""
    run_id: str | None = None
    infra: bool = False
    duration_s: float = 0.0
    verification: dict[str, Any] | None = None


class TaskControl:
    """What the pool holds of a running task, to stop it from outside its thread: the deadline, Ctrl-C."""

    def __init__(self, deadline: float | None = None) -> None:
        self.deadline = deadline
        self.reason: str | None = None
        self._lock = threading.Lock()
        self._session: Any = None
        self._sandboxes: list[Any] = []

    def attach(self, session: Any = None, sandbox: Any = None) -> None:
        with self._lock:
            if session is not None:
                self._session = session
            if sandbox is not None:
                self._sandboxes.append(sandbox)
            stopped = self.reason
        if stopped is not None:
            self.stop(stopped)

    def stop(self, reason: str) -> None:
        """Interrupt the agent after its current step and remove its containers now: every later tool call and
        the diff fail, so the task's thread ends within one model call."""
        with self._lock:
            self.reason = self.reason or reason
            session, sandboxes = self._session, list(self._sandboxes)
        if session is not None:
            session.state.stop(reason)
        for sandbox in sandboxes:
            try:
                sandbox.close()
            except Exception:  # noqa: BLE001 - best effort: the engine may be the very thing that failed
                pass


def load_task_settings(job: TaskJob) -> Any:
    from runner.config import load_settings_and_warnings

    overrides = {**job.overrides, **job.spec.settings_overrides()}
    return load_settings_and_warnings(job.repo, **overrides)[0]


_ENV_LOCKS: dict[str, threading.Lock] = {}
_ENV_LOCKS_GUARD = threading.Lock()


def prepare_environment(job: TaskJob, settings: Any, say: Callable[[str], None]) -> None:
    """The repo's prepared environment, built first when SMOL_ENV_SETUP (the batch's --setup, the task's `setup`)
    allows; the sandbox then starts from it by itself. One build per repo at a time: tasks on the same repo wait
    for it instead of building it twice. On a cluster this runs on the worker, which builds its own."""
    from runner.env.plan import plan_for

    if not plan_for(Path(job.repo)).declares_dependencies:
        return
    from runner.env.service import ensure_environment
    from runner.sandbox.engine import connect

    with _ENV_LOCKS_GUARD:
        lock = _ENV_LOCKS.setdefault(job.repo, threading.Lock())
    with lock:
        engine = connect()
        try:
            ensure_environment(engine, Path(job.repo), settings, setup=None, ask=None, progress=say)
        finally:
            engine.close()


def start_sandbox(job: TaskJob, settings: Any, say: Callable[[str], None] | None = None) -> DockerSandbox:
    from runner.sandbox.docker_sandbox import DockerSandbox

    prepare_environment(job, settings, say or (lambda line: None))
    sandbox = DockerSandbox(Path(job.repo), settings)
    try:
        sandbox.start()
    except BaseException:
        sandbox.close()
        raise
    return sandbox


def run_task(job: TaskJob, control: TaskControl, *, tracing: Any = None, sandbox: DockerSandbox | None = None,
             model_gate: Callable[[], Any] | None = None, progress: Progress | None = None,
             verify: bool = True) -> TaskResult:
    """Run one task to its outcome. `sandbox` is a warm one started ahead for this job (the pool's), else one is
    started here; `model_gate` bounds concurrent model calls. Without `verify` (a cluster worker: re-verification
    stays on the reviewer's machine, `verify_recorded`) a change ends `unverified`."""
    started = time.monotonic()
    say = progress or (lambda task_id, line: None)
    try:
        result = _run(job, control, tracing, sandbox, model_gate, lambda line: say(job.spec.id, line), verify)
    except SmolError as error:
        if sandbox is not None:
            sandbox.close()
        result = _failure(job, control, error)
    except Exception as error:  # noqa: BLE001 - one task's crash must not end the batch
        if sandbox is not None:
            sandbox.close()
        result = _failure(job, control, error)
    result.duration_s = round(time.monotonic() - started, 2)
    return result


def _failure(job: TaskJob, control: TaskControl, error: BaseException) -> TaskResult:
    task_id = job.spec.id
    if control.reason is not None:
        return TaskResult(task_id, control_status(control.reason), control.reason)
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    if isinstance(error, ConfigError):
        return TaskResult(task_id, "config-error", message)
    if isinstance(error, DockerUnavailableError | ImageError) or _model_unreachable(error):
        return TaskResult(task_id, "infra-error", message, infra=True)
    down = infrastructure_down(job)
    if down is not None:
        return TaskResult(task_id, "infra-error", f"{message} ({str(down).splitlines()[0]})", infra=True)
    return TaskResult(task_id, "sandbox-error" if isinstance(error, SmolError) else "error", message)


def _model_unreachable(error: BaseException) -> bool:
    from runner.agent.model import ModelUnavailableError

    return isinstance(error, ModelUnavailableError)


def control_status(reason: str) -> str:
    return "timeout" if reason.startswith("timeout") else "interrupted"


def infrastructure_down(job: TaskJob) -> SmolError | None:
    """What makes the Docker engine or the model endpoint unusable right now, or None when both answer."""
    from runner.agent.model import preflight
    from runner.sandbox.engine import connect

    try:
        connect().close()
        preflight(load_task_settings(job), timeout=5)
    except SmolError as error:
        return error
    return None


def _run(job: TaskJob, control: TaskControl, tracing: Any, sandbox: DockerSandbox | None,
         model_gate: Callable[[], Any] | None, say: Callable[[str], None], verify: bool) -> TaskResult:
    from opentelemetry import context, trace

    from runner.agent.model import preflight
    from runner.agent.recording import record_run
    from runner.agent.session import AgentSession
    from runner.promote.flow import Promoter

    settings = load_task_settings(job)
    preflight(settings)
    if sandbox is None:
        say("starting the sandbox")
        sandbox = start_sandbox(job, settings, say)
    control.attach(sandbox=sandbox)
    root = trace.get_tracer("smol").start_span(
        "smol batch task", attributes={"openinference.span.kind": "CHAIN", "batch.name": job.batch,
                                       "batch.task": job.spec.id, "input.value": job.spec.task})
    token = context.attach(trace.set_span_in_context(root))
    try:
        session = AgentSession(sandbox, settings, asker=None, progress=say)
        if model_gate is not None:
            session.model.gate = model_gate
        control.attach(session=session)
        say("agent working")
        outcome = session.run(job.spec.task)
        if control.reason is not None:
            raise _Stopped(control.reason)
        patch = sandbox.diff()
        summary = session.summary(outcome, patch)
        summary["left_out"] = sandbox.left_out
        summary["batch"] = {"name": job.batch, "task": job.spec.id}
        record, store = record_run(session, job.spec.task, Path(job.repo), outcome, patch, summary)
        sandbox.close()
        promotion: dict[str, Any] = {}
        if outcome.status == "completed" and patch and verify:
            say("re-verifying in a fresh sandbox")
            promotion = Promoter(record, store, settings, echo=lambda line: None, ask=None).run("never",
                                                                                                 reverify=True)
        if control.reason is not None:
            raise _Stopped(control.reason)
        status, detail = classify(outcome, patch, promotion)
        root.set_attributes({"batch.status": status, "run.id": record.id})
    finally:
        context.detach(token)
        root.end()
        sandbox.close()
    if tracing is not None:
        trace_id = f"{root.get_span_context().trace_id:032x}"
        store.update(record.id, spans=[span for span in list(tracing.local.spans) if span["trace_id"] == trace_id])
    return TaskResult(job.spec.id, status, detail, run_id=record.id, verification=promotion.get("verification"))


def verify_recorded(record: Any, store: Any, settings: Any) -> tuple[str, str, dict[str, Any] | None]:
    """Re-verify a run recorded elsewhere (a cluster worker's) in a fresh sandbox here, as `run_task` does for its
    own: the status, its one line and the verification. Never writes the repo's tree."""
    from runner.promote.flow import Promoter

    promotion = Promoter(record, store, settings, echo=lambda line: None, ask=None).run("never", reverify=True)
    outcome = SimpleNamespace(status=record.status, reason=record.reason)
    status, detail = classify(outcome, record.diff, promotion)
    return status, detail, promotion.get("verification")


class _Stopped(SmolError):
    """The task was stopped from outside (deadline, Ctrl-C) while it ran."""


def classify(outcome: Any, patch: bytes, promotion: dict[str, Any]) -> tuple[str, str]:
    """The status a person scanning a morning's batch acts on, and one line of why."""
    if outcome.status == "model_error":
        return "model-error", outcome.reason
    if outcome.status == "max_steps":
        return "step-limit", outcome.reason
    if outcome.status == "stopped":
        return ("format-errors" if "unusable tool calls" in outcome.reason else "loop"), outcome.reason
    if not patch:
        return "no-change", "the agent completed without changing anything"
    result = promotion.get("outcome", "")
    if result == "refused":
        return "guard-refused", promotion.get("detail", "")
    if result == "conflict":
        return "conflict", promotion.get("detail", "")
    verification = promotion.get("verification") or {}
    counts = f"{verification.get('passed', 0)} passed, {verification.get('failed', 0)} failed"
    if verification.get("status") == "passed":
        return "verified", f"{counts} with `{verification.get('command')}`"
    return "unverified", f"verification {verification.get('status', 'skipped')}: {counts}. " \
                         f"{verification.get('note', '')}".strip()
