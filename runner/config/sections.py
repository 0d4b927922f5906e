"""The settings, one section per component. Each section is a pydantic model with a docstring per field;
`Settings` combines them into the flat contract of the original design (MODEL_ID, SANDBOX_CPUS, ...), so a
component can be typed against its own section while users keep one set of keys."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(value: object) -> int:
    """`2g`, `512m`, `1.5GiB` or a plain byte count -> bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 2g or 512m")  # noqa: TRY004 (pydantic reports only ValueError)
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



_SECTION = ConfigDict(use_attribute_docstrings=True, validate_default=True)


class ModelSection(BaseModel):
    """The model endpoint and how it is called (MODEL_*)."""

    model_config = _SECTION

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

    @field_validator("model_id")
    @classmethod
    def _provider_prefix(cls, value: str) -> str:
        provider, _, name = value.partition("/")
        if not provider or not name:
            raise ValueError("a LiteLLM model id needs its provider prefix: for Ollama, "
                             f"ollama_chat/{value.strip('/') or 'qwen2.5-coder:14b'}")
        return value


class AgentSection(BaseModel):
    """The agent loop, approvals, tests, the policy file and the run store (AGENT_*, APPROVAL_*,
    SMOL_TEST_COMMAND, POLICY_FILE, RUNS_DB)."""

    model_config = _SECTION

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


class TracingSection(BaseModel):
    """Tracing to Phoenix (PHOENIX_*)."""

    model_config = _SECTION

    # --- tracing -----------------------------------------------------------------------------
    phoenix_enabled: bool = True
    """Export OpenTelemetry traces to Phoenix."""
    phoenix_endpoint: str = "http://localhost:6006/v1/traces"
    """OTLP/HTTP endpoint of Phoenix."""
    phoenix_project: str = "smol"
    """Phoenix project the traces go to."""


class OutputSection(BaseModel):
    """Tool input validation and output truncation (VALIDATION_*, TRUNCATION_*), and logging."""

    model_config = _SECTION

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


class SandboxSection(BaseModel):
    """The sandbox: image, mode, limits, network (SANDBOX_*)."""

    model_config = _SECTION

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


class EnvSection(BaseModel):
    """Prepared environments: the set-up phase (SMOL_ENV_*)."""

    model_config = _SECTION

    # --- prepared environments (the set-up phase) -------------------------------------------
    smol_env_setup: Literal["ask", "allow", "deny"] = "ask"
    """Whether a repo's environment may be prepared: its dependencies installed, with network, by its own install
    scripts in a set-up container. ask: on a terminal, the first time for each repo (elsewhere never, with one line
    naming `smol env build`); allow: whenever one is missing (batch, CI); deny: never. A repo's own files can only
    set deny."""
    smol_env_wheelhouse: str = ""
    """A directory of wheels (and uv's wheel): the set-up phase then has no network at all and installs only from
    it, mounted read-only (air-gapped machines)."""
    smol_env_index_url: str = ""
    """Python package index of the set-up phase; empty means UV_INDEX_URL or PIP_INDEX_URL, else PyPI."""
    smol_env_ca_bundle: str = ""
    """CA bundle the set-up phase trusts (TLS-intercepting proxies); empty means SSL_CERT_FILE, else the host's
    /etc/ssl/certs/ca-certificates.crt."""
    smol_env_setup_timeout: float = Field(1800.0, gt=0)
    """Wall-clock limit of one set-up phase, in seconds."""


class Settings(ModelSection, AgentSection, TracingSection, OutputSection, SandboxSection, EnvSection,
               BaseSettings):  # type: ignore[misc]
    """Everything a user can tune, with the defaults documented in `.env.example`."""

    model_config = SettingsConfigDict(
        env_file=None,  # load_settings decides which files are read, and how far each is trusted
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        use_attribute_docstrings=True,
        validate_default=True,
    )
