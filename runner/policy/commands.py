"""Commands that run other commands: shells, interpreters, wrappers (`timeout`, `xargs`, `env`, …), `eval` and
`source`. Each handler says which argvs the rules see, which findings no rule can lower, and what to conclude when
no rule matches; the wrapped or nested command is judged as well, through the Judge."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from runner.policy.rules import operand_args
from runner.policy.verdict import PolicyResult, approve, deny

ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?\+?=")  # `a=1`, `a+=1`, `a[0]=1`
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "csh", "tcsh", "busybox"})
PYTHON = re.compile(r"python(?:\d+(?:\.\d+)?)?")
INTERPRETERS = {"perl": ("-e", "-E"), "ruby": ("-e",), "node": ("-e", "-p", "--eval", "--print"),
                 "php": ("-r",), "lua": ("-e",)}


class Judge(Protocol):
    """What a handler needs from the evaluator: judging a nested command line or a wrapped argv, and the wrapper
    specs in force."""

    @property
    def wrappers(self) -> Mapping[str, _WrapperSpec]: ...

    def nested(self, command: str, depth: int, where: str, piped_in: bool = False) -> PolicyResult: ...

    def wrapped(self, argv: list[str], depth: int, piped_in: bool, where: str) -> PolicyResult: ...


@dataclass(frozen=True)
class Form:
    """An argv the rules are matched against. Forms derived by guessing (the basename of `/usr/bin/rm`)
    may only make a command stricter, so ALLOW rules are ignored for them."""

    argv: tuple[str, ...]
    allow_ok: bool = True


@dataclass
class Analysis:
    """What the analyser learned about one argv.

    `hard` findings are floors no rule can lower; `forms` are matched against the rules; `soft` is the
    verdict when no rule matches (default: unknown command, needs approval). With no match and no `soft`, the
    first hard finding is the reason given, so a handler whose reason is a floor lists it first and sets no `soft`.
    """

    forms: list[Form]
    hard: list[PolicyResult] = field(default_factory=list)
    soft: PolicyResult | None = None



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


def wrapper_specs() -> dict[str, _WrapperSpec]:
    """The commands that run another command, and how their options are read. Built per policy (like the rule
    table), so that the specs are code that runs under test rather than a table made at import."""
    return {
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
        name = _long_option(name, spec)
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


def _long_option(name: str, spec: _WrapperSpec) -> str:
    """The long option `name` stands for: getopt_long takes any unambiguous prefix (`timeout --sig=KILL` is
    `--signal=KILL`), so a prefix must not hide the wrapped command. An ambiguous prefix stays unknown."""
    if name in spec.flags or name in spec.valued:
        return name
    matches = [option for option in spec.flags | spec.valued if option.startswith("--") and option.startswith(name)]
    return matches[0] if len(matches) == 1 else name


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
        elif ASSIGNMENT.match(arg):
            index += 1
        else:
            break
    return list(argv[index:]), None


STDIN_PROGRAMS = frozenset({"-", "/dev/stdin", "/dev/fd/0", "/proc/self/fd/0"})
"""Program operands that name stdin itself: `curl … | bash /dev/stdin` is still `curl … | sh`."""


def _pipe_to_shell(name: str) -> Analysis:
    return Analysis([], hard=[deny(f"pipes data into `{name}` to be run as a program (the `curl … | sh` shape)",
                                   "default:pipe-to-shell")])


def _from_process(operand: str | None) -> bool:
    """A program operand written `<(…)`: bash hands the interpreter a pipe from that command (`/dev/fd/63`)."""
    return operand is not None and operand.startswith("<(")


def _process_program(name: str) -> PolicyResult:
    return deny(f"`{name}` runs a program another command writes (`<(…)`): the `curl … | sh` shape",
                "default:pipe-to-shell")


def shell_invocation(argv: Sequence[str]) -> tuple[str | None, bool]:
    """(the `-c` command string, whether the shell reads its program from stdin) for `bash [opts] …`."""
    script, reads_stdin, _ = _shell_arguments(argv)
    return script, reads_stdin


def _shell_arguments(argv: Sequence[str]) -> tuple[str | None, bool, str | None]:
    """shell_invocation's two answers and the script operand (None with `-c` or when there is none)."""
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
        return (rest[0] if rest else ""), False, None
    return None, has_s or not rest or rest[0] in STDIN_PROGRAMS, (rest[0] if rest and not has_s else None)



