"""Tools with options that run programs: `find -exec`, `rg --pre`, git's `-c`, `--upload-pack`, `--ext-diff`,
`rebase --exec` and friends. Git's global options are peeled off so the rules see `git <subcommand> …`."""

from __future__ import annotations

import posixpath
import re

from runner.policy.commands import INTERPRETERS, PYTHON, SHELLS, Analysis, Form, Judge
from runner.policy.rules import HARMLESS_DEVICES, could_be_option, ends_options, escapes_workspace, is_device
from runner.policy.verdict import PolicyResult, approve, deny

_SAFE_GIT_GLOBAL_OPTIONS = frozenset({"--no-pager", "-P", "--no-replace-objects", "--literal-pathspecs",
                                      "--no-literal-pathspecs", "--glob-pathspecs", "--noglob-pathspecs",
                                      "--icase-pathspecs", "--no-optional-locks", "--no-advice", "--no-lazy-fetch",
                                      "--exec-path", "--html-path", "--man-path", "--info-path"})
"""git 2.47's global options that run nothing (the four `--…-path` without a value print a path and exit).
git refuses an option not in its own list ("unknown option") and runs nothing, so the list below is all of
them: past an option the policy does not know, nothing can run."""
_GIT_OTHER_TREE = {"-C": "repository or directory", "--git-dir": "repository or directory",
                   "--work-tree": "repository or directory", "--namespace": "repository or directory",
                   "--shallow-file": "shallow file", "--attr-source": "attributes tree"}
"""Global options with a value that point git at another repository, directory or attributes tree."""
_MAX_GLOBAL_OPTIONS = 64
"""More global options than any real line has; past it the line is denied rather than matched form by form."""
_REMOTE_SUBCOMMANDS = frozenset({"clone", "fetch", "pull", "push", "ls-remote", "archive", "fetch-pack",
                                 "send-pack", "remote", "submodule"})
"""Subcommands that have `--upload-pack`, `--receive-pack` or `--exec`: any unique prefix of those runs a program."""
_SAFE_GIT_CONFIG = re.compile(r"(color|column|advice|i18n)\..+|core\.(quotepath|abbrev)|user\.(name|email)"
                              r"|init\.defaultbranch|safe\.directory|diff\.(noprefix|renames|algorithm)"
                              r"|log\.(date|decorate)|grep\.(linenumber|patterntype)", re.IGNORECASE)
"""`git -c` keys that cannot make git run a program; any other key (core.pager, alias.*, diff.external,
core.sshCommand, include.path, …) may, so it is denied. Even these need approval: `-c` is never automatic."""



def analyse_find(judge: Judge, argv: list[str], depth: int) -> Analysis:
    hard: list[PolicyResult] = []
    starts = []
    args = iter(argv[1:])
    for arg in args:
        if arg in ("-H", "-L", "-P") or re.fullmatch(r"-O\d*", arg):
            continue  # options before the start points (`-O3`: optimisation level)
        if arg == "-D":
            next(args, None)  # `-D debugopts`
            continue
        if arg in ("(", "!") or (arg.startswith("-") and arg != "-"):
            break  # where GNU find's expression starts: `!x`, `(x`, `-` and a leading `)` or `,` are paths
        starts.append(arg)
    index = 1
    while index < len(argv):
        arg = argv[index]
        if arg in ("-exec", "-execdir", "-ok", "-okdir"):
            end = index + 1
            while end < len(argv) and argv[end] not in (";", "+"):
                end += 1
            hard.append(approve(f"`find {arg}` runs a command for every file found", "structure:find-exec"))
            if end > index + 1:
                hard.append(judge.wrapped(argv[index + 1: end], depth, False, f"`find {arg}`"))
            index = end + 1
            continue
        if arg == "-delete":
            hard.append(approve("`find -delete` deletes files", "structure:find-delete"))
            if any(map(escapes_workspace, starts)):
                hard.append(deny("`find -delete` under /, a home directory, a parent directory or a system "
                                  "path", "default:destructive"))
        elif arg in ("-fprint", "-fprint0", "-fprintf", "-fls"):
            target = argv[index + 1] if index + 1 < len(argv) else ""
            if is_device(target):
                hard.append(deny(f"`find {arg}` writes to the device {target}", "default:device"))
            elif target and target not in HARMLESS_DEVICES and escapes_workspace(target):
                # as `> /etc/passwd` is: a write outside the tree
                hard.append(deny(f"`find {arg}` writes to {target}: outside the working tree or a system path",
                                 "default:system-write"))
            hard.append(approve(f"`find {arg}` writes to a file", "structure:redirect"))
        index += 1
    return Analysis([Form(tuple(argv))], hard=hard)

