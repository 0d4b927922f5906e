"""Configuration: one pydantic-settings model, read from flags, the environment, the user's config file and `.env`.

The keys of the original design (MODEL_*, AGENT_*, PHOENIX_*, VALIDATION_*, TRUNCATION_*, LOG_LEVEL,
SUPPRESS_WARNINGS) are a contract with users; SANDBOX_* keys belong to the sandbox.

Precedence, highest first: overrides (flags) > the environment > the repo's own files (`.smol.toml` or
`[tool.smol]` at its git root, and a `.env` in the current directory that lies in the repo) > the user config file
($XDG_CONFIG_HOME/smol/config.env, default ~/.config/smol/config.env) > a trusted `.env` > defaults.
The repo's files are untrusted input, like the model's output: they may only tighten containment (see
REPO_FILE_RULES below); every value they try to loosen is ignored with a warning.
"""

from __future__ import annotations

import logging
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from runner.errors import ConfigError

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


class Settings(BaseSettings):
    """Everything a user can tune, with the defaults documented in `.env.example`."""

    model_config = SettingsConfigDict(
        env_file=None,  # load_settings decides which files are read, and how far each is trusted
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

    @field_validator("model_id")
    @classmethod
    def _provider_prefix(cls, value: str) -> str:
        provider, _, name = value.partition("/")
        if not provider or not name:
            raise ValueError("a LiteLLM model id needs its provider prefix: for Ollama, "
                             f"ollama_chat/{value.strip('/') or 'qwen2.5-coder:14b'}")
        return value

    @property
    def env_allowlist(self) -> list[str]:
        return [name.strip() for name in self.sandbox_env_allowlist.split(",") if name.strip()]


log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------- what a repo file may set
# A `.env` inside the repo under work (or inside any git work tree) was written by whoever wrote the repo. It is
# read, but a value from it is taken only when it is at least as strict as the value that applies without it
# (the default, since a key set by a trusted source is never taken from the repo file at all):
#   FIXED   never changed from a repo file (any different value is ignored)
#   LOWER   a smaller number only (a limit)
#   OFF     may only turn the switch off
#   DENY    may only be set to "deny"
#   SUBSET  a comma-separated list: may only remove names
#   VERBOSE may only make smol's own logging more verbose (never hide its warnings)
#   FREE    any value: it changes no containment
# A key missing from this table is FIXED (fail closed); a test requires every key to be listed.
FIXED, LOWER, OFF, DENY, SUBSET, VERBOSE, FREE = "fixed", "lower", "off", "deny", "subset", "verbose", "free"

REPO_FILE_RULES: dict[str, tuple[str, str]] = {
    # key                          rule     why
    "model_id":                  (FIXED,   ("the LiteLLM provider prefix picks where the source is sent and which "
                                           "host credentials (OPENAI_API_KEY, AWS_*) go with it")),
    "model_api_base":            (FIXED,   "the prompts carry the source: a repo must not redirect them"),
    "model_temperature":         (FREE,    "sampling only"),
    "model_max_tokens":          (LOWER,   "work done by the user's model server"),
    "model_num_ctx":             (LOWER,   "Ollama allocates host memory for the whole window"),
    "model_timeout":             (LOWER,   "how long the host waits"),
    "agent_max_steps":           (LOWER,   "bounds how many commands the agent runs"),
    "approval_non_interactive":  (DENY,    "approve would let commands run that need a human's yes"),
    "smol_test_command":         (FREE,    ("the repo owner knows its tests; it only ever runs in the sandbox, and "
                                           "the file is read without ${VAR} expansion, so no host value reaches it")),
    "policy_file":               (FIXED,   ("a path read on the host: could name any host file or a FIFO; the "
                                           "policy's own rules may only tighten, but where they come from is the "
                                           "user's choice")),
    "runs_db":                   (FIXED,   "where records holding the source are written on the host"),
    "phoenix_enabled":           (OFF,     "traces carry the source"),
    "phoenix_endpoint":          (FIXED,   "traces carry the source: a repo must not redirect them"),
    "phoenix_project":           (FREE,    "a label on the user's own Phoenix"),
    "validation_max_chars":      (LOWER,   "a limit on the model's tool arguments"),
    "validation_max_lines":      (LOWER,   "a limit on the model's tool arguments"),
    "validation_max_line_range": (LOWER,   "a limit on the model's tool arguments"),
    "truncation_max_chars":      (LOWER,   "a limit on tool output"),
    "truncation_max_lines":      (LOWER,   "a limit on tool output"),
    "truncation_max_list_items": (LOWER,   "a limit on tool output"),
    "log_level":                 (VERBOSE, "a quieter level would hide smol's warnings from the user"),
    "suppress_warnings":         (OFF,     "turning it on would hide warnings from the user"),
    "sandbox_image":             (FIXED,   "the image decides everything the sandbox is"),
    "sandbox_auto_build":        (OFF,     "off only makes a missing image an error"),
    "sandbox_base_source":       (FIXED,   "decides what the image is built from"),
    "sandbox_debian_mirror":     (FIXED,   "decides what is installed into the image"),
    "sandbox_mode":              (FREE,    ("copy and overlay give the same read-only view of the same repo, and "
                                           "auto may pick either; a forced overlay that is not possible is an "
                                           "error, never a weaker mount")),
    "sandbox_cpus":              (LOWER,   "a limit"),
    "sandbox_memory":            (LOWER,   "a limit"),
    "sandbox_pids":              (LOWER,   "a limit"),
    "sandbox_disk":              (LOWER,   "a limit"),
    "sandbox_tmp_size":          (LOWER,   "a limit"),
    "sandbox_network":           (OFF,     "network access is the way out of the sandbox"),
    "sandbox_command_timeout":   (LOWER,   "a limit"),
    "sandbox_output_limit":      (LOWER,   "a limit"),
    "sandbox_env_allowlist":     (SUBSET,  "each name passes a host variable (a secret) into the sandbox"),
    "sandbox_uid":               (FIXED,   "decides who the sandbox's processes are on the host's files"),
    "sandbox_max_diff_bytes":    (LOWER,   "a limit"),
    "smol_env_setup":            (DENY,    ("preparing runs the repo's install scripts with network: the user's "
                                           "choice, never the repo's")),
    "smol_env_wheelhouse":       (FIXED,   "a host directory mounted into the set-up container"),
    "smol_env_index_url":        (FIXED,   "decides where installed code comes from"),
    "smol_env_ca_bundle":        (FIXED,   "decides which TLS certificates the set-up phase trusts"),
    "smol_env_setup_timeout":    (LOWER,   "a limit"),
}

_ONLY = {
    FIXED: "a repo's file may not set it",
    LOWER: "a repo's file may only lower it",
    OFF: "a repo's file may only turn it off",
    DENY: "a repo's file may only set it to deny",
    SUBSET: "a repo's file may only remove names from it",
    VERBOSE: "a repo's file may only make it more verbose",
}
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_REPO_FILE_LIMIT = 1024**2


def _names(value: str) -> set[str]:
    return {name.strip() for name in value.split(",") if name.strip()}


def _may_replace(rule: str, new: Any, old: Any) -> bool:
    """May a value from a repo file (`new`) replace the value that applies without it (`old`)?"""
    if new == old or rule == FREE:
        return True
    if rule == LOWER:
        return bool(new <= old)
    if rule == OFF:
        return new is False
    if rule == DENY:
        return bool(new == "deny")
    if rule == SUBSET:
        return _names(new) <= _names(old)
    if rule == VERBOSE:
        return _LEVELS.index(new) <= _LEVELS.index(old)
    return False  # FIXED, or a rule this function does not know


def user_config_path() -> Path | None:
    """$XDG_CONFIG_HOME/smol/config.env (~/.config/smol/config.env): the user's own file, read with full trust."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    if not os.path.isabs(base):  # the XDG spec: a relative value is invalid and ignored
        try:
            base = str(Path.home() / ".config")
        except RuntimeError:  # no HOME and no passwd entry
            return None
    return Path(base) / "smol" / "config.env"


def _git_work_tree(directory: Path) -> Path | None:
    for candidate in (directory, *directory.parents):
        if os.path.lexists(candidate / ".git"):  # a directory, or a file in worktrees and submodules
            return candidate
    return None


def _repo_owned(env_file: Path, repo: str | os.PathLike[str] | None) -> str | None:
    """Why `env_file` belongs to a repo (so it may only tighten), or None when it is the user's own.

    `repo` is the repo smol works on; None means the current directory (the CLI's default `--repo .`), so without
    a repo that is demonstrably elsewhere the `.env` of the current directory is never trusted.
    """
    try:
        under_work = Path(repo if repo is not None else ".").resolve()
        places = {env_file.parent.resolve(), env_file.resolve().parent}  # where it is, and where a link leads
    except (OSError, RuntimeError):  # a symlink loop, a vanished directory
        return "its location cannot be resolved"
    for place in sorted(places):
        if place == under_work or under_work in place.parents:
            return "in the repo smol works on" if repo is not None else \
                "in the current directory, the repo smol works on by default"
        tree = _git_work_tree(place)
        if tree is not None:
            return f"in the git work tree {tree}"
    return None


def _read_repo_file(path: Path, why: str) -> tuple[dict[str, str], list[str]]:
    """The smol keys of an untrusted `.env`, read literally (no ${VAR} expansion: that would copy host values)."""
    from dotenv import dotenv_values

    def refuse(what: str) -> tuple[dict[str, str], list[str]]:
        where = user_config_path() or "~/.config/smol/config.env"
        return {}, [f"ignored {path} ({why}): {what}; put smol settings in the environment or in {where}"]

    if path.is_symlink():
        return refuse("it is a symbolic link")
    if not path.is_file():
        return refuse("it is not a regular file")
    if path.stat().st_size > _REPO_FILE_LIMIT:
        return refuse("it is larger than 1 MiB")
    try:
        raw = dotenv_values(path, encoding="utf-8", interpolate=False)
    except (OSError, UnicodeDecodeError) as error:
        return refuse(f"it cannot be read ({type(error).__name__})")
    values: dict[str, str] = {}
    for key, value in raw.items():
        if value is not None and key.lower() in Settings.model_fields:
            values[key.lower()] = value
    return values, []


# Keys that look like smol's: one of these in a config file that is not a setting is a typo, not someone else's key.
OUR_PREFIXES = ("MODEL_", "AGENT_", "SANDBOX_", "PHOENIX_", "VALIDATION_", "TRUNCATION_", "APPROVAL_", "SMOL_",
                "RUNS_", "POLICY_", "LOG_", "SUPPRESS_")


def unknown_keys(names: list[str]) -> list[str]:
    """One phrase per name that looks like a smol key but is none, with the nearest real key when there is one."""
    import difflib

    known = [field.upper() for field in Settings.model_fields]
    found = []
    for name in names:
        upper = name.upper()
        if upper.lower() in Settings.model_fields or not upper.startswith(OUR_PREFIXES):
            continue
        near = difflib.get_close_matches(upper, known, n=1, cutoff=0.6)
        found.append(f"unknown key {name}" + (f" (did you mean {near[0]}?)" if near else ""))
    return found


def _repo_unknown(path: Path) -> list[str]:
    from dotenv import dotenv_values

    try:
        return unknown_keys(list(dotenv_values(path, encoding="utf-8", interpolate=False)))
    except (OSError, UnicodeDecodeError):
        return []


def _describe(error: ValidationError, where: Any) -> str:
    """Every bad value at once, each with where it was set, on one line."""
    problems = []
    for item in error.errors():
        key = str(item["loc"][0]) if item["loc"] else "configuration"
        message = item["msg"].removeprefix("Value error, ")
        place = where(key.lower()) if callable(where) else where
        problems.append(f"{key.upper()}={item.get('input')!r} is not valid ({message}; set in {place})")
    return "; ".join(problems) if len(problems) == 1 else f"{len(problems)} settings are not valid: " + \
        "; ".join(problems)


def _where(key: str, overrides: dict[str, object], files: list[Path]) -> str:
    """Which trusted source set `key` (for an error message)."""
    from dotenv import dotenv_values

    if key in overrides:
        return "the arguments"
    if any(name.lower() == key for name in os.environ):
        return "the environment"
    for path in reversed(files):  # the later file wins
        try:
            if any(name.lower() == key for name in dotenv_values(path, encoding="utf-8")):
                return str(path)
        except (OSError, UnicodeDecodeError):
            continue
    return "the environment or the config file"


def _build(files: list[Path], overrides: dict[str, object], where: str | None = None) -> Settings:
    try:
        return Settings(_env_file=tuple(files) or None, **overrides)  # type: ignore[call-arg, arg-type]
    except ValidationError as error:
        place = where or (lambda key: _where(key, overrides, files))
        raise ConfigError(_describe(error, place)) from None


def _check_file_keys(files: list[Path]) -> None:
    """A trusted config file naming a key smol does not have is an error (all of them at once, with the nearest
    real key): `SANDBOX_MEMROY=1g` must not be ignored in silence."""
    from dotenv import dotenv_values

    problems = []
    for path in files:
        try:
            names = list(dotenv_values(path, encoding="utf-8", interpolate=False))
        except (OSError, UnicodeDecodeError):
            continue  # a missing or unreadable user file is read as empty, as before
        problems += [f"{problem} in {path}" for problem in unknown_keys(names)]
    if problems:
        raise ConfigError("; ".join(problems) + "; fix the spelling (.env.example lists every key)")


def environment_warnings() -> list[str]:
    """Environment variables one typo away from a smol key: warned about (the environment holds other programs'
    variables too, so only a near miss is named)."""
    import difflib

    known = [field.upper() for field in Settings.model_fields]
    warnings = []
    for name in sorted(os.environ):
        upper = name.upper()
        if upper.lower() in Settings.model_fields or not upper.startswith(OUR_PREFIXES):
            continue
        near = difflib.get_close_matches(upper, known, n=1, cutoff=0.85)
        if near:
            warnings.append(f"the environment variable {name} is not a smol setting (did you mean {near[0]}?)")
    return warnings


def load_settings_and_warnings(repo: str | os.PathLike[str] | None = None,
                               **overrides: object) -> tuple[Settings, list[str]]:
    """Settings, and one warning line per value a repo's `.env` tried to loosen (ignored). A bad value anywhere is a
    one-line ConfigError naming the key and where it was set.

    `repo` is the repo smol works on (the CLI's `--repo`); None means the current directory.
    """
    loaded = _load(repo, overrides)
    return loaded[0], loaded[1]


def explain_settings(repo: str | os.PathLike[str] | None = None,
                     **overrides: object) -> tuple[list[tuple[str, Any, str]], list[str]]:
    """(KEY, effective value, where it came from) for every setting, and the warnings (`smol config`)."""
    settings, warnings, files, taken_from, taken = _load(repo, overrides)
    rows = []
    for key in Settings.model_fields:
        if key in overrides:
            source = "flag"
        elif key in taken:
            source = f"{taken_from[key]} (a repo file: tightens only)"
        elif key in settings.model_fields_set:
            source = _where(key, {}, files)
        else:
            source = "default"
        rows.append((key.upper(), getattr(settings, key), source))
    return rows, warnings


REPO_CONFIG_FILES = (".smol.toml", "pyproject.toml")
"""A repo's own settings, at its root: `.smol.toml` (a table of keys), or `[tool.smol]` in `pyproject.toml`."""


def _read_repo_toml(root: Path) -> tuple[dict[str, str], Path | None, list[str]]:
    """The smol keys of a repo's `.smol.toml` or `[tool.smol]` (untrusted, like its `.env`), the file, warnings."""
    import tomllib

    for name in REPO_CONFIG_FILES:
        path = root / name
        if not os.path.lexists(path):
            continue
        why = "in the repo smol works on"
        if path.is_symlink() or not path.is_file() or path.stat().st_size > _REPO_FILE_LIMIT:
            return {}, None, [f"ignored {path} ({why}): not a regular file of at most 1 MiB"]
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            return {}, None, [f"ignored {path} ({why}): it is not valid TOML ({str(error).splitlines()[0]})"]
        table = data if name == ".smol.toml" else data.get("tool", {}).get("smol")
        if table is None:
            continue  # a pyproject.toml without [tool.smol]
        if not isinstance(table, dict):
            return {}, None, [f"ignored {path} ({why}): [tool.smol] is not a table"]
        values: dict[str, str] = {}
        warnings = [f"{problem} in {path} (ignored)" for problem in unknown_keys(list(table))]
        for key, value in table.items():
            if key.lower() not in Settings.model_fields:
                continue
            if isinstance(value, bool):
                values[key.lower()] = "true" if value else "false"
            elif isinstance(value, str | int | float):
                values[key.lower()] = str(value)
            elif isinstance(value, list) and all(isinstance(item, str) for item in value):
                values[key.lower()] = ",".join(value)
            else:
                warnings.append(f"ignored {key} in {path}: expected a string, number, boolean or list of strings")
        return values, path, warnings
    return {}, None, []


def _from_environment(key: str) -> bool:
    return any(name.lower() == key for name in os.environ)


def _load(repo: str | os.PathLike[str] | None, overrides: dict[str, object]) \
        -> tuple[Settings, list[str], list[Path], dict[str, Path], dict[str, Any]]:
    """Precedence, highest first: flags, the environment, the repo's own files (which may only tighten what
    contains the sandbox), the user's config file, a trusted `.env`, defaults."""
    from runner.gitroot import find_root

    warnings: list[str] = []
    trusted_files: list[Path] = []
    # key -> (raw value, the repo file that set it, why that file is the repo's)
    repo_values: dict[str, tuple[str, Path, str]] = {}
    try:
        root = find_root(Path(repo) if repo is not None else Path.cwd())[0]
        toml_values, toml_file, toml_warnings = _read_repo_toml(root)
    except OSError:  # the current directory was removed
        toml_values, toml_file, toml_warnings = {}, None, []
    warnings += toml_warnings
    if toml_file is not None:
        repo_values.update({key: (raw, toml_file, "in the repo smol works on") for key, raw in toml_values.items()})
    try:
        cwd_env: Path | None = Path.cwd() / ".env"
    except OSError:
        cwd_env = None
    if cwd_env is not None and os.path.lexists(cwd_env):
        why = _repo_owned(cwd_env, repo)
        if why is None:
            trusted_files.append(cwd_env)
        else:
            env_values, env_warnings = _read_repo_file(cwd_env, why)
            warnings += env_warnings
            warnings += [f"{problem} in {cwd_env} (ignored)" for problem in _repo_unknown(cwd_env)]
            repo_values.update({key: (raw, cwd_env, why) for key, raw in env_values.items()})  # .env wins
    user_config = user_config_path()
    if user_config is not None:
        trusted_files.append(user_config)  # after the `.env`: the later file wins

    _check_file_keys(trusted_files)
    warnings += environment_warnings()
    settings = _build(trusted_files, overrides)
    pending = {key: value for key, value in repo_values.items()
               if key not in overrides and not _from_environment(key)}
    taken: dict[str, Any] = {}
    taken_from: dict[str, Path] = {}
    for repo_file in sorted({where for _, where, _ in pending.values()}):
        values = {key: raw for key, (raw, where, _) in pending.items() if where == repo_file}
        candidate = _build(trusted_files, {**overrides, **values}, where=str(repo_file))
        instead = f"the environment or in {user_config or '~/.config/smol/config.env'}"
        for key, raw in values.items():
            new, old = getattr(candidate, key), getattr(settings, key)
            rule = REPO_FILE_RULES.get(key, (FIXED, ""))[0]
            if _may_replace(rule, new, old):
                if new != old:
                    taken[key], taken_from[key] = new, repo_file
                continue
            warnings.append(f"ignored {key.upper()}={raw!r} from {repo_file} ({pending[key][2]}): {_ONLY[rule]}; "
                            f"set it in {instead}")
    if taken:
        settings = settings.model_copy(update=taken)
        log.debug("taken from the repo's files (tightening only): %s", ", ".join(k.upper() for k in taken))

    if settings.sandbox_disk >= settings.sandbox_memory:
        origin = [f"{key.upper()} set in {taken_from[key]}" for key in ("sandbox_memory", "sandbox_disk")
                  if key in taken]
        raise ConfigError(
            "SANDBOX_DISK must be below SANDBOX_MEMORY (the sandbox's writes are kept in memory); "
            "lower SANDBOX_DISK or raise SANDBOX_MEMORY" + (f" ({' and '.join(origin)})" if origin else "")
        )
    return settings, warnings, trusted_files, taken_from, taken


def load_settings(repo: str | os.PathLike[str] | None = None, **overrides: object) -> Settings:
    """Settings (see load_settings_and_warnings); the warnings go to the log."""
    settings, warnings = load_settings_and_warnings(repo, **overrides)
    for warning in warnings:
        log.warning("%s", warning)
    return settings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
