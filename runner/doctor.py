"""`smol doctor`: everything `smol run` needs, checked, each failure with the fix."""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import SmolError

if TYPE_CHECKING:
    from runner.sandbox.base import ExecResult
    from runner.sandbox.engine import Engine


@dataclass
class Check:
    name: str
    status: str
    """"ok", "warn" (smol run still works) or "fail" (smol run cannot work)."""
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def config_checks(repo: str | os.PathLike[str] | None = None) -> tuple[Any, list[Check]]:
    """The settings (None when they cannot load) and one check for them, plus one warning per key a repo's `.env`
    tried to loosen and smol ignored."""
    from runner.config import load_settings_and_warnings, user_config_path

    config = user_config_path()
    try:
        settings, warnings = load_settings_and_warnings(repo)
    except SmolError as error:
        return None, [Check("configuration", "fail", str(error), "fix the value where the message says")]
    shown = f"{config}" if config is not None and config.is_file() else f"none ({config} does not exist)"
    checks = [Check("configuration", "ok",
                    f"model {settings.model_id}, sandbox mode {settings.sandbox_mode}; user config: {shown}")]
    for warning in warnings:
        checks.append(Check("configuration", "warn", warning,
                            f"none if the repo put it there; if you want it, set it in the environment or in {config}"))
    return settings, checks


def run_checks() -> list[Check]:
    settings, checks = config_checks()
    if settings is None:
        return checks

    engine = None
    try:
        from runner.sandbox.engine import connect
        from runner.sandbox.overlaymode import EngineFacts

        engine = connect()
        facts = EngineFacts(engine)
        version = engine.version().get("Version", "?")
        obstacle = facts.overlay_obstacle()
        mode = "overlay mode available" if obstacle is None else f"copy mode will be used ({obstacle})"
        checks.append(Check("docker engine", "ok",
                            f"Docker {version}, storage driver {facts.info.get('Driver', '?')}; {mode}"))
    except SmolError as error:
        checks.append(Check("docker engine", "fail", str(error).split(": start the")[0],
                            "start the Docker engine, or point DOCKER_HOST at a running one"))

    if engine is not None:
        checks.append(_image_check(engine, settings))
        if checks[-1].status == "ok":
            checks.extend(_sandbox_probe(engine, settings, str(facts.info.get("Driver", "?"))))
            checks.append(_env_check(engine, settings))

    checks.append(_model_check(settings))
    checks.append(_phoenix_check(settings))
    return checks


def _image_check(engine: Engine, settings: Any) -> Check:
    from runner.sandbox.image import IMAGE_REPOSITORY, image_exists, resolve_image

    tag = resolve_image(settings)
    if image_exists(engine, tag):
        stale = [t for t in engine.image_tags(IMAGE_REPOSITORY) if t != tag]
        detail = f"{tag} present" + (f"; older images: {', '.join(stale)} (`docker rmi` them)" if stale else "")
        return Check("sandbox image", "ok", detail)
    if settings.sandbox_image:
        return Check("sandbox image", "fail", f"{tag} (SANDBOX_IMAGE) is not present", f"docker pull {tag}")
    if settings.sandbox_auto_build:
        return Check("sandbox image", "warn", f"{tag} is not built yet; the first run builds it (~2 min)",
                     "smol image build")
    return Check("sandbox image", "fail", f"{tag} is not built", "smol image build")


def _sandbox_probe(engine: Engine, settings: Any, driver: str) -> list[Check]:
    """Start a real sandbox over an empty directory owned as a user's checkout would be, and time its file access."""
    from runner.sandbox.docker_sandbox import DockerSandbox

    with tempfile.TemporaryDirectory(prefix="smol-doctor-") as directory:
        if os.geteuid() == 0:
            os.chown(directory, settings.sandbox_uid, settings.sandbox_uid)
        try:
            with DockerSandbox(directory, settings, engine=engine) as sandbox:
                result = sandbox.exec(["true"], timeout=30)
                mode = sandbox.info.mode.value
                lookup = sandbox.exec(["python3", "-c", _LOOKUP_PROBE], timeout=30)
        except SmolError as error:
            return [Check("sandbox", "fail", str(error), "see the message; `smol exec -- true` reproduces it")]
    if result.exit_code != 0:
        return [Check("sandbox", "fail", f"a command in the sandbox failed ({result.stderr.strip()[:120]})",
                      "smol image build --force")]
    return [Check("sandbox", "ok", f"started and ran a command in {mode} mode"), _lookup_check(lookup, driver)]


