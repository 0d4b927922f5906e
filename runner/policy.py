"""Command policy: may a shell command the agent proposes run in the sandbox?

Every command gets one of three decisions: ALLOW (run it), REQUIRE_APPROVAL (a human must say yes first)
or DENY (never run it). The sandbox is the containment; this policy is the second line that keeps a model
from deleting the tree, reaching the network or poking at the container runtime without anybody seeing it.
It is pure (standard library only) so it can be tested without Docker and reused by any tool.

How a command is judged
-----------------------
1. Raw checks: control or invisible formatting characters (which could make the command look different to
   the human approving it) and any mention of a container-runtime socket are DENY.
2. The command is tokenised by a small POSIX shell lexer (quotes, escapes, operators, comments, here-docs,
   `$…` and backticks). Any syntax error - an unbalanced quote, a lone trailing backslash, an unterminated
   here-document - is DENY: parsing fails closed.
3. The tokens are split into simple commands at `;`, `&&`, `||`, `|`, `&`, newlines and parentheses. Every
   part is judged on its own and the strictest verdict wins, so `pytest; rm -rf /` is DENY.
4. Shapes whose effect the policy cannot fully see - expansions (`$VAR`, `$(…)`, backticks), redirections to
   files, here-docs, `VAR=x cmd`, wrappers (`env`, `timeout`, `nice`, `nohup`, `xargs`, `exec`, …), nested
   shells (`bash -c`, `eval`, `source`), `python -c`, `find -exec`, `git -c`, `rg --pre`, background jobs,
   subshells - add *structural findings*: at least REQUIRE_APPROVAL, DENY when clearly escape-shaped. The
   wrapped or nested command is judged as well, so `timeout 5 rm -rf /` and `bash -c 'rm -rf /'` are DENY;
   so are the `$(…)`/backticks of an unquoted here-document body or of `${x:-$(…)}`, and the here-document
   or here-string a shell reads as its program (`sh <<EOF`, `bash <<< '…'`).
5. What is left is a plain argv. It is matched against the rules (defaults plus the user's policy file).
   The strictest matching rule wins; when no rule matches, the command is unknown and needs approval.
6. ALLOW additionally requires that `shlex.shlex(command, posix=True, punctuation_chars=True)` tokenises the
   command into exactly the same tokens: two independent tokenisers must agree before anything runs unasked.
7. A bug in the policy itself (an unexpected exception) is DENY too: it is logged with its traceback on the
   `runner.policy` logger and the reason says an internal error occurred.

Policy files
------------
A TOML file of `[[rule]]` tables::

    [[rule]]
    match = "make lint"          # argv-word prefix: matches `make lint`, `make lint -j4`, not `make linter`
    decision = "allow"           # allow | require_approval | deny
    reason = "our lint target"   # optional, shown to the user

    [[rule]]
    regex = "^git push( |$)"     # re.search on each simple command, re-quoted with shlex.join
    decision = "deny"

The STRICTEST matching rule wins across the defaults and the file (DENY > REQUIRE_APPROVAL > ALLOW). A policy
file can therefore tighten anything, but it can only loosen what the defaults leave to the "unknown command"
fallback: it can never turn a default DENY (`sudo`, `rm -rf /`, …), a default REQUIRE_APPROVAL (`pip install`,
`curl`, …) or a structural finding (a redirection, an expansion, a wrapper, …) into ALLOW.
"""

from __future__ import annotations

import enum
import logging
import os
import posixpath
import re
import shlex
import tomllib
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from runner.errors import ConfigError

__all__ = ["DEFAULT_RULES", "CommandPolicy", "Decision", "PolicyFileError", "PolicyResult", "Rule"]

log = logging.getLogger(__name__)

MAX_NESTING = 6
"""How deep `bash -c "eval '…'"`-style nesting is followed before the command is denied as unreadable."""


class Decision(enum.Enum):
    """What may happen to a command, from most to least permissive."""

    ALLOW = "allow"
    REQUIRE_APPROVAL = "require_approval"
    DENY = "deny"

    @property
    def strictness(self) -> int:
        """0 for ALLOW, 1 for REQUIRE_APPROVAL, 2 for DENY: when several verdicts apply, the highest wins."""
        return _STRICTNESS[self]


_STRICTNESS = {Decision.ALLOW: 0, Decision.REQUIRE_APPROVAL: 1, Decision.DENY: 2}


@dataclass(frozen=True)
class PolicyResult:
    """The verdict on one command.

    `reason` is one human-readable sentence fit to show the user and the model; `rule` names what decided
    (`default:…` for built-in rules, `structure:…` for shape findings, `<file>#<n>` for a policy-file rule,
    `fallback:unknown-command` when nothing matched).
    """

    decision: Decision
    reason: str
    rule: str

    @property
    def allowed(self) -> bool:
        return self.decision is Decision.ALLOW


class PolicyFileError(ConfigError):
    """A policy file is missing, unreadable, not TOML or not a valid rule list; the message is one line."""


def _approve(reason: str, rule: str) -> PolicyResult:
    return PolicyResult(Decision.REQUIRE_APPROVAL, reason, rule)


def _deny(reason: str, rule: str) -> PolicyResult:
    return PolicyResult(Decision.DENY, reason, rule)


def _strictest(results: Iterable[PolicyResult]) -> PolicyResult | None:
    """The strictest result; on a tie the first one, so callers list the most telling reason first."""
    best: PolicyResult | None = None
    for result in results:
        if best is None or result.decision.strictness > best.decision.strictness:
            best = result
    return best


def _quote(text: str, limit: int = 80) -> str:
    """`text` in backticks for a reason string, shortened so one reason stays one readable line."""
    text = " ".join(text.split())
    return f"`{text if len(text) <= limit else text[: limit - 1] + '…'}`"


# ----------------------------------------------------------------------------------------------------------
# Rules
# ----------------------------------------------------------------------------------------------------------


def _could_be_option(arg: str, option: str) -> bool:
    """Whether `arg` may turn on `option`, erring towards yes because a yes only ever makes a rule stricter.

    Long options match abbreviations too (GNU getopt_long, git and argparse accept `--outp` for `--output`);
    a two-character short option matches anywhere in a bundle (`-uo FILE`, `-oFILE`); a single-dash long
    option (`-delete`, Go's `-exec`) matches with one or two dashes.
    """
    name = arg.split("=", 1)[0]
    if option.startswith("--"):
        return name.startswith("--") and len(name) > 2 and option.startswith(name)
    if len(option) == 2:
        return not arg.startswith("--") and option[1] in arg[1:]
    return name.lstrip("-") == option[1:]


def _mentions_option(args: Sequence[str], options: Sequence[str]) -> bool:
    """True when any of `options` may be in effect; arguments after `--` are operands, not options."""
    for arg in args:
        if arg == "--":
            return False
        if arg.startswith("-") and arg != "-" and any(_could_be_option(arg, option) for option in options):
            return True
    return False


def _has_flag(args: Sequence[str], flags: Sequence[str]) -> bool:
    """True when one of `flags` is given literally (no abbreviation: a `requires` check must not guess)."""
    for arg in args:
        if arg == "--":
            return False
        if arg in flags:
            return True
    return False


@dataclass(frozen=True)
class Rule:
    """One policy entry: when it matches a simple command's argv, it proposes `decision`.

    A rule matches when every given condition holds: `words` is a prefix of the argv (whole words),
    `regex` is found (`re.search`) in the argv re-quoted with `shlex.join`, none of the `unless` options may be
    in effect, one of the `requires` flags is present and `check(argv)` is true.
    """

    decision: Decision
    reason: str
    name: str
    words: tuple[str, ...] = ()
    regex: re.Pattern[str] | None = None
    unless: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    check: Callable[[Sequence[str]], bool] | None = None

    def matches(self, argv: Sequence[str]) -> bool:
        if not argv or tuple(argv[: len(self.words)]) != self.words:
            return False
        operands = argv[len(self.words):]
        if self.unless and _mentions_option(operands, self.unless):
            return False
        if self.requires and not _has_flag(operands, self.requires):
            return False
        if self.regex is not None and not self.regex.search(shlex.join(argv)):
            return False
        return self.check is None or self.check(argv)

    def result(self) -> PolicyResult:
        return PolicyResult(self.decision, self.reason, self.name)


# --- predicates used by the default rules -----------------------------------------------------------------

_SYSTEM_DIRS = frozenset({
    "bin", "boot", "dev", "etc", "home", "lib", "lib32", "lib64", "libx32", "media", "mnt", "opt", "proc",
    "root", "run", "sbin", "srv", "sys", "usr", "var",
})
_HARMLESS_DEVICES = frozenset({
    "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/stdin", "/dev/stdout",
    "/dev/stderr", "/dev/tty",
})


def _escapes_workspace(path: str) -> bool:
    """Whether a path names `/`, a home directory, something above the working directory, a top-level
    directory or a system directory - the targets that make `rm -rf`, `chmod -R` or `> file` escape-shaped.
    A path starting with `$` cannot be known in advance, so it counts too."""
    if not path:
        return False
    if path.startswith(("~", "$")) or ".." in path.split("/"):
        return True
    if not path.startswith("/"):
        return False
    parts = [part for part in posixpath.normpath(path).split("/") if part and part != "."]
    return len(parts) <= 1 or parts[0] in _SYSTEM_DIRS


