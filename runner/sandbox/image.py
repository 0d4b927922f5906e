"""The sandbox image: tagged by a hash of its inputs, built only when they change.

The base layer is a Debian root filesystem with every package the sandbox needs. Where a registry is reachable it
can be pulled (`debian:bookworm-slim` + apt); where none is (our own CI), it is made with debootstrap from Debian's
package mirror and imported, so nothing is ever pulled. `Dockerfile.sandbox` then adds our helpers on top.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from runner.errors import ImageError

if TYPE_CHECKING:
    from runner.config import Settings
    from runner.sandbox.engine import Engine

Progress = Callable[[str], None]

IMAGE_REPOSITORY = "smol-sandbox"
BASE_REPOSITORY = "smol-sandbox-base"
DEBIAN_SUITE = "bookworm"
PULL_BASE = "debian:bookworm-slim"
IMAGE_LABEL = "smol.image"


def image_inputs_dir() -> Path:
    """Where Dockerfile.sandbox and sandbox_image/ live: the checkout, or the installed wheel's copy."""
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "Dockerfile.sandbox").is_file() and (checkout / "sandbox_image").is_dir():
        return checkout
    bundled = Path(__file__).resolve().parents[1] / "_image"
    if (bundled / "Dockerfile.sandbox").is_file():
        return bundled
    raise ImageError("the sandbox image sources (Dockerfile.sandbox, sandbox_image/) are missing; reinstall smol")


