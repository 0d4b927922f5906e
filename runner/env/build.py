"""The set-up phase: a container of the sandbox image, network on (or, with a wheelhouse, none at all), runs the
plan over a copy of the repo, then is frozen with `docker commit` into `smol-env:<repo>-<hash>`.

What it never does: write the user's tree (it works on a copy, deleted before the commit), keep the host's proxy,
index or CA settings in the image (they are passed per command, never to the container, so the commit cannot
carry them), or run as root beyond the apt step that adds a missing toolchain.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from runner.env.key import LABEL, LABEL_BASE, LABEL_REPO, LABEL_SUMMARY, env_tag, input_hash
from runner.env.plan import UV_DIR, EnvPlan, plan_for
from runner.env.tools import ensure_uv
from runner.errors import EnvSetupError, SmolError

if TYPE_CHECKING:
    from runner.config import Settings
    from runner.sandbox.engine import Engine

Progress = Callable[[str], None]

SETUP_USER = "65534:65534"
"""Who the set-up scripts run as: nobody, never the host user and never root (apt excepted)."""
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"
WHEELHOUSE = "/opt/smol/wheelhouse"
_PROXY_NAMES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY")
_APT_CAPS = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETUID", "SETGID"]
"""What dpkg needs to unpack a package and apt to drop to its _apt user; added only when a toolchain is missing."""
_TAIL_LINES = 25


@dataclass(frozen=True)
class Built:
    tag: str
    plan: EnvPlan
    cached: bool
    seconds: float


def ca_bundle(settings: Settings) -> Path | None:
    """The CA bundle the set-up phase trusts: SMOL_ENV_CA_BUNDLE, else SSL_CERT_FILE, else the system bundle."""
    for candidate in (settings.smol_env_ca_bundle, os.environ.get("SSL_CERT_FILE", ""), HOST_CA):
        if candidate and Path(candidate).is_file():
            return Path(candidate).resolve()
    if settings.smol_env_ca_bundle:
        raise EnvSetupError(f"SMOL_ENV_CA_BUNDLE={settings.smol_env_ca_bundle} is not a file")
    return None


def setup_environment(plan: EnvPlan, settings: Settings, *, has_ca: bool) -> dict[str, str]:
    """The variables of every set-up command: the image's own, uv's, and the host's proxy and index settings."""
    env = {key: value for key, value in plan.image_env.items() if key not in ("GOPROXY",)}
    env.update(PATH=f"{UV_DIR}:{plan.image_env.get('PATH', '/usr/bin:/bin')}", HOME="/tmp/home", LANG="C.UTF-8",
               UV_CACHE_DIR="/tmp/uv-cache", UV_PYTHON_DOWNLOADS="never", UV_LINK_MODE="copy",
               UV_NO_PROGRESS="1", UV_COMPILE_BYTECODE="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               DEBIAN_FRONTEND="noninteractive",
               PYTHONDONTWRITEBYTECODE="1")
    for name in _PROXY_NAMES:
        for spelled in (name, name.lower()):
            if os.environ.get(spelled):
                env[spelled] = os.environ[spelled]
    if has_ca:
        env.update(SSL_CERT_FILE=HOST_CA, UV_NATIVE_TLS="1", PIP_CERT=HOST_CA, REQUESTS_CA_BUNDLE=HOST_CA,
                   CURL_CA_BUNDLE=HOST_CA, GIT_SSL_CAINFO=HOST_CA, NODE_EXTRA_CA_CERTS=HOST_CA)
    if settings.smol_env_wheelhouse:
        env.update(UV_NO_INDEX="1", UV_FIND_LINKS=WHEELHOUSE, PIP_NO_INDEX="1", PIP_FIND_LINKS=WHEELHOUSE,
                   UV_OFFLINE="1")
        return env
    index = settings.smol_env_index_url or os.environ.get("UV_INDEX_URL") or os.environ.get("PIP_INDEX_URL", "")
    if index:
        env.update(UV_INDEX_URL=index, PIP_INDEX_URL=index)
    extra = os.environ.get("UV_EXTRA_INDEX_URL") or os.environ.get("PIP_EXTRA_INDEX_URL", "")
    if extra:
        env.update(UV_EXTRA_INDEX_URL=extra, PIP_EXTRA_INDEX_URL=extra)
    links = os.environ.get("UV_FIND_LINKS") or os.environ.get("PIP_FIND_LINKS", "")
    if links.startswith(("http://", "https://")):  # a local directory of the host is not visible in there
        env.update(UV_FIND_LINKS=links, PIP_FIND_LINKS=links)
    return env


