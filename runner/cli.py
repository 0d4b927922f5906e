"""The `smol` command. Heavy imports (docker, litellm, smolagents) happen inside the commands that need them,
so `smol --help` stays fast."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from runner import __version__
from runner.errors import SmolError

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def _terminate(signum: int, _frame: object) -> NoReturn:
    # SystemExit unwinds through every `with`/`ctx.with_resource`, so sandboxes are removed on SIGTERM too.
    raise SystemExit(128 + signum)


class SmolGroup(click.Group):
    """Turns our own errors into one line on stderr and their exit code: never a traceback for a user mistake."""

    def invoke(self, ctx: click.Context) -> Any:
        signal.signal(signal.SIGTERM, _terminate)
        signal.signal(signal.SIGHUP, _terminate)
        try:
            return super().invoke(ctx)
        except SmolError as error:
            click.echo(f"smol: error: {error}", err=True)
            ctx.exit(error.exit_code)
        except KeyboardInterrupt:
            click.echo("smol: interrupted; the sandbox was removed and your tree is unchanged", err=True)
            ctx.exit(130)


def _progress(message: str) -> None:
    click.echo(f"smol: {message}", err=True)


def _settings() -> Any:
    from runner.config import load_settings

    return load_settings()


@click.group(cls=SmolGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="smol")
def main() -> None:
    """A coding agent for local LLMs that only ever works in a hardened, throwaway Docker sandbox."""


# ---------------------------------------------------------------------------------------------- exec
@main.command(name="exec", context_settings={"ignore_unknown_options": True})
@click.option("--repo", "repo", type=click.Path(path_type=Path, file_okay=True), default=Path("."),
              show_default=True, help="Repository to mount (read-only, with a writable overlay).")
@click.option("--patch-out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the sandbox's changes to this file as a git patch.")
@click.option("--timeout", type=float, default=None, help="Seconds before the command is stopped.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the result instead of streaming.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_command(ctx: click.Context, repo: Path, patch_out: Path | None, timeout: float | None, as_json: bool,
                 command: tuple[str, ...]) -> None:
    """Run COMMAND in a throwaway sandbox over the repo, exit with its exit code. The repo is never modified.

    Example: smol exec --repo ~/src/app --patch-out fix.patch -- pytest -q
    """
    from runner.sandbox.docker_sandbox import DockerSandbox, check_repo

    settings = _settings()
    repo = check_repo(repo)
    if patch_out is not None:
        _check_writable(patch_out)
    sandbox = ctx.with_resource(DockerSandbox(repo, settings, progress=_progress))
    info = sandbox.info
    if not as_json:
        _progress(f"sandbox ready ({info.mode.value} mode: {info.mode_reason})")

    def stream(name: str, chunk: bytes) -> None:
        target = sys.stdout.buffer if name == "stdout" else sys.stderr.buffer
        target.write(chunk)
        target.flush()

    result = sandbox.exec(list(command), timeout=timeout, on_output=None if as_json else stream)
    patch = sandbox.diff() if (patch_out is not None or as_json) else b""
    if patch_out is not None:
        patch_out.write_bytes(patch)
    if as_json:
        payload = {**result.to_dict(), "sandbox": info.to_dict(), "diff_bytes": len(patch),
                   "patch_out": str(patch_out) if patch_out else None}
        click.echo(json.dumps(payload))
    else:
        for note in result.notes:
            _progress(note)
        if result.truncated:
            _progress("output was longer than SANDBOX_OUTPUT_LIMIT; the middle was not kept")
        if patch_out is not None:
            _progress(f"wrote {len(patch)} bytes of changes to {patch_out}")
    ctx.exit(result.exit_code if 0 <= result.exit_code < 256 else 1)


def _check_writable(path: Path) -> None:
    from runner.errors import UsageError

    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"cannot write {path}: directory {str(parent)!r} does not exist")
    if path.exists() and path.is_dir():
        raise UsageError(f"cannot write {path}: it is a directory; name a file")


# ---------------------------------------------------------------------------------------------- run / chat
REPO_OPTION = click.option("--repo", "repo", type=click.Path(path_type=Path), default=Path("."), show_default=True,
                           help="Repository to work on (the sandbox sees it read-only, with a writable overlay).")


def _interactive(as_json: bool) -> bool:
    return not as_json and sys.stdin.isatty() and sys.stderr.isatty()


def _ask(kind: str, subject: str) -> str:
    click.echo(f"\nsmol: the agent asks to run a {kind} that needs approval:\n    {subject}", err=True)
    answer = click.prompt("approve [o]nce, for this [r]un, or [d]eny?", type=click.Choice(["o", "r", "d"]),
                          default="d", err=True)
    return {"o": "once", "r": "run", "d": "deny"}[answer]


def _start_session(ctx: click.Context, repo: Path, as_json: bool) -> Any:
    from runner.agent.model import preflight
    from runner.agent.session import AgentSession
    from runner.sandbox.docker_sandbox import DockerSandbox, check_repo

    settings = _settings()
    repo = check_repo(repo)
    preflight(settings)
    progress = (lambda message: None) if as_json else _progress
    sandbox = ctx.with_resource(DockerSandbox(repo, settings, progress=progress))
    progress(f"sandbox ready ({sandbox.info.mode.value} mode: {sandbox.info.mode_reason}); model {settings.model_id}")
    return AgentSession(sandbox, settings, asker=_ask if _interactive(as_json) else None, progress=progress)


def _finish(session: Any, outcome: Any, patch_out: Path | None, as_json: bool) -> int:
    patch = session.sandbox.diff()
    if patch_out is not None:
        patch_out.write_bytes(patch)
    summary = session.summary(outcome, patch)
    summary["patch_out"] = str(patch_out) if patch_out else None
    if as_json:
        click.echo(json.dumps(summary))
    else:
        from runner.agent.session import diff_stat

        click.echo("")
        click.echo(f"status: {outcome.status}" + (f" ({outcome.reason})" if outcome.reason else ""))
        if outcome.answer:
            click.echo(f"answer: {outcome.answer}")
        tools = ", ".join(f"{name} x{count}" for name, count in summary["tools_used"].items()) or "none"
        click.echo(f"steps: {summary['steps']}   tools: {tools}")
        tests = summary["tests"]
        click.echo("tests: not run" if tests is None else
                   f"tests: {'passed' if tests['ok'] else 'FAILED'} ({tests['passed']} passed, {tests['failed']} failed)"
                   f" with `{tests['command']}`")
        click.echo("changes (in the sandbox only; your tree is untouched):")
        click.echo(diff_stat(patch).render())
        if patch_out is not None:
            click.echo(f"patch written to {patch_out}")
    return {"completed": 0, "model_error": 6}.get(outcome.status, 7)


@main.command()
@click.argument("task")
@REPO_OPTION
@click.option("--patch-out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the agent's changes to this file as a git patch.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary; never asks for input.")
@click.pass_context
def run(ctx: click.Context, task: str, repo: Path, patch_out: Path | None, as_json: bool) -> None:
    """Run the agent on TASK in a sandbox over the repo; show progress, a summary and the diff.

    Example: smol run "Fix the failing test in tests/test_app.py" --patch-out fix.patch
    """
    from runner.errors import UsageError

    if not task.strip():
        raise UsageError('the task is empty: say what the agent should do, e.g. smol run "Fix the failing test"')
    if patch_out is not None:
        _check_writable(patch_out)
    session = _start_session(ctx, repo, as_json)
    outcome = session.run(task)
    ctx.exit(_finish(session, outcome, patch_out, as_json))


@main.command()
@REPO_OPTION
@click.option("--patch-out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the session's changes to this file as a git patch at the end.")
@click.pass_context
def chat(ctx: click.Context, repo: Path, patch_out: Path | None) -> None:
    """Interactive: several tasks, one after another, in one sandbox session. End with `exit` or Ctrl-D."""
    if patch_out is not None:
        _check_writable(patch_out)
    session = _start_session(ctx, repo, False)
    outcome = None
    first = True
    while True:
        try:
            task = click.prompt("task", prompt_suffix="> ", default="", show_default=False, err=True)
        except (EOFError, click.Abort):
            break
        if task.strip() in ("exit", "quit"):
            break
        if not task.strip():
            continue
        outcome = session.run(task, reset=first)
        first = False
        click.echo(f"[{outcome.status}] {outcome.answer or outcome.reason}")
    if outcome is not None:
        _finish(session, outcome, patch_out, False)


# ---------------------------------------------------------------------------------------------- gc
@main.command()
@click.option("--all", "everything", is_flag=True, help="Also remove sandboxes of processes still running.")
def gc(everything: bool) -> None:
    """Remove sandbox containers and volumes left behind by killed processes."""
    from runner.sandbox.engine import connect
    from runner.sandbox.labels import collect_garbage

    removed = collect_garbage(connect(), everything=everything)
    for item in removed:
        click.echo(f"removed {item.kind} {item.name}")
    click.echo(f"smol gc: removed {len(removed)} object(s)")


# ---------------------------------------------------------------------------------------------- image
@main.group()
def image() -> None:
    """The sandbox image."""


@image.command(name="build")
@click.option("--force", is_flag=True, help="Rebuild even when the image for these inputs exists.")
def image_build(force: bool) -> None:
    """Build the sandbox image (offline: from Debian packages when no registry is reachable)."""
    from runner.sandbox.engine import connect
    from runner.sandbox.image import build_image

    tag = build_image(connect(), _settings(), _progress, force=force)
    click.echo(tag)


@image.command(name="tag")
def image_tag_command() -> None:
    """Print the tag of the image these sources build."""
    from runner.sandbox.image import resolve_image

    click.echo(resolve_image(_settings()))

