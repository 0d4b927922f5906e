"""The environments that exist (local images labelled `smol.env`), which one a repo uses, what `smol gc` removes,
and the user's per-repo consent to the set-up phase."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from runner.env.key import ENV_REPOSITORY, LABEL, LABEL_REPO, LABEL_SUMMARY, env_tag
from runner.env.plan import EnvPlan, plan_for
from runner.errors import SmolError

if TYPE_CHECKING:
    from runner.sandbox.engine import Engine


@dataclass(frozen=True)
class EnvImage:
    tag: str
    id: str
    repo: str
    summary: str
    created: str
    size: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def environments(engine: Engine) -> list[EnvImage]:
    """Every environment image, newest first."""
    found = []
    for image in engine.images(LABEL):
        labels = image.labels
        for tag in image.tags or [f"{ENV_REPOSITORY}:<none>"]:
            if tag.startswith(f"{ENV_REPOSITORY}:"):
                found.append(EnvImage(tag, image.id, labels.get(LABEL_REPO, ""), labels.get(LABEL_SUMMARY, ""),
                                      image.created, image.size))
    return sorted(found, key=lambda env: env.created, reverse=True)


@dataclass(frozen=True)
class RepoEnv:
    """A repo's environment as it stands: its plan, the tag it would have, and whether that image exists."""

    plan: EnvPlan
    tag: str
    exists: bool


def repo_env(engine: Engine, root: Path, base_image: str) -> RepoEnv:
    plan = plan_for(root)
    if not plan.declares_dependencies:
        return RepoEnv(plan, "", False)
    tag = env_tag(root, plan, engine.image_id(base_image))
    return RepoEnv(plan, tag, engine.image_exists(tag))


def unused(engine: Engine, base_image: str) -> list[EnvImage]:
    """Environments no repo uses any more: their repo is gone, or its defining files (or the sandbox image)
    changed since, so that repo's current environment has another tag."""
    stale = []
    current: dict[str, str] = {}
    for env in environments(engine):
        root = Path(env.repo)
        if env.repo not in current:
            try:
                current[env.repo] = repo_env(engine, root, base_image).tag if root.is_dir() else ""
            except (OSError, SmolError):
                current[env.repo] = ""
        if env.tag != current[env.repo]:
            stale.append(env)
    return stale


def remove(engine: Engine, envs: list[EnvImage]) -> list[str]:
    """Remove these images; returns the tags removed (one still used by a running sandbox stays)."""
    removed = []
    for env in envs:
        try:
            if engine.remove_image(env.tag):
                removed.append(env.tag)
        except SmolError:
            continue
    return removed


# ---------------------------------------------------------------------------------------------- consent
def consent_path() -> Path:
    """$XDG_STATE_HOME/smol/env-consent.json: the repos whose set-up phase the user allowed on a terminal."""
    from runner.records import default_db_path

    return default_db_path().parent / "env-consent.json"


def _consents() -> dict[str, str]:
    try:
        data = json.loads(consent_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(key): str(value) for key, value in data.items()} if isinstance(data, dict) else {}


def allowed(root: Path) -> bool:
    return _consents().get(str(root.resolve())) == "allow"


def remember(root: Path) -> None:
    from runner.records import write_private

    consents = _consents()
    consents[str(root.resolve())] = "allow"
    try:
        write_private(consent_path(), json.dumps(consents, indent=1, sort_keys=True).encode())
    except OSError:
        pass  # not remembered: the next run asks again


def forget(root: Path) -> None:
    from runner.records import write_private

    consents = _consents()
    if consents.pop(str(root.resolve()), None) is not None:
        try:
            write_private(consent_path(), json.dumps(consents, indent=1, sort_keys=True).encode())
        except OSError:
            pass


def describe(engine: Engine, root: Path, base_image: str) -> tuple[str, str, str]:
    """(status, detail, fix) of a repo's environment for `smol doctor`: ok, or warn when it is missing."""
    state = repo_env(engine, root, base_image)
    if not state.plan.declares_dependencies:
        return "ok", f"{root} declares no dependencies: the sandbox image is used as it is", ""
    summary = "; ".join(state.plan.summary)
    if state.exists:
        return "ok", f"{state.tag} ready ({summary})", ""
    return "warn", (f"{root} declares dependencies ({summary}) but has no prepared environment: its tests may "
                    "not import in the sandbox"), "smol env build"