def _is_device(path: str) -> bool:
    """A device node or kernel interface other than the harmless ones (`/dev/null`, `/dev/stdout`, …)."""
    path = posixpath.normpath(path) if path.startswith("/") else path
    if path.startswith("/dev/"):
        return path not in _HARMLESS_DEVICES and not re.fullmatch(r"/dev/fd/\d+", path)
    return path.startswith(("/sys/", "/proc/sys", "/proc/sysrq-trigger")) or path == "/sys"


def _operands(argv: Sequence[str]) -> list[str]:
    """The arguments that are not options (everything after `--` is an operand)."""
    operands: list[str] = []
    options_done = False
    for arg in argv[1:]:
        if not options_done and arg == "--":
            options_done = True
        elif options_done or not arg.startswith("-") or arg == "-":
            operands.append(arg)
    return operands


def _rm_escapes(argv: Sequence[str]) -> bool:
    options = [arg for arg in argv[1:] if arg.startswith("--")]
    return _mentions_option(options, ["--no-preserve-root"]) or any(map(_escapes_workspace, _operands(argv)))


def _targets_escape(argv: Sequence[str]) -> bool:
    return any(map(_escapes_workspace, _operands(argv)))


def _kills_everything(argv: Sequence[str]) -> bool:
    """`kill -9 -1` (or `kill -- -1`) signals every process the user may signal."""
    return "-1" in argv[1:]


def _is_mkfs(argv: Sequence[str]) -> bool:
    return argv[0].startswith("mkfs") or argv[0] in ("mke2fs", "mkswap")


def _touches_device(argv: Sequence[str]) -> bool:
    """Any argument (or `key=value` value, as in `dd of=/dev/sda`) naming a device or kernel interface."""
    if argv[0] in _DEVICE_READERS:
        return False
    return any(_is_device(arg) or _is_device(arg.split("=", 1)[-1]) for arg in argv[1:])


_DEVICE_READERS = frozenset({"ls", "cat", "head", "tail", "wc", "grep", "egrep", "fgrep", "rg", "stat", "diff",
                             "echo", "pwd", "true", "find"})
"""Tools that cannot write through their arguments, so naming `/dev/sda` to them is harmless."""


def _uniq_reads_only(argv: Sequence[str]) -> bool:
    """`uniq IN OUT` writes OUT: allowed only with at most one file operand."""
    valued = {"-f", "-s", "-w", "--skip-fields", "--skip-chars", "--check-chars"}
    operands, skip, options_done = 0, False, False
    for arg in argv[1:]:
        if skip:
            skip = False
        elif not options_done and arg == "--":
            options_done = True
        elif not options_done and arg.startswith("-") and arg != "-":
            skip = arg in valued
        else:
            operands += 1
    return operands <= 1


_GIT_BRANCH_LIST_FLAGS = frozenset({
    "-a", "--all", "-r", "--remotes", "-v", "-vv", "--verbose", "-l", "--list", "--show-current", "--no-color",
    "--color", "--column", "--no-column", "-i", "--ignore-case", "--omit-empty", "--no-abbrev",
})
_GIT_BRANCH_FILTERS = frozenset({"--contains", "--no-contains", "--merged", "--no-merged", "--points-at"})


def _git_branch_lists_only(argv: Sequence[str]) -> bool:
    """`git branch` lists branches only with list flags; a bare name creates a branch, `-d` deletes one."""
    args = list(argv[2:])
    list_mode = False
    operands: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        name = arg.split("=", 1)[0]
        if name in _GIT_BRANCH_FILTERS:
            list_mode = True
            index += 1 if "=" in arg else 2
            continue
        if name in ("--sort", "--format", "--color", "--abbrev"):
            index += 1
            continue
        if arg in _GIT_BRANCH_LIST_FLAGS or re.fullmatch(r"-[arvli]+", arg):
            # --list and --verbose (and the filters above) put git branch in list mode: operands are patterns
            list_mode = list_mode or arg in ("--list", "--verbose") or (
                not arg.startswith("--") and ("l" in arg or "v" in arg))
            index += 1
            continue
        if arg.startswith("-"):
            return False
        operands.append(arg)
        index += 1
    return not operands or list_mode


def _make_is_plain(argv: Sequence[str]) -> bool:
    """`make test` without another makefile, directory, `--eval` or variable override (`SHELL=…`)."""
    if any("=" in arg and not arg.startswith("-") for arg in argv[2:]):
        return False
    return not _mentions_option(argv[2:], ["-f", "--file", "--makefile", "-C", "--directory", "--eval", "-E",
                                           "-e", "--environment-overrides", "-I", "--include-dir"])


def _rule(decision: Decision, words: str, reason: str, kind: str, *, unless: Sequence[str] = (),
          requires: Sequence[str] = (), check: Callable[[Sequence[str]], bool] | None = None) -> Rule:
    return Rule(decision=decision, reason=reason, name=f"default:{kind}", words=tuple(words.split()),
                unless=tuple(unless), requires=tuple(requires), check=check)


def _default_rules() -> tuple[Rule, ...]:
    """The built-in rule table. Structural checks (pipes, redirections, wrappers, …) live in the analyser."""
    allow, ask, deny = Decision.ALLOW, Decision.REQUIRE_APPROVAL, Decision.DENY
    rules: list[Rule] = []

    def add_all(decision: Decision, commands: Iterable[str], reason: str, kind: str) -> None:
        rules.extend(_rule(decision, words, reason.format(cmd=words), kind) for words in commands)

    # Test runners: they execute the project's own code, which is what the sandbox is for.
    tests = "`{cmd}` runs the project's tests"
    rules.append(_rule(allow, "pytest", tests.format(cmd="pytest"), "test-runner",
                       unless=["--basetemp", "--pastebin"]))
    rules.append(_rule(allow, "py.test", tests.format(cmd="py.test"), "test-runner",
                       unless=["--basetemp", "--pastebin"]))
    add_all(allow, ["unittest", "nox", "npm test", "npm run test", "yarn test", "pnpm test"], tests, "test-runner")
    rules.append(_rule(allow, "tox", tests.format(cmd="tox"), "test-runner", unless=["-x", "--override"]))
    rules.append(_rule(allow, "cargo test", tests.format(cmd="cargo test"), "test-runner",
                       unless=["--config", "-Z"]))
    rules.append(_rule(allow, "go test", tests.format(cmd="go test"), "test-runner",
                       unless=["-exec", "-toolexec", "-overlay"]))
    rules.append(_rule(allow, "make test", tests.format(cmd="make test"), "test-runner", check=_make_is_plain))

    # Linters and formatters in check mode: they read the tree and report.
    lint = "`{cmd}` checks the code without changing it"
    rules.append(_rule(allow, "ruff check", lint.format(cmd="ruff check"), "linter",
                       unless=["--fix", "--fix-only", "--add-noqa", "--watch", "-w", "--output-file", "-o"]))
    rules.append(_rule(allow, "ruff format", lint.format(cmd="ruff format --check"), "linter",
                       requires=["--check", "--diff"]))
    rules.append(_rule(allow, "flake8", lint.format(cmd="flake8"), "linter", unless=["--output-file"]))
    rules.append(_rule(allow, "mypy", lint.format(cmd="mypy"), "linter", unless=["--install-types"]))
    rules.append(_rule(allow, "pylint", lint.format(cmd="pylint"), "linter", unless=["--output"]))
    rules.append(_rule(allow, "black", lint.format(cmd="black --check"), "linter", requires=["--check", "--diff"]))
    rules.append(_rule(allow, "isort", lint.format(cmd="isort --check-only"), "linter",
                       requires=["--check-only", "--check", "--diff", "-c"]))
    rules.append(_rule(allow, "eslint", lint.format(cmd="eslint"), "linter",
                       unless=["--fix", "--output-file", "-o"]))
    rules.append(_rule(allow, "prettier", lint.format(cmd="prettier --check"), "linter",
                       requires=["--check", "-c", "--list-different", "-l"], unless=["--write", "-w"]))

    # Read-only tools.
    read = "`{cmd}` only reads"
    add_all(allow, ["ls", "cat", "head", "tail", "wc", "grep", "egrep", "fgrep", "stat", "diff", "echo", "pwd",
                    "true"], read, "read-only")
    rules.append(_rule(allow, "rg", read.format(cmd="rg"), "read-only", unless=["--pre", "--pre-glob"]))
    rules.append(_rule(allow, "find", read.format(cmd="find"), "read-only",
                       unless=["-exec", "-execdir", "-ok", "-okdir", "-delete", "-fprint", "-fprint0", "-fprintf",
                               "-fls"]))
    rules.append(_rule(allow, "tree", read.format(cmd="tree"), "read-only", unless=["-o"]))
    rules.append(_rule(allow, "file", read.format(cmd="file"), "read-only", unless=["-C", "--compile"]))
    rules.append(_rule(allow, "sort", read.format(cmd="sort"), "read-only",
                       unless=["-o", "--output", "--compress-program"]))
    rules.append(_rule(allow, "uniq", read.format(cmd="uniq"), "read-only", check=_uniq_reads_only))
    git_read = "`{cmd}` only reads the repository"
    add_all(allow, ["git status", "git rev-parse", "git ls-files", "git blame"], git_read, "git-read")
    rules.append(_rule(allow, "git diff", git_read.format(cmd="git diff"), "git-read",
                       unless=["--output", "--ext-diff"]))
    for sub in ("log", "show"):
        rules.append(_rule(allow, f"git {sub}", git_read.format(cmd=f"git {sub}"), "git-read", unless=["--output"]))
    rules.append(_rule(allow, "git grep", git_read.format(cmd="git grep"), "git-read",
                       unless=["-O", "--open-files-in-pager"]))
    rules.append(_rule(allow, "git branch", "`git branch` only lists branches here", "git-read",
                       check=_git_branch_lists_only))

    # Package installs and network access: fine in principle, but a human decides.
    add_all(ask, ["pip install", "pip download", "pip3 install", "pip3 download", "uv pip install", "uv add",
                  "uv sync", "poetry install", "poetry add", "npm install", "npm i", "npm ci", "npm add",
                  "npm update", "yarn add", "yarn install", "pnpm install", "pnpm i", "pnpm add", "gem install",
                  "cargo install", "cargo add", "cargo fetch", "go get", "go install", "go mod download",
                  "conda install", "apt", "apt-get", "aptitude", "apk", "yum", "dnf", "brew", "npx"],
            "`{cmd}` installs packages from the network", "network")
    add_all(ask, ["curl", "wget", "ssh", "scp", "sftp", "rsync", "nc", "ncat", "netcat", "telnet", "ftp",
                  "git fetch", "git pull", "git push", "git clone", "git ls-remote", "git submodule"],
            "`{cmd}` uses the network", "network")

    # Destructive or escape-shaped commands.
    add_all(deny, ["sudo", "su", "doas", "pkexec", "runuser"],
            "`{cmd}` changes privileges; the sandbox never needs it", "privilege")
    add_all(deny, ["shutdown", "reboot", "halt", "poweroff", "telinit", "killall5"],
            "`{cmd}` stops the machine or every process", "destructive")
    add_all(deny, ["docker", "docker-compose", "podman", "nerdctl", "ctr", "crictl", "runc", "nsenter",
                   "unshare", "chroot", "pivot_root", "mount", "umount", "insmod", "modprobe", "rmmod", "kexec",
                   "capsh", "setcap"],
            "`{cmd}` reaches for the container runtime, namespaces or the kernel: a sandbox-escape shape", "escape")
    add_all(deny, ["fdisk", "sfdisk", "parted", "wipefs", "swapon", "swapoff"],
            "`{cmd}` manipulates disks", "destructive")
    rules.append(_rule(deny, "", "formats a file system", "destructive", check=_is_mkfs))
    rules.append(_rule(deny, "rm", "`rm` on /, a home directory, a parent directory or a system path",
                       "destructive", check=_rm_escapes))
    for cmd in ("chmod", "chown", "chgrp"):
        rules.append(_rule(deny, cmd, f"`{cmd}` on /, a home directory, a parent directory or a system path",
                           "destructive", check=_targets_escape))
    rules.append(_rule(deny, "kill", "`kill -1` signals every process", "destructive", check=_kills_everything))
    rules.append(_rule(deny, "", "writes to or reads from a device or kernel interface (/dev, /sys, /proc/sys)",
                       "device", check=_touches_device))
    return tuple(rules)


