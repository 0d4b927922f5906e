"""uv for the set-up phase: its PyPI wheel carries a static binary, so the host's pip fetches it once (or it comes
from the wheelhouse when air-gapped) and it is mounted read-only into the set-up container; the image never needs
pip, and the binary is not part of the environment image."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from runner.env.key import UV_VERSION
from runner.errors import EnvSetupError

_PLATFORMS = {"x86_64": "manylinux2014_x86_64", "amd64": "manylinux2014_x86_64",
              "aarch64": "manylinux2014_aarch64", "arm64": "manylinux2014_aarch64"}


def cache_dir() -> Path:
    """$XDG_CACHE_HOME/smol (default ~/.cache/smol)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = str(Path.home() / ".cache")
    return Path(base) / "smol"


def _platform_tag() -> str:
    machine = platform.machine().lower()
    if machine not in _PLATFORMS:
        raise EnvSetupError(f"no uv build is known for the machine type {machine!r}; write a .smol/setup.sh that "
                            "installs without uv, or use x86_64/aarch64")
    return _PLATFORMS[machine]


def _wheel_from_wheelhouse(wheelhouse: Path) -> Path | None:
    arch = _platform_tag().split("_", 1)[1]
    for wheel in sorted(wheelhouse.glob(f"uv-{UV_VERSION}-*.whl")):
        if arch in wheel.name and "manylinux" in wheel.name:
            return wheel
    return None


def _download_wheel(into: Path, progress: Callable[[str], None]) -> Path:
    """`pip download uv==X --no-deps --only-binary :all:` with the host's pip (its index, proxy and CA settings)."""
    progress(f"fetching uv {UV_VERSION} with pip (once; cached in {cache_dir()})")
    command = [sys.executable, "-m", "pip", "download", f"uv=={UV_VERSION}", "--no-deps", "--only-binary", ":all:",
               "--platform", _platform_tag(), "--dest", str(into), "--quiet", "--disable-pip-version-check"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise EnvSetupError(f"fetching uv failed ({error}); put uv-{UV_VERSION}-*.whl into SMOL_ENV_WHEELHOUSE") \
            from None
    wheels = sorted(into.glob("uv-*.whl"))
    if done.returncode != 0 or not wheels:
        reason = (done.stderr.strip().splitlines() or ["pip found no wheel"])[-1][:200]
        raise EnvSetupError(f"fetching uv {UV_VERSION} with pip failed ({reason}); check PIP_INDEX_URL and "
                            f"HTTPS_PROXY, or put uv-{UV_VERSION}-*.whl into SMOL_ENV_WHEELHOUSE")
    return wheels[0]


def ensure_uv(wheelhouse: Path | None, progress: Callable[[str], None]) -> Path:
    """The cached uv binary, fetched the first time (from the wheelhouse when one is given)."""
    target = cache_dir() / "uv" / UV_VERSION / "uv"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="smol-uv-", dir=target.parent) as scratch:
        wheel = _wheel_from_wheelhouse(wheelhouse) if wheelhouse is not None else None
        if wheel is None and wheelhouse is not None:
            raise EnvSetupError(f"the wheelhouse {wheelhouse} has no uv-{UV_VERSION}-*manylinux*.whl: add it "
                                f"(pip download uv=={UV_VERSION} --no-deps --only-binary :all: -d {wheelhouse})")
        wheel = wheel or _download_wheel(Path(scratch), progress)
        member = f"uv-{UV_VERSION}.data/scripts/uv"
        try:
            with zipfile.ZipFile(wheel) as archive:
                data = archive.read(member)
        except (OSError, KeyError, zipfile.BadZipFile) as error:
            raise EnvSetupError(f"{wheel.name} holds no {member} ({error})") from None
        staged = Path(scratch) / "uv"
        staged.write_bytes(data)
        staged.chmod(0o755)
        os.replace(staged, target)  # atomic: a concurrent smol sees the whole binary or none
    return target