def analyse_rg(judge: Judge, argv: list[str], depth: int) -> Analysis:
    hard: list[PolicyResult] = []
    for index, arg in enumerate(argv[1:], start=1):
        if arg == "--":
            break
        if arg == "--pre" or arg.startswith("--pre="):
            program = arg[len("--pre="):] if "=" in arg else (argv[index + 1] if index + 1 < len(argv) else "")
            base = posixpath.basename(program)
            if base in SHELLS or base in INTERPRETERS or PYTHON.fullmatch(base):
                hard.append(deny(f"`rg --pre {program}` runs every searched file through an interpreter",
                                  "default:rg-pre"))
            hard.append(approve("`rg --pre` runs a program on every searched file", "structure:rg-pre"))
            if program:
                hard.append(judge.wrapped([program], depth, False, "`rg --pre`"))
        elif arg == "--pre-glob" or arg.startswith("--pre-glob="):
            hard.append(approve("`rg --pre-glob` selects files for a preprocessor program", "structure:rg-pre"))
    return Analysis([Form(tuple(argv))], hard=hard)

def analyse_git(judge: Judge, argv: list[str], depth: int) -> Analysis:
    """Git's global options come before the subcommand; the rules then see `git <sub> …` without them.
    Options that make git run a program (`-c core.pager=…`, `--upload-pack`, `--exec-path=…`) are denied."""
    hard: list[PolicyResult] = []
    index = 1
    clean = True
    starts: list[int] = []
    while index < len(argv) and argv[index].startswith("-"):
        starts.append(index)
        finding, after = _global_option(argv, index)
        hard += [finding] if finding is not None else []
        if after is None:
            clean = False
            break
        index = after
    rest = argv[index:]
    hard.extend(_git_subcommand_options(judge, rest, depth))
    # A rule naming a global option (`git -C`, `git -C x push`) must see it wherever it stands among the others
    # (`git --no-pager -C x push`, `git -C x --no-pager push`): the line from each global option on, and each
    # global option with its value before the subcommand, are forms too - for tightening only. Past an option
    # not understood, where the subcommand starts is not known: every later word spelt like an option counts.
    if not clean:
        starts += [later for later in range(index + 1, len(argv)) if argv[later].startswith("-")]
    if len(starts) > _MAX_GLOBAL_OPTIONS:  # each start is a form as long as the line: quadratic past this
        return Analysis([Form(tuple(argv))], hard=[*hard, deny(
            f"more than {_MAX_GLOBAL_OPTIONS} git global options cannot be reviewed", "structure:unmodelled")])
    forms = [Form(tuple(argv)), *(Form(("git", *argv[start:]), allow_ok=False) for start in starts[1:])]
    if clean:  # each option but the last with its value, then the subcommand (the last one's form is above)
        forms += [Form(("git", *argv[start:end], *rest), allow_ok=False)
                  for start, end in zip(starts, starts[1:], strict=False)]
    if rest and clean:
        forms.append(Form(("git", *rest)))
    return Analysis(forms, hard=hard)


def _global_option(argv: list[str], index: int) -> tuple[PolicyResult | None, int | None]:
    """The finding on the global option at argv[index] (None: harmless) and where the next word starts (None:
    an option git does not have either: git refuses the line, and where the option ends is not known)."""
    arg = argv[index]
    value = argv[index + 1] if index + 1 < len(argv) else ""
    name = arg.split("=", 1)[0]
    if arg in _SAFE_GIT_GLOBAL_OPTIONS or arg.startswith("--list-cmds="):
        return None, index + 1
    if arg.startswith("-c"):
        return _git_config((arg[2:] or value).split("=", 1)[0]), index + (1 if arg[2:] else 2)
    if name == "--config-env":
        setting = arg.split("=", 1)[1] if "=" in arg else value
        return _git_config(setting.split("=", 1)[0]), index + (1 if "=" in arg else 2)
    if name == "--exec-path":
        return deny("`git --exec-path=…` makes git run programs from another directory", "default:git-exec"), index + 1
    # `--git-dir=x` and `--git-dir x` both; `-C` only with its value apart (git has no `-C=x`)
    if name in _GIT_OTHER_TREE and (name != "-C" or arg == "-C"):
        return (approve(f"`git {name}` points git at another {_GIT_OTHER_TREE[name]}", "structure:git-option"),
                index + (1 if "=" in arg else 2))
    if arg == "--bare":
        return approve("`git --bare` treats the directory as a repository", "structure:git-option"), index + 1
    if arg in ("-p", "--paginate"):
        return approve(f"`git {arg}` starts the pager, a program the configuration names", "structure:git-option"), \
            index + 1
    return approve(f"the git option {arg} is not understood", "structure:git-option"), None