DEFAULT_RULES: tuple[Rule, ...] = _default_rules()
"""The built-in rules; every CommandPolicy includes them (see the module docstring for what they cover)."""


# ----------------------------------------------------------------------------------------------------------
# Lexer
# ----------------------------------------------------------------------------------------------------------


class _ShellSyntaxError(ValueError):
    """The command is not valid shell (as far as this lexer can tell); the policy denies it."""


_PUNCTUATION = "();<>|&"
_OPERATORS = tuple(sorted(
    ["<<<", "&>>", ";;&", "&&", "||", "|&", ";;", ";&", ">>", "<<", "<>", ">|", ">&", "<&", "&>",
     ";", "|", "&", "<", ">", "(", ")"], key=len, reverse=True))
_SEPARATORS = frozenset({";", "&&", "||", "|", "|&", "&", "\n"})
_REDIRECTIONS = frozenset({"<", ">", ">>", ">|", "<>", "<<", "<<-", "<<<", ">&", "<&", "&>", "&>>"})


@dataclass(frozen=True)
class _Token:
    """A word or an operator. `mask[i]` is True when `text[i]` was quoted or escaped, so it cannot be a glob,
    a brace or an assignment; `expansion` is set when the shell would substitute something (`$…`, backticks)
    and `substitutions` holds the bodies of `$(…)` and backticks, which are judged as commands too."""

    text: str
    start: int
    end: int
    operator: bool = False
    mask: tuple[bool, ...] = ()
    expansion: bool = False
    substitutions: tuple[str, ...] = ()
    heredoc: bool = False
    body: str | None = None
    """The text of a here-document, on its delimiter token."""

    def unquoted(self, index: int) -> bool:
        return not self.mask[index]

    @property
    def glob(self) -> bool:
        return any(ch in "*?[" and self.unquoted(i) for i, ch in enumerate(self.text))

    @property
    def leading_glob(self) -> bool:
        """A glob at the very start could expand to a file name that starts with `-`, i.e. an option."""
        return bool(self.text) and self.text[0] in "*?[" and self.unquoted(0)

    @property
    def brace_expansion(self) -> bool:
        """`{a,b}` or `{1..3}` unquoted: bash turns one word into several the policy never sees."""
        text, opened, separated = self.text, False, False
        for i, ch in enumerate(text):
            if not self.unquoted(i):
                continue
            if ch == "{":
                opened = True
            elif opened and (ch == "," or (ch == "." and text[i + 1: i + 2] == "." and self.unquoted(i + 1))):
                separated = True
            elif ch == "}" and separated:
                return True
        return False


def _find_unescaped(source: str, start: int, char: str) -> int:
    """Index of the next `char` not escaped by a backslash, or -1."""
    index = start
    while index < len(source):
        if source[index] == "\\":
            index += 2
            continue
        if source[index] == char:
            return index
        index += 1
    return -1


def _skip_double_quoted(source: str, index: int) -> int:
    """Index just after the double-quoted string starting at `source[index] == '"'`."""
    index += 1
    while index < len(source):
        ch = source[index]
        if ch == "\\":
            index += 2
        elif ch == '"':
            return index + 1
        elif ch == "$" and source[index + 1: index + 2] in ("(", "{"):
            index = _matching_close(source, index + 1) + 1
        elif ch == "`":
            close = _find_unescaped(source, index + 1, "`")
            if close < 0:
                raise _ShellSyntaxError("unbalanced backtick")
            index = close + 1
        else:
            index += 1
    raise _ShellSyntaxError("unbalanced double quote")


def _matching_close(source: str, index: int) -> int:
    """Index of the `)` or `}` closing the bracket at `source[index]`, skipping quoted text."""
    opener = source[index]
    closer = ")" if opener == "(" else "}"
    depth = 0
    while index < len(source):
        ch = source[index]
        if ch == "\\":
            index += 2
            continue
        if ch == "'":
            close = source.find("'", index + 1)
            if close < 0:
                raise _ShellSyntaxError("unbalanced single quote")
            index = close + 1
            continue
        if ch == '"':
            index = _skip_double_quoted(source, index)
            continue
        if ch == "`":
            close = _find_unescaped(source, index + 1, "`")
            if close < 0:
                raise _ShellSyntaxError("unbalanced backtick")
            index = close + 1
            continue
        if ch == opener:
            depth += 1
        elif ch == closer:
            depth -= 1
            if depth == 0:
                return index
        index += 1
    raise _ShellSyntaxError(f"unbalanced `${opener}`")


def _expansions_in(text: str) -> tuple[bool, list[str]]:
    """(whether `text` expands anything, the bodies of its `$(…)` and backtick substitutions), reading `text` as
    the body of an unquoted here-document: only a backslash quotes (the next character), quotes are ordinary
    characters outside substitutions, and `${…}` is searched for substitutions nested in it. Unbalanced
    substitutions are a syntax error. Used for `${…}` contents too, where it errs towards finding more."""
    expands = False
    substitutions: list[str] = []
    index = 0
    while index < len(text):
        ch = text[index]
        if ch == "\\":
            index += 2
            continue
        if ch == "$":
            expands = True
            following = text[index + 1: index + 2]
            if following in ("(", "{"):
                close = _matching_close(text, index + 1)
                inner = text[index + 2: close]
                if following == "(":
                    substitutions.append(inner)
                else:
                    substitutions.extend(_expansions_in(inner)[1])
                index = close + 1
                continue
        elif ch == "`":
            expands = True
            close = _find_unescaped(text, index + 1, "`")
            if close < 0:
                raise _ShellSyntaxError("unbalanced backtick")
            substitutions.append(re.sub(r"\\([\\`$])", r"\1", text[index + 1: close]))
            index = close + 1
            continue
        index += 1
    return expands, substitutions


def _continues(line: str) -> bool:
    """Whether a line ends with an unescaped backslash (a line continuation)."""
    return (len(line) - len(line.rstrip("\\"))) % 2 == 1


