"""The rules: what a plain argv is matched against, and the built-in rule table.

A Rule proposes a decision for the simple commands it matches; the strictest matching rule wins. The option
helpers err towards "the option may be in effect" because a yes only ever makes a rule stricter.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from runner.policy.verdict import Decision, PolicyResult


def could_be_option(arg: str, option: str) -> bool:
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


def ends_options(args: Sequence[str], index: int) -> bool:
    """Whether the `--` at args[index] ends the options. Not after an option without `=`: one that takes a value
    takes a following `--` as it (`git grep -e -- -Ocmd`, `git log --decorate-refs -- --output=f`), and which
    options take values is not modelled, so the words after it may still be options (over-strict, never under)."""
    before = args[index - 1] if index > 0 else ""
    return not before.startswith("-") or before == "-" or (before.startswith("--") and "=" in before)


def mentions_option(args: Sequence[str], options: Sequence[str]) -> bool:
    """True when any of `options` may be in effect; arguments after a `--` that ends the options are operands."""
    for index, arg in enumerate(args):
        if arg == "--" and ends_options(args, index):
            return False
        if arg.startswith("-") and arg != "-" and any(could_be_option(arg, option) for option in options):
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
        if self.unless and mentions_option(operands, self.unless):
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
HARMLESS_DEVICES = frozenset({
    "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/stdin", "/dev/stdout",
    "/dev/stderr", "/dev/tty",
})


def escapes_workspace(path: str) -> bool:
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


def is_device(path: str) -> bool:
    """A device node or kernel interface other than the harmless ones (`/dev/null`, `/dev/stdout`, …)."""
    path = posixpath.normpath(path) if path.startswith("/") else path
    if path.startswith("/dev/"):
        return path not in HARMLESS_DEVICES and not re.fullmatch(r"/dev/fd/\d+", path)
    return path.startswith(("/sys/", "/proc/sys", "/proc/sysrq-trigger")) or path == "/sys"


def operand_args(argv: Sequence[str]) -> list[str]:
    """The arguments that are not options (everything after `--` is an operand)."""
    found: list[str] = []
    options_done = False
    for arg in argv[1:]:
        if not options_done and arg == "--":
            options_done = True
        elif options_done or not arg.startswith("-") or arg == "-":
            found.append(arg)
    return found


def _rm_escapes(argv: Sequence[str]) -> bool:
    options = [arg for arg in argv[1:] if arg.startswith("--")]
    return mentions_option(options, ["--no-preserve-root"]) or any(map(escapes_workspace, operand_args(argv)))


def _targets_escape(argv: Sequence[str]) -> bool:
    return any(map(escapes_workspace, operand_args(argv)))


def _kills_everything(argv: Sequence[str]) -> bool:
    """`kill -9 -1` (or `kill -- -1`) signals every process the user may signal. A first argument `-1` is a
    signal number (`kill -1 1234` sends SIGHUP to one process), so only later arguments can be the pid -1."""
    return "-1" in argv[2:]


def _is_mkfs(argv: Sequence[str]) -> bool:
    return argv[0].startswith("mkfs") or argv[0] in ("mke2fs", "mkswap")


def _touches_device(argv: Sequence[str]) -> bool:
    """Any argument (or `key=value` value, as in `dd of=/dev/sda`) naming a device or kernel interface."""
    if argv[0] in _DEVICE_READERS:
        return False
    return any(is_device(arg) or is_device(arg.split("=", 1)[-1]) for arg in argv[1:])


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
    return not mentions_option(argv[2:], ["-f", "--file", "--makefile", "-C", "--directory", "--eval", "-E",
                                           "-e", "--environment-overrides", "-I", "--include-dir"])


def _rule(decision: Decision, words: str, reason: str, kind: str, *, unless: Sequence[str] = (),
          requires: Sequence[str] = (), check: Callable[[Sequence[str]], bool] | None = None) -> Rule:
    return Rule(decision=decision, reason=reason, name=f"default:{kind}", words=tuple(words.split()),
                unless=tuple(unless), requires=tuple(requires), check=check)


def default_rules() -> tuple[Rule, ...]:
    """The built-in rule table; every CommandPolicy includes it. Structural checks (pipes, redirections,
    wrappers, …) live in the analyser. Built per policy (0.6 ms), not once at import, so that the table is code
    that runs under test: mutation testing forks from a process that has imported this module already."""
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


