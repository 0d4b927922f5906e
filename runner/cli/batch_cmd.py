"""`smol batch run|list|show`: many tasks, bounded concurrency, resumable; their changes wait in `smol queue`."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click

from runner.cli.app import _json_flag, _settings, _start_tracing, main
from runner.cli.run import model_options
from runner.errors import UsageError


@main.group()
def batch() -> None:
    """Run many tasks (a JSONL or YAML file) unattended; review their changes later with `smol queue`."""


def _default_jobs() -> int:
    return max(1, min(4, os.cpu_count() or 1))


@batch.command(name="run")
@click.argument("tasks_file", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--name", default=None, help="The batch's name (default: the task file's name without suffix). "
                                           "Running a batch again resumes it.")
@click.option("--resume", "resume", default=None, metavar="NAME",
              help="Resume the named batch from its own task file (finished tasks are skipped).")
@click.option("--jobs", type=click.IntRange(min=1, max=64), default=None,
              help="Sandbox slots: tasks running at once (default: the cores, at most 4).")
@click.option("--model-slots", type=click.IntRange(min=1, max=64), default=1, show_default=True,
              help="Model requests in flight per endpoint (raise with OLLAMA_NUM_PARALLEL).")
@click.option("--warm", type=click.IntRange(min=0, max=8), default=1, show_default=True,
              help="Sandboxes started ahead for the next queued tasks.")
@click.option("--infra-wait", type=click.FloatRange(min=0), default=600.0, show_default=True,
              help="Seconds to wait for a lost Docker engine or model endpoint before the batch stops (resumable).")
@click.option("--setup/--no-setup", "setup", default=None,
              help="Allow (or forbid) preparing each repo's environment when it has none (SMOL_ENV_SETUP); a task's "
                   "own `setup` wins.")
@click.option("--ray", "ray_address", envvar="RAY_ADDRESS", default=None, metavar="ADDRESS",
              help="Run the tasks on the Ray cluster at ADDRESS (HOST:PORT from a node of it, or ray://HEAD:10001; "
                   "also RAY_ADDRESS), on each node's own slots, Docker engine and model endpoint. Needs the "
                   "smol-instruments[ray] extra.")
@_json_flag("Print one JSON summary on stdout; progress lines go to stderr.")
@model_options
@click.pass_context
def batch_run(ctx: click.Context, tasks_file: Path | None, name: str | None, resume: str | None, jobs: int | None,
              model_slots: int, warm: int, infra_wait: float, setup: bool | None, ray_address: str | None,
              as_json: bool) -> None:
    """Run every task of TASKS_FILE (JSONL: one {"id", "repo", "task", ...} per line; or YAML) in sandboxes, each
    verified in a fresh sandbox; nothing is written to any tree. Re-running resumes: finished tasks are skipped.

    Example: smol batch run nightly.jsonl --jobs 2
    """
    from runner.batch.driver import BatchDriver
    from runner.batch.pool import Executor, LocalPool
    from runner.batch.store import BatchStore
    from runner.batch.tasks import load_tasks
    from runner.batch.work import load_task_settings

    settings = _settings()
    store = BatchStore(settings.runs_db or None)
    if resume is not None:
        known = {entry["name"]: entry for entry in store.batches()}
        if resume not in known:
            raise UsageError(f"no batch named {resume!r}: `smol batch list` shows the batches")
        if tasks_file is None:
            tasks_file = Path(known[resume]["source"])
        name = resume
    if tasks_file is None:
        raise UsageError("name the task file (smol batch run TASKS.jsonl) or a batch to resume (--resume NAME)")
    specs = load_tasks(tasks_file)
    name = name or tasks_file.stem
    source = str(tasks_file.resolve())
    earlier = {entry["name"]: entry["source"] for entry in store.batches()}
    if name in earlier and earlier[name] != source:
        raise UsageError(f"batch {name!r} already runs tasks from {earlier[name]}: pick another --name for "
                         f"{source}")
    overrides = dict(ctx.find_root().meta.get("smol.overrides", {}))
    if setup is not None:
        overrides["smol_env_setup"] = "allow" if setup else "deny"
    live = BatchProgress(specs=[spec.id for spec in specs], tty=sys.stderr.isatty() and not as_json)
    ctx.call_on_close(live.close)
    tracing = _start_tracing(ctx, settings)
    pool: Executor
    if ray_address:
        from runner.batch.ray_pool import RayPool  # the one importer of Ray, only with --ray

        pool = RayPool(ray_address, overrides=overrides, jobs=jobs, progress=live.activity, say=live.line)
    else:
        pool = LocalPool(jobs=jobs or _default_jobs(), model_slots=model_slots, warm=warm, tracing=tracing,
                         progress=live.activity)
    ctx.call_on_close(pool.close)
    work_dir = Path(store.path).parent / "batches"
    driver = BatchDriver(store, pool, load_settings=load_task_settings, overrides=overrides, work_dir=work_dir,
                         infra_wait=infra_wait, event=live.event)
    live.line(f"batch {name}: {len(specs)} task(s), {pool.capacity} at once, {model_slots} model slot(s)")
    outcome = driver.run(name, source, specs)
    live.close()
    counts = outcome.counts()
    summary = {"ok": True, "batch": name, "tasks": [row.to_dict() for row in outcome.rows], "counts": counts,
               "skipped": outcome.skipped, "reused": outcome.reused}
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(f"batch {name}: " + ", ".join(f"{count} {word}" for word, count in sorted(counts.items())))
        click.echo("review the changes with `smol queue` (then `smol queue review`)")


@batch.command(name="list")
@_json_flag()
def batch_list(as_json: bool) -> None:
    """Every batch, newest first, with how many of its tasks are finished."""
    from runner.batch.store import BatchStore

    entries = BatchStore(_settings().runs_db or None).batches()
    if as_json:
        click.echo(json.dumps(entries))
        return
    if not entries:
        click.echo("no batches yet: `smol batch run TASKS.jsonl` starts one")
    for entry in entries:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry["created_at"]))
        click.echo(f"{entry['name']:<24} {when}  {entry['done'] or 0}/{entry['tasks']} done  {entry['source']}")


@batch.command(name="show")
@click.argument("name")
@_json_flag()
def batch_show(name: str, as_json: bool) -> None:
    """One line per task of batch NAME: state, status, duration, run id and why."""
    from runner.batch.store import BatchStore
    from runner.textsafe import sanitize_for_terminal

    rows = BatchStore(_settings().runs_db or None).tasks(name)
    if as_json:
        click.echo(json.dumps([row.to_dict() for row in rows]))
        return
    for row in rows:
        entry = row.to_dict()
        took = f"{entry['duration_s']:.0f}s" if entry["duration_s"] is not None else "-"
        word = row.status if row.state == "done" else row.state
        detail = sanitize_for_terminal(row.detail, single_line=True)[:100]
        click.echo(f"{row.spec.id:<20} {word:<14} {took:>6}  {row.run_id or '-':<24} {detail}")


class BatchProgress:
    """One line per task (queued / running / done, elapsed, status). On a terminal the block is redrawn in place
    every second; otherwise (CI logs, files) each change is one plain line."""

    def __init__(self, *, specs: list[str], tty: bool) -> None:
        self.tty = tty
        self.order = specs
        self.rows: dict[str, dict[str, Any]] = {task_id: {"state": "queued"} for task_id in specs}
        self._lock = threading.Lock()
        self._drawn = 0
        self._stop = threading.Event()
        if tty:
            threading.Thread(target=self._redraw_loop, daemon=True, name="smol-batch-progress").start()

    def line(self, text: str) -> None:
        with self._lock:
            self._clear()
            click.echo(f"smol: {text}", err=True)
            self._draw()

    def event(self, task_id: str, change: dict[str, Any]) -> None:
        from runner.textsafe import sanitize_for_terminal

        with self._lock:
            row = self.rows.setdefault(task_id, {})
            if change.get("state") == "running":
                row["started"] = time.monotonic()
            row.update(change)
            if not self.tty:
                detail = sanitize_for_terminal(str(change.get("detail", "")), single_line=True)[:160]
                status = change.get("status", "")
                click.echo(f"smol: {task_id}: {change.get('state', '')}" + (f" {status}" if status else "")
                           + (f" ({detail})" if detail else ""), err=True)

    def activity(self, task_id: str, text: str) -> None:
        with self._lock:
            self.rows.setdefault(task_id, {})["activity"] = text

    def _render(self, task_id: str) -> str:
        from runner.textsafe import sanitize_for_terminal

        row = self.rows[task_id]
        state = row.get("state", "")
        elapsed = f"{time.monotonic() - row['started']:.0f}s" if state == "running" and "started" in row else ""
        what = row.get("status") or ""
        if state == "running":
            what = row.get("activity", "")
        elif row.get("detail") and state != "done":
            what = row["detail"]
        text = f"  {task_id:<20} {state:<8} {elapsed:>5}  {sanitize_for_terminal(str(what), single_line=True)}"
        return text[:118]

    def _clear(self) -> None:
        if self.tty and self._drawn:
            sys.stderr.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _draw(self) -> None:
        if self.tty and not self._stop.is_set():
            lines = [self._render(task_id) for task_id in self.order]
            sys.stderr.write("\n".join(lines) + "\n")
            sys.stderr.flush()
            self._drawn = len(lines)

    def _redraw_loop(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                self._clear()
                self._draw()

    def close(self) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            self._clear()
            self._draw()  # the final state stays on screen
            self._stop.set()
