"""The run records: `smol runs list/show`, `smol promote`, `smol replay`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from runner.cli.app import _json_flag, _progress, _settings, _start_tracing, main
from runner.cli.run import _promote, promote_options
from runner.errors import ExitCode


# ---------------------------------------------------------------------------------------------- records
def _store() -> Any:
    from runner.records import RunStore

    return RunStore(_settings().runs_db or None)


def _get_run(store: Any, run_id: str) -> Any:
    """A run by id (or a unique prefix/suffix of it), or `last` for the newest one."""
    from runner.errors import UsageError

    if run_id == "last":
        newest = store.list(1)
        if not newest:
            raise UsageError("no runs recorded yet: `smol run TASK` makes one")
        return newest[0]
    return store.get(run_id)


@main.group()
def runs() -> None:
    """Recorded runs."""


@runs.command(name="list")
@_json_flag("Print the runs as one JSON array.")
@click.option("--limit", type=click.IntRange(min=1), default=30, show_default=True, help="Show at most this many.")
@click.option("--repo", "repo", type=click.Path(path_type=Path), default=None,
              help="Only runs on this repository (a subdirectory means its git repository).")
@click.option("--status", type=click.Choice(["completed", "stopped", "max_steps", "model_error"]), default=None,
              help="Only runs that ended with this status.")
def runs_list(as_json: bool, limit: int, repo: Path | None, status: str | None) -> None:
    """The most recent runs, newest first."""
    from runner.gitroot import find_root
    from runner.textsafe import sanitize_for_terminal

    # Not checked for existence: the runs of a repo since deleted or moved are still listed.
    where = str(find_root(repo)[0]) if repo is not None else None
    records = _store().list(limit, repo=where, status=status)
    if as_json:
        click.echo(json.dumps([{"id": r.id, "created_at": r.created_at, "task": r.task, "repo": r.repo,
                                "status": r.status, "promotion": (r.promotion or {}).get("outcome")} for r in records]))
        return
    if not records:
        click.echo("no runs recorded yet" if where is None and status is None else "no runs match")
        return
    width = max(len(r.id) for r in records)
    click.echo(f"{'RUN':<{width}}  {'WHEN':<16}  {'STATUS':<11}  {'PROMOTION':<10}  TASK")
    for r in records:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created_at))
        promoted = (r.promotion or {}).get("outcome", "-")
        task = sanitize_for_terminal(" ".join(r.task.split()), single_line=True)  # multi-line tasks on one line
        task = task if len(task) <= 60 else task[:59] + "…"
        click.echo(f"{r.id:<{width}}  {when:<16}  {r.status:<11}  {promoted:<10}  {task}")


@runs.command(name="show")
@click.argument("run_id")
@_json_flag("Print the whole record as one JSON object.")
@click.option("--trace", is_flag=True, help="Draw the run's trace tree (no Phoenix needed).")
def runs_show(run_id: str, as_json: bool, trace: bool) -> None:
    """One run (RUN_ID, a unique part of it, or `last`): task, steps, approvals, verification, promotion, diff."""
    from runner.textsafe import sanitize_for_terminal

    record = _get_run(_store(), run_id)
    if as_json:
        data = record.to_public_dict()
        if trace:
            data["trace"] = record.spans
        click.echo(json.dumps(data))
        return
    if trace:
        from runner.tracing import render_trace

        for line in render_trace(record.spans):
            click.echo(line)
        return
    clean = sanitize_for_terminal
    click.echo(f"run {record.id}  ({record.status}{': ' + clean(record.reason) if record.reason else ''})")
    click.echo(f"task: {clean(record.task)}\nrepo: {clean(record.repo)}\nmodel: {record.model}")
    for step in record.steps:
        # Records written before steps carried their outcome still say what went wrong.
        outcome = step.get("outcome") or (f"error: {step.get('error_type')}" if step.get("error") else "ok")
        click.echo(f"  [{step['index']}] {step['tool']} {clean(json.dumps(step['arguments']))[:100]} "
                   f"{step['duration_s']:.2f}s {outcome}")
    for approval in record.approvals:
        click.echo(f"  approval: {approval['kind']} {clean(approval['subject'])} -> {approval['outcome']} "
                   f"({approval['scope']})")
    compactions = (record.summary or {}).get("context_compactions")
    if compactions:
        click.echo(f"context compacted {len(compactions)} time(s): older tool outputs were dropped to stay within "
                   f"MODEL_NUM_CTX ({compactions[-1]['limit']} tokens)")
    repairs = (record.summary or {}).get("output_repairs")
    if repairs:
        click.echo(f"output repairs: {repairs} (answers of the model that needed reading; see --json)")
    if record.verification:
        checked = record.verification
        by = f" with `{clean(checked['command'], single_line=True)}`" if checked.get("command") else ""
        origin = f" ({checked['source']})" if checked.get("source") else ""
        click.echo(f"verification: {checked.get('status')}{by}{origin}")
    click.echo(f"promotion: {(record.promotion or {}).get('outcome', 'pending')}")
    for decision in (record.promotion or {}).get("decisions", []):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(decision["at"]))
        click.echo(f"  decision: {clean(decision['what'], single_line=True)} -> {clean(decision['outcome'])} "
                   f"(by {decision['by']}, {when})")
    click.echo(clean(record.diff.decode('utf-8', errors='replace')) or "(no changes)")


@main.command()
@click.argument("run_id")
@promote_options
@click.pass_context
def promote(ctx: click.Context, run_id: str, promote_mode: str | None, reverify: bool, land: str,
            branch: str | None) -> None:
    """Bring a saved run (RUN_ID or `last`) back to review and, after approval, into your tree."""
    store = _store()
    record = _get_run(store, run_id)
    settings = _settings()
    # A later promotion is its own trace, linked to the run's (a trace, once ended, is not reopened).
    roots = [span for span in record.spans if span.get("parent_id") is None and span["name"].startswith("smol ")]
    tracing = _start_tracing(ctx, settings, link=(roots[0]["trace_id"], roots[0]["span_id"]) if roots else None)
    try:
        outcome = _promote(record, store, settings, promote_mode, reverify, land, branch, False)
    finally:
        # This promotion's spans (re-verification, decisions, outcome) are kept with the run.
        tracing.end_root()
        store.update(record.id, spans=[*record.spans, *tracing.local.spans])
    if outcome["outcome"] in ("refused", "conflict"):
        ctx.exit(ExitCode.REFUSED)


@main.command()
@click.argument("run_id")
def undo(run_id: str) -> None:
    """Take back what the promotion of RUN_ID (or `last`) wrote to your working tree: every file returns to what it
    was, all or nothing; refused, with nothing written, where a file changed since."""
    from runner.promote.undo import undo as undo_promotion

    store = _store()
    undo_promotion(_get_run(store, run_id), store, click.echo)


@main.command()
@click.argument("run_id")
@click.pass_context
def replay(ctx: click.Context, run_id: str) -> None:
    """Re-run a recorded run's tool calls in a fresh sandbox, without a model, and compare the diffs."""
    from runner.replay import replay_run

    record = _get_run(_store(), run_id)
    settings = _settings()
    _start_tracing(ctx, settings)  # the replay's sandbox and tool spans go to Phoenix, not into the record
    identical, patch = replay_run(record, settings, _progress)
    if identical:
        click.echo(f"replay of {record.id}: the diff is identical ({len(patch)} bytes)")
        return
    click.echo(f"replay of {record.id}: the diff DIFFERS from the recorded one")
    ctx.exit(ExitCode.FAILED)