def _git_subcommand_options(judge: Judge, rest: list[str], depth: int) -> list[PolicyResult]:
    """Subcommand options that run a program: `--upload-pack`, `--receive-pack`, `--exec`, `clone -u`,
    `grep -O`; `rebase --exec CMD` is judged as a nested command instead."""
    findings: list[PolicyResult] = []
    if not rest:  # `git --html-path`: no subcommand
        return findings
    args = rest[1:]
    if rest[0] == "config":
        findings += _git_config_write(args)
    # Where the subcommand has the option, git takes any unique prefix (`clone --u=…`): the shortest count.
    shortest = 3 if rest[0] in _REMOTE_SUBCOMMANDS else 5
    for index, arg in enumerate(args):
        if arg == "--" and ends_options(args, index):  # not `grep -e -- -O…`: there `--` is -e's value
            break
        if rest[0] == "rebase" and (could_be_option(arg, "--exec") or re.fullmatch(r"-[^-]*x.*", arg)):
            glued = arg.split("=", 1)[1] if arg.startswith("--") and "=" in arg else \
                arg[arg.index("x") + 1:] if not arg.startswith("--") else ""
            value = glued or (args[index + 1] if index + 1 < len(args) else "")
            findings.append(approve("`git rebase --exec` runs a command after each commit",
                                     "structure:git-option"))
            findings.append(judge.nested(value, depth, "`git rebase --exec`"))
        elif arg.startswith("--") and len(arg.split("=", 1)[0]) >= shortest and any(
                could_be_option(arg, option) for option in ("--upload-pack", "--receive-pack", "--config-env",
                                                             "--exec-path")):  # its prefixes cover `--exec`
            findings.append(deny(f"`git {rest[0]} {arg}` makes git run an arbitrary program",
                                  "default:git-exec"))
        elif rest[0] == "clone" and arg.startswith("-c"):  # set before the fetch (`--config` is caught above)
            setting = arg[2:] or (args[index + 1] if index + 1 < len(args) else "")
            findings.append(_git_config(setting.split("=", 1)[0]))
        elif rest[0] == "clone" and re.fullmatch(r"-[^-]*u.*", arg):
            findings.append(deny("`git clone -u` makes git run an arbitrary program", "default:git-exec"))
        elif rest[0] == "grep" and (re.fullmatch(r"-[^-]*O.*", arg) or could_be_option(
                arg, "--open-files-in-pager")):
            findings.append(deny("`git grep -O` runs an arbitrary pager program", "default:git-exec"))
        if could_be_option(arg, "--output"):  # diff, log, show, blame, …: `--output=FILE` empties and writes FILE
            findings.append(approve(f"`git {rest[0]} {arg}` writes its output to a file", "structure:git-option"))
        if could_be_option(arg, "--ext-diff") or (
                len(arg.split("=", 1)[0]) >= len("--textc") and could_be_option(arg, "--textconv")):
            # Abbreviations count where git could take them (`--textc`; `--text` is another option).
            findings.append(approve(f"`git {rest[0]} {arg}` runs the external diff or textconv program that "
                                     "the repository's configuration and attributes name",
                                     "structure:git-option"))
    return findings


def _git_config_write(args: list[str]) -> list[PolicyResult]:
    """`git config core.fsmonitor CMD` (or `git config set …`) stores a program that a later, allowed `git status`
    runs: a key `-c` would deny is denied when written too. Reading (`--get…`, `get`, `--list`, a key alone) and
    removing (`--unset…`, `unset`) write no program."""
    if any(arg.startswith(("--get", "--list", "--unset", "--remove-section", "--rename-section", "--edit"))
           or arg in ("-l", "-e") for arg in args):
        return []
    words: list[str] = []
    values = iter(args)
    for arg in values:
        if arg in ("-f", "--file", "--blob", "--type", "--default", "--comment", "--value"):
            next(values, None)  # that option's value
        elif not arg.startswith("-"):
            words.append(arg)
    if words[:1] in (["get"], ["list"], ["unset"], ["edit"]):
        return []
    words = words[1:] if words[:1] == ["set"] else words
    if len(words) < 2:  # a key alone is read
        return []
    if _SAFE_GIT_CONFIG.fullmatch(words[0]):
        return []
    return [deny(f"`git config {words[0]}` stores a setting that can make a later git command run an arbitrary "
                 "program (pager, editor, alias, ssh command, diff driver, fsmonitor, …)", "default:git-config")]


def _git_config(key: str) -> PolicyResult:
    if key and _SAFE_GIT_CONFIG.fullmatch(key):
        return approve(f"`git -c {key}=…` overrides configuration; never allowed automatically",
                        "structure:git-config")
    return deny(f"`git -c {key or '…'}` can make git run an arbitrary program (pager, editor, alias, "
                 "ssh command, diff driver, …)", "default:git-config")