def _split_operators(run: str) -> list[str]:
    """Split a run of punctuation into shell operators, longest first, as bash's tokenizer does."""
    ops: list[str] = []
    while run:
        op = next(candidate for candidate in _OPERATORS if run.startswith(candidate))
        ops.append(op)
        run = run[len(op):]
    return ops


class _Lexer:
    """Tokenises a command like a POSIX shell does, keeping what shlex drops: which characters were quoted,
    where expansions are, here-document bodies. shlex cannot tell `';'` from `;` or `'$x'` from `$x` and treats
    `#` as a comment even inside a word; all of that matters to a security decision."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.index = 0
        self.tokens: list[_Token] = []
        self._chars: list[str] = []
        self._mask: list[bool] = []
        self._in_word = False
        self._word_start = 0
        self._expansion = False
        self._substitutions: list[str] = []
        self._want_delimiter: bool | None = None  # set after `<<`: True when `<<-` (strip tabs)
        self._pending: list[tuple[int, bool]] = []  # (token index of a here-doc delimiter, strip tabs)

    def run(self) -> list[_Token]:
        source = self.source
        while self.index < len(source):
            ch = source[self.index]
            if ch in " \t":
                self._end_word()
                self.index += 1
            elif ch == "\n":
                self._end_word()
                self._emit_operator("\n", self.index)
                self.index += 1
                self._read_heredoc_bodies()
            elif ch in _PUNCTUATION:
                self._end_word()
                self._read_operators()
            elif ch == "#" and not self._in_word:
                newline = source.find("\n", self.index)
                self.index = len(source) if newline < 0 else newline
            elif ch == "\\":
                self._read_backslash()
            elif ch == "'":
                self._read_single_quoted()
            elif ch == '"':
                self._read_double_quoted()
            elif ch == "`":
                self._read_backticks()
            elif ch == "$":
                self._read_dollar(in_double_quotes=False)
            else:
                self._begin()
                self._add(ch, quoted=False)
                self.index += 1
        self._end_word()
        if self._want_delimiter is not None:
            raise _ShellSyntaxError("here-document operator without a delimiter")
        if self._pending:
            raise _ShellSyntaxError("here-document is not terminated")
        return self.tokens

    # --- words ------------------------------------------------------------------------------------------

    def _begin(self) -> None:
        if not self._in_word:
            self._in_word = True
            self._word_start = self.index

    def _add(self, text: str, *, quoted: bool) -> None:
        self._chars.append(text)
        self._mask.extend([quoted] * len(text))

    def _end_word(self) -> None:
        if not self._in_word:
            return
        token = _Token("".join(self._chars), self._word_start, self.index, mask=tuple(self._mask),
                       expansion=self._expansion, substitutions=tuple(self._substitutions))
        self.tokens.append(token)
        if self._want_delimiter is not None:
            self._pending.append((len(self.tokens) - 1, self._want_delimiter))
            self._want_delimiter = None
        self._chars, self._mask, self._substitutions = [], [], []
        self._in_word = self._expansion = False

    def _read_backslash(self) -> None:
        following = self.source[self.index + 1: self.index + 2]
        if not following:
            raise _ShellSyntaxError("the command ends with a lone backslash")
        if following == "\n":  # line continuation: removed before the shell even splits words
            self.index += 2
            return
        self._begin()
        self._add(following, quoted=True)
        self.index += 2

    def _read_single_quoted(self) -> None:
        close = self.source.find("'", self.index + 1)
        if close < 0:
            raise _ShellSyntaxError("unbalanced single quote")
        self._begin()
        self._add(self.source[self.index + 1: close], quoted=True)
        self.index = close + 1

    def _read_double_quoted(self) -> None:
        self._begin()
        source = self.source
        self.index += 1
        while True:
            if self.index >= len(source):
                raise _ShellSyntaxError("unbalanced double quote")
            ch = source[self.index]
            if ch == '"':
                self.index += 1
                return
            if ch == "\\" and source[self.index + 1: self.index + 2] in ('$', '`', '"', "\\", "\n"):
                if source[self.index + 1] != "\n":
                    self._add(source[self.index + 1], quoted=True)
                self.index += 2
            elif ch == "`":
                self._read_backticks()
            elif ch == "$":
                self._read_dollar(in_double_quotes=True)
            else:
                self._add(ch, quoted=True)
                self.index += 1

    def _read_backticks(self) -> None:
        close = _find_unescaped(self.source, self.index + 1, "`")
        if close < 0:
            raise _ShellSyntaxError("unbalanced backtick")
        self._begin()
        body = self.source[self.index + 1: close]
        self._substitutions.append(re.sub(r"\\([\\`$])", r"\1", body))
        self._expansion = True
        self._add(self.source[self.index: close + 1], quoted=True)
        self.index = close + 1

    def _read_dollar(self, *, in_double_quotes: bool) -> None:
        """Every unquoted or double-quoted `$` is an expansion; `$(…)`, `${…}` and `$'…'` are read whole so
        that the operators and spaces inside them do not split the command."""
        self._begin()
        self._expansion = True
        source, start = self.source, self.index
        following = source[start + 1: start + 2]
        if following in ("(", "{"):
            close = _matching_close(source, start + 1)
            if following == "(":
                self._substitutions.append(source[start + 2: close])
            else:  # ${x:-$(cmd)} runs cmd
                self._substitutions.extend(_expansions_in(source[start + 2: close])[1])
            self._add(source[start: close + 1], quoted=True)
            self.index = close + 1
        elif following == "'" and not in_double_quotes:  # $'…' ANSI-C quoting, where \' does not close
            close = _find_unescaped(source, start + 2, "'")
            if close < 0:
                raise _ShellSyntaxError("unbalanced $'…' quote")
            self._add(source[start: close + 1], quoted=True)
            self.index = close + 1
        else:
            self._add("$", quoted=in_double_quotes)
            self.index += 1

    # --- operators and here-documents -------------------------------------------------------------------

    def _emit_operator(self, op: str, start: int) -> None:
        if self._want_delimiter is not None:
            raise _ShellSyntaxError("here-document operator without a delimiter")
        self.tokens.append(_Token(op, start, start + len(op), operator=True))

    def _read_operators(self) -> None:
        source, start = self.source, self.index
        while self.index < len(source) and source[self.index] in _PUNCTUATION:
            self.index += 1
        position = start
        ops = _split_operators(source[start: self.index])
        for number, op in enumerate(ops):
            if op == "<<" and number == len(ops) - 1 and source[self.index: self.index + 1] == "-":
                op = "<<-"
                self.index += 1
            self._emit_operator(op, position)
            position += len(op)
            if op in ("<<", "<<-"):
                self._want_delimiter = op == "<<-"

    def _read_heredoc_bodies(self) -> None:
        """After a newline, the bodies of pending here-documents follow. With a quoted delimiter (`<<'EOF'`) a
        body is data; otherwise the shell expands it like a double-quoted string, so its `$(…)` and backticks
        are commands, recorded on the delimiter token to be judged like any other command substitution. In such
        a body a backslash-newline joins two lines before the shell looks for the delimiter."""
        for token_index, strip_tabs in self._pending:
            delimiter_token = self.tokens[token_index]
            literal = any(delimiter_token.mask)
            body: list[str] = []
            while True:
                line = self._read_line(delimiter_token)
                while not literal and _continues(line):
                    line = line[:-1] + self._read_line(delimiter_token)
                if (line.lstrip("\t") if strip_tabs else line) == delimiter_token.text:
                    break
                body.append(line)
            expands, substitutions = (False, []) if literal else _expansions_in("\n".join(body))
            self.tokens[token_index] = replace(delimiter_token, heredoc=True,
                                               body="".join(f"{line}\n" for line in body),
                                               expansion=delimiter_token.expansion or expands,
                                               substitutions=(*delimiter_token.substitutions, *substitutions))
        self._pending = []

    def _read_line(self, delimiter_token: _Token) -> str:
        source = self.source
        if self.index >= len(source):
            raise _ShellSyntaxError(f"here-document delimited by {delimiter_token.text!r} is not terminated")
        newline = source.find("\n", self.index)
        end = len(source) if newline < 0 else newline
        line = source[self.index: end]
        self.index = end + 1
        return line


def _shlex_tokens(command: str) -> list[str] | None:
    """The tokens of the reference tokeniser the brief names, or None when it cannot parse the command."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError:
        return None


def _same_as_shlex(command: str, tokens: Sequence[_Token]) -> bool:
    """Whether shlex reads the command as the same tokens (it merges adjacent operators and treats newlines as
    blanks, so ours are normalised the same way first)."""
    ours: list[str] = []
    previous: _Token | None = None
    for token in tokens:
        if token.operator and token.text == "\n":
            previous = None
            continue
        if token.operator and previous is not None and previous.operator and previous.end == token.start:
            ours[-1] += token.text
        else:
            ours.append(token.text)
        previous = token
    return _shlex_tokens(command) == ours


# ----------------------------------------------------------------------------------------------------------
# Splitting into simple commands
# ----------------------------------------------------------------------------------------------------------


@dataclass
class _Part:
    """One simple command: its words, its redirections and whether its stdin is a pipe."""

    words: list[_Token] = field(default_factory=list)
    redirections: list[tuple[str, _Token]] = field(default_factory=list)
    piped_in: bool = False

    def span(self, command: str) -> str:
        tokens = [*self.words, *(target for _, target in self.redirections)]
        if not tokens:
            return ""
        return command[min(t.start for t in tokens): max(t.end for t in tokens)]


