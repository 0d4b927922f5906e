"""Here-documents, read the way bash reads them.

tree-sitter-bash 0.25 misreads here-document bodies in ways that matter to a security decision: it misses the
`$(…)` of a `<<-` body, ends an unquoted body at a delimiter that a backslash-newline joined to the previous line
(bash does not), reports a syntax error for a valid `\\$(…)`, and loses the second here-document of `cat <<A <<B`.
So the bodies are read here, by bash's rules, and blanked out (every byte but the newlines becomes a space, so
offsets stay put) before the command is parsed for good; the parser then only has to agree on where each body ends,
which parse.py checks. Where a body expands (unquoted delimiter) its `$(…)`, `${…}` and backticks are found with the
same parser, one substitution at a time, so only the plain character scan below is hand-written.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from tree_sitter import Tree

from runner.policy.grammar import iter_nodes

MAX_HEREDOCS = 20
"""More here-documents than this in one command line is not something an agent needs; it is refused."""

_NAME = r"\$[A-Za-z_0-9@*#?!-]"
_REST_OF_LINE = re.compile(rf"""(?:[^'"\\`$<\n]|<(?!<)|{_NAME}|'[^'\n]*'|"(?:[^"\\`$\n]|{_NAME})*")*""")
"""What may follow a here-document's delimiter word on its line: nothing that could hide a newline (quotes spanning
lines, `$(…)`, backticks, a backslash) or start another here-document, because the body begins after that line."""


class HereDocError(ValueError):
    """A here-document that is not valid shell (unterminated, no delimiter)."""


class HereDocUnmodelled(ValueError):
    """A here-document shape this reader does not model; the command is refused rather than guessed at."""


@dataclass(frozen=True)
class HereDoc:
    """One here-document as bash reads it: `body` is its text (each line ending in a newline), `literal` says the
    delimiter was quoted (the body is data), `end` is the byte offset just after the delimiter line's text."""

    delimiter: str
    body: str
    literal: bool
    end: int


def _delimiter(raw: str) -> tuple[str, bool]:
    """(the delimiter after quote removal, whether any of it was quoted)."""
    try:
        words = shlex.split(raw)
    except ValueError:
        raise HereDocError(f"the here-document delimiter {raw!r} is not valid shell") from None
    if len(words) != 1 or not words[0] or "$" in raw or "`" in raw:
        raise HereDocUnmodelled(f"the here-document delimiter {raw!r}")
    return words[0], any(ch in raw for ch in "'\"\\")


def _continues(line: bytes) -> bool:
    """Whether a line ends with an unescaped backslash (a line continuation)."""
    return (len(line) - len(line.rstrip(b"\\"))) % 2 == 1


def _read_body(source: bytes, start: int, delimiter: str, literal: bool, strip_tabs: bool) -> tuple[str, int, int]:
    """(body, offset of the delimiter line, offset after its text) for a body starting at `start`. In an unquoted
    here-document a backslash-newline joins two lines before bash looks for the delimiter."""
    target = delimiter.encode()
    lines: list[bytes] = []
    index = start
    while True:
        line_start = index
        line = b""
        while True:
            if index >= len(source):
                raise HereDocError(f"here-document delimited by {delimiter!r} is not terminated")
            newline = source.find(b"\n", index)
            end = len(source) if newline < 0 else newline
            line += source[index:end]
            index = end + 1
            if literal or not _continues(line):
                break
            line = line[:-1]
        if (line.lstrip(b"\t") if strip_tabs else line) == target:
            body = b"".join(chunk + b"\n" for chunk in lines)
            return body.decode("utf-8"), line_start, end
        lines.append(line)


def read_heredocs(source: bytes, parse: Callable[[bytes], Tree]) -> tuple[Tree, dict[int, HereDoc]]:
    """Parse `source` with every here-document body blanked; returns the tree and the here-documents keyed by the
    byte offset of their delimiter word. Bodies are found one at a time, in document order, because an unread
    body can make the parser see operators that are really text."""
    heredocs: dict[int, HereDoc] = {}
    while True:
        tree = parse(source)
        start = next((node for node in iter_nodes(tree.root_node)
                      if node.type == "heredoc_start" and node.start_byte not in heredocs), None)
        if start is None:
            return tree, heredocs
        if len(heredocs) >= MAX_HEREDOCS:
            raise HereDocUnmodelled(f"more than {MAX_HEREDOCS} here-documents")
        operator = start.prev_sibling
        if operator is None or operator.type not in ("<<", "<<-"):
            raise HereDocUnmodelled("a here-document without its `<<` operator")
        delimiter, literal = _delimiter(source[start.start_byte:start.end_byte].decode("utf-8"))
        line_end = source.find(b"\n", start.end_byte)
        if line_end < 0:
            raise HereDocError(f"here-document delimited by {delimiter!r} is not terminated")
        if not _REST_OF_LINE.fullmatch(source[start.end_byte:line_end].decode("utf-8")):
            raise HereDocUnmodelled("a here-document whose line goes on with quoting, a substitution or another "
                                    "here-document")
        body, delimiter_line, end = _read_body(source, line_end + 1, delimiter, literal, operator.type == "<<-")
        blank = re.sub(rb"[^\n]", b" ", source[line_end + 1:delimiter_line])
        source = source[:line_end + 1] + blank + source[delimiter_line:]
        heredocs[start.start_byte] = HereDoc(delimiter, body, literal, end)


def expansions_in(body: str, substitution_at: Callable[[str], tuple[int, list[str]]]) -> tuple[bool, list[str]]:
    """(whether an unquoted here-document body expands anything, the bodies of its command substitutions). In such
    a body only a backslash quotes (the next character); quotes are ordinary characters. `substitution_at(text)`
    parses the `$(…)`, `${…}`, `$((…))` or backtick substitution that `text` starts with and returns (its length,
    the command substitutions in it); it raises when the substitution is unbalanced."""
    expands = False
    substitutions: list[str] = []
    index = 0
    while index < len(body):
        ch = body[index]
        if ch == "\\":
            index += 2
            continue
        if ch == "`" or (ch == "$" and body[index + 1: index + 2] in ("(", "{")):
            expands = True
            length, found = substitution_at(body[index:])
            substitutions.extend(found)
            index += length
            continue
        if ch == "$":
            expands = True
        index += 1
    return expands, substitutions
