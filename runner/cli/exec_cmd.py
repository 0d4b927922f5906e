"""`smol exec`: one command in a throwaway sandbox over the repo."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from runner.cli.app import _check_writable, _json_flag, _progress, _repo_root, _settings, left_out_lines, main
from runner.cli.env_cmd import prepare_environment, setup_option


# ---------------------------------------------------------------------------------------------- exec
# Options are parsed (and a typo refused) up to the first word of COMMAND; everything from there on is COMMAND's.
@main.command(name="exec", context_settings={"allow_interspersed_args": False})
@click.option("--repo", "repo", type=click.Path(path_type=Path, file_okay=True), default=Path("."),
              show_default=True, help="Repository to mount (read-only, with a writable overlay).")
@click.option("--patch-out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the sandbox's changes to this file as a git patch.")
@click.option("--timeout", type=float, default=None, help="Seconds before the command is stopped.")
@_json_flag("Print one JSON object with the result (or the error) instead of streaming.")
@setup_option
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_command(ctx: click.Context, repo: Path, patch_out: Path | None, timeout: float | None, as_json: bool,
                 command: tuple[str, ...]) -> None:
    """Run COMMAND in a throwaway sandbox over the repo, exit with its exit code. The repo is never modified.

    Example: smol exec --repo ~/src/app --patch-out fix.patch -- pytest -q
    """
    from runner.sandbox.docker_sandbox import DockerSandbox

    if patch_out is not None:
        _check_writable(patch_out)
    repo, subdir = _repo_root(repo, as_json)
    settings = _settings()
    prepare_environment(repo, as_json)
    sandbox = ctx.with_resource(DockerSandbox(repo, settings, progress=_progress))
    info = sandbox.info
    if not as_json:
        _progress(f"sandbox ready ({info.mode.value} mode: {info.mode_reason})")

    def stream(name: str, chunk: bytes) -> None:
        target = sys.stdout.buffer if name == "stdout" else sys.stderr.buffer
        target.write(chunk)
        target.flush()

    result = sandbox.exec(list(command), timeout=timeout, workdir=subdir,
                          on_output=None if as_json else stream)
    patch = sandbox.diff() if (patch_out is not None or as_json) else b""
    if patch_out is not None:
        patch_out.write_bytes(patch)
    if as_json:
        payload = {**result.to_dict(), "sandbox": info.to_dict(), "diff_bytes": len(patch),
                   "patch_out": str(patch_out) if patch_out else None, "left_out": sandbox.left_out}
        click.echo(json.dumps(payload))
    else:
        for note in result.notes:
            _progress(note)
        if result.truncated:
            _progress("output was longer than SANDBOX_OUTPUT_LIMIT; the middle was not kept")
        if patch_out is not None:
            _progress(f"wrote {len(patch)} bytes of changes to {patch_out}")
            for line in left_out_lines(sandbox.left_out):
                _progress(line)
    ctx.exit(result.exit_code if 0 <= result.exit_code < 256 else 1)

