"""`smol run` and what `smol chat` shares with it: the session, the summary, the record, the promotion."""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from runner.cli.app import (
    _check_writable,
    _interactive,
    _json_flag,
    _repo_root,
    _settings,
    _start_tracing,
    left_out_lines,
    main,
)
from runner.cli.env_cmd import prepare_environment, setup_option
from runner.errors import ExitCode

# ---------------------------------------------------------------------------------------------- run / chat
REPO_OPTION = click.option("--repo", "repo", type=click.Path(path_type=Path), default=Path("."), show_default=True,
                           help="Repository to work on (the sandbox sees it read-only, with a writable overlay); "
                                "a subdirectory means its git repository.")


def model_options(function: Any) -> Any:
    """--model and --max-steps: this run's MODEL_ID and AGENT_MAX_STEPS, validated like the settings."""

    def remember(key: str) -> Any:
        def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
            if value is not None:
                ctx.find_root().meta.setdefault("smol.overrides", {})[key] = value
            return value
        return callback

    function = click.option("--max-steps", type=click.IntRange(min=1), default=None, expose_value=False,
                            callback=remember("agent_max_steps"),
                            help="Most tool steps the agent may take (AGENT_MAX_STEPS).")(function)
    return click.option("--model", default=None, expose_value=False, callback=remember("model_id"),
                        help="LiteLLM model id with its provider, e.g. ollama_chat/qwen2.5-coder:7b "
                             "(MODEL_ID).")(function)


def _ask(kind: str, subject: str) -> str:
    click.echo(f"\nsmol: the agent asks to run a {kind} that needs approval:\n    {subject}", err=True)
    answer = click.prompt("approve [o]nce, for this [r]un, or [d]eny?", type=click.Choice(["o", "r", "d"]),
                          default="d", err=True)
    return {"o": "once", "r": "run", "d": "deny"}[answer]


def _start_session(ctx: click.Context, repo: Path, as_json: bool, *, reverify: bool) -> Any:
    from runner.agent.model import context_length, context_warning, preflight
    from runner.agent.session import AgentSession
    from runner.live import LiveStatus
    from runner.sandbox.docker_sandbox import DockerSandbox

    settings = _settings()
    preflight(settings)
    warning = context_warning(settings, context_length(settings, timeout=3))
    if warning:
        click.echo(f"smol: warning: {warning}", err=True)
    prepare_environment(repo, as_json)
    live = LiveStatus(sys.stderr, interactive=_interactive(as_json))
    ctx.call_on_close(live.close)
    progress = (lambda message: None) if as_json else (lambda message: live.line(f"smol: {message}"))
    tracing = _start_tracing(ctx, settings)
    sandbox = ctx.with_resource(DockerSandbox(repo, settings, progress=progress))
    progress(f"sandbox ready ({sandbox.info.mode.value} mode: {sandbox.info.mode_reason}); model {settings.model_id}")
    if reverify:
        # The re-verification after the run needs a fresh sandbox; half of it is made while the model works.
        sandbox.prepare_spare()
    session = AgentSession(sandbox, settings, asker=_ask if _interactive(as_json) else None, progress=progress)
    session.tracing = tracing
    if not as_json:
        session.state.on_model(live.model_event, text=_interactive(as_json))
    return session


def _finish(summary: dict[str, Any], outcome: Any, patch: bytes, patch_out: Path | None, as_json: bool) -> int:
    if patch_out is not None:
        patch_out.write_bytes(patch)
    summary["patch_out"] = str(patch_out) if patch_out else None
    if not as_json:
        from runner.agent.session import diff_stat
        from runner.textsafe import sanitize_for_terminal

        click.echo("")
        if summary.get("run_id"):
            click.echo(f"run: {summary['run_id']}")
        click.echo(f"status: {outcome.status}" + (f" ({outcome.reason})" if outcome.reason else ""))
        if outcome.answer:  # the model's words: escapes and bidi controls neutralised like every other string
            click.echo(f"answer: {sanitize_for_terminal(outcome.answer)}")
        tools = ", ".join(f"{name} x{count}" for name, count in summary["tools_used"].items()) or "none"
        click.echo(f"steps: {summary['steps']}   tools: {tools}")
        tests = summary["tests"]
        click.echo("tests: not run" if tests is None else
                   f"tests: {'passed' if tests['ok'] else 'FAILED'} ({tests['passed']} passed, "
                   f"{tests['failed']} failed) with `{tests['command']}`")
        click.echo("changes (made in the sandbox):")
        click.echo(diff_stat(patch).render())
        for line in left_out_lines(summary.get("left_out") or {}):
            click.echo(line)
        if patch_out is not None:
            click.echo(f"patch written to {patch_out}")
    return {"completed": ExitCode.OK, "model_error": ExitCode.MODEL}.get(outcome.status, ExitCode.INCOMPLETE)


PROMOTE_OPTIONS = [
    click.option("--promote", "promote_mode", type=click.Choice(["never", "ask", "auto-if-verified"]), default=None,
                 help="Whether the change reaches your tree: never (save the patch), ask (review), or automatically "
                      "when re-verification passes. Default: ask on a terminal, never otherwise."),
    click.option("--verify/--no-verify", "reverify", default=True, show_default=True,
                 help="Re-run the tests on the change in a fresh sandbox of your current tree before the review."),
    click.option("--land", type=click.Choice(["worktree", "branch", "commit"]), default="worktree", show_default=True,
                 help="Write into the working tree; commit on a new branch; or write and commit on the current "
                      "branch (git repos; refused when the touched files have uncommitted changes)."),
    click.option("--branch", default=None, help="Branch name for --land branch (default smol/RUN_ID)."),
]