def analyse_shell(judge: Judge, argv: list[str], depth: int, piped_in: bool) -> Analysis:
    script, reads_stdin, program = _shell_arguments(argv)
    form = [Form(tuple(argv))]
    if _from_process(program):
        return Analysis(form, hard=[_process_program(argv[0])])
    if script is not None:
        finding = approve(f"`{argv[0]} -c` runs a nested shell command; nested shells are never allowed "
                           "automatically", "structure:nested-shell")
        # the command string's commands share the shell's stdin: `curl … | bash -c sh` runs what curl fetched
        return Analysis(form, hard=[finding, judge.nested(script, depth, f"`{argv[0]} -c`", piped_in)])
    if piped_in and reads_stdin:
        return Analysis(form, hard=_pipe_to_shell(argv[0]).hard)
    return Analysis(form, soft=approve(f"`{argv[0]}` runs a shell script or an interactive shell",
                                         "structure:script"))

def analyse_python(argv: list[str], piped_in: bool) -> Analysis:
    form = [Form(tuple(argv))]
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
            return Analysis([*form, Form((module, *rest))],
                             soft=approve(f"runs the Python module `{module}`", "structure:script"))
        elif arg.startswith("-") and not arg.startswith("--") and "c" in arg:
            finding = approve(f"`{argv[0]} -c` runs inline code the policy cannot analyse",
                               "structure:inline-code")
            return Analysis(form, hard=[finding])
        elif arg == "-" or not arg.startswith("-"):
            break
        else:
            return Analysis(form, soft=approve(f"unrecognised option {arg} for `{argv[0]}`",
                                                 "structure:script"))
    if index < len(argv) and _from_process(argv[index]):
        return Analysis(form, hard=[_process_program(argv[0])])
    if index >= len(argv) or argv[index] in STDIN_PROGRAMS:
        if piped_in:
            return Analysis(form, hard=_pipe_to_shell(argv[0]).hard)
        return Analysis(form, soft=approve(f"`{argv[0]}` reads a program from stdin or starts a REPL",
                                             "structure:script"))
    return Analysis(form, soft=approve(f"runs the Python script {argv[index]}", "structure:script"))

def analyse_interpreter(argv: list[str], piped_in: bool) -> Analysis:
    form = [Form(tuple(argv))]
    if any(arg in INTERPRETERS[argv[0]] for arg in argv[1:]):
        finding = approve(f"`{argv[0]}` runs inline code the policy cannot analyse", "structure:inline-code")
        return Analysis(form, hard=[finding])
    operands = operand_args(argv)
    if operands and _from_process(operands[0]):
        return Analysis(form, hard=[_process_program(argv[0])])
    if piped_in and (not operands or operands[0] in STDIN_PROGRAMS):
        return Analysis(form, hard=_pipe_to_shell(argv[0]).hard)
    return Analysis(form, soft=approve(f"`{argv[0]}` runs a script", "structure:script"))

def analyse_wrapper(judge: Judge, argv: list[str], depth: int, piped_in: bool) -> Analysis:
    name = argv[0]
    inner = _unwrap(argv, judge.wrappers[name])
    if inner is None:
        finding = approve(f"the options of `{name}` are not understood, so the command it runs is unknown",
                           "structure:wrapper")
        return Analysis([Form(tuple(argv))], hard=[finding])
    finding = approve(f"`{name}` runs another command; wrapped commands are never allowed automatically",
                       "structure:wrapper")
    hard = [finding]
    if inner:
        hard.append(judge.wrapped(inner, depth, piped_in and name != "xargs", f"`{name}`"))
    return Analysis([Form(tuple(argv))], hard=hard)

def analyse_env(judge: Judge, argv: list[str], depth: int, piped_in: bool = False) -> Analysis:
    inner, split_string = _env_command(argv)
    finding = approve("`env` runs another command with a changed environment; never allowed automatically",
                       "structure:wrapper")
    hard = [finding]
    if split_string is not None:
        hard.append(judge.nested(split_string, depth, "`env -S`"))
    elif inner is None:
        hard[0] = finding = approve("the options of `env` are not understood", "structure:wrapper")
    elif inner:
        hard.append(judge.wrapped(inner, depth, piped_in, "`env`"))  # `curl … | env sh` is `curl … | sh`
    return Analysis([Form(tuple(argv))], hard=hard)

def analyse_eval(judge: Judge, argv: list[str], depth: int, piped_in: bool = False) -> Analysis:
    finding = approve("`eval` runs a string as a command; never allowed automatically", "structure:eval")
    return Analysis([Form(tuple(argv))],
                    hard=[finding, judge.nested(" ".join(argv[1:]), depth, "`eval`", piped_in)])

def analyse_source(judge: Judge, argv: list[str], depth: int, piped_in: bool = False) -> Analysis:
    finding = approve(f"`{argv[0]}` runs a script inside the current shell", "structure:source")
    if len(argv) > 1 and _from_process(argv[1]):
        return Analysis([Form(tuple(argv))], hard=[_process_program(argv[0]), finding])
    if piped_in and (len(argv) < 2 or argv[1] in STDIN_PROGRAMS):
        return Analysis([Form(tuple(argv))], hard=[*_pipe_to_shell(argv[0]).hard, finding])
    return Analysis([Form(tuple(argv))], hard=[finding])

