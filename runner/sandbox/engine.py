"""Reaching the Docker engine: one place that maps docker-py's failures into our own errors."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from runner.errors import DockerUnavailableError

if TYPE_CHECKING:
    from docker import DockerClient


def connect() -> DockerClient:
    """A client for whatever engine docker-py reaches (DOCKER_HOST honoured), checked with a ping."""
    import docker
    import docker.errors
    import requests.exceptions

    where = os.environ.get("DOCKER_HOST") or "the local Docker socket"
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as error:
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise DockerUnavailableError(
            f"Docker is not reachable at {where} ({reason}): start the Docker engine, "
            "or point DOCKER_HOST at a running one"
        ) from None
    return client


@dataclass
class EngineFacts:
    """What the sandbox needs to know about the engine to pick a mode."""

    client: DockerClient

    @cached_property
    def info(self) -> dict[str, Any]:
        return self.client.info()

    @property
    def is_remote(self) -> bool:
        host = os.environ.get("DOCKER_HOST", "")
        return bool(host) and not host.startswith(("unix://", "npipe://"))

    @property
    def is_rootless(self) -> bool:
        return any("rootless" in str(option) for option in self.info.get("SecurityOptions") or [])

    @property
    def is_desktop(self) -> bool:
        return "Docker Desktop" in str(self.info.get("OperatingSystem", ""))

    def overlay_obstacle(self) -> str | None:
        """Why the daemon cannot mount an overlay of a host path, or None when it can."""
        if self.is_remote:
            return "the engine is remote (DOCKER_HOST) and cannot see host paths"
        if self.is_desktop:
            return "Docker Desktop runs the engine in a VM that cannot overlay host paths"
        if self.is_rootless:
            return "the engine is rootless"
        return None