def promote_options(function: Any) -> Any:
    """The promotion options, checked together before anything starts (not after the model has worked)."""

    @functools.wraps(function)
    def checked(*args: Any, **kwargs: Any) -> Any:
        check_promote_options(kwargs["promote_mode"], kwargs["reverify"], kwargs["land"], kwargs["branch"])
        return function(*args, **kwargs)

    for option in reversed(PROMOTE_OPTIONS):
        checked = option(checked)
    return checked


def check_promote_options(mode: str | None, reverify: bool, land: str, branch: str | None) -> None:
    import subprocess

    from runner.errors import UsageError

    if mode == "auto-if-verified" and not reverify:
        raise UsageError("--promote auto-if-verified needs the verification that --no-verify turns off: drop "
                         "--no-verify, or use --promote ask")
    if branch is None:
        return
    if land != "branch":
        raise UsageError(f"--branch names the branch of --land branch: add --land branch (now --land {land})")
    valid = not branch.startswith("-") and subprocess.run(
        ["git", "check-ref-format", "--branch", branch], capture_output=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_CONFIG_NOSYSTEM": "1",
             "GIT_CONFIG_GLOBAL": "/dev/null"}, cwd="/").returncode == 0
    if not valid:
        raise UsageError(f"--branch {branch!r} is not a valid git branch name: pick another, e.g. smol/fix-parser")


def _review_asker(question: str, choices: list[str]) -> str:
    return str(click.prompt(question, type=click.Choice(choices), show_choices=False, err=True))


def _promote(record: Any, store: Any, settings: Any, mode: str | None, reverify: bool, land: str,
             branch: str | None, as_json: bool) -> dict[str, Any]:
    from runner.promote.flow import Promoter

    interactive = _interactive(as_json)
    chosen = mode or ("ask" if interactive else "never")
    echo = (lambda line: click.echo(line, err=True)) if as_json else click.echo
    promoter = Promoter(record, store, settings, echo=echo, ask=_review_asker if interactive else None,
                        color=interactive and sys.stdout.isatty())
    try:
        return promoter.run(chosen, reverify=reverify, land=land, branch=branch)  # type: ignore[arg-type]
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo(f"\nsmol: the run is saved: `smol promote {record.id}` brings its change back to review",
                   err=True)
        raise


def _conclude(ctx: click.Context, session: Any, task: str, repo: Path, outcome: Any, patch_out: Path | None,
              as_json: bool, promote_mode: str | None, reverify: bool, land: str, branch: str | None) -> None:
    """Summary, run record, then promotion, once the sandbox is gone; exits with the run's code."""
    summary, code, _ = finish_run(session, task, repo, outcome, patch_out, as_json, promote_mode, reverify, land,
                                  branch)
    if as_json:
        click.echo(json.dumps(summary))
    ctx.exit(code)


def finish_run(session: Any, task: str, repo: Path, outcome: Any, patch_out: Path | None, as_json: bool,
               promote_mode: str | None, reverify: bool, land: str, branch: str | None) \
        -> tuple[dict[str, Any], int, bytes]:
    """Record the run, close its sandbox, render the summary and promote: (summary, exit code, patch)."""
    patch = session.sandbox.diff()
    summary = session.summary(outcome, patch)
    summary["left_out"] = session.sandbox.left_out
    from runner.agent.recording import record_run

    record, store = record_run(session, task, repo, outcome, patch, summary)
    session.sandbox.close()  # the overlay must be gone before anything is written to the real tree
    summary["run_id"] = record.id
    code = _finish(summary, outcome, patch, patch_out, as_json)
    summary["promotion"] = _promote(record, store, session.settings, promote_mode, reverify, land, branch, as_json)
    session.tracing.end_root()  # the run's root span is kept with its record
    store.update(record.id, spans=list(session.tracing.local.spans))
    return summary, code, patch


@main.command()
@click.argument("task")
@REPO_OPTION
@click.option("--patch-out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the agent's changes to this file as a git patch.")
@_json_flag("Print one JSON summary (or error) on stdout; never asks for input.")
@model_options
@setup_option
@promote_options
@click.pass_context
def run(ctx: click.Context, task: str, repo: Path, patch_out: Path | None, as_json: bool, promote_mode: str | None,
        reverify: bool, land: str, branch: str | None) -> None:
    """Run the agent on TASK in a sandbox over the repo; show progress, a summary and the diff, then the guarded
    promotion of the change into your tree.

    Example: smol run "Fix the failing test in tests/test_app.py" --patch-out fix.patch
    """
    from runner.errors import UsageError

    if not task.strip():
        raise UsageError('the task is empty: say what the agent should do, e.g. smol run "Fix the failing test"')
    if patch_out is not None:
        _check_writable(patch_out)
    repo, _ = _repo_root(repo, as_json)
    session = _start_session(ctx, repo, as_json, reverify=reverify)
    outcome = session.run(task)
    _conclude(ctx, session, task, repo, outcome, patch_out, as_json, promote_mode, reverify, land, branch)