def _owned_dirs(paths: tuple[str, ...]) -> bytes:
    """A tar of empty directories owned by the set-up user (the engine creates them with that owner)."""
    buffer = io.BytesIO()
    uid = int(SETUP_USER.split(":")[0])
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path in paths:
            entry = tarfile.TarInfo(path.lstrip("/"))
            entry.type, entry.mode, entry.uid, entry.gid = tarfile.DIRTYPE, 0o755, uid, uid
            archive.addfile(entry)
    return buffer.getvalue()


def _repo_copy(root: Path, into: IO[bytes]) -> IO[bytes]:
    """The repo as a tar owned by the set-up user: regular files, directories and symlinks (never followed),
    written to a temporary file (a large repo must not be held in memory)."""
    uid = int(SETUP_USER.split(":")[0])

    def own(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if not (info.isfile() or info.isdir() or info.issym()):
            return None  # FIFOs, sockets, devices: nothing an installer needs
        info.uid = info.gid = uid
        info.uname = info.gname = ""
        return info

    with tarfile.open(fileobj=into, mode="w") as archive:
        archive.add(str(root), arcname=".", recursive=True, filter=own)
    into.seek(0)
    return into


class _Run:
    """One set-up container: commands streamed to progress, a deadline for the whole phase."""

    def __init__(self, engine: Engine, container: str, deadline: float, progress: Progress) -> None:
        self.engine, self.container, self.deadline, self.progress = engine, container, deadline, progress
        self.tail: list[str] = []

    def run(self, script: str, user: str, env: dict[str, str], step: str) -> None:
        exec_id = self.engine.exec_create(self.container, ["bash", "-c", script], user=user, environment=env,
                                          workdir="/workspace")
        pending = b""
        try:
            for _stream, chunk in self.engine.exec_stream(exec_id, stdin=None, deadline=self.deadline):
                pending += chunk
                *lines, rest = pending.split(b"\n")
                pending = rest
                for line in lines:
                    self._line(line.decode("utf-8", "replace").rstrip())
        except TimeoutError:
            raise EnvSetupError(f"the set-up phase ({step}) ran past SMOL_ENV_SETUP_TIMEOUT; raise it, or check "
                                "the network") from None
        if pending:
            self._line(pending.decode("utf-8", "replace").rstrip())
        code = self.engine.exec_exit_code(exec_id)
        if code != 0:
            last = " | ".join(line for line in self.tail[-6:] if line)
            raise EnvSetupError(f"the set-up phase failed ({step}, exit {code}): {last[-900:]}; fix the repo's "
                                "dependencies or write .smol/setup.sh, then `smol env build`")

    def _line(self, line: str) -> None:
        self.tail = (self.tail + [line])[-_TAIL_LINES:]
        if line.startswith("+ ") or "error" in line.lower():
            self.progress(f"set-up: {line[:200]}")


def build_environment(engine: Engine, root: Path, settings: Settings, base_image: str, progress: Progress, *,
                      force: bool = False) -> Built:
    """Build (or find) the environment of the repo at `root` on `base_image`; returns its tag."""
    started = time.monotonic()
    plan = plan_for(root)
    if not plan.declares_dependencies:
        raise EnvSetupError(f"{root} declares no dependencies (no pyproject.toml, setup.py, requirements*.txt, "
                            "uv.lock, go.mod or .smol/setup.sh): its tests run on the sandbox image as it is")
    base_id = engine.image_id(base_image)
    tag = env_tag(root, plan, base_id)
    if not force and engine.image_exists(tag):
        return Built(tag, plan, True, time.monotonic() - started)
    wheelhouse = Path(settings.smol_env_wheelhouse).resolve() if settings.smol_env_wheelhouse else None
    if wheelhouse is not None and not wheelhouse.is_dir():
        raise EnvSetupError(f"SMOL_ENV_WHEELHOUSE={settings.smol_env_wheelhouse} is not a directory")
    from runner.sandbox.engine import Mount

    mounts = []
    if plan.needs_uv:
        mounts.append(Mount(f"{UV_DIR}/uv", str(ensure_uv(wheelhouse, progress)), type="bind", read_only=True))
    ca = ca_bundle(settings)
    if ca is not None:
        mounts.append(Mount(HOST_CA, str(ca), type="bind", read_only=True))
    if wheelhouse is not None:
        mounts.append(Mount(WHEELHOUSE, str(wheelhouse), type="bind", read_only=True))
    progress(f"preparing the environment {tag}: " + "; ".join(plan.summary) +
             (" (air-gapped: wheelhouse only)" if wheelhouse else " (network on for this phase only)"))
    from runner.sandbox.labels import for_session, with_role

    session = uuid.uuid4().hex[:12]
    container = engine.run(
        base_image, ["sleep", "infinity"], name=f"smol-{session}-setup",
        labels=with_role(for_session(session), "setup"), network_mode="none" if wheelhouse else "bridge",
        mounts=mounts, environment={}, user=SETUP_USER, detach=True, init=True, cap_drop=["ALL"],
        cap_add=_APT_CAPS if plan.root_script else [], security_opt=["no-new-privileges"],
        pids_limit=max(settings.sandbox_pids, 512), mem_limit=settings.sandbox_memory,
        memswap_limit=settings.sandbox_memory, nano_cpus=int(settings.sandbox_cpus * 1e9), working_dir="/",
    )
    try:
        engine.put_archive(container, "/", _owned_dirs(plan.owned_dirs), "preparing the set-up directories")
        with tempfile.TemporaryFile(prefix="smol-setup-") as scratch:
            engine.put_archive(container, "/workspace", _repo_copy(root, scratch),
                               "copying the repo into the set-up container")
        env = setup_environment(plan, settings, has_ca=ca is not None)
        runner = _Run(engine, container, time.monotonic() + settings.smol_env_setup_timeout, progress)
        if plan.root_script:
            runner.run("set -eux\n" + plan.root_script, "0:0", env, "installing the toolchain")
        runner.run("mkdir -p /tmp/home\n" + plan.user_script, SETUP_USER, env, "installing the dependencies")
        # The copy of the repo goes: the sandbox mounts the real tree at /workspace, and the image must not carry
        # a stale snapshot of the source. Caches in /tmp go too.
        runner.run("find /workspace /tmp -mindepth 1 -delete 2>/dev/null || true", SETUP_USER, {}, "cleaning up")
        changes = [f"ENV {key}={json.dumps(value)}" for key, value in sorted(plan.image_env.items())]
        labels = {LABEL: input_hash(root, plan, base_id), LABEL_REPO: str(root), LABEL_BASE: base_id,
                  LABEL_SUMMARY: "; ".join(plan.summary)}
        # The set-up container's own labels would be inherited: an image is no sandbox, and none of gc's business.
        labels.update({"smol.sandbox": "", "smol.owner": "", "smol.role": "env", "smol.image": "env"})
        changes += [f"LABEL {key}={json.dumps(value)}" for key, value in labels.items()]
        changes += [f"USER {SETUP_USER}", "WORKDIR /workspace", 'CMD ["sleep", "infinity"]']
        engine.commit(container, tag, changes)
    finally:
        try:
            engine.remove_container(container)
        except SmolError:
            pass  # `smol gc` finds it by its label
    seconds = time.monotonic() - started
    progress(f"environment {tag} ready ({seconds:.0f}s)")
    return Built(tag, plan, False, seconds)
