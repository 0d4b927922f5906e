"""Configuration: one pydantic-settings model read from the environment and `.env`.

The keys of the original design (MODEL_*, AGENT_*, PHOENIX_*, VALIDATION_*, TRUNCATION_*, LOG_LEVEL,
SUPPRESS_WARNINGS) are a contract with users; SANDBOX_* keys belong to the sandbox.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from runner.errors import ConfigError

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(value: object) -> int:
    """`2g`, `512m`, `1.5GiB` or a plain byte count -> bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 2g or 512m")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE_RE.match(str(value))
        if not match:
            raise ValueError("expected a size such as 2g or 512m")
        size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])
    if size <= 0:
        raise ValueError("must be greater than zero")
    return size


ByteSize = Annotated[int, BeforeValidator(parse_size)]


class Settings(BaseSettings):
    """Everything a user can tune, with the defaults documented in `.env.example`."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        use_attribute_docstrings=True,
        validate_default=True,
    )

    # --- model -------------------------------------------------------------------------------
    model_id: str = "ollama_chat/qwen2.5-coder:14b"
    """LiteLLM model identifier."""
    model_api_base: str = "http://localhost:11434"
    """Base URL of the LLM endpoint (Ollama)."""
    model_temperature: float = Field(0.1, ge=0.0, le=2.0)
    """Sampling temperature."""
    model_max_tokens: int = Field(1024, gt=0)
    """Maximum tokens per model response."""
    model_num_ctx: int = Field(16384, gt=0)
    """Context window passed to Ollama; its own default silently truncates long prompts."""
    model_timeout: float = Field(600.0, gt=0)
    """Seconds one model call may take (a 14B model on a CPU is slow); timeouts are retried twice."""

    # --- agent -------------------------------------------------------------------------------
    agent_max_steps: int = Field(25, gt=0)
    """Maximum agent steps before the run stops."""

    approval_non_interactive: Literal["deny", "approve"] = "deny"
    """How approval requests resolve when nobody can be asked (no TTY, --json): never waits for input."""
    smol_test_command: str = ""
    """The command that verifies a change (e.g. `python3 -m pytest -q`); empty means the one detected from the repo's
    files. The agent can run other test commands, but verification only ever uses this one or the detected one."""
    policy_file: str = ""
    """A TOML file of extra command-policy rules; the strictest matching rule wins."""

    runs_db: str = ""
    """SQLite file of run records; empty means $XDG_STATE_HOME/smol/runs.db (~/.local/state/smol/runs.db)."""

    # --- tracing -----------------------------------------------------------------------------
    phoenix_enabled: bool = True
    """Export OpenTelemetry traces to Phoenix."""
    phoenix_endpoint: str = "http://localhost:6006/v1/traces"
    """OTLP/HTTP endpoint of Phoenix."""
    phoenix_project: str = "smol"
    """Phoenix project the traces go to."""

    # --- tool input validation / output truncation --------------------------------------------
    validation_max_chars: int = Field(5000, gt=0)
    """Largest tool argument, in characters."""
    validation_max_lines: int = Field(200, gt=0)
    """Largest tool argument, in lines."""
    validation_max_line_range: int = Field(1000, gt=0)
    """Largest line range one read may ask for."""
    truncation_max_chars: int = Field(3000, gt=0)
    """Tool output above this many characters is truncated (head and tail kept)."""
    truncation_max_lines: int = Field(150, gt=0)
    """Tool output above this many lines is truncated (head and tail kept)."""
    truncation_max_list_items: int = Field(100, gt=0)
    """Lists returned by tools are capped at this many items."""

    # --- logging -----------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    """Python log level."""
    suppress_warnings: bool = True
    """Silence noisy third-party warnings (pydantic, litellm)."""

    # --- sandbox -----------------------------------------------------------------------------
    sandbox_image: str = ""
    """Image to run; empty means the image built from this checkout (tagged by a hash of its inputs)."""
    sandbox_auto_build: bool = True
    """Build the sandbox image when it is missing instead of failing."""
    sandbox_base_source: Literal["auto", "debootstrap", "pull"] = "auto"
    """Where the image's Debian base comes from: debootstrap + import (no registry needed) or a pull."""
    sandbox_debian_mirror: str = ""
    """Debian mirror for debootstrap; empty means the one configured in /etc/apt, else deb.debian.org."""
    sandbox_mode: Literal["auto", "overlay", "copy"] = "auto"
    """How the repo reaches the sandbox: a read-only overlay of the real tree, or a copy; auto picks."""
    sandbox_cpus: float = Field(1.0, gt=0)
    """CPU limit of the sandbox, in cores."""
    sandbox_memory: ByteSize = 4 * 1024**3
    """Memory limit of the sandbox (e.g. 4g). The writable layers count against it."""
    sandbox_pids: int = Field(256, ge=16)
    """Largest number of processes in the sandbox (stops fork bombs)."""
    sandbox_disk: ByteSize = 2 * 1024**3
    """Cap on what the sandbox may write to the repo view (e.g. 2g); must be below SANDBOX_MEMORY."""
    sandbox_tmp_size: ByteSize = 256 * 1024**2
    """Size of /tmp and of $HOME inside the sandbox."""
    sandbox_network: bool = False
    """Give the sandbox network access (off by default)."""
    sandbox_command_timeout: float = Field(300.0, gt=0)
    """Wall-clock limit of one command in the sandbox, in seconds."""
    sandbox_output_limit: ByteSize = 1024**2
    """Bytes of a command's output kept per stream (head and tail); the rest is counted, not kept."""
    sandbox_env_allowlist: str = ""
    """Comma-separated names of host environment variables passed into the sandbox."""
    sandbox_uid: int = Field(1000, gt=0)
    """Unprivileged uid used when the host user is root and the repo is owned by root."""
    sandbox_max_diff_bytes: ByteSize = 256 * 1024**2
    """Largest diff the sandbox hands back; a larger change is refused, never truncated."""

    @property
    def env_allowlist(self) -> list[str]:
        return [name.strip() for name in self.sandbox_env_allowlist.split(",") if name.strip()]


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    key = str(first["loc"][0]).upper() if first["loc"] else "configuration"
    value = first.get("input")
    message = first["msg"].removeprefix("Value error, ")
    return f"{key}={value!r} is not valid ({message}); fix it in the environment or in .env"


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment and `.env`; a bad value is a one-line ConfigError naming the key."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None
    if settings.sandbox_disk >= settings.sandbox_memory:
        raise ConfigError(
            "SANDBOX_DISK must be below SANDBOX_MEMORY (the sandbox's writes are kept in memory); "
            "lower SANDBOX_DISK or raise SANDBOX_MEMORY"
        )
    return settings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
