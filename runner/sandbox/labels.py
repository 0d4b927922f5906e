"""Labels on everything a sandbox creates, and finding what a dead process left behind."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner.sandbox.engine import Engine

SESSION = "smol.sandbox"
OWNER = "smol.owner"
ROLE = "smol.role"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks: with the pid it names a process even after pid reuse."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return fields[19].decode()
    except (OSError, IndexError):
        return None


@lru_cache(maxsize=1)
def owner_label() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid()) or '?'}"


def for_session(session: str) -> dict[str, str]:
    return {SESSION: session, OWNER: owner_label()}


def with_role(base: dict[str, str], role: str) -> dict[str, str]:
    return {**base, ROLE: role}


def owner_alive(owner: str) -> bool:
    """Whether the process that created a sandbox still runs; owners on other hosts are assumed alive."""
    host, _, rest = owner.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return True
    current = _start_time(int(pid_text))
    return current is not None and (started in ("", "?") or current == started)


@dataclass(frozen=True)
class Removed:
    kind: str
    name: str
    session: str


def collect_garbage(engine: Engine, *, everything: bool = False) -> list[Removed]:
    """Remove sandbox containers and volumes whose creating process is gone (or all of them)."""
    from runner.errors import DockerUnavailableError, SandboxError

    removed: list[Removed] = []
    for container in engine.containers(SESSION):
        if not everything and owner_alive(container.labels.get(OWNER, "")):
            continue
        if engine.remove_container(container.id):
            removed.append(Removed("container", container.name, container.labels.get(SESSION, "")))
    for volume in engine.volumes(SESSION):
        if not everything and owner_alive(volume.labels.get(OWNER, "")):
            continue
        try:
            if engine.remove_volume(volume.name):
                removed.append(Removed("volume", volume.name, volume.labels.get(SESSION, "")))
        except DockerUnavailableError:
            raise
        except SandboxError:
            pass  # still in use by a container that is being removed; the next gc takes it
    from runner.sandbox import idmap

    removed += [Removed("idmapped mount", f"{idmap.IDMAP_ROOT}/{session}", session)
                for session in idmap.collect(everything=everything)]
    return removed
