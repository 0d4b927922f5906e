"""A batch's task file: JSONL (one task per line) or YAML (a list, or `tasks:` holding one), read fail-closed.

Every task is checked before the first one starts: a typo in line 40 must not surface after 39 tasks have run
overnight. Unknown keys are errors naming the nearest valid one; ids are unique; a repo is a local directory or a
git URL (with an optional `ref`)."""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from runner.errors import UsageError

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_URL = re.compile(r"^(https://|http://|ssh://|git@[^:]+:|file://)")


class TaskSpec(BaseModel):
    """One task of a batch: what to ask, where, and the per-task settings that override the batch's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    """Unique within the file; names the task in progress lines, the queue and `smol batch show`."""
    repo: str
    """A local directory (relative to the task file), or a git URL cloned by the batch (https, ssh, file)."""
    task: str
    """The prompt given to the agent."""
    ref: str | None = None
    """For a git URL: the branch, tag or commit to check out (default: the remote's HEAD)."""
    timeout: float | None = Field(None, gt=0)
    """Wall-clock seconds for the whole task (agent and verification), enforced from the host."""
    max_steps: int | None = Field(None, gt=0)
    """AGENT_MAX_STEPS for this task."""
    model: str | None = None
    """MODEL_ID for this task (a LiteLLM id with its provider, e.g. ollama_chat/qwen2.5-coder:7b)."""
    test_command: str | None = None
    """SMOL_TEST_COMMAND for this task: what the re-verification runs."""
    setup: bool | None = None
    """Whether the repo's environment set-up may run for this task (opt-in; see `smol env`)."""

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError("an id is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        return value

    @field_validator("task", "repo")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @property
    def is_remote(self) -> bool:
        return bool(_URL.match(self.repo))

    def settings_overrides(self) -> dict[str, Any]:
        """The settings this task changes, as `load_settings_and_warnings` overrides (validated there)."""
        chosen: dict[str, Any] = {"agent_max_steps": self.max_steps, "model_id": self.model,
                                  "smol_test_command": self.test_command}
        if self.setup is not None:  # consent for this repo's set-up phase (never from the repo's own files)
            chosen["smol_env_setup"] = "allow" if self.setup else "deny"
        return {key: value for key, value in chosen.items() if value is not None}


def load_tasks(path: Path) -> list[TaskSpec]:
    """Every task of the file, checked; a UsageError naming the line (JSONL) or item (YAML) and the fix."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read the task file {path}: {error}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        items = _yaml_items(path, text)
    else:
        items = _jsonl_items(path, text)
    if not items:
        raise UsageError(f"{path} holds no tasks: one JSON object per line, e.g. "
                         '{"id": "fix-1", "repo": ".", "task": "Fix the failing test"}')
    tasks: list[TaskSpec] = []
    seen: dict[str, str] = {}
    for where, item in items:
        spec = _spec(path, where, item)
        if spec.id in seen:
            raise UsageError(f"{path}:{where}: task id {spec.id!r} is already used at {seen[spec.id]}: ids must be "
                             "unique")
        seen[spec.id] = where
        tasks.append(_resolved(path, where, spec))
    return tasks


def _jsonl_items(path: Path, text: str) -> list[tuple[str, Any]]:
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            items.append((str(number), json.loads(line)))
        except json.JSONDecodeError as error:
            raise UsageError(f"{path}:{number}: not a JSON object ({error.msg}): one task per line, e.g. "
                             '{"id": "fix-1", "repo": ".", "task": "..."}') from None
    return items


def _yaml_items(path: Path, text: str) -> list[tuple[str, Any]]:
    import yaml

    try:
        data = yaml.safe_load(text)  # safe_load: a task file builds no Python objects
    except yaml.YAMLError as error:
        raise UsageError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if isinstance(data, dict) and set(data) == {"tasks"}:
        data = data["tasks"]
    if data is None:
        return []
    if not isinstance(data, list):
        raise UsageError(f"{path}: expected a list of tasks (or `tasks:` holding one)")
    return [(f"item {index}", item) for index, item in enumerate(data, start=1)]


def _spec(path: Path, where: str, item: Any) -> TaskSpec:
    if not isinstance(item, dict):
        raise UsageError(f"{path}:{where}: a task is an object with id, repo and task")
    unknown = [key for key in item if key not in TaskSpec.model_fields]
    if unknown:
        near = difflib.get_close_matches(str(unknown[0]), list(TaskSpec.model_fields), n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else f"; valid keys: {', '.join(TaskSpec.model_fields)}"
        raise UsageError(f"{path}:{where}: unknown key {unknown[0]!r}{hint}")
    try:
        return TaskSpec.model_validate(item)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "task"
        message = "is required" if first["type"] == "missing" else first["msg"]
        raise UsageError(f"{path}:{where}: {field}: {message}") from None


def _resolved(path: Path, where: str, spec: TaskSpec) -> TaskSpec:
    """A local repo as an absolute path (relative to the task file), checked to exist now, not at 3 a.m."""
    if spec.is_remote:
        if spec.repo.startswith(("ext::", "-")):
            raise UsageError(f"{path}:{where}: repo {spec.repo!r} is not a URL smol clones")
        return spec
    if spec.ref is not None:
        raise UsageError(f"{path}:{where}: ref is for git URLs; a local repo runs on its working tree as it is")
    local = (path.parent / Path(spec.repo).expanduser()).resolve()  # ~ as a shell would
    if not local.is_dir():
        raise UsageError(f"{path}:{where}: repo {spec.repo!r} is not a directory ({local})")
    return spec.model_copy(update={"repo": str(local)})


def task_key(spec: TaskSpec, tree_state: str, settings_digest: str) -> str:
    """What makes two tasks the same work: the repo and its exact state, the prompt, the model and the settings."""
    parts = [spec.repo, spec.ref or "", tree_state, spec.task, settings_digest]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]