def _packages(inputs: Path) -> list[str]:
    lines = (inputs / "sandbox_image" / "packages.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _input_files(inputs: Path) -> list[Path]:
    files = [inputs / "Dockerfile.sandbox"]
    files += sorted(p for p in (inputs / "sandbox_image").rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return files


def base_tag(inputs: Path | None = None) -> str:
    inputs = inputs or image_inputs_dir()
    digest = hashlib.sha256(f"{DEBIAN_SUITE}\n{' '.join(_packages(inputs))}".encode()).hexdigest()
    return f"{BASE_REPOSITORY}:{digest[:12]}"


def image_tag(inputs: Path | None = None) -> str:
    """`smol-sandbox:<hash>`, the hash covering the base's package list and every file that goes into the image."""
    inputs = inputs or image_inputs_dir()
    digest = hashlib.sha256(base_tag(inputs).encode())
    for path in _input_files(inputs):
        digest.update(str(path.relative_to(inputs)).encode() + b"\0")
        digest.update(oct(path.stat().st_mode & 0o111).encode())
        digest.update(path.read_bytes())
    return f"{IMAGE_REPOSITORY}:{digest.hexdigest()[:12]}"


def resolve_image(settings: Settings) -> str:
    return settings.sandbox_image or image_tag()


def image_exists(engine: Engine, tag: str) -> bool:
    return engine.image_exists(tag)


def _debian_mirror(settings: Settings) -> str:
    if settings.sandbox_debian_mirror:
        return settings.sandbox_debian_mirror
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources")) + [Path("/etc/apt/sources.list")]
    for source in sources:
        try:
            text = source.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            if words[:1] == ["URIs:"] and len(words) > 1 and "debian" in words[1] and "security" not in words[1]:
                return words[1]
            if words[:1] == ["deb"] and len(words) > 2 and "debian" in line and "security" not in line:
                url = next(w for w in words[1:] if "://" in w)
                return url
    return "http://deb.debian.org/debian"


def _build_base_with_debootstrap(engine: Engine, tag: str, settings: Settings, progress: Progress) -> None:
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise ImageError(
            "no base image can be pulled and debootstrap is missing: install it (apt-get install debootstrap) "
            "or set SANDBOX_BASE_SOURCE=pull where a registry is reachable"
        )
    if os.geteuid() != 0:
        raise ImageError("building the base with debootstrap needs root: run `sudo smol image build` once")
    inputs = image_inputs_dir()
    mirror = _debian_mirror(settings)
    with tempfile.TemporaryDirectory(prefix="smol-rootfs-") as rootfs:
        command = [
            debootstrap, "--variant=minbase", f"--include={','.join(_packages(inputs))}",
            DEBIAN_SUITE, rootfs, mirror,
        ]
        progress(f"debootstrap {DEBIAN_SUITE} from {mirror} (about a minute)")
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert process.stdout is not None
        tail: list[str] = []
        for line in process.stdout:
            line = line.rstrip()
            tail = (tail + [line])[-20:]
            if line.startswith(("I: Retrieving Release", "I: Validating Packages", "I: Installing", "I: Configuring",
                                "I: Base system", "E:", "W: Failure")):
                progress(line)
        if process.wait() != 0:
            raise ImageError("debootstrap failed: " + " | ".join(tail[-3:]))
        for leftover in ("etc/resolv.conf", "etc/hostname"):
            Path(rootfs, leftover).unlink(missing_ok=True)
        shutil.rmtree(Path(rootfs, "var/cache/apt/archives"), ignore_errors=True)
        Path(rootfs, "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
        progress(f"importing the root filesystem as {tag}")
        tar = subprocess.Popen(["tar", "--numeric-owner", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None
        try:
            engine.import_image(tar.stdout, tag,
                                ['CMD ["/bin/bash"]', "ENV LANG=C.UTF-8", f"LABEL {IMAGE_LABEL}=base"])
        finally:
            tar.stdout.close()
            tar.wait()
    if not image_exists(engine, tag):
        raise ImageError(f"importing the base image {tag} failed")


def _build_base_with_pull(engine: Engine, tag: str, progress: Progress) -> None:
    inputs = image_inputs_dir()
    dockerfile = (
        f"FROM {PULL_BASE}\n"
        "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
        f"{' '.join(_packages(inputs))} && rm -rf /var/lib/apt/lists/*\n"
        f"LABEL {IMAGE_LABEL}=base\n"
    )
    _docker_build(engine, {"Dockerfile": dockerfile.encode()}, tag, progress, pull=True)


def _docker_build(
    engine: Engine,
    files: dict[str, bytes],
    tag: str,
    progress: Progress,
    *,
    pull: bool = False,
    buildargs: dict[str, str] | None = None,
    modes: dict[str, int] | None = None,
) -> None:
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = (modes or {}).get(name, 0o644)
            archive.addfile(info, io.BytesIO(data))
    context.seek(0)
    for event in engine.build(context, tag, pull=pull, buildargs=buildargs or {}, labels={IMAGE_LABEL: "sandbox"}):
        if "error" in event:
            raise ImageError(f"building {tag} failed: {str(event['error']).strip()}")
        line = str(event.get("stream", "")).strip()
        if line.startswith("Step "):
            progress(line)


def ensure_base(engine: Engine, settings: Settings, progress: Progress) -> str:
    tag = base_tag()
    if image_exists(engine, tag):
        return tag
    source = settings.sandbox_base_source
    if source == "auto":
        source = "debootstrap" if shutil.which("debootstrap") and os.geteuid() == 0 else "pull"
    if source == "debootstrap":
        _build_base_with_debootstrap(engine, tag, settings, progress)
    else:
        progress(f"building the base from {PULL_BASE} (pulled)")
        try:
            _build_base_with_pull(engine, tag, progress)
        except ImageError as error:
            raise ImageError(
                f"{error}; where no registry is reachable, install debootstrap and run `sudo smol image build`"
            ) from None
    return tag


def build_image(engine: Engine, settings: Settings, progress: Progress, *, force: bool = False) -> str:
    """Build (or find) the sandbox image for this checkout and return its tag."""
    inputs = image_inputs_dir()
    tag = image_tag(inputs)
    if not force and image_exists(engine, tag):
        progress(f"{tag} is up to date")
        return tag
    base = ensure_base(engine, settings, progress)
    files = {"Dockerfile": (inputs / "Dockerfile.sandbox").read_bytes()}
    modes = {"Dockerfile": 0o644}
    for path in _input_files(inputs)[1:]:
        name = str(path.relative_to(inputs))
        files[name] = path.read_bytes()
        modes[name] = 0o755 if path.stat().st_mode & 0o111 else 0o644
    progress(f"building {tag} on {base}")
    _docker_build(engine, files, tag, progress, buildargs={"BASE_IMAGE": base}, modes=modes)
    progress(f"built {tag}")
    return tag
