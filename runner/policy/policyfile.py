"""Policy files: TOML `[[rule]]` tables, validated by a pydantic model so a typo is an error naming the key.

    [[rule]]
    match = "make lint"          # argv-word prefix: matches `make lint`, `make lint -j4`, not `make linter`
    decision = "allow"           # allow | require_approval | deny
    reason = "our lint target"   # optional, shown to the user

    [[rule]]
    regex = "^git push( |$)"     # re.search on each simple command, re-quoted with shlex.join
    decision = "deny"

Every error is one line naming the file, the rule and the key (with the nearest valid key for a typo).
"""

from __future__ import annotations

import difflib
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from runner.errors import ConfigError
from runner.policy.rules import Rule
from runner.policy.verdict import Decision, one_line


class PolicyFileError(ConfigError):
    """A policy file is missing, unreadable, not TOML or not a valid rule list; the message is one line."""


class RuleEntry(BaseModel):
    """One `[[rule]]` table."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)

    match: str | list[str] | None = None
    """Command prefix, as shell words (`"make lint"`) or a list of words (`["make", "lint"]`): whole words match."""
    regex: str | None = None
    """A regular expression searched (`re.search`) in each simple command re-quoted with `shlex.join`."""
    decision: Literal["allow", "require_approval", "require-approval", "deny"]
    """What a matching command gets; the strictest matching rule wins, across the defaults and this file."""
    reason: str | None = None
    """One sentence shown to the user and the model when this rule decides."""

    @field_validator("decision", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("match")
    @classmethod
    def _words(cls, value: str | list[str] | None) -> str | list[str] | None:
        if value is None:
            return None
        if isinstance(value, str):
            try:
                words = shlex.split(value)
            except ValueError as error:
                raise ValueError(f"{value!r} is not valid shell words: {error}") from None
        else:
            words = value
        if not words:
            raise ValueError("must be a non-empty string or list of strings")
        return value

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value:
            raise ValueError("must be a non-empty string")
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"invalid regex {value!r}: {one_line(error)}") from None
        return value

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must be a non-empty string")
        return value

    @model_validator(mode="after")
    def _has_a_condition(self) -> RuleEntry:
        if self.match is None and self.regex is None:
            raise ValueError("a rule needs `match` (command prefix) or `regex`")
        return self

    def to_rule(self, name: str) -> Rule:
        words = tuple(shlex.split(self.match) if isinstance(self.match, str) else self.match or ())
        decision = Decision(self.decision.replace("-", "_"))
        described = shlex.join(words) if words else f"/{self.regex}/"
        reason = one_line(self.reason) if self.reason else f"policy file rule for {described}: {decision.value}"
        return Rule(decision=decision, name=name, words=words, reason=reason,
                    regex=re.compile(self.regex) if self.regex is not None else None)


class PolicyFile(BaseModel):
    """A whole policy file: only `[[rule]]` tables."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)

    rule: list[RuleEntry] = Field(default_factory=list)
    """The rules, in file order; written as `[[rule]]` tables."""


def load_rules(path: Path) -> tuple[Rule, ...]:
    """The rules of a policy file; raises PolicyFileError with a one-line message."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyFileError(f"policy file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        detail = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise PolicyFileError(f"policy file {path} cannot be read: {one_line(detail)}") from None
    except tomllib.TOMLDecodeError as error:
        raise PolicyFileError(f"policy file {path} is not valid TOML: {one_line(error)}") from None
    try:
        policy = PolicyFile.model_validate(data)
    except ValidationError as error:
        errors = error.errors()  # a misspelt key also makes its real name "missing": name the typo first
        first = next((e for e in errors if e.get("type") == "extra_forbidden"), errors[0])
        raise PolicyFileError(f"policy file {path}{_describe(first)}") from None
    return tuple(entry.to_rule(f"{path}#{number}") for number, entry in enumerate(policy.rule, start=1))


def _nearest(key: str, model: type[BaseModel]) -> str:
    valid = list(model.model_fields)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"did you mean `{close[0]}`? " if close else ""
    return f"({hint}valid keys: {', '.join(valid)})"


def _describe(error: Any) -> str:
    """The first validation error as `, rule #N: …` (or `: …` for the top level), one line."""
    loc = tuple(error.get("loc", ()))
    kind, message = error.get("type", ""), one_line(error.get("msg", ""))
    message = message.removeprefix("Value error, ")
    if len(loc) >= 2 and loc[0] == "rule" and isinstance(loc[1], int):
        where, key = f", rule #{loc[1] + 1}", (str(loc[2]) if len(loc) > 2 else "")
        if kind == "extra_forbidden":
            return f"{where}: unknown key `{key}` {_nearest(key, RuleEntry)}"
        if kind == "missing":
            return f"{where}: `{key}` is required"
        if key == "decision":
            return f"{where}: decision must be one of allow, require_approval, deny (got {error.get('input')!r})"
        if kind == "model_type" or not key:
            return f"{where}: {message}" if kind != "model_type" else f"{where}: a rule must be a table"
        return f"{where}: {key}: {message}"
    key = str(loc[0]) if loc else ""
    if kind == "extra_forbidden":
        return f": unknown top-level key `{key}` {_nearest(key, PolicyFile)}; rules go in [[rule]] tables"
    if key == "rule":
        return ": `rule` must be an array of tables, written [[rule]]"
    return f": {message}"
