"""The Docker engine facade: the one module of smol that imports docker-py (and requests).

Everything the sandbox, the image builder, `smol gc` and `smol doctor` ask of the engine goes through `Engine`, and
every failure of docker-py, requests or the socket under them is mapped here, once, into runner.errors:

- the engine is unreachable or went away (a refused or reset connection, a timeout) → DockerUnavailableError (3);
- the engine answered with an error → SandboxError (5), or ImageError (4) for image operations.

The mapping picks the target by the *source* exception's MRO (docker-py's APIError is also a requests HTTPError,
so the most specific source class wins). Callers see container and volume names or ids, never docker-py objects.
"""

from __future__ import annotations

import base64
import json
import os
import select
import socket
import struct
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

from runner.errors import DockerUnavailableError, ImageError, SandboxError, SmolError

if TYPE_CHECKING:
    from docker import DockerClient

FIX = "start the Docker engine, or point DOCKER_HOST at a running one"


def _where() -> str:
    return os.environ.get("DOCKER_HOST") or "the local Docker socket"


def _first_line(error: BaseException) -> str:
    """The engine's own words (docker-py's `explanation`), one line, without the HTTP or tar wrapping."""
    text = str(getattr(error, "explanation", None) or error).strip()
    text = text.replace("Error processing tar file(exit status 1): ", "")
    return (text.splitlines()[0][:300] if text else type(error).__name__).strip()


