"""What `smol run` and `smol exec` do before the sandbox starts, when the repo declares dependencies: use its
environment, build it when the user allowed that, or say in one line how to.

Only the user decides: `--setup` / `--no-setup`, SMOL_ENV_SETUP (a repo's own files can only set `deny`), or a yes
on a terminal, remembered per repo. The agent has no path here: it runs inside a sandbox that only ever *uses* an
environment that already exists, with network off.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from runner.env import store

if TYPE_CHECKING:
    from runner.config import Settings
    from runner.sandbox.engine import Engine

Progress = Callable[[str], None]
Ask = Callable[[str], bool]

HINT = "run `smol env build` (or pass --setup; SMOL_ENV_SETUP=allow for batch and CI)"


def sandbox_base(engine: Engine, settings: Settings, progress: Progress) -> str:
    """The sandbox image environments are built on (built first when it is missing and may be)."""
    from runner.sandbox.image import build_image, resolve_image

    tag = resolve_image(settings)
    if settings.sandbox_image or engine.image_exists(tag):
        return tag
    return build_image(engine, settings, progress)


def may_prepare(root: Path, settings: Settings, setup: bool | None, ask: Ask | None, summary: str) -> bool:
    """Whether the set-up phase may run for this repo now. `setup` is the command's --setup/--no-setup (None:
    not given); `ask` asks the user on a terminal (None: nobody can be asked)."""
    if setup is not None:
        return setup
    if settings.smol_env_setup == "allow":
        return True
    if settings.smol_env_setup == "deny":
        return False
    if store.allowed(root):
        return True
    if ask is None:
        return False
    question = (f"{root} declares dependencies ({summary}). Prepare its environment now? This runs the repo's "
                "install scripts in a container with network on (once; cached)")
    if ask(question):
        store.remember(root)
        return True
    return False


def ensure_environment(engine: Engine, root: Path, settings: Settings, base_image: str | None = None, *,
                       setup: bool | None, ask: Ask | None, progress: Progress) -> str | None:
    """The environment image the sandbox will start from (building it when allowed), or None for the bare image
    (the repo declares nothing, or its environment is missing and may not be built: one line says how).

    Called before a sandbox starts over `root` (by `smol run`/`smol exec`, and by anything else that starts one
    for a task: a batch worker passes `setup=None, ask=None` and lets SMOL_ENV_SETUP decide)."""
    from runner.env.plan import plan_for

    if not plan_for(root).declares_dependencies:
        return None
    base_image = base_image or sandbox_base(engine, settings, progress)
    state = store.repo_env(engine, root, base_image)
    if not state.plan.declares_dependencies:
        return None
    if state.exists:
        return state.tag
    summary = "; ".join(state.plan.summary)
    if not may_prepare(root, settings, setup, ask, summary):
        if setup is not False:
            progress(f"this repo declares dependencies ({summary}) but has no prepared environment, so its tests "
                     f"may not import: {HINT}")
        return None
    from runner.env.build import build_environment

    return build_environment(engine, root, settings, base_image, progress).tag