def _split(tokens: Sequence[_Token]) -> tuple[list[_Part], list[PolicyResult]]:
    """Simple commands plus the findings the connecting operators imply."""
    parts: list[_Part] = []
    findings: list[PolicyResult] = []
    current = _Part()
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if not token.operator:
            current.words.append(token)
        elif token.text in _REDIRECTIONS:
            target = tokens[index + 1] if index + 1 < len(tokens) else None
            if target is not None and target.operator and target.text == "(" and token.text in ("<", ">"):
                findings.append(_approve(f"process substitution {token.text}(…) runs a hidden command",
                                         "structure:process-substitution"))
            elif target is None or target.operator:
                findings.append(_deny(f"redirection {token.text!r} has no target: not valid shell",
                                      "parse-error"))
            else:
                if _is_fd_prefix(current, token):
                    current.words.pop()
                current.redirections.append((token.text, target))
                index += 1
        elif token.text in _SEPARATORS:
            parts.append(current)
            current = _Part(piped_in=token.text in ("|", "|&"))
            if token.text == "&":
                findings.append(_approve("`&` starts a background job that outlives the check",
                                         "structure:background"))
        else:  # ( ) ;; ;& ;;&
            parts.append(current)
            current = _Part()
            findings.append(_approve("subshells, grouping and case branches are not allowed automatically",
                                     "structure:subshell"))
        index += 1
    parts.append(current)
    return [part for part in parts if part.words or part.redirections], findings


def _is_fd_prefix(part: _Part, redirection: _Token) -> bool:
    """`2>file`: the digits glued to a redirection are a file descriptor, not an argument."""
    if not part.words:
        return False
    last = part.words[-1]
    return last.end == redirection.start and last.text.isdigit() and not any(last.mask)


def _fork_bombs(tokens: Sequence[_Token]) -> list[PolicyResult]:
    """Function definitions (`f() {…}`, `function f {…}`); one that calls itself in its body is the fork-bomb
    shape `:(){ :|:& };:` and is denied, any other needs approval."""
    findings: list[PolicyResult] = []
    for index, token in enumerate(tokens):
        if token.operator:
            continue
        at_start = index == 0 or (tokens[index - 1].operator and tokens[index - 1].text in _SEPARATORS)
        if (index + 2 < len(tokens) and tokens[index + 1].text == "(" and tokens[index + 1].operator
                and tokens[index + 2].text == ")" and tokens[index + 2].operator):
            name, body_start = token.text, index + 3
        elif at_start and token.text == "function" and index + 1 < len(tokens) and not tokens[index + 1].operator:
            name, body_start = tokens[index + 1].text, index + 2
        else:
            continue
        body: list[str] = []
        for later in tokens[body_start:]:
            if not later.operator and later.text == "}":
                break
            if not later.operator:
                body.append(later.text)
        if name in body:
            findings.append(_deny(f"shell function {name!r} calls itself: the fork-bomb shape", "default:fork-bomb"))
        else:
            findings.append(_approve(f"defines the shell function {name!r}", "structure:function"))
    return findings


# ----------------------------------------------------------------------------------------------------------
# Judging simple commands
# ----------------------------------------------------------------------------------------------------------

_UNKNOWN = "fallback:unknown-command"
_RESERVED_WORDS = frozenset({"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "for", "case",
                             "esac", "select", "function", "in", "!", "{", "}", "[[", "]]", "coproc"})
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\+?=")
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "csh", "tcsh", "busybox"})
_PYTHON = re.compile(r"python(?:\d+(?:\.\d+)?)?")
_INTERPRETERS = {"perl": ("-e", "-E"), "ruby": ("-e",), "node": ("-e", "-p", "--eval", "--print"),
                 "php": ("-r",), "lua": ("-e",)}
_GLOB_SAFE = frozenset({"ls", "cat", "head", "tail", "wc", "grep", "egrep", "fgrep", "stat", "diff", "echo"})
"""Tools without an option that writes or executes, so a glob expanding to `-something` cannot hurt."""

_SAFE_GIT_GLOBAL_OPTIONS = frozenset({"--no-pager", "-P", "--no-replace-objects", "--literal-pathspecs",
                                      "--glob-pathspecs", "--noglob-pathspecs", "--icase-pathspecs",
                                      "--no-optional-locks"})
_SAFE_GIT_CONFIG = re.compile(r"(color|column|advice|i18n)\..+|core\.(quotepath|abbrev)|user\.(name|email)"
                              r"|init\.defaultbranch|safe\.directory|diff\.(noprefix|renames|algorithm)"
                              r"|log\.(date|decorate)|grep\.(linenumber|patterntype)", re.IGNORECASE)
"""`git -c` keys that cannot make git run a program; any other key (core.pager, alias.*, diff.external,
core.sshCommand, include.path, …) may, so it is denied. Even these need approval: `-c` is never automatic."""


@dataclass(frozen=True)
class _WrapperSpec:
    """How a command-running wrapper's own options look, so the wrapped argv can be found."""

    flags: frozenset[str] = frozenset()
    valued: frozenset[str] = frozenset()
    optional: frozenset[str] = frozenset()  # short options whose value, if any, is glued on (`xargs -i{}`)
    positionals: int = 0  # operands before the command (`timeout 5 cmd`)
    numeric: bool = False  # `nice -10 cmd`


def _spec(flags: str = "", valued: str = "", optional: str = "", positionals: int = 0,
          numeric: bool = False) -> _WrapperSpec:
    return _WrapperSpec(frozenset(flags.split()), frozenset(valued.split()), frozenset(optional.split()),
                        positionals, numeric)


_WRAPPERS = {
    "timeout": _spec("--preserve-status --foreground -v --verbose", "-s --signal -k --kill-after", positionals=1),
    "nice": _spec(valued="-n --adjustment", numeric=True),
    "nohup": _spec(),
    "stdbuf": _spec(valued="-i -o -e --input --output --error"),
    "time": _spec("-p -v -a -q --portability --verbose --append --quiet", "-f --format -o --output"),
    "command": _spec("-p -v -V"),
    "builtin": _spec(),
    "exec": _spec("-c -l", "-a"),
    "setsid": _spec("-c -f -w --ctty --fork --wait"),
    "ionice": _spec("-t --ignore", "-c -n --class --classdata"),
    "xargs": _spec("-0 --null -r --no-run-if-empty -t --verbose -p --interactive -x --exit -o --open-tty "
                   "--replace --eof --max-lines",
                   "-a --arg-file -d --delimiter -E -I -L -n --max-args -P --max-procs -s --max-chars "
                   "--process-slot-var", "-e -i -l"),
}


def _skip_option(argv: Sequence[str], index: int, spec: _WrapperSpec) -> int | None:
    """Index after the option at `argv[index]` (and its value), or None when the option is unknown."""
    arg = argv[index]
    if arg.startswith("--"):
        name, has_value, _ = arg.partition("=")
        if name in spec.flags:
            return index + 1
        if name in spec.valued:
            return index + 1 if has_value else index + 2
        return None
    if spec.numeric and re.fullmatch(r"-\d+", arg):
        return index + 1
    for position in range(1, len(arg)):
        option = "-" + arg[position]
        if option in spec.optional:
            return index + 1
        if option in spec.valued:
            return index + 1 if position + 1 < len(arg) else index + 2
        if option not in spec.flags:
            return None
    return index + 1


def _unwrap(argv: Sequence[str], spec: _WrapperSpec) -> list[str] | None:
    """The argv a wrapper will run, or None when its options are not understood."""
    index = 1
    while index < len(argv):
        arg = argv[index]
        if arg == "--":
            index += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        following = _skip_option(argv, index, spec)
        if following is None:
            return None
        index = following
    return list(argv[index + spec.positionals:])


def _env_command(argv: Sequence[str]) -> tuple[list[str] | None, str | None]:
    """(`env`'s wrapped argv, its `-S` string): `env [-i] [-u NAME] [NAME=value…] cmd…`."""
    index = 1
    while index < len(argv):
        arg = argv[index]
        if arg in ("-i", "--ignore-environment", "-", "-0", "--null", "-v", "--debug"):
            index += 1
        elif arg in ("-u", "--unset", "-C", "--chdir"):
            index += 2
        elif arg.startswith(("--unset=", "--chdir=")) or re.fullmatch(r"-[uC].+", arg):
            index += 1
        elif arg in ("-S", "--split-string"):
            return None, " ".join(argv[index + 1:])
        elif arg.startswith("--split-string=") or re.fullmatch(r"-S.+", arg):
            value = arg.split("=", 1)[1] if arg.startswith("--") else arg[2:]
            return None, " ".join([value, *argv[index + 1:]])
        elif arg == "--":
            index += 1
            break
        elif arg.startswith("-"):
            return None, None
        elif _ASSIGNMENT.match(arg):
            index += 1
        else:
            break
    return list(argv[index:]), None