def _root_cause(error: BaseException, depth: int = 0) -> str:
    """Why a connection failed, in the socket's words ("Connection refused"), dug out of requests' and urllib3's
    wrapping; their own text when there is no socket error inside."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    if depth < 6:
        inner = [arg for arg in error.args if isinstance(arg, BaseException)]
        inner += [link for link in (error.__cause__, error.__context__) if link is not None]
        for candidate in inner:
            found = _root_cause(candidate, depth + 1)
            if found:
                return found
    return "" if depth else _first_line(error)


def _mapping() -> list[tuple[type[BaseException], str]]:
    """Source class → kind, most specific sources first. Built on first use: importing docker costs ~0.3 s."""
    import docker.errors
    import requests.exceptions

    return [
        (docker.errors.ImageNotFound, "api"),
        (docker.errors.NotFound, "api"),
        (docker.errors.APIError, "api"),
        (docker.errors.DockerException, "gone"),
        (requests.exceptions.RequestException, "gone"),
        (OSError, "gone"),  # a reset or refused socket, a broken pipe, a socket timeout
    ]


_TABLE: list[tuple[type[BaseException], str]] = []


def _kind(error: BaseException) -> str | None:
    if not _TABLE:
        _TABLE.extend(_mapping())
    table = dict(_TABLE)
    for cls in type(error).__mro__:
        if cls in table:
            return table[cls]
    return None


@contextmanager
def engine_errors(what: str, *, failure: type[SmolError] = SandboxError) -> Iterator[None]:
    """Map whatever docker-py, requests or the socket raise while doing `what` into our own errors, once.

    `failure` is the class for an error the engine *answered* with. Our own errors and anything unknown pass
    through untouched; the original stays the `__cause__`.
    """
    try:
        yield
    except SmolError:
        raise
    except Exception as error:
        kind = _kind(error)
        if kind is None:
            raise
        if kind == "gone":
            raise DockerUnavailableError(
                f"the Docker engine at {_where()} stopped answering while {what} ({_root_cause(error)}): {FIX}, "
                "then run `smol gc`"
            ) from error
        raise failure(f"{what} failed: {_first_line(error)}") from error


@dataclass(frozen=True)
class Mount:
    """A volume or bind mount of a container (docker-py's `docker.types.Mount`, without docker-py)."""

    target: str
    source: str
    type: str = "volume"
    read_only: bool = False
    no_copy: bool = False


@dataclass(frozen=True)
class Labelled:
    """A container or volume found by label: its id (a volume's is its name), name and labels."""

    id: str
    name: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Image:
    """A local image: id, tags (none for a dangling one), labels, creation time (ISO 8601, UTC) and size."""

    id: str
    tags: list[str]
    labels: dict[str, str]
    created: str
    size: int


def connect() -> Engine:
    """The engine docker-py reaches (DOCKER_HOST honoured), checked with a ping."""
    import docker

    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as error:
        if _kind(error) is None:
            raise
        raise DockerUnavailableError(f"Docker is not reachable at {_where()} ({_root_cause(error)}): {FIX}") \
            from error
    return Engine(client)


class Engine:
    """The operations smol needs from the engine, each one mapped into runner.errors."""

    def __init__(self, client: DockerClient) -> None:
        self._client = client
        self._api = client.api

    def close(self) -> None:
        self._client.close()

    @property
    def base_url(self) -> str:
        return str(self._api.base_url)

    # ------------------------------------------------------------------ the engine itself
    def info(self) -> dict[str, Any]:
        with engine_errors("asking the engine for its configuration"):
            return dict(self._client.info())

    def version(self) -> dict[str, Any]:
        with engine_errors("asking the engine for its version"):
            return dict(self._client.version())

    # ------------------------------------------------------------------ volumes
    def create_volume(self, name: str, labels: dict[str, str], driver_opts: dict[str, str] | None = None) -> str:
        """Create a `local` volume; returns its mountpoint on the engine's host."""
        with engine_errors(f"creating the volume {name}"):
            volume = self._client.volumes.create(name, driver="local", driver_opts=driver_opts or {}, labels=labels)
            return str(volume.attrs.get("Mountpoint") or self._api.inspect_volume(name)["Mountpoint"])

    def remove_volume(self, name: str) -> bool:
        """False when there was no such volume; a SandboxError when it is still in use."""
        import docker.errors

        with engine_errors(f"removing the volume {name}"):
            try:
                self._api.remove_volume(name, force=True)
            except docker.errors.NotFound:
                return False
        return True

    def volumes(self, label: str) -> list[Labelled]:
        with engine_errors("listing sandbox volumes"):
            found = self._api.volumes(filters={"label": label}).get("Volumes") or []
        return [Labelled(v["Name"], v["Name"], dict(v.get("Labels") or {})) for v in found]

    # ------------------------------------------------------------------ containers
    def create_container(self, image: str, command: list[str], *, name: str, labels: dict[str, str],
                         mounts: Iterable[Mount] = (), **options: Any) -> str:
        """Create (not start) a container; `options` are docker-py's `containers.create` keywords. Returns its id."""
        from docker.types import Mount as DockerMount

        docker_mounts = [DockerMount(m.target, m.source, type=m.type, read_only=m.read_only, no_copy=m.no_copy)
                         for m in mounts]
        with engine_errors("creating the sandbox"):
            container = self._client.containers.create(image, command, name=name, labels=labels,
                                                       mounts=docker_mounts, **options)
        return str(container.id)

    def start_container(self, container: str, what: str = "starting the sandbox") -> None:
        with engine_errors(what):
            self._api.start(container)

    def run(self, image: str, command: list[str], *, name: str, labels: dict[str, str],
            network_mode: str = "none", mounts: Iterable[Mount] = (), environment: dict[str, str] | None = None,
            **options: Any) -> str:
        """Create and start a container with the given network mode, mounts and environment (e.g. a set-up phase
        that installs dependencies with network, before `commit`). Returns its id; remove it when done."""
        container = self.create_container(image, command, name=name, labels=labels, mounts=mounts,
                                          network_mode=network_mode, environment=environment or {}, **options)
        try:
            self.start_container(container, f"starting the container {name}")
        except SandboxError:
            self.remove_container(container)
            raise
        return container

    def restart_container(self, container: str, timeout: int = 1) -> None:
        with engine_errors("restarting the sandbox"):
            self._api.restart(container, timeout=timeout)

    def remove_container(self, container: str) -> bool:
        """Remove, forcibly; False when there was no such container."""
        import docker.errors

        with engine_errors(f"removing the container {container[:12]}"):
            try:
                self._api.remove_container(container, force=True)
            except docker.errors.NotFound:
                return False
        return True

    def containers(self, labels: str | list[str]) -> list[Labelled]:
        """Every container (running or not) carrying these labels (`key` or `key=value`)."""
        with engine_errors("listing sandbox containers"):
            found = self._api.containers(all=True, filters={"label": labels})
        return [Labelled(c["Id"], (c.get("Names") or ["/?"])[0].lstrip("/"), dict(c.get("Labels") or {}))
                for c in found]

    def commit(self, container: str, tag: str, changes: list[str] | None = None) -> str:
        """Save a container's filesystem as a local image (no registry involved). Returns the image id."""
        repository, _, version = tag.partition(":")
        with engine_errors(f"saving the image {tag}", failure=ImageError):
            result = self._api.commit(container, repository=repository, tag=version or None, changes=changes)
        return str(result.get("Id", ""))

    # ------------------------------------------------------------------ archives
    def put_archive(self, container: str, path: str, data: bytes | IO[bytes], what: str) -> None:
        """Extract a tar into a container's path; any refusal (a bad member, a full volume) says `what` failed."""
        with engine_errors(what):
            ok = self._api.put_archive(container, path, data)
        if not ok:
            raise SandboxError(f"{what} failed: the engine refused the archive for {path}")

    def get_archive(self, container: str, path: str) -> bytes:
        """A tar of a container's path, in memory."""
        with engine_errors(f"reading {path} from the sandbox"):
            stream, _ = self._api.get_archive(container, path)
            return b"".join(stream)

    def path_stat(self, container: str, path: str) -> tuple[int, int] | None:
        """(mtime in ns, mode) of a path as the engine sees it in a container, or None when it cannot say."""
        with engine_errors("inspecting the sandbox"):
            response = self._api.head(self._api._url("/containers/{0}/archive", container), params={"path": path})
        if not response.ok or "X-Docker-Container-Path-Stat" not in response.headers:
            return None
        try:
            seen = json.loads(base64.b64decode(response.headers["X-Docker-Container-Path-Stat"]))
            whole, _, fraction = str(seen["mtime"]).partition(".")
            digits = "".join(ch for ch in fraction if ch.isdigit())
            zone = fraction[len(digits):] or "Z"
            moment = datetime.fromisoformat(whole + zone.replace("Z", "+00:00"))
            return int(moment.timestamp()) * 10**9 + int((digits + "0" * 9)[:9]), int(seen["mode"])
        except (ValueError, KeyError, TypeError):
            return None

    # ------------------------------------------------------------------ exec
    def exec_create(self, container: str, argv: list[str], *, user: str, environment: dict[str, str],
                    workdir: str, stdin: bool = False) -> str:
        with engine_errors("running a command in the sandbox"):
            created = self._api.exec_create(container, argv, stdout=True, stderr=True, stdin=stdin, tty=False,
                                            user=user, environment=environment, workdir=workdir)
        return str(created["Id"])

    def exec_stream(self, exec_id: str, *, stdin: bytes | None, deadline: float) -> Iterator[tuple[int, bytes]]:
        """Start an exec and yield its (stream, chunk) frames until it ends; TimeoutError once `deadline`
        (time.monotonic) passes. The socket is closed on every path."""
        what = "running a command in the sandbox"
        with engine_errors(what):
            sock = self._api.exec_start(exec_id, socket=True)
        raw: socket.socket = getattr(sock, "_sock", sock)
        try:
            if stdin is not None:
                try:
                    raw.sendall(stdin)
                    raw.shutdown(socket.SHUT_WR)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the command ended without reading it all; its output and status still follow
            pending = bytearray()
            while True:
                while len(pending) >= 8:  # Docker's multiplexing: 8-byte headers (stream, 0, 0, 0, size)
                    stream, size = struct.unpack(">BxxxL", pending[:8])
                    if len(pending) < 8 + size:
                        break
                    payload = bytes(pending[8:8 + size])
                    del pending[:8 + size]
                    yield stream, payload
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                with engine_errors(what):
                    ready, _, _ = select.select([raw], [], [], min(remaining, 1.0))
                    if not ready:
                        continue
                    chunk = raw.recv(1 << 16)
                if not chunk:
                    return
                pending += chunk
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def exec_exit_code(self, exec_id: str, *, wait_s: float = 2.0) -> int | None:
        """The exit status of a finished exec (waiting up to `wait_s` for it to be reported), else None."""
        for _ in range(max(1, int(wait_s / 0.02))):
            with engine_errors("running a command in the sandbox"):
                state = self._api.exec_inspect(exec_id)
            if not state.get("Running") and state.get("ExitCode") is not None:
                return int(state["ExitCode"])
            time.sleep(0.02)
        return None

    # ------------------------------------------------------------------ images
    def image_exists(self, tag: str) -> bool:
        import docker.errors

        with engine_errors(f"looking up the image {tag}", failure=ImageError):
            try:
                self._api.inspect_image(tag)
            except docker.errors.ImageNotFound:
                return False
        return True

    def image_id(self, tag: str) -> str:
        """The id (sha256:…) of a local image; an ImageError when there is none."""
        with engine_errors(f"looking up the image {tag}", failure=ImageError):
            return str(self._api.inspect_image(tag)["Id"])

    def image_tags(self, repository: str) -> list[str]:
        with engine_errors(f"listing the images of {repository}", failure=ImageError):
            return [tag for image in self._api.images(name=repository) for tag in image.get("RepoTags") or []]

    def images(self, label: str) -> list[Image]:
        """Every local image carrying this label (`key` or `key=value`)."""
        with engine_errors("listing images", failure=ImageError):
            found = self._api.images(filters={"label": label})
        return [Image(str(i["Id"]), [t for t in i.get("RepoTags") or [] if t != "<none>:<none>"],
                      dict(i.get("Labels") or {}),
                      datetime.fromtimestamp(int(i.get("Created") or 0), tz=UTC).isoformat(), int(i.get("Size") or 0))
                for i in found]

    def remove_image(self, tag: str) -> bool:
        """Remove a local image by tag or id; False when there was none, an ImageError when a container uses it."""
        import docker.errors

        with engine_errors(f"removing the image {tag}", failure=ImageError):
            try:
                self._api.remove_image(tag)
            except docker.errors.ImageNotFound:
                return False
        return True

    def build(self, context: IO[bytes], tag: str, *, pull: bool, buildargs: dict[str, str],
              labels: dict[str, str]) -> Iterator[dict[str, Any]]:
        """Build an image from a tar context; yields the engine's decoded progress events."""
        what = f"building {tag}"
        with engine_errors(what, failure=ImageError):
            stream = self._api.build(fileobj=context, custom_context=True, tag=tag, pull=pull, rm=True,
                                     forcerm=True, decode=True, buildargs=buildargs, labels=labels)
            yield from stream

    def import_image(self, data: IO[bytes], tag: str, changes: list[str]) -> None:
        repository, _, version = tag.partition(":")
        with engine_errors(f"importing the image {tag}", failure=ImageError):
            self._api.import_image_from_stream(data, repository=repository, tag=version, changes=changes)
