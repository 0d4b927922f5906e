"""Judging: a command line's simple commands against the rules, strictest verdict wins.

The parser reduces the line to simple commands; each is judged on its own (its redirections, its words'
expansions and substitutions, then its argv against the rules and the handlers of commands that run commands)
and the strictest verdict wins. ALLOW additionally needs shlex to read every simple command as the same tokens.
"""

from __future__ import annotations

import posixpath
import re
import shlex
import unicodedata
from collections.abc import Sequence
from dataclasses import replace

from runner.policy import commands, tools
from runner.policy.commands import ASSIGNMENT, SHELLS, Analysis, Form
from runner.policy.parse import parse
from runner.policy.rules import HARMLESS_DEVICES, Rule, escapes_workspace, is_device
from runner.policy.script import Part, Script, ShellSyntaxError, Unmodelled, Word
from runner.policy.verdict import Decision, PolicyResult, approve, deny, quote, strictest

MAX_NESTING = 6
"""How deep `bash -c "eval '…'"`-style nesting is followed before the command is denied as unreadable."""

UNKNOWN = "fallback:unknown-command"
_RESERVED_WORDS = frozenset({"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "for", "case",
                             "esac", "select", "function", "in", "!", "{", "}", "[[", "]]", "coproc"})
_GLOB_SAFE = frozenset({"ls", "cat", "head", "tail", "wc", "grep", "egrep", "fgrep", "stat", "diff", "echo"})
"""Tools without an option that writes or executes, so a glob expanding to `-something` cannot hurt."""
_DOCKER_SOCKETS = re.compile(r"(docker|containerd|podman|crio)\.sock", re.IGNORECASE)


def raw_findings(command: str) -> PolicyResult | None:
    """Checks on the text itself, before parsing."""
    for ch in command:
        if ch not in "\t\n" and unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            return deny(f"the command contains the control or invisible character U+{ord(ch):04X}, which could "
                        "hide what it really does", "default:control-characters")
    if _DOCKER_SOCKETS.search(command):
        return deny("the command refers to a container-runtime socket, the classic sandbox escape",
                    "default:docker-socket")
    return None


