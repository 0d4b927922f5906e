"""What small models really emit, read into tool calls: tolerant where the meaning is unambiguous, strict where it
is not. Sits between the model and the agent (`RetryingModel` calls it on every answer).

Recognised (each seen in public reports on 7B-14B models): native calls; bare JSON in the content (`name` /
`arguments`, or `function`, `tool`, `tool_name`, `parameters`, `args`, `input`); Hermes `<tool_call>` tags;
qwen3-coder's `<function=NAME><parameter=KEY>` XML; markdown fences; a `<think>` block first; several calls in one
message or a JSON list; JSON with trailing commas, single quotes or Python literals (read by json-repair);
arguments encoded twice; near-miss tool names (case, dashes, camelCase, a `functions.` prefix) and argument names
(`file_path` for `path`); the final answer as plain prose. What is repaired is recorded; what is ambiguous becomes
one short hint naming the tools and arguments that exist."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

NAME_KEYS = ("name", "tool", "tool_name", "function", "function_name", "action")
ARGUMENT_KEYS = ("arguments", "parameters", "args", "input", "tool_input", "action_input", "params")
ARGUMENT_ALIASES = {
    "file_path": "path", "filepath": "path", "filename": "path", "file": "path", "file_name": "path",
    "directory": "path", "dir": "path", "cmd": "command", "shell": "command", "script": "command",
    "old": "old_text", "old_str": "old_text", "old_string": "old_text", "search": "old_text", "find": "old_text",
    "original": "old_text", "new": "new_text", "new_str": "new_text", "new_string": "new_text",
    "replace": "new_text", "replacement": "new_text", "id": "patch_id", "patch": "diff", "unified_diff": "diff",
    "text": "answer", "result": "answer", "response": "answer", "final_answer": "answer", "query": "pattern",
    "regex": "pattern", "search_pattern": "pattern",
}
_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_TOOL_CALL_TAG = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
_FUNCTION_XML = re.compile(r"<function=([\w.\-]+)>(.*?)</function>", re.S)
_PARAMETER_XML = re.compile(r"<parameter=([\w\-]+)>\n?(.*?)\n?</parameter>", re.S)
_FENCE = re.compile(r"```[a-zA-Z]*\n(.*?)```", re.S)
# Prose that announces a next step (and so is no final answer), in the words small models use for it.
_ANNOUNCES = re.compile(r"\b(let me|let's|i will|i'll|i am going to|i'm going to|i need to|i should|next,? i|"
                        r"first,? i|now i|i must|i would like to)\b", re.I)


class ReadError(ValueError):
    """The answer holds no call that can be read without guessing; the message is the hint the model gets."""


@dataclass
class ReadCall:
    name: str
    arguments: dict[str, Any]


@dataclass
class Reading:
    calls: list[ReadCall]
    repairs: list[str] = field(default_factory=list)
    """What was repaired ("json text", "tool name read_File -> read_file", ...); empty for a clean native call."""


def _norm(name: str) -> str:
    name = name.strip().rsplit(".", 1)[-1]  # functions.read_file, tools.read_file
    name = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name)  # readFile -> read_File
    return re.sub(r"[\s\-]+", "_", name).lower()


class OutputReader:
    """Knows the tools (names and parameters) of one agent."""

    def __init__(self, tools: dict[str, set[str]], *, final_tool: str = "final_answer",
                 on_repair: Callable[[list[str]], None] | None = None) -> None:
        self.tools = tools
        self.final_tool = final_tool
        self.on_repair = on_repair or (lambda repairs: None)
        self._by_norm: dict[str, list[str]] = {}
        for name in tools:
            self._by_norm.setdefault(_norm(name), []).append(name)

    # ------------------------------------------------------------------ names and arguments
    def tool_name(self, raw: str, repairs: list[str]) -> str:
        if raw in self.tools:
            return raw
        found = self._by_norm.get(_norm(raw), [])
        if len(found) == 1:
            repairs.append(f"tool name {raw} -> {found[0]}")
            return found[0]
        raise ReadError(f"there is no tool {raw!r}: call one of {', '.join(sorted(self.tools))}")

    def arguments(self, tool: str, raw: Any, repairs: list[str]) -> dict[str, Any]:
        if isinstance(raw, str):  # how native calls arrive through LiteLLM; or encoded twice inside a text call
            try:
                decoded = json.loads(raw) if raw.strip() else {}
            except ValueError:
                decoded = _lenient_json(raw)
                if isinstance(decoded, dict):
                    repairs.append("arguments JSON repaired")
            if isinstance(decoded, dict):
                raw = decoded
            else:
                params = self.tools[tool]
                if len(params) == 1:  # a single-parameter tool given its value directly
                    repairs.append(f"bare value for {next(iter(params))}")
                    return {next(iter(params)): raw}
                raise ReadError(f"{tool} takes its arguments as a JSON object with {_keys(params)}")
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ReadError(f"{tool} takes its arguments as a JSON object with {_keys(self.tools[tool])}")
        params = self.tools[tool]
        fixed: dict[str, Any] = {}
        for key, value in raw.items():
            if key in params:
                target = key
            else:
                candidates = {p for p in params if _norm(p) == _norm(key)}
                alias = ARGUMENT_ALIASES.get(_norm(key))
                if alias in params:
                    candidates.add(alias)
                if len(candidates) != 1:
                    raise ReadError(f"{tool} has no argument {key!r}: its arguments are {_keys(params)}")
                target = candidates.pop()
                repairs.append(f"argument {key} -> {target}")
            if target in fixed:
                raise ReadError(f"{tool} got {target!r} twice: give each of {_keys(params)} once")
            fixed[target] = value
        return fixed

    # ------------------------------------------------------------------ reading
    def read_native(self, calls: list[tuple[str, Any]]) -> Reading:
        repairs: list[str] = []
        read = [self._call(name, arguments, repairs) for name, arguments in calls]
        return Reading(read, repairs)

    def read_text(self, content: str) -> Reading:
        repairs: list[str] = ["tool call written as text"]
        text = content
        if _THINK.search(text):
            text = _THINK.sub("", text)
            repairs.append("<think> block skipped")
        text = text.strip()
        blobs: list[Any] = []
        xml = _FUNCTION_XML.findall(text)
        if xml:
            repairs.append("qwen3-coder <function=…> XML")
            for name, body in xml:
                blobs.append({"name": name, "arguments": dict(_PARAMETER_XML.findall(body))})
        elif _TOOL_CALL_TAG.search(text):
            repairs.append("<tool_call> tags")
            blobs += [_lenient_json(part) for part in _TOOL_CALL_TAG.findall(text)]
        elif _FENCE.search(text):
            repairs.append("markdown fence")
            blobs += [_lenient_json(part) for part in _FENCE.findall(text)]
        else:
            blobs += _json_objects(text)
        calls: list[ReadCall] = []
        for blob in blobs:
            for item in blob if isinstance(blob, list) else [blob]:
                call = self._from_object(item, repairs)
                if call is not None:
                    calls.append(call)
        if calls:
            if len(calls) > 1:
                repairs.append(f"{len(calls)} calls in one message")
            return Reading(calls, repairs)
        if text and not text.lstrip().startswith(("{", "[", "<")):
            if _ANNOUNCES.search(text):
                # "Let me read the file first." is a plan, not an answer: ending the run on it would waste the task.
                raise ReadError("you wrote what you will do but called no tool: call it now, e.g. "
                                '{"name": "read_file", "arguments": {"path": "src/app.py"}}, or finish with '
                                "final_answer")
            # Prose and no call: small models give their final answer this way.
            return Reading([ReadCall(self.final_tool, {"answer": content.strip()})], ["final answer as prose"])
        raise ReadError("no tool call could be read. Answer with one call, e.g. "
                        '{"name": "read_file", "arguments": {"path": "src/app.py"}}; tools: '
                        + ", ".join(sorted(self.tools)))

    def _from_object(self, item: Any, repairs: list[str]) -> ReadCall | None:
        if not isinstance(item, dict):
            return None
        if isinstance(item.get("function"), dict):  # {"type": "function", "function": {"name":…, "arguments":…}}
            item = item["function"]
        name = next((item[key] for key in NAME_KEYS if isinstance(item.get(key), str)), None)
        if name is None:
            return None
        arguments = next((item[key] for key in ARGUMENT_KEYS if key in item), None)
        if arguments is None:  # {"name": "read_file", "path": "x"}: the arguments inline
            arguments = {k: v for k, v in item.items() if k not in NAME_KEYS and k not in ("type", "id")}
            if arguments:
                repairs.append("arguments inline")
        return self._call(name, arguments, repairs)

    def _call(self, name: str, arguments: Any, repairs: list[str]) -> ReadCall:
        tool = self.tool_name(name, repairs)
        return ReadCall(tool, self.arguments(tool, arguments, repairs))


def _keys(params: set[str]) -> str:
    return ", ".join(sorted(params)) if params else "no arguments"


def _lenient_json(text: str) -> Any:
    """JSON as small models write it: strict first, then json-repair (trailing commas, single quotes, Python
    literals, a missing closing brace)."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    from json_repair import loads

    try:
        value = loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict | list) else None


def _json_objects(text: str) -> list[Any]:
    """Every top-level JSON object or list in free text (a call may follow a sentence, several may follow each
    other)."""
    found: list[Any] = []
    index = 0
    while index < len(text):
        start = min((i for i in (text.find("{", index), text.find("[", index)) if i >= 0), default=-1)
        if start < 0:
            break
        end = _matching(text, start)
        candidate = text[start:end]
        value = _lenient_json(candidate)
        if value is not None:
            found.append(value)
            index = end
        else:
            index = start + 1
    return found


def _matching(text: str, start: int) -> int:
    """The end of the bracketed span starting at `start` (strings respected), or the end of the text."""
    depth = 0
    quote: str | None = None
    escaped = False
    for position in range(start, len(text)):
        char = text[position]
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth == 0:
                return position + 1
    return len(text)


def new_call_id() -> str:
    return str(uuid.uuid4())