def _shell_invocation(argv: Sequence[str]) -> tuple[str | None, bool]:
    """(the `-c` command string, whether the shell reads its program from stdin) for `bash [opts] …`."""
    has_c = has_s = False
    index = 1
    while index < len(argv):
        arg = argv[index]
        if arg in ("--", "-"):
            index += 1
            break
        if arg in ("--rcfile", "--init-file"):
            index += 2
            continue
        if arg.startswith("--"):
            index += 1
            continue
        if arg[:1] in "-+" and len(arg) > 1:
            has_c = has_c or "c" in arg[1:]
            has_s = has_s or "s" in arg[1:]
            index += 2 if ("o" in arg[1:] or "O" in arg[1:]) else 1
            continue
        break
    rest = argv[index:]
    if has_c:
        return (rest[0] if rest else ""), False
    return None, has_s or not rest


@dataclass(frozen=True)
class _Form:
    """An argv the rules are matched against. Forms derived by guessing (the basename of `/usr/bin/rm`)
    may only make a command stricter, so ALLOW rules are ignored for them."""

    argv: tuple[str, ...]
    allow_ok: bool = True


@dataclass
class _Analysis:
    """What the analyser learned about one argv.

    `hard` findings are floors no rule can lower; `forms` are matched against the rules; `soft` is the
    verdict when no rule matches (default: unknown command, needs approval).
    """

    forms: list[_Form]
    hard: list[PolicyResult] = field(default_factory=list)
    soft: PolicyResult | None = None


