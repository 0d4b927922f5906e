"""A compact system prompt for 7B-14B models. The default smolagents prompt is ~2,000 tokens before the tool
schemas; small models do better with short, concrete rules (and the schemas already travel as native tools)."""

from __future__ import annotations

import importlib.resources
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from runner.sandbox.base import Sandbox

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


PROMPT_BUDGET_TOKENS = 900
"""System prompt plus every tool schema, as Ollama hands them to the chat template: every call pays for them."""


def prompt_token_counts(sandbox: Sandbox) -> dict[str, int]:
    """Tokens (cl100k, litellm's default counter) of our system prompt, the tool schemas as compact JSON, and the
    default smolagents prompt for comparison. Offline: no model is called."""
    import json

    import litellm
    from smolagents import ToolCallingAgent
    from smolagents.models import get_tool_json_schema

    from runner.agent.approval import ApprovalGate
    from runner.agent.state import RunState
    from runner.agent.tools import ToolContext, build_tools
    from runner.config import load_settings
    from runner.policy import CommandPolicy

    state = RunState()  # `sandbox` is never called: the tools only need one to exist
    context = ToolContext(sandbox, state, load_settings(), CommandPolicy.default(),
                          ApprovalGate(state, asker=None))

    class Offline:  # the agent needs a model object only to exist
        model_id = "offline"

    ours = ToolCallingAgent(tools=build_tools(context), model=Offline(),  # type: ignore[arg-type]
                            prompt_templates=prompt_templates())  # type: ignore[arg-type]
    default = ToolCallingAgent(tools=build_tools(context), model=Offline())  # type: ignore[arg-type]
    schemas = json.dumps([get_tool_json_schema(t) for t in ours.tools.values()], separators=(",", ":"))

    def count(text: str) -> int:
        return int(litellm.token_counter(model="gpt-3.5-turbo", text=text))

    return {"system_prompt": count(ours.system_prompt), "schemas": count(schemas), "tools": len(ours.tools),
            "default_system_prompt": count(default.system_prompt)}
