"""What the parser hands the analysis: a command line reduced to simple commands (words after quote removal,
redirections, whether stdin is a pipe) and the findings its structure implies, plus the two ways parsing fails."""

from __future__ import annotations

from dataclasses import dataclass, field

from runner.policy.verdict import PolicyResult


class ShellSyntaxError(ValueError):
    """The command is not valid shell; the policy denies it."""


class Unmodelled(ValueError):
    """The command uses a shell construct the reduction does not model; the policy denies it."""


@dataclass(frozen=True)
class Word:
    """One shell word after quote removal. `mask[i]` is True when `text[i]` was quoted or escaped, so it cannot be
    a glob, a brace or an assignment; an expansion keeps its source text (`$HOME`, `$(…)`) and sets `expansion`.
    `substitutions` holds the bodies of `$(…)` and backticks and `processes` those of `<(…)`/`>(…)`, judged as
    commands too; `body` is the text of a here-document, on its delimiter word."""

    text: str
    start: int
    end: int
    mask: tuple[bool, ...] = ()
    expansion: bool = False
    substitutions: tuple[str, ...] = ()
    processes: tuple[str, ...] = ()
    body: str | None = None

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


@dataclass(frozen=True)
class Redirection:
    """`2>&1`, `> out.txt`, `<<EOF`, `<<< text`: the operator, its target word and the file descriptor, if any."""

    op: str
    target: Word
    fd: str | None = None


@dataclass
class Part:
    """One simple command. A `control` part holds the words of a control structure (loop values, case patterns,
    test operands): only their expansions are judged, they are not a command."""

    words: list[Word] = field(default_factory=list)
    redirections: list[Redirection] = field(default_factory=list)
    piped_in: bool = False
    control: bool = False

    def reads_pipe(self) -> bool:
        """Whether the command's stdin is a pipe: the pipeline's, unless its own `<`, `<<` or `<<<` replaces it
        (bash connects the pipe first, then the redirections, and the last one on stdin wins), or a process
        substitution's (`sh < <(curl …)`). A `<&N` keeps the answer: where N leads is not known."""
        stdin = [r for r in self.redirections
                 if r.op in ("<", "<>", "<<", "<<-", "<<<", "<&") and r.fd in (None, "0")]
        if not stdin or stdin[-1].op == "<&":  # `3<&0 < file <&3` brings the pipe back
            return self.piped_in
        last = stdin[-1]
        return last.op in ("<", "<>") and bool(last.target.processes)

    def tokens(self) -> list[str]:
        """The part as shlex (with punctuation_chars) would tokenise it, for the cross-check."""
        items: list[tuple[int, list[str]]] = [(word.start, [word.text]) for word in self.words]
        for redirection in self.redirections:
            fd = [redirection.fd] if redirection.fd else []
            items.append((redirection.target.start, [*fd, redirection.op, redirection.target.text]))
        return [token for _, tokens in sorted(items, key=lambda item: item[0]) for token in tokens]

    def bounds(self) -> tuple[int, int] | None:
        words = [*self.words, *(redirection.target for redirection in self.redirections)]
        if not words:
            return None
        return min(word.start for word in words), max(word.end for word in words)


@dataclass
class Script:
    """A command line reduced to simple commands and the findings its structure implies."""

    source: bytes
    parts: list[Part]
    findings: list[PolicyResult]

    def span(self, part: Part) -> str:
        """The source text of a part (from its first to its last word or redirection)."""
        bounds = part.bounds()
        return "" if bounds is None else self.source[bounds[0]: bounds[1]].decode("utf-8")
