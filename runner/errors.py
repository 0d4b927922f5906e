"""The project's own exception tree. Foreign exceptions (docker, requests, litellm) are mapped into it once,
at the boundary where they arise; the CLI turns any SmolError into one line and its exit code."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Every exit code smol uses, in one place: the README's table and `smol --help` are rendered from it."""

    OK = 0
    FAILED = 1
    USAGE = 2
    DOCKER = 3
    IMAGE = 4
    SANDBOX = 5
    MODEL = 6
    INCOMPLETE = 7
    REFUSED = 8
    TIMEOUT = 124
    HANGUP = 129
    INTERRUPTED = 130
    TERMINATED = 143


EXIT_CODE_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "success: the run completed, the command exited 0, the checks passed",
    ExitCode.FAILED: "failure: the command or the checks failed, a replay differs (`smol exec` passes its command's "
                     "own code through)",
    ExitCode.USAGE: "bad input: an option, a path or a configuration value; the message names the fix",
    ExitCode.DOCKER: "the Docker engine cannot be reached",
    ExitCode.IMAGE: "the sandbox image is missing or cannot be built",
    ExitCode.SANDBOX: "the sandbox failed to start or an operation inside it failed",
    ExitCode.MODEL: "the model endpoint is unreachable, errored or lacks the model",
    ExitCode.INCOMPLETE: "the agent stopped before completing the task (step limit, loop, failure)",
    ExitCode.REFUSED: "the promotion was refused or conflicted: nothing was written to your tree",
    ExitCode.TIMEOUT: "`smol exec`: the command hit SANDBOX_COMMAND_TIMEOUT",
    ExitCode.HANGUP: "the terminal went away (SIGHUP); the sandbox was removed, the tree is unchanged",
    ExitCode.INTERRUPTED: "Ctrl-C (SIGINT); the sandbox was removed, the tree is unchanged",
    ExitCode.TERMINATED: "SIGTERM; the sandbox was removed, the tree is unchanged",
}


class SmolError(Exception):
    """A failure the user can act on: `str(error)` says what happened and how to fix it."""

    exit_code: int = ExitCode.FAILED

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(SmolError):
    """A configuration value is invalid."""

    exit_code = ExitCode.USAGE


class UsageError(SmolError):
    """Bad input on the command line (a repo path that does not exist, …)."""

    exit_code = ExitCode.USAGE


class DockerUnavailableError(SmolError):
    """The Docker engine cannot be reached."""

    exit_code = ExitCode.DOCKER


class ImageError(SmolError):
    """The sandbox image is missing or cannot be built."""

    exit_code = ExitCode.IMAGE


class SandboxError(SmolError):
    """The sandbox failed to start or an operation inside it failed."""

    exit_code = ExitCode.SANDBOX


class SandboxPathError(SandboxError):
    """A path given to the sandbox escapes the repository."""

    exit_code = ExitCode.USAGE


class EnvSetupError(ImageError):
    """A repo's prepared environment could not be built (its set-up phase failed, or uv could not be fetched)."""