class _Evaluator:
    """Judges commands against a rule list, following nested commands up to MAX_NESTING levels."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)

    # --- whole command lines ------------------------------------------------------------------------------

    def command(self, command: str, depth: int) -> PolicyResult:
        if depth > MAX_NESTING:
            return _deny("commands nested this deeply cannot be reviewed", "structure:too-deep")
        raw = _raw_findings(command)
        if raw is not None:
            return raw
        try:
            tokens = _Lexer(command).run()
        except _ShellSyntaxError as error:
            return _deny(f"the command cannot be parsed ({error}); unparsable commands are denied", "parse-error")
        parts, findings = _split(tokens)
        findings.extend(_fork_bombs(tokens))
        results = list(findings)
        verdicts = [(part, self._part(part, depth)) for part in parts]
        several = len(verdicts) > 1 or bool(findings)
        for part, verdict in verdicts:
            if several and not verdict.allowed:
                verdict = replace(verdict, reason=f"{_quote(part.span(command))}: {verdict.reason}")
            results.append(verdict)
        result = _strictest(results)
        if result is None:
            if depth == 0:
                return _deny("the command is empty: there is nothing to run", "parse-error")
            return PolicyResult(Decision.ALLOW, "the nested command is empty", "structure:empty")
        if result.allowed:
            if not _same_as_shlex(command, tokens):
                return _approve("shlex reads this command differently from the shell lexer, so its quoting is "
                                "ambiguous and it is not allowed automatically", "structure:ambiguous-quoting")
            if len(verdicts) > 1:
                reasons = list(dict.fromkeys(verdict.reason for _, verdict in verdicts))
                rules = list(dict.fromkeys(verdict.rule for _, verdict in verdicts))
                return PolicyResult(Decision.ALLOW, f"every part is allowed: {'; '.join(reasons)}", ", ".join(rules))
        return result

    def _nested(self, command: str, depth: int, where: str) -> PolicyResult:
        result = self.command(command, depth + 1)
        return replace(result, reason=f"{where} runs {_quote(command)}: {result.reason}")

    # --- simple commands ---------------------------------------------------------------------------------

    def _part(self, part: _Part, depth: int) -> PolicyResult:
        hard: list[PolicyResult] = []
        for op, target in part.redirections:
            hard.extend(self._redirection(op, target, depth))
        for word in part.words:
            hard.extend(self._word(word, depth))
        words = list(part.words)
        hard.extend(self._stdin_program(part, depth))
        if words and words[0].text in _RESERVED_WORDS and not any(words[0].mask):
            while words and words[0].text in _RESERVED_WORDS and not any(words[0].mask):
                words.pop(0)
            hard.append(_approve("shell control structures (if/for/while/{ …}) are not allowed automatically",
                                 "structure:control"))
        assignments = []
        while words and (match := _ASSIGNMENT.match(words[0].text)) and not any(words[0].mask[: match.end()]):
            assignments.append(words.pop(0).text.split("=", 1)[0].rstrip("+"))
        if assignments:
            hard.append(_approve(f"sets {', '.join(assignments)} for the command, which can change what it does",
                                 "structure:assignment"))
        if words:
            if words[0].glob:
                hard.append(_approve("the command name is a glob", "structure:glob"))
            elif any(word.leading_glob for word in words[1:]) and words[0].text not in _GLOB_SAFE:
                hard.append(_approve("a glob here could expand to a file name that the command reads as an option",
                                     "structure:glob"))
            verdict = self._argv([word.text for word in words], depth, part.piped_in)
            # on a tie the first reason is shown: a rule's reason beats a finding, a finding beats "unknown"
            hard.insert(len(hard) if verdict.rule == _UNKNOWN else 0, verdict)
        return _strictest(hard) or _approve("redirections without a command", "structure:redirect")

    def _stdin_program(self, part: _Part, depth: int) -> list[PolicyResult]:
        """`sh <<EOF … EOF` and `bash <<< '…'` run the here-document as a script: it is judged as a command,
        as strictly as `bash -c` would be (the script is judged even with a quoted delimiter)."""
        if not part.words or posixpath.basename(part.words[0].text) not in _SHELLS:
            return []
        script, reads_stdin = _shell_invocation([word.text for word in part.words])
        if script is not None or not reads_stdin:
            return []
        programs = [target.body if op in ("<<", "<<-") else target.text for op, target in part.redirections
                    if op in ("<<", "<<-", "<<<")]
        return [self._nested(program, depth, f"`{part.words[0].text}` reading a here-document")
                for program in programs if program is not None]

    def _word(self, word: _Token, depth: int) -> list[PolicyResult]:
        findings: list[PolicyResult] = []
        if word.expansion:
            findings.append(_approve("uses shell expansion ($VAR, $(…), backticks) whose result cannot be known in "
                                     "advance", "structure:expansion"))
        for body in word.substitutions:
            findings.append(self._nested(body, depth, "command substitution"))
        if word.brace_expansion:
            findings.append(_approve("uses brace expansion, which turns one word into several",
                                     "structure:brace-expansion"))
        return findings

    def _redirection(self, op: str, target: _Token, depth: int) -> list[PolicyResult]:
        findings = self._word(target, depth)
        path = target.text
        if op in ("<<", "<<-", "<<<"):
            findings.append(_approve("here-documents and here-strings feed hidden input to the command",
                                     "structure:heredoc"))
        elif op in (">&", "<&") and re.fullmatch(r"\d+-?|-", path):
            pass  # duplicating or closing a file descriptor (2>&1) touches no file
        elif path in _HARMLESS_DEVICES:
            pass  # > /dev/null, < /dev/null
        elif _is_device(path):
            findings.append(_deny(f"redirects to the device or kernel interface {path}", "default:device"))
        elif op != "<" and _escapes_workspace(path):
            findings.append(_deny(f"writes to {path}: outside the working tree or a system path",
                                  "default:system-write"))
        elif op == "<":
            findings.append(_approve(f"reads its input from the file {path}", "structure:redirect"))
        else:
            findings.append(_approve(f"writes its output to the file {path}", "structure:redirect"))
        return findings

    def _argv(self, argv: list[str], depth: int, piped_in: bool) -> PolicyResult:
        """Verdict on one argv: strictest matching rule (or the fallback), never below the hard findings."""
        analysis = self._analyse(argv, depth, piped_in)
        matches = [rule.result() for form in analysis.forms for rule in self.rules
                   if (form.allow_ok or rule.decision is not Decision.ALLOW) and rule.matches(form.argv)]
        base = _strictest(matches) or analysis.soft
        if base is not None:
            return _strictest([base, *analysis.hard]) or base
        unknown = _approve(f"no rule allows {_quote(shlex.join(argv))}; commands the policy does not know need "
                           "approval", _UNKNOWN)
        return _strictest([*analysis.hard, unknown]) or unknown  # structural reasons are more telling on a tie

    def _wrapped(self, argv: list[str], depth: int, piped_in: bool, where: str) -> PolicyResult:
        if depth + 1 > MAX_NESTING:
            return _deny("commands nested this deeply cannot be reviewed", "structure:too-deep")
        result = self._argv(argv, depth + 1, piped_in)
        return replace(result, reason=f"{where} runs {_quote(shlex.join(argv))}: {result.reason}")

    def _analyse(self, argv: list[str], depth: int, piped_in: bool) -> _Analysis:
        name = argv[0]
        if "/" in name:
            base = posixpath.basename(name.rstrip("/"))
            by_path = _approve(f"runs {_quote(name)} by path; only commands known by name are allowed",
                               "structure:path")
            if not base or "/" in base:
                return _Analysis([_Form(tuple(argv))], soft=by_path)
            inner = self._analyse([base, *argv[1:]], depth, piped_in)
            forms = [_Form(tuple(argv)), *(_Form(form.argv, allow_ok=False) for form in inner.forms)]
            return _Analysis(forms, hard=inner.hard, soft=by_path)
        if name in _SHELLS:
            return self._shell(argv, depth, piped_in)
        if _PYTHON.fullmatch(name):
            return self._python(argv, piped_in)
        if name in _INTERPRETERS:
            return self._interpreter(argv, piped_in)
        if name in _WRAPPERS:
            return self._wrapper(argv, depth, piped_in)
        handler = {"env": self._env, "eval": self._eval, "source": self._source, ".": self._source,
                   "find": self._find, "git": self._git, "rg": self._rg}.get(name)
        if handler is not None:
            return handler(argv, depth)
        return _Analysis([_Form(tuple(argv))])

    # --- handlers for commands that run other commands ----------------------------------------------------

    def _shell(self, argv: list[str], depth: int, piped_in: bool) -> _Analysis:
        script, reads_stdin = _shell_invocation(argv)
        form = [_Form(tuple(argv))]
        if script is not None:
            finding = _approve(f"`{argv[0]} -c` runs a nested shell command; nested shells are never allowed "
                               "automatically", "structure:nested-shell")
            return _Analysis(form, hard=[finding, self._nested(script, depth, f"`{argv[0]} -c`")], soft=finding)
        if piped_in and reads_stdin:
            return _Analysis(form, hard=[_deny(f"pipes data into `{argv[0]}` to be run as a program (the "
                                               "`curl … | sh` shape)", "default:pipe-to-shell")])
        return _Analysis(form, soft=_approve(f"`{argv[0]}` runs a shell script or an interactive shell",
                                             "structure:script"))

    def _python(self, argv: list[str], piped_in: bool) -> _Analysis:
        form = [_Form(tuple(argv))]
        index = 1
        while index < len(argv):
            arg = argv[index]
            if arg in ("-W", "-X"):
                index += 2
            elif arg.startswith(("-W", "-X")) or arg in ("-B", "-b", "-bb", "-E", "-I", "-O", "-OO", "-P", "-q",
                                                          "-s", "-S", "-u", "-v"):
                index += 1
            elif arg == "-m" or (arg.startswith("-m") and not arg.startswith("--")):
                module = argv[index + 1] if arg == "-m" and index + 1 < len(argv) else arg[2:]
                rest = argv[index + 2:] if arg == "-m" else argv[index + 1:]
                if not module:
                    break
                return _Analysis([*form, _Form((module, *rest))],
                                 soft=_approve(f"runs the Python module `{module}`", "structure:script"))
            elif arg.startswith("-") and not arg.startswith("--") and "c" in arg:
                finding = _approve(f"`{argv[0]} -c` runs inline code the policy cannot analyse",
                                   "structure:inline-code")
                return _Analysis(form, hard=[finding], soft=finding)
            elif arg == "-" or not arg.startswith("-"):
                break
            else:
                return _Analysis(form, soft=_approve(f"unrecognised option {arg} for `{argv[0]}`",
                                                     "structure:script"))
        if index >= len(argv) or argv[index] == "-":
            if piped_in:
                return _Analysis(form, hard=[_deny(f"pipes data into `{argv[0]}` to be run as a program (the "
                                                   "`curl … | sh` shape)", "default:pipe-to-shell")])
            return _Analysis(form, soft=_approve(f"`{argv[0]}` reads a program from stdin or starts a REPL",
                                                 "structure:script"))
        return _Analysis(form, soft=_approve(f"runs the Python script {argv[index]}", "structure:script"))

    def _interpreter(self, argv: list[str], piped_in: bool) -> _Analysis:
        form = [_Form(tuple(argv))]
        if any(arg in _INTERPRETERS[argv[0]] for arg in argv[1:]):
            finding = _approve(f"`{argv[0]}` runs inline code the policy cannot analyse", "structure:inline-code")
            return _Analysis(form, hard=[finding], soft=finding)
        operands = _operands(argv)
        if piped_in and (not operands or operands[0] == "-"):
            return _Analysis(form, hard=[_deny(f"pipes data into `{argv[0]}` to be run as a program (the "
                                               "`curl … | sh` shape)", "default:pipe-to-shell")])
        return _Analysis(form, soft=_approve(f"`{argv[0]}` runs a script", "structure:script"))

    def _wrapper(self, argv: list[str], depth: int, piped_in: bool) -> _Analysis:
        name = argv[0]
        inner = _unwrap(argv, _WRAPPERS[name])
        if inner is None:
            finding = _approve(f"the options of `{name}` are not understood, so the command it runs is unknown",
                               "structure:wrapper")
            return _Analysis([_Form(tuple(argv))], hard=[finding], soft=finding)
        finding = _approve(f"`{name}` runs another command; wrapped commands are never allowed automatically",
                           "structure:wrapper")
        hard = [finding]
        if inner:
            hard.append(self._wrapped(inner, depth, piped_in and name != "xargs", f"`{name}`"))
        return _Analysis([_Form(tuple(argv))], hard=hard, soft=finding)

    def _env(self, argv: list[str], depth: int) -> _Analysis:
        inner, split_string = _env_command(argv)
        finding = _approve("`env` runs another command with a changed environment; never allowed automatically",
                           "structure:wrapper")
        hard = [finding]
        if split_string is not None:
            hard.append(self._nested(split_string, depth, "`env -S`"))
        elif inner is None:
            hard[0] = finding = _approve("the options of `env` are not understood", "structure:wrapper")
        elif inner:
            hard.append(self._wrapped(inner, depth, False, "`env`"))
        return _Analysis([_Form(tuple(argv))], hard=hard, soft=finding)

    def _eval(self, argv: list[str], depth: int) -> _Analysis:
        finding = _approve("`eval` runs a string as a command; never allowed automatically", "structure:eval")
        return _Analysis([_Form(tuple(argv))], hard=[finding, self._nested(" ".join(argv[1:]), depth, "`eval`")],
                         soft=finding)

    def _source(self, argv: list[str], depth: int) -> _Analysis:
        finding = _approve(f"`{argv[0]}` runs a script inside the current shell", "structure:source")
        return _Analysis([_Form(tuple(argv))], hard=[finding], soft=finding)

    def _find(self, argv: list[str], depth: int) -> _Analysis:
        hard: list[PolicyResult] = []
        starts = []
        for arg in argv[1:]:
            if arg.startswith(("-", "(", "!")) and arg not in ("-H", "-L", "-P"):
                break
            if arg not in ("-H", "-L", "-P"):
                starts.append(arg)
        index = 1
        while index < len(argv):
            arg = argv[index]
            if arg in ("-exec", "-execdir", "-ok", "-okdir"):
                end = index + 1
                while end < len(argv) and argv[end] not in (";", "+"):
                    end += 1
                hard.append(_approve(f"`find {arg}` runs a command for every file found", "structure:find-exec"))
                if end > index + 1:
                    hard.append(self._wrapped(argv[index + 1: end], depth, False, f"`find {arg}`"))
                index = end + 1
                continue
            if arg == "-delete":
                hard.append(_approve("`find -delete` deletes files", "structure:find-delete"))
                if any(map(_escapes_workspace, starts)):
                    hard.append(_deny("`find -delete` under /, a home directory, a parent directory or a system "
                                      "path", "default:destructive"))
            elif arg in ("-fprint", "-fprint0", "-fprintf", "-fls"):
                target = argv[index + 1] if index + 1 < len(argv) else ""
                if _is_device(target):
                    hard.append(_deny(f"`find {arg}` writes to the device {target}", "default:device"))
                hard.append(_approve(f"`find {arg}` writes to a file", "structure:redirect"))
            index += 1
        return _Analysis([_Form(tuple(argv))], hard=hard)

    def _rg(self, argv: list[str], depth: int) -> _Analysis:
        hard: list[PolicyResult] = []
        for index, arg in enumerate(argv[1:], start=1):
            if arg == "--":
                break
            if arg == "--pre" or arg.startswith("--pre="):
                program = arg[len("--pre="):] if "=" in arg else (argv[index + 1] if index + 1 < len(argv) else "")
                base = posixpath.basename(program)
                if base in _SHELLS or base in _INTERPRETERS or _PYTHON.fullmatch(base):
                    hard.append(_deny(f"`rg --pre {program}` runs every searched file through an interpreter",
                                      "default:rg-pre"))
                hard.append(_approve("`rg --pre` runs a program on every searched file", "structure:rg-pre"))
                if program:
                    hard.append(self._wrapped([program], depth, False, "`rg --pre`"))
            elif arg == "--pre-glob" or arg.startswith("--pre-glob="):
                hard.append(_approve("`rg --pre-glob` selects files for a preprocessor program", "structure:rg-pre"))
        return _Analysis([_Form(tuple(argv))], hard=hard)

    def _git(self, argv: list[str], depth: int) -> _Analysis:
        """Git's global options come before the subcommand; the rules then see `git <sub> …` without them.
        Options that make git run a program (`-c core.pager=…`, `--upload-pack`, `--exec-path=…`) are denied."""
        hard: list[PolicyResult] = []
        index = 1
        clean = True
        while index < len(argv) and argv[index].startswith("-"):
            arg = argv[index]
            if arg in _SAFE_GIT_GLOBAL_OPTIONS:
                index += 1
            elif arg == "-c" or arg.startswith("-c"):
                setting = arg[2:] or (argv[index + 1] if index + 1 < len(argv) else "")
                hard.append(self._git_config(setting.split("=", 1)[0]))
                index += 1 if arg[2:] else 2
            elif arg.startswith("--config-env"):
                setting = arg.split("=", 1)[1] if "=" in arg else (argv[index + 1] if index + 1 < len(argv) else "")
                hard.append(self._git_config(setting.split("=", 1)[0]))
                index += 1 if "=" in arg else 2
            elif arg.startswith("--exec-path="):
                hard.append(_deny("`git --exec-path=…` makes git run programs from another directory",
                                  "default:git-exec"))
                index += 1
            elif arg in ("-C", "--git-dir", "--work-tree", "--namespace"):
                hard.append(_approve(f"`git {arg}` points git at another repository or directory",
                                     "structure:git-option"))
                index += 2
            elif arg.startswith(("--git-dir=", "--work-tree=", "--namespace=")):
                hard.append(_approve(f"`git {arg.split('=')[0]}` points git at another repository or directory",
                                     "structure:git-option"))
                index += 1
            else:
                hard.append(_approve(f"the git option {arg} is not understood", "structure:git-option"))
                clean = False
                break
        rest = argv[index:]
        hard.extend(self._git_subcommand_options(rest, depth))
        forms = [_Form(tuple(argv))]
        if rest and clean:
            forms.append(_Form(("git", *rest)))
        return _Analysis(forms, hard=hard)

    def _git_subcommand_options(self, rest: list[str], depth: int) -> list[PolicyResult]:
        """Subcommand options that run a program: `--upload-pack`, `--receive-pack`, `--exec`, `clone -u`,
        `grep -O`; `rebase --exec CMD` is judged as a nested command instead."""
        findings: list[PolicyResult] = []
        args = rest[1:]
        for index, arg in enumerate(args):
            if arg == "--":
                break
            if rest[0] == "rebase" and (_could_be_option(arg, "--exec") or re.fullmatch(r"-[^-]*x.*", arg)):
                value = arg.split("=", 1)[1] if "=" in arg else (args[index + 1] if index + 1 < len(args) else "")
                findings.append(_approve("`git rebase --exec` runs a command after each commit",
                                         "structure:git-option"))
                findings.append(self._nested(value, depth, "`git rebase --exec`"))
            elif arg.startswith("--") and len(arg.split("=", 1)[0]) > 4 and any(
                    _could_be_option(arg, option) for option in ("--upload-pack", "--receive-pack", "--exec",
                                                                 "--config-env", "--exec-path")):
                findings.append(_deny(f"`git {rest[0]} {arg}` makes git run an arbitrary program",
                                      "default:git-exec"))
            elif rest[0] == "clone" and re.fullmatch(r"-[^-]*u.*", arg):
                findings.append(_deny("`git clone -u` makes git run an arbitrary program", "default:git-exec"))
            elif rest[0] == "grep" and (re.fullmatch(r"-[^-]*O.*", arg) or _could_be_option(
                    arg, "--open-files-in-pager")):
                findings.append(_deny("`git grep -O` runs an arbitrary pager program", "default:git-exec"))
            if _could_be_option(arg, "--ext-diff") or (
                    len(arg.split("=", 1)[0]) >= len("--textc") and _could_be_option(arg, "--textconv")):
                # Abbreviations count where git could take them (`--textc`; `--text` is another option).
                findings.append(_approve(f"`git {rest[0]} {arg}` runs the external diff or textconv program that "
                                         "the repository's configuration and attributes name",
                                         "structure:git-option"))
        return findings

    @staticmethod
    def _git_config(key: str) -> PolicyResult:
        if key and _SAFE_GIT_CONFIG.fullmatch(key):
            return _approve(f"`git -c {key}=…` overrides configuration; never allowed automatically",
                            "structure:git-config")
        return _deny(f"`git -c {key or '…'}` can make git run an arbitrary program (pager, editor, alias, "
                     "ssh command, diff driver, …)", "default:git-config")


_DOCKER_SOCKETS = re.compile(r"(docker|containerd|podman|crio)\.sock", re.IGNORECASE)


def _raw_findings(command: str) -> PolicyResult | None:
    """Checks on the text itself, before parsing."""
    for ch in command:
        if ch not in "\t\n" and unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            return _deny(f"the command contains the control or invisible character U+{ord(ch):04X}, which could "
                         "hide what it really does", "default:control-characters")
    if _DOCKER_SOCKETS.search(command):
        return _deny("the command refers to a container-runtime socket, the classic sandbox escape",
                     "default:docker-socket")
    return None


# ----------------------------------------------------------------------------------------------------------
# Policy files and the public entry point
# ----------------------------------------------------------------------------------------------------------

_DECISIONS = {"allow": Decision.ALLOW, "require_approval": Decision.REQUIRE_APPROVAL,
              "require-approval": Decision.REQUIRE_APPROVAL, "deny": Decision.DENY}
_RULE_KEYS = frozenset({"match", "regex", "decision", "reason"})


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _parse_rule(entry: dict[str, object], path: Path, number: int) -> Rule:
    where = f"policy file {path}, rule #{number}"
    unknown = sorted(set(entry) - _RULE_KEYS)
    if unknown:
        raise PolicyFileError(f"{where}: unknown key(s) {', '.join(unknown)} (expected match, regex, decision, "
                              "reason)")
    decision_name = entry.get("decision")
    if not isinstance(decision_name, str) or decision_name.lower() not in _DECISIONS:
        raise PolicyFileError(f"{where}: decision must be one of allow, require_approval, deny "
                              f"(got {decision_name!r})")
    decision = _DECISIONS[decision_name.lower()]
    words: tuple[str, ...] = ()
    match = entry.get("match")
    if match is not None:
        if isinstance(match, list) and match and all(isinstance(word, str) for word in match):
            words = tuple(match)
        elif isinstance(match, str):
            try:
                words = tuple(shlex.split(match))
            except ValueError as error:
                raise PolicyFileError(f"{where}: match {match!r} is not valid shell words: {error}") from None
        if not words:
            raise PolicyFileError(f"{where}: match must be a non-empty string or list of strings")
    pattern: re.Pattern[str] | None = None
    regex = entry.get("regex")
    if regex is not None:
        if not isinstance(regex, str) or not regex:
            raise PolicyFileError(f"{where}: regex must be a non-empty string")
        try:
            pattern = re.compile(regex)
        except re.error as error:
            raise PolicyFileError(f"{where}: invalid regex {regex!r}: {_one_line(error)}") from None
    if not words and pattern is None:
        raise PolicyFileError(f"{where}: a rule needs `match` (command prefix) or `regex`")
    reason = entry.get("reason")
    if reason is not None and not (isinstance(reason, str) and reason.strip()):
        raise PolicyFileError(f"{where}: reason must be a non-empty string")
    described = shlex.join(words) if words else f"/{regex}/"
    return Rule(decision=decision, name=f"{path}#{number}", words=words, regex=pattern,
                reason=_one_line(reason) if reason else f"policy file rule for {described}: {decision.value}")


def _load_rules(path: Path) -> tuple[Rule, ...]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyFileError(f"policy file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        detail = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise PolicyFileError(f"policy file {path} cannot be read: {_one_line(detail)}") from None
    except tomllib.TOMLDecodeError as error:
        raise PolicyFileError(f"policy file {path} is not valid TOML: {_one_line(error)}") from None
    unknown = sorted(set(data) - {"rule"})
    if unknown:
        raise PolicyFileError(f"policy file {path}: unknown top-level key(s) {', '.join(unknown)} "
                              "(rules go in [[rule]] tables)")
    entries = data.get("rule", [])
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise PolicyFileError(f"policy file {path}: `rule` must be an array of tables, written [[rule]]")
    return tuple(_parse_rule(entry, path, number) for number, entry in enumerate(entries, start=1))


class CommandPolicy:
    """Decides ALLOW / REQUIRE_APPROVAL / DENY for shell commands: the defaults plus optional extra rules.

    The strictest matching rule wins, so extra rules tighten freely but can only loosen commands the
    defaults do not know; they can never loosen a default DENY (see the module docstring).
    """

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        self._extra = tuple(rules)
        self._evaluator = _Evaluator((*DEFAULT_RULES, *self._extra))

    @classmethod
    def default(cls) -> CommandPolicy:
        """The built-in rules only."""
        return cls()

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> CommandPolicy:
        """The built-in rules plus the `[[rule]]` tables of a TOML policy file; raises PolicyFileError."""
        return cls(_load_rules(Path(path)))

    @property
    def rules(self) -> tuple[Rule, ...]:
        """Every rule in force: the defaults, then the extra ones."""
        return self._evaluator.rules

    def evaluate(self, command: str) -> PolicyResult:
        """Judge one shell command line. Never raises: anything unexpected is a DENY (fail closed), logged."""
        if not isinstance(command, str):
            return _deny(f"the command is not text but {type(command).__name__}; only a shell command line can be "
                         "judged", "parse-error")
        try:
            return self._evaluator.command(command, depth=0)
        except Exception as error:  # a policy check must fail closed rather than crash the agent loop
            log.exception("command policy: internal error while judging %r; the command is denied", command[:300])
            detail = _one_line(f"{type(error).__name__}: {error}")[:200]
            return _deny(f"internal error in the command policy ({detail}); the command is denied because the "
                         "policy fails closed", "internal-error")

    def __repr__(self) -> str:
        return f"CommandPolicy({len(DEFAULT_RULES)} default rules + {len(self._extra)} extra)"