_LOOKUP_PROBE = """
import os, time
started = time.perf_counter()
for _ in range(2000):
    os.stat("/usr/lib")
print(round((time.perf_counter() - started) / 2000 * 1e6, 1))
"""
"""Resolving a path from `/` as the sandbox's non-root user: on most engines a few microseconds; on an engine whose
storage driver is fuse-overlayfs a FUSE round trip each time (~100 us measured), which makes a test suite that imports
and opens many files ~1.7x slower than on the host (BENCHMARKS.md, prepared environments)."""
_SLOW_LOOKUP_US = 20.0


def _lookup_check(result: ExecResult, driver: str) -> Check:
    try:
        micros = float(result.stdout.strip())
    except ValueError:
        why = result.stderr.strip()[:120]
        return Check("file access", "warn", f"could not time path lookups in the sandbox ({why})",
                     "smol image build --force")
    detail = f"a path lookup from / takes {micros:g} µs in the sandbox (storage driver {driver})"
    if micros <= _SLOW_LOOKUP_US:
        return Check("file access", "ok", detail)
    fix = ("switch the engine to overlay2 (\"storage-driver\": \"overlay2\" in /etc/docker/daemon.json, restart "
           "it, then `smol image build`)" if driver == "fuse-overlayfs" else
           "use a storage driver on a kernel filesystem (overlay2) for the Docker engine")
    return Check("file access", "warn", detail + ": commands that open many files (test suites) run slower than on "
                 "the host", fix)


def _env_check(engine: Engine, settings: Any) -> Check:
    """The prepared environment of the repo in the current directory (`smol env`)."""
    from runner.env.store import describe
    from runner.gitroot import find_root
    from runner.sandbox.image import resolve_image

    try:
        status, detail, fix = describe(engine, find_root(Path.cwd())[0], resolve_image(settings))
    except (OSError, SmolError) as error:
        return Check("environment", "warn", f"cannot tell ({error})", "smol env show")
    return Check("environment", status, detail, fix)


def _model_check(settings: Any) -> Check:
    from runner.agent.model import ModelUnavailableError, ollama_model_name, preflight

    try:
        preflight(settings, timeout=3)
    except ModelUnavailableError as error:
        message = str(error)
        detail, _, fix = message.partition(": ")
        return Check("model endpoint", "fail", detail, fix)
    from runner.agent.model import context_length, context_warning

    name = ollama_model_name(settings.model_id)
    detail = f"{name} available at {settings.model_api_base}" if name else f"{settings.model_id} (not checked)"
    length = context_length(settings, timeout=3)
    warning = context_warning(settings, length)
    if warning:
        problem, _, fix = warning.partition(": ")
        return Check("model endpoint", "warn", f"{detail}; {problem}", fix)
    if length is not None:
        detail += f"; context {length} tokens, MODEL_NUM_CTX {settings.model_num_ctx}"
    return Check("model endpoint", "ok", detail)


def _phoenix_check(settings: Any) -> Check:
    if not settings.phoenix_enabled:
        return Check("phoenix", "ok", "disabled (PHOENIX_ENABLED=false); traces are kept with run records")
    base = settings.phoenix_endpoint.rsplit("/v1/", 1)[0]
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
            response.read()
        return Check("phoenix", "ok", f"reachable at {base}")
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        return Check("phoenix", "warn", f"not reachable at {base} ({reason}); traces stay local",
                     "docker compose up -d phoenix, or PHOENIX_ENABLED=false")


def render_table(checks: list[Check]) -> list[str]:
    width = max(len(c.name) for c in checks)
    lines = [f"{'CHECK'.ljust(width)}  STATUS  DETAIL"]
    for check in checks:
        lines.append(f"{check.name.ljust(width)}  {check.status.upper():<6}  {check.detail}")
        if check.fix and check.status != "ok":
            lines.append(f"{''.ljust(width)}          fix: {check.fix}")
    return lines
