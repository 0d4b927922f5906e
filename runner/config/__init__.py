"""Configuration: one pydantic-settings model, read from flags, the environment, the user's config file and `.env`.

The keys of the original design (MODEL_*, AGENT_*, PHOENIX_*, VALIDATION_*, TRUNCATION_*, LOG_LEVEL,
SUPPRESS_WARNINGS) are a contract with users; SANDBOX_* keys belong to the sandbox, SMOL_ENV_* to prepared
environments. `sections` holds one model per component (with a docstring per field), `trust` what a repo's own
files may set, `load` which files are read and how far each is trusted.
"""

from runner.config.load import (
    OUR_PREFIXES,
    REPO_CONFIG_FILES,
    environment_warnings,
    explain_settings,
    get_settings,
    load_settings,
    load_settings_and_warnings,
    unknown_keys,
    user_config_path,
)
from runner.config.sections import (
    AgentSection,
    ByteSize,
    EnvSection,
    ModelSection,
    OutputSection,
    SandboxSection,
    Settings,
    TracingSection,
    parse_size,
)
from runner.config.trust import DENY, FIXED, FREE, LOWER, OFF, REPO_FILE_RULES, SUBSET, VERBOSE, _may_replace

__all__ = [
    "DENY", "FIXED", "FREE", "LOWER", "OFF", "OUR_PREFIXES", "REPO_CONFIG_FILES", "REPO_FILE_RULES", "SUBSET",
    "VERBOSE", "AgentSection", "ByteSize", "EnvSection", "ModelSection", "OutputSection", "SandboxSection",
    "Settings", "TracingSection", "_may_replace", "environment_warnings", "explain_settings", "get_settings",
    "load_settings", "load_settings_and_warnings", "parse_size", "unknown_keys", "user_config_path",
]
