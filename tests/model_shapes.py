"""A corpus of what 7B-14B models emit instead of (or around) clean native tool calls, each labelled with the public
report it comes from. Every shape is the model's answer for the same step of the same task: fix `add` in
src/app.py (it subtracts). Used by tests/test_model_shapes.py (through the real agent loop) and
benchmarks/bench_model_shapes.py (the share that reaches the fix without a wasted step)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

OLD = "def add(a, b):\n    return a - b"
NEW = "def add(a, b):\n    return a + b"
ARGS = {"path": "src/app.py", "old_text": OLD, "new_text": NEW}
CALL = {"name": "propose_patch", "arguments": ARGS}
J = json.dumps(CALL)


def _py(value: Any) -> str:
    """A Python-literal rendering (single quotes), as models trained on Python write JSON."""
    return repr(value)


@dataclass(frozen=True)
class Shape:
    name: str
    family: str
    source: str
    """The public report (issue, PR or documentation) where this shape was seen; "partial" where the report shows
    a neighbouring shape or a model outside 7B-14B, "no report found" where none was found (checked 2026-12)."""
    answer: dict[str, Any]
    """The fake Ollama answer: {"content": ...} and/or {"tool": ..., "arguments": ...}."""


SHAPES: list[Shape] = [
    Shape("native call", "any", "https://docs.ollama.com/capabilities/tool-calling (the clean case, for comparison)",
          {"tool": "propose_patch", "arguments": ARGS}),
    Shape("bare JSON in content", "qwen2.5-coder 14B",
          "https://github.com/ollama/ollama/issues/12174 (bare JSON in content, tool_calls null); also openai/codex#2229", {"content": J}),
    Shape("JSON after a sentence", "qwen2.5 7B", "https://github.com/NousResearch/hermes-agent/pull/35129 (leading prose before the call)",
          {"content": "I will fix the subtraction now.\n" + J}),
    Shape("markdown json fence", "qwen2.5-coder 14B / llama3.2 3B",
          "https://github.com/ardanlabs/kronk/pull/950 (a ```json fenced envelope); ollama/ollama#13519",
          {"content": "```json\n" + J + "\n```"}),
    Shape("plain markdown fence", "mistral-nemo 12B", "https://github.com/ollama/ollama/issues/5976 (JSON in an untagged fence)",
          {"content": "Here is the call:\n```\n" + J + "\n```"}),
    Shape("Hermes tool_call tags", "qwen2.5", "https://github.com/browser-use/browser-use/issues/158 (<tool_call> JSON left in content)",
          {"content": "<tool_call>\n" + J + "\n</tool_call>"}),
    Shape("unclosed tool_call tag", "not named", "https://github.com/JustVugg/colibri/pull/505 (the closing tag never arrives; partial: model not named)",
          {"content": "<tool_call>\n" + J}),
    Shape("think block first", "qwen3 14B", "https://github.com/QwenLM/Qwen3/issues/1599 (<think>…</think> with the call on Ollama); ollama/ollama#14477",
          {"content": "<think>The test says add(1, 2) == 3 {not -1}.</think>\n" + J}),
    Shape("qwen3-coder XML", "qwen3-coder", "https://github.com/InternLM/lmdeploy/issues/3840 (<tool_call><function=…><parameter=…>); vllm-project/vllm#25028",
          {"content": "<tool_call>\n<function=propose_patch>\n<parameter=path>\nsrc/app.py\n</parameter>\n"
                      f"<parameter=old_text>\n{OLD}\n</parameter>\n<parameter=new_text>\n{NEW}\n</parameter>\n"
                      "</function>\n</tool_call>"}),
    Shape("OpenAI function wrapper", "llama-3.2 11B", "https://github.com/vllm-project/vllm/issues/11786 ({\"type\": \"function\", \"function\": …} in content)",
          {"content": json.dumps({"type": "function", "function": CALL})}),
    Shape("parameters key", "llama3.2 3B", "https://github.com/ollama/ollama/issues/13519 ({\"name\": …, \"parameters\": {…}})",
          {"content": json.dumps({"name": "propose_patch", "parameters": ARGS})}),
    Shape("tool / args keys", "gemma3n e4b", "no model report of this exact pair found; closest https://github.com/ollama/ollama/issues/18357 (name/args)",
          {"content": json.dumps({"tool": "propose_patch", "args": ARGS})}),
    Shape("tool_name / tool_input keys", "qwen3 8B", "https://github.com/usestrix/strix/issues/520 (action/params keys); langchain-ai/langchain#17356",
          {"content": json.dumps({"tool_name": "propose_patch", "tool_input": ARGS})}),
    Shape("arguments inline", "qwen2.5-vl 72B", "https://github.com/QwenLM/Qwen3-VL/issues/870 ({\"name\": \"click\", \"point\": …}; partial: a larger model)",
          {"content": json.dumps({"name": "propose_patch", **ARGS})}),
    Shape("arguments encoded twice", "qwen2.5 7B", "https://github.com/FoundationAgents/OpenManus/pull/989 (arguments still a JSON string)",
          {"content": json.dumps({"name": "propose_patch", "arguments": json.dumps(ARGS)})}),
    Shape("trailing commas", "not named", "https://github.com/huggingface/chat-ui/pull/1229 (the model likes to return trailing commas)",
          {"content": J[:-2] + "},}"}),
    Shape("single quotes", "qwen3-coder", "https://github.com/waybarrios/vllm-mlx/issues/63 (Python literal syntax, single quotes)",
          {"content": _py(CALL)}),
    Shape("Python literals", "qwen3-coder", "https://github.com/waybarrios/vllm-mlx/issues/63 (True/False literals); huggingface/smolagents#122",
          {"content": _py({"name": "propose_patch", "arguments": {**ARGS, "dry_run": None}})
           .replace(", 'dry_run': None", "")}),
    Shape("missing closing brace", "qwen3", "https://github.com/ollama/ollama/issues/14570 (truncated tool-call JSON); ollama/ollama#14180",
          {"content": J[:-1]}),
    Shape("list of calls", "ministral 8B", "https://github.com/ml-explore/mlx-lm/issues/1374 (a JSON list of calls)",
          {"content": json.dumps([CALL, {"name": "apply_patch", "arguments": {"patch_id": "p1"}}])}),
    Shape("two tagged calls", "qwen2.5 7B", "https://github.com/ggml-org/llama.cpp/issues/14101 (the second call left in content)",
          {"content": "<tool_call>" + J + "</tool_call>\n<tool_call>"
                      + json.dumps({"name": "apply_patch", "arguments": {"patch_id": "p1"}}) + "</tool_call>"}),
    Shape("tool name in other case", "qwen2.5-coder 7B", "https://github.com/lijunzh/koda/issues/49 (bash/read called for Bash/Read)",
          {"tool": "Propose_Patch", "arguments": ARGS}),
    Shape("tool name with dashes", "qwen2.5-coder 7B", "near-miss names as in https://github.com/lijunzh/koda/issues/49; dashes: no exact report found",
          {"content": json.dumps({"name": "propose-patch", "arguments": ARGS})}),
    Shape("functions. prefix", "gpt (large)", "https://github.com/tontinton/maki/issues/505 (functions. prefix; partial: a large model)",
          {"content": json.dumps({"name": "functions.propose_patch", "arguments": ARGS})}),
    Shape("camelCase tool name", "local models", "https://github.com/anomalyco/opencode/issues/10402 (camelCase filePath; for tool names: partial)",
          {"content": json.dumps({"name": "proposePatch", "arguments": ARGS})}),
    Shape("argument aliases", "local models", "https://github.com/Nano-Collective/nanocoder/pull/493 (file_path for path)",
          {"tool": "propose_patch", "arguments": {"file_path": "src/app.py", "old_str": OLD, "new_str": NEW}}),
    Shape("aliases in text call", "qwen2.5-coder 7B", "https://github.com/anomalyco/opencode/issues/590 (\"filename\" for the path)",
          {"content": json.dumps({"name": "propose_patch", "arguments": {"filename": "src/app.py", "search": OLD,
                                                                         "replace": NEW}})}),
]
