"""What a repo's own files may set: they are untrusted input, like the model's output, and may only tighten
containment. Every key has a rule; a key missing from the table is FIXED (fail closed)."""

from __future__ import annotations

from typing import Any

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
