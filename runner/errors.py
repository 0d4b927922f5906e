"""The project's own exception tree. Foreign exceptions (docker, requests, litellm) are mapped into it once,
at the boundary where they arise; the CLI turns any SmolError into one line and its exit code."""

from __future__ import annotations


class SmolError(Exception):
    """A failure the user can act on: `str(error)` says what happened and how to fix it."""

    exit_code: int = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(SmolError):
    """A configuration value is invalid."""

    exit_code = 2


class UsageError(SmolError):
    """Bad input on the command line (a repo path that does not exist, …)."""

    exit_code = 2


class DockerUnavailableError(SmolError):
    """The Docker engine cannot be reached."""

    exit_code = 3


class ImageError(SmolError):
    """The sandbox image is missing or cannot be built."""

    exit_code = 4


class SandboxError(SmolError):
    """The sandbox failed to start or an operation inside it failed."""

    exit_code = 5


class SandboxPathError(SandboxError):
    """A path given to the sandbox escapes the repository."""

    exit_code = 2
