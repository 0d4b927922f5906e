"""`smol queue [review|drop]`: the changes waiting for review, from every run and batch, in one place."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from runner.cli.app import _json_flag, _settings, _start_tracing, main
from runner.cli.run import PROMOTE_OPTIONS, _promote, check_promote_options
from runner.errors import ExitCode, UsageError


def _absolute(repo: str | None) -> str | None:
    from pathlib import Path

    return None if repo is None else str(Path(repo).resolve())


def _store() -> Any:
    from runner.records import RunStore

    return RunStore(_settings().runs_db or None)


@main.group(invoke_without_command=True)
@click.option("--repo", default=None, help="Only the runs of this repository.")
@_json_flag("Print the queue as one JSON list.")
@click.pass_context
def queue(ctx: click.Context, repo: str | None, as_json: bool) -> None:
    """The changes waiting for review, newest first, grouped by repo, verified first; `smol queue review` walks
    them, `smol queue drop RUN_ID` takes one out."""
    if ctx.invoked_subcommand is not None:
        return
    from runner.queue import waiting

    entries = waiting(_store(), repo=_absolute(repo))
    if as_json:
        click.echo(json.dumps([entry.to_dict() for entry in entries]))
        return
    if not entries:
        click.echo("the review queue is empty")
        return
    for line in render(entries):
        click.echo(line)


def render(entries: list[Any]) -> list[str]:
    from runner.textsafe import sanitize_for_terminal

    def safe(text: str, width: int = 200) -> str:
        return sanitize_for_terminal(text, single_line=True)[:width]

    lines: list[str] = []
    repo = None
    for entry in entries:
        data = entry.to_dict()
        if data["repo"] != repo:
            repo = data["repo"]
            lines.append(f"{safe(repo)}")
        verification = data["verification"] or {}
        if entry.verified:
            tests = f"verified ({verification.get('passed', 0)} passed)"
        elif verification:
            tests = (f"UNVERIFIED ({verification.get('status')}: {verification.get('passed', 0)} passed, "
                     f"{verification.get('failed', 0)} failed)")
        else:
            tests = "not verified"
        when = time.strftime("%m-%d %H:%M", time.localtime(data["created_at"]))
        origin = f" [batch {data['batch']['name']}/{data['batch']['task']}]" if data.get("batch") else ""
        lines.append(f"  {data['run_id']}  {when}  {tests}  {len(data['files'])} file(s) +{data['added']} "
                     f"-{data['removed']}{safe(origin, 80)}")
        lines.append(f"      task: {safe(data['task'], 100)}")
        for finding in data["guard"]["refused"]:
            lines.append(f"      guard refuses {safe(finding['path'], 80)}: {safe(finding['reason'], 120)}")
        for finding in data["guard"]["flagged"]:
            lines.append(f"      guard flags {safe(finding['path'], 80)}: {safe(finding['reason'], 120)}")
        if data["conflicts"]:
            lines.append(f"      touches the same files as {', '.join(data['conflicts'][:5])}")
    return lines


@queue.command(name="review")
@click.option("--repo", default=None, help="Only the runs of this repository.")
@click.option("--promote", "promote_mode", type=click.Choice(["ask", "auto-if-verified"]), default="ask",
              show_default=True, help="Ask for each change, or apply those whose re-verification passes.")
@PROMOTE_OPTIONS[1]
@PROMOTE_OPTIONS[2]
@click.pass_context
def queue_review(ctx: click.Context, repo: str | None, promote_mode: str, reverify: bool, land: str) -> None:
    """Walk the queue: each change is guarded, re-verified on your current tree and shown; apply all, file by
    file, reject, or save it for later (it stays queued)."""
    import sys

    from runner.queue import waiting

    check_promote_options(promote_mode, reverify, land, None)
    if promote_mode == "ask" and not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise UsageError("`smol queue review` asks at a terminal: run it in one, or use --promote auto-if-verified")
    store = _store()
    settings = _settings()
    entries = waiting(store, repo=_absolute(repo))
    if not entries:
        click.echo("the review queue is empty")
        return
    tracing = _start_tracing(ctx, settings)
    counts: dict[str, int] = {}
    for number, entry in enumerate(entries, start=1):
        record = store.get(entry.record.id)  # with its file states, read only now
        click.echo(f"\n[{number}/{len(entries)}] run {record.id} in {record.repo}")
        for line in render([entry])[1:]:
            click.echo(line)
        outcome = _promote(record, store, settings, promote_mode, reverify, land, None, False)
        counts[outcome["outcome"]] = counts.get(outcome["outcome"], 0) + 1
    tracing.end_root()
    click.echo("\nreviewed: " + ", ".join(f"{count} {word}" for word, count in sorted(counts.items())))
    if counts.get("refused") or counts.get("conflict"):
        ctx.exit(ExitCode.REFUSED)


@queue.command(name="drop")
@click.argument("run_ids", nargs=-1, required=True)
def queue_drop(run_ids: tuple[str, ...]) -> None:
    """Take RUN_IDS out of the queue without applying them (the saved patch stays; `smol promote` still works)."""
    from runner.queue import drop

    for run_id in drop(_store(), list(run_ids)):
        click.echo(f"dropped {run_id} from the review queue")
