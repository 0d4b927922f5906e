"""Looking after the machine: `smol doctor`, `smol gc`, `smol image`."""

from __future__ import annotations

import json

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

