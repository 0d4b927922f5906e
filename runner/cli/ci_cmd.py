"""`smol ci`: one task as a CI job. Never prompts, never writes the tree; the reports go to --out."""

from __future__ import annotations

from pathlib import Path

import click

from runner.cli.app import _check_writable, _repo_root, main
from runner.cli.env_cmd import setup_option
from runner.cli.run import REPO_OPTION, _start_session, finish_run, model_options


@main.command(name="ci")
@click.argument("task")
@REPO_OPTION
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Directory for result.json, patch.diff, junit.xml and summary.md (created).")
@click.option("--fail-on", type=click.Choice(["unverified", "no-change", "never"]), default="unverified",
              show_default=True,
              help="When the job fails (exit 1): unless the change is verified; only when there is no change; "
                   "never. A refused change always exits 8, an unreachable model 6.")
@model_options
@setup_option
@click.pass_context
def ci(ctx: click.Context, task: str, repo: Path, out_dir: Path, fail_on: str) -> None:
    """Run TASK as a CI job: the agent, the guard and the re-verification, then reports in --out; the tree is
    never written (apply the job's patch.diff yourself). Progress goes to stderr as plain lines.

    Example: smol ci "Fix the failing test" --out smol-out --fail-on unverified
    """
    from runner.ci import build_result, workflow_commands, write_outputs
    from runner.errors import UsageError

    if not task.strip():
        raise UsageError('the task is empty: say what the agent should do, e.g. smol ci "Fix the failing test"')
    if out_dir.is_dir():
        _check_writable(out_dir / "result.json")
    repo, _ = _repo_root(repo, False)
    session = _start_session(ctx, repo, False, reverify=True)
    outcome = session.run(task)
    # --promote never with re-verification: the change is verified and saved, never written to the tree.
    summary, _, patch = finish_run(session, task, repo, outcome, None, True, "never", True, "worktree", None)
    result = build_result(task, summary, _findings(patch, repo), fail_on)  # type: ignore[arg-type]
    for path in write_outputs(out_dir, result, patch):
        click.echo(f"smol: wrote {path}", err=True)
    for line in workflow_commands(result):
        click.echo(line)
    click.echo(f"smol: {result['outcome']} (exit {result['exit_code']})", err=True)
    ctx.exit(result["exit_code"])


def _findings(patch: bytes, repo: Path) -> dict[str, list[dict[str, str]]]:
    from runner.promote.guard import guard

    if not patch:
        return {"refused": [], "flagged": []}
    report = guard(patch, repo)
    return {"refused": [{"path": f.path, "reason": f.reason} for f in report.refused],
            "flagged": [{"path": f.path, "reason": f.reason} for f in report.flagged]}
