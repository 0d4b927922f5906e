"""Looking after the machine: `smol doctor`, `smol gc`, `smol image`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from runner.cli.app import _json_flag, _progress, _settings, main
from runner.errors import ExitCode


# ---------------------------------------------------------------------------------------------- doctor
@main.command()
@_json_flag("Print the checks as JSON.")
@click.pass_context
def doctor(ctx: click.Context, as_json: bool) -> None:
    """Check the Docker engine, the sandbox image, the model endpoint, Phoenix and the configuration."""
    from runner.doctor import render_table, run_checks

    checks = run_checks()
    failed = any(check.status == "fail" for check in checks)
    if as_json:
        click.echo(json.dumps({"ok": not failed, "checks": [check.to_dict() for check in checks]}))
    else:
        for line in render_table(checks):
            click.echo(line)
    ctx.exit(ExitCode.FAILED if failed else ExitCode.OK)


# ---------------------------------------------------------------------------------------------- gc
@main.command()
@click.option("--all", "everything", is_flag=True, help="Also remove sandboxes of processes still running.")
def gc(everything: bool) -> None:
    """Remove sandbox containers and volumes left behind by killed processes, and prepared environments no repo
    uses any more (its directory is gone, or its dependencies or the sandbox image changed since)."""
    from runner.env.store import remove, unused
    from runner.sandbox.engine import connect
    from runner.sandbox.image import resolve_image
    from runner.sandbox.labels import collect_garbage

    engine = connect()
    removed = collect_garbage(engine, everything=everything)
    for item in removed:
        click.echo(f"removed {item.kind} {item.name}")
    environments = remove(engine, unused(engine, resolve_image(_settings())))  # repo gone, or its inputs changed
    for tag in environments:
        click.echo(f"removed environment {tag}")
    click.echo(f"smol gc: removed {len(removed) + len(environments)} object(s)")


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



# ---------------------------------------------------------------------------------------------- config
@main.command(name="config")
@click.option("--repo", "repo", type=click.Path(path_type=Path), default=Path("."), show_default=True,
              help="The repo whose own .env is judged (it may only tighten containment).")
@_json_flag("Print the settings as one JSON object.")
def config_command(repo: Path, as_json: bool) -> None:
    """The effective settings, where each comes from (flag, environment, your config file, a repo's .env,
    default), and every repo setting that was ignored because it would loosen containment."""
    from runner.config import explain_settings
    from runner.textsafe import sanitize_for_terminal

    rows, warnings = explain_settings(repo)
    if as_json:
        click.echo(json.dumps({"settings": {key: {"value": value, "source": source} for key, value, source in rows},
                               "warnings": warnings}, default=str))
        return
    width = max(len(key) for key, _, _ in rows)
    for key, value, source in rows:
        shown = sanitize_for_terminal(str(value), single_line=True)
        click.echo(f"{key:<{width}}  {shown if shown else '(empty)':<40}  {source}")
    for warning in warnings:
        click.echo(f"warning: {sanitize_for_terminal(warning, single_line=True)}")