def shlex_tokens(command: str) -> list[str] | None:
    """The tokens of the independent reference tokeniser, or None when it cannot read the command. `#` is an
    ordinary character here: a comment is never inside a simple command's span, and shlex's own comment rule
    (a `#` anywhere, even inside `a#b`) is not the shell's."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        return list(lexer)
    except ValueError:
        return None


class Evaluator:
    """Judges commands against a rule list, following nested commands up to MAX_NESTING levels."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)
        self.wrappers = commands.wrapper_specs()

    # --- whole command lines ------------------------------------------------------------------------------

    def command(self, command: str, depth: int, piped_in: bool = False) -> PolicyResult:
        """Judge a command line; `piped_in`: its stdin is a pipe (every command in it shares that stdin)."""
        if depth > MAX_NESTING:
            return deny("commands nested this deeply cannot be reviewed", "structure:too-deep")
        raw = raw_findings(command)
        if raw is not None:
            return raw
        try:
            script = parse(command, piped_in)
        except ShellSyntaxError as error:
            return deny(f"the command cannot be parsed ({error}); unparsable commands are denied", "parse-error")
        except Unmodelled as error:
            return deny(f"the command uses {error}, a shell construct the policy does not model; it is denied",
                        "structure:unmodelled")
        results = list(script.findings)
        verdicts = [(part, self._part(part, depth)) for part in script.parts]
        several = len(verdicts) > 1 or bool(script.findings)
        for part, verdict in verdicts:
            if several and not verdict.allowed:
                verdict = replace(verdict, reason=f"{quote(script.span(part))}: {verdict.reason}")
            results.append(verdict)
        result = strictest(results)
        if result is None:
            if depth == 0:
                return deny("the command is empty: there is nothing to run", "parse-error")
            return PolicyResult(Decision.ALLOW, "the nested command is empty", "structure:empty")
        if result.allowed:
            if not _same_as_shlex(script):
                return approve("shlex reads this command differently from the shell parser, so its quoting is "
                               "ambiguous and it is not allowed automatically", "structure:ambiguous-quoting")
            if len(verdicts) > 1:
                reasons = list(dict.fromkeys(verdict.reason for _, verdict in verdicts))
                rules = list(dict.fromkeys(verdict.rule for _, verdict in verdicts))
                return PolicyResult(Decision.ALLOW, f"every part is allowed: {'; '.join(reasons)}", ", ".join(rules))
        return result

    def nested(self, command: str, depth: int, where: str, piped_in: bool = False) -> PolicyResult:
        result = self.command(command, depth + 1, piped_in)
        return replace(result, reason=f"{where} runs {quote(command)}: {result.reason}")

    def wrapped(self, argv: list[str], depth: int, piped_in: bool, where: str) -> PolicyResult:
        if depth + 1 > MAX_NESTING:
            return deny("commands nested this deeply cannot be reviewed", "structure:too-deep")
        result = self._argv(argv, depth + 1, piped_in)
        return replace(result, reason=f"{where} runs {quote(shlex.join(argv))}: {result.reason}")

    # --- simple commands ---------------------------------------------------------------------------------

    def _part(self, part: Part, depth: int) -> PolicyResult:
        hard: list[PolicyResult] = []
        for redirection in part.redirections:
            hard.extend(self._redirection(redirection.op, redirection.target, depth))
        for word in part.words:
            hard.extend(self._word(word, depth))
        if part.control:
            return strictest(hard) or approve("shell control structures (if/for/while/{ …}) are not allowed "
                                              "automatically", "structure:control")
        words = list(part.words)
        hard.extend(self._stdin_program(part, depth))
        if words and words[0].text in _RESERVED_WORDS and not any(words[0].mask):
            while words and words[0].text in _RESERVED_WORDS and not any(words[0].mask):
                words.pop(0)
            hard.append(approve("shell control structures (if/for/while/{ …}) are not allowed automatically",
                                "structure:control"))
        assignments = []
        while words and (match := ASSIGNMENT.match(words[0].text)) and not any(words[0].mask[: match.end()]):
            assignments.append(words.pop(0).text.split("=", 1)[0].rstrip("+"))
        if assignments:
            hard.append(approve(f"sets {', '.join(assignments)} for the command, which can change what it does",
                                "structure:assignment"))
        if words:
            if words[0].glob:
                hard.append(approve("the command name is a glob", "structure:glob"))
            elif any(word.leading_glob for word in words[1:]) and words[0].text not in _GLOB_SAFE:
                hard.append(approve("a glob here could expand to a file name that the command reads as an option",
                                    "structure:glob"))
            verdict = self._argv([word.text for word in words], depth, part.reads_pipe())
            # on a tie the first reason is shown: a rule's reason beats a finding, a finding beats "unknown"
            hard.insert(len(hard) if verdict.rule == UNKNOWN else 0, verdict)
        return strictest(hard) or approve("redirections without a command", "structure:redirect")

    def _stdin_program(self, part: Part, depth: int) -> list[PolicyResult]:
        """`sh <<EOF … EOF` and `bash <<< '…'` run the here-document as a script: it is judged as a command,
        as strictly as `bash -c` would be (the script is judged even with a quoted delimiter)."""
        if not part.words or posixpath.basename(part.words[0].text) not in SHELLS:
            return []
        script, reads_stdin = commands.shell_invocation([word.text for word in part.words])
        if script is not None or not reads_stdin:
            return []
        programs = [r.target.body if r.op in ("<<", "<<-") else r.target.text for r in part.redirections
                    if r.op in ("<<", "<<-", "<<<")]
        return [self.nested(program, depth, f"`{part.words[0].text}` reading a here-document")
                for program in programs if program is not None]

    def _word(self, word: Word, depth: int) -> list[PolicyResult]:
        findings: list[PolicyResult] = []
        if word.expansion:
            findings.append(approve("uses shell expansion ($VAR, $(…), backticks) whose result cannot be known in "
                                    "advance", "structure:expansion"))
        for body in word.substitutions:
            findings.append(self.nested(body, depth, "command substitution"))
        for body in word.processes:
            findings.append(approve("process substitution <(…) runs a hidden command",
                                    "structure:process-substitution"))
            findings.append(self.nested(body, depth, "process substitution"))
        if word.brace_expansion:
            findings.append(approve("uses brace expansion, which turns one word into several",
                                    "structure:brace-expansion"))
        return findings

    def _redirection(self, op: str, target: Word, depth: int) -> list[PolicyResult]:
        findings = self._word(target, depth)
        path = target.text
        if op in ("<<", "<<-", "<<<"):
            findings.append(approve("here-documents and here-strings feed hidden input to the command",
                                    "structure:heredoc"))
        elif op in (">&", "<&") and re.fullmatch(r"\d+-?|-", path):
            pass  # duplicating or closing a file descriptor (2>&1) touches no file
        elif path in HARMLESS_DEVICES:
            pass  # > /dev/null, < /dev/null
        elif is_device(path):
            findings.append(deny(f"redirects to the device or kernel interface {path}", "default:device"))
        elif op != "<" and escapes_workspace(path):
            findings.append(deny(f"writes to {path}: outside the working tree or a system path",
                                 "default:system-write"))
        elif op == "<":
            findings.append(approve(f"reads its input from the file {path}", "structure:redirect"))
        else:
            findings.append(approve(f"writes its output to the file {path}", "structure:redirect"))
        return findings

    def _argv(self, argv: list[str], depth: int, piped_in: bool) -> PolicyResult:
        """Verdict on one argv: strictest matching rule (or the fallback), never below the hard findings."""
        analysis = self._analyse(argv, depth, piped_in)
        matches = [rule.result() for form in analysis.forms for rule in self.rules
                   if (form.allow_ok or rule.decision is not Decision.ALLOW) and rule.matches(form.argv)]
        base = strictest(matches) or analysis.soft
        if base is not None:
            return strictest([base, *analysis.hard]) or base
        unknown = approve(f"no rule allows {quote(shlex.join(argv))}; commands the policy does not know need "
                          "approval", UNKNOWN)
        return strictest([*analysis.hard, unknown]) or unknown  # structural reasons are more telling on a tie

    def _analyse(self, argv: list[str], depth: int, piped_in: bool) -> Analysis:
        name = argv[0]
        if "/" in name:
            base = posixpath.basename(name.rstrip("/"))
            by_path = approve(f"runs {quote(name)} by path; only commands known by name are allowed",
                              "structure:path")
            if not base or "/" in base:
                return Analysis([Form(tuple(argv))], soft=by_path)
            inner = self._analyse([base, *argv[1:]], depth, piped_in)
            forms = [Form(tuple(argv)), *(Form(form.argv, allow_ok=False) for form in inner.forms)]
            return Analysis(forms, hard=inner.hard, soft=by_path)
        if name in SHELLS:
            return commands.analyse_shell(self, argv, depth, piped_in)
        if commands.PYTHON.fullmatch(name):
            return commands.analyse_python(argv, piped_in)
        if name in commands.INTERPRETERS:
            return commands.analyse_interpreter(argv, piped_in)
        if name in self.wrappers:
            return commands.analyse_wrapper(self, argv, depth, piped_in)
        if name == "env":
            return commands.analyse_env(self, argv, depth, piped_in)
        if name in ("source", "."):
            return commands.analyse_source(self, argv, depth, piped_in)
        if name == "eval":
            return commands.analyse_eval(self, argv, depth, piped_in)
        handler = {"find": tools.analyse_find, "git": tools.analyse_git, "rg": tools.analyse_rg}.get(name)
        if handler is not None:
            return handler(self, argv, depth)
        return Analysis([Form(tuple(argv))])


def _same_as_shlex(script: Script) -> bool:
    """Whether shlex reads every simple command as the same tokens as the parser: two independent readings must
    agree before anything runs unasked."""
    return all(shlex_tokens(script.span(part)) == part.tokens() for part in script.parts)
