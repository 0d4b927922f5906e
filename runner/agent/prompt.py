"""A compact system prompt for 7B-14B models. The default smolagents prompt is ~2,000 tokens before the tool
schemas; small models do better with short, concrete rules (and the schemas already travel as native tools)."""

from __future__ import annotations

import importlib.resources
from typing import Any

import yaml

SYSTEM_PROMPT = """\
You are a careful coding agent in a sandboxed repo copy. One tool call at a time:
1. Explore: repo_info, list_files, rg_search, read_file.
2. Edit: propose_patch with old_text copied exactly from read_file (no line numbers), then apply_patch.
3. Verify: run_tests; on failure, fix and re-run.
4. Finish: final_answer saying what you changed and the test result.
Rules: paths relative to the repo root. Without native tool calls, reply with only \
{"name": "<tool>", "arguments": {...}}. On an error, follow its recovery_suggestion. \
run_cmd: one simple command, no network. Keep edits minimal.
{%- if custom_instructions %}
{{ custom_instructions }}
{%- endif %}
"""


def prompt_templates() -> dict[str, Any]:
    """The smolagents templates with our system prompt; the others (final answer at max steps) stay default."""
    source = importlib.resources.files("smolagents.prompts").joinpath("toolcalling_agent.yaml").read_text()
    templates: dict[str, Any] = yaml.safe_load(source)
    templates["system_prompt"] = SYSTEM_PROMPT
    return templates
