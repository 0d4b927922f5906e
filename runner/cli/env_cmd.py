"""`smol env build / show / rm`: a repo's prepared environment (its dependencies, installed once with network in a
set-up container, frozen into a local image the sandbox starts from with network off)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from runner.cli.app import _json_flag, _progress, _repo_root, _settings, main

_REPO = click.option("--repo", "repo", type=click.Path(path_type=Path), default=Path("."), show_default=True,
                     help="The repository (a subdirectory means its git repository).")


def base_image(engine: Any, settings: Any, progress: Any = _progress) -> str:
    from runner.env.service import sandbox_base

    return sandbox_base(engine, settings, progress)


@main.group(name="env")
def env_group() -> None:
    """A repo's prepared environment: its dependencies installed once (with network), used by every sandbox."""


@env_group.command(name="build")
@_REPO
@click.option("--force", is_flag=True, help="Rebuild even when the environment for these inputs exists.")
@_json_flag("Print one JSON object with the result.")
def env_build(repo: Path, force: bool, as_json: bool) -> None:
    """Prepare the repo's environment now: its own .smol/setup.sh, else what its files declare (uv.lock,
    pyproject.toml extras and groups, requirements*.txt, setup.py/setup.cfg, go.mod), installed with network in a
    set-up container that runs the repo's install scripts. Asking for it is consent for this repo."""
    from runner.env import store
    from runner.env.build import build_environment
    from runner.sandbox.engine import connect

    root, _ = _repo_root(repo, as_json)
    settings = _settings()
    engine = connect()
    quiet = (lambda message: None) if as_json else _progress
    built = build_environment(engine, root, settings, base_image(engine, settings, quiet), quiet, force=force)
    store.remember(root)
    if as_json:
        click.echo(json.dumps({"ok": True, "tag": built.tag, "cached": built.cached, "seconds": round(built.seconds, 2),
                               "detected": list(built.plan.summary), "inputs": list(built.plan.inputs)}))
        return
    if built.cached:
        _progress(f"{built.tag} is up to date ({'; '.join(built.plan.summary)})")
    click.echo(built.tag)


@env_group.command(name="show")
@_REPO
@click.option("--all", "everything", is_flag=True, help="List every environment on this engine.")
@_json_flag("Print one JSON object.")
def env_show(repo: Path, everything: bool, as_json: bool) -> None:
    """What the repo declares, the environment it would use, whether that exists; --all lists them all."""
    from runner.env import store
    from runner.sandbox.engine import connect

    engine = connect()
    settings = _settings()
    if everything:
        envs = store.environments(engine)
        if as_json:
            click.echo(json.dumps({"environments": [env.to_dict() for env in envs]}))
            return
        for env in envs:
            click.echo(f"{env.tag}  {env.size / 1e6:.0f} MB  {env.repo}  {env.summary}")
        if not envs:
            click.echo("no environments")
        return
    root, _ = _repo_root(repo, as_json)
    state = store.repo_env(engine, root, base_image(engine, settings))
    allowed = settings.smol_env_setup == "allow" or store.allowed(root)
    payload = {"repo": str(root), "declares_dependencies": state.plan.declares_dependencies,
               "detected": list(state.plan.summary), "inputs": list(state.plan.inputs), "tag": state.tag or None,
               "ready": state.exists, "setup_allowed": allowed if settings.smol_env_setup != "deny" else False}
    if as_json:
        click.echo(json.dumps(payload))
        return
    if not state.plan.declares_dependencies:
        click.echo(f"{root}: declares no dependencies; the sandbox image is used as it is")
        return
    click.echo(f"repo:     {root}")
    click.echo(f"detected: {'; '.join(state.plan.summary)}")
    click.echo(f"inputs:   {', '.join(state.plan.inputs)}")
    click.echo(f"image:    {state.tag} ({'ready' if state.exists else 'not built: smol env build'})")


@env_group.command(name="rm")
@_REPO
@click.option("--all", "everything", is_flag=True, help="Remove every environment on this engine.")
def env_rm(repo: Path, everything: bool) -> None:
    """Remove the repo's environments (every version built for it, and the one it would use) and forget its
    consent to the set-up phase."""
    from runner.env import store
    from runner.sandbox.engine import connect

    engine = connect()
    envs = store.environments(engine)
    if not everything:
        root, _ = _repo_root(repo, False)
        # Built for this repo, or the one it would use (an identical clone's: same inputs, same tag).
        current = store.repo_env(engine, root, base_image(engine, _settings())).tag
        envs = [env for env in envs if env.repo == str(root) or env.tag == current]
        store.forget(root)
    removed = store.remove(engine, envs)
    for tag in removed:
        click.echo(f"removed {tag}")
    for env in envs:
        if env.tag not in removed:
            click.echo(f"kept {env.tag}: a sandbox still uses it (`smol gc` removes it later)")
    click.echo(f"smol env rm: removed {len(removed)} environment(s)")


# ---------------------------------------------------------------------------------------------- run / exec
def setup_option(function: Any) -> Any:
    """--setup/--no-setup: this command's yes or no to the set-up phase (remembered for prepare_environment)."""

    def remember(ctx: click.Context, _param: click.Parameter, value: bool | None) -> bool | None:
        if value is not None:
            ctx.find_root().meta["smol.setup"] = value
        return value

    return click.option("--setup/--no-setup", default=None, expose_value=False, callback=remember,
                        help="Prepare the repo's environment if it is missing (its install scripts run with network "
                             "in a set-up container), or never. Default: SMOL_ENV_SETUP (ask on a terminal).")(function)


def prepare_environment(repo: Path, as_json: bool) -> None:
    """Before a sandbox starts over a repo that declares dependencies: its environment, built when the user allows
    (with progress), else one line naming `smol env build`. The sandbox then picks the environment by itself."""
    from runner.cli.app import _interactive
    from runner.env.plan import plan_for

    if not plan_for(repo).declares_dependencies:
        return
    from runner.env.service import ensure_environment
    from runner.sandbox.engine import connect

    ctx = click.get_current_context()
    setup = ctx.find_root().meta.get("smol.setup")
    settings = _settings()
    engine = connect()
    progress = (lambda message: None) if as_json else _progress

    def ask(question: str) -> bool:
        return bool(click.confirm(f"smol: {question}", default=False, err=True))

    try:
        ensure_environment(engine, repo, settings, base_image(engine, settings, progress), setup=setup,
                           ask=ask if _interactive(as_json) else None, progress=_progress)
    finally:
        engine.close()
