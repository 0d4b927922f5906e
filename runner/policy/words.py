"""Shell words from tree-sitter nodes: quote removal, which characters were quoted, and what a word expands
(`$VAR`, `$(…)`, backticks, `<(…)`), with the bodies of its substitutions so they are judged as commands too."""

from __future__ import annotations

import re

from tree_sitter import Node

from runner.policy import grammar, heredoc
from runner.policy.script import ShellSyntaxError, Unmodelled, Word

_DOUBLE_QUOTE_ESCAPES = frozenset('$`"\\\n')
"""The characters a backslash quotes inside double quotes; before any other it is an ordinary character."""


class _WordBuilder:
    """Accumulates a word's text, which characters were quoted, and what it expands."""

    def __init__(self) -> None:
        self.chars: list[str] = []
        self.mask: list[bool] = []
        self.expansion = False
        self.substitutions: list[str] = []
        self.processes: list[str] = []

    def add(self, text: str, *, quoted: bool) -> None:
        self.chars.append(text)
        self.mask.extend([quoted] * len(text))

    def build(self, start: int, end: int) -> Word:
        return Word("".join(self.chars), start, end, tuple(self.mask), self.expansion, tuple(self.substitutions),
                    tuple(self.processes))


def word(node: Node, source: bytes) -> Word:
    """The word a node stands for; raises Unmodelled for a node type it does not know."""
    builder = _WordBuilder()
    _piece(node, source, builder, in_string=False)
    return builder.build(node.start_byte, node.end_byte)


def assignment(node: Node, source: bytes) -> Word:
    """`NAME=value` (or `NAME+=value`, `a[i]=value`) as one word, the way the shell lexer sees it."""
    builder = _WordBuilder()
    for child in node.children:
        if child.is_named:
            _piece(child, source, builder, in_string=False)
        else:  # `=` or `+=`
            builder.add(child.type, quoted=False)
    return builder.build(node.start_byte, node.end_byte)


def _text(node: Node, source: bytes) -> str:
    return source[node.start_byte: node.end_byte].decode("utf-8")


def _piece(node: Node, source: bytes, builder: _WordBuilder, *, in_string: bool) -> None:
    kind, text = node.type, _text(node, source)
    if kind == "word":
        _unquoted(text, builder)
    elif kind == "raw_string":
        if len(text) < 2 or text[0] != "'" or text[-1] != "'":
            raise ShellSyntaxError("an unbalanced single quote")
        builder.add(text[1:-1], quoted=True)
    elif kind == "string":
        _double_quoted(node, source, builder)
    elif kind == "concatenation":
        position = node.start_byte
        for child in node.children:
            if child.start_byte != position:
                raise Unmodelled("a word the parser splits with a gap")
            _piece(child, source, builder, in_string=in_string)
            position = child.end_byte
    elif kind in grammar.EXPANSIONS or kind in grammar.LITERALS:
        commands, processes = substitutions_in(node, source)
        builder.substitutions.extend(commands)
        builder.processes.extend(processes)
        if kind in grammar.EXPANSIONS or commands or processes or "$" in text or "`" in text:
            builder.expansion = True
        # `$(…)`, `${…}` are read whole (their inside cannot be a glob); `$HOME` unquoted keeps an unquoted `$`
        builder.add(text, quoted=in_string or kind not in ("simple_expansion", *grammar.LITERALS))
    else:
        raise Unmodelled(f"`{kind}` in a word")


def _unquoted(text: str, builder: _WordBuilder) -> None:
    """An unquoted word: a backslash quotes the next character; a backslash-newline disappears."""
    index = 0
    while index < len(text):
        ch = text[index]
        if ch == "\\":
            following = text[index + 1: index + 2]
            if not following:
                raise ShellSyntaxError("the command ends with a lone backslash")
            if following != "\n":
                builder.add(following, quoted=True)
            index += 2
            continue
        if ch in "$`":  # the parser made no expansion node of it; count it as one rather than guess
            builder.expansion = True
        builder.add(ch, quoted=False)
        index += 1
    builder.substitutions.extend(_missed_substitutions(text))


def _missed_substitutions(text: str) -> list[str]:
    """tree-sitter-bash 0.25 reads a backtick substitution inside `${x:-…}` as a plain word, and any substitution
    in the pattern of `${x#…}`, `${x,,…}` as a `regex` leaf; bash runs them. Any `$(…)` or backtick left in such
    a leaf is therefore parsed again on its own, so its command is judged too."""
    if "`" not in text and "$(" not in text:
        return []
    return heredoc.expansions_in(text, substitution_at)[1]


def _double_quoted_text(text: str, builder: _WordBuilder) -> None:
    index = 0
    while index < len(text):
        ch = text[index]
        if ch == "\\" and text[index + 1: index + 2] in _DOUBLE_QUOTE_ESCAPES and index + 1 < len(text):
            if text[index + 1] != "\n":
                builder.add(text[index + 1], quoted=True)
            index += 2
            continue
        if ch in "$`":
            builder.expansion = True
        builder.add(ch, quoted=True)
        index += 1


def _double_quoted(node: Node, source: bytes, builder: _WordBuilder) -> None:
    children = node.children
    if len(children) < 2 or children[0].type != '"' or children[-1].type != '"':
        raise ShellSyntaxError("an unbalanced double quote")
    position = children[0].end_byte
    for child in children[1:-1]:
        if child.start_byte > position:
            _double_quoted_text(source[position: child.start_byte].decode("utf-8"), builder)
        if child.type == "string_content":
            _double_quoted_text(_text(child, source), builder)
        elif child.type in grammar.EXPANSIONS:
            _piece(child, source, builder, in_string=True)
        else:
            raise Unmodelled(f"`{child.type}` in a double-quoted string")
        position = child.end_byte
    if children[-1].start_byte > position:
        _double_quoted_text(source[position: children[-1].start_byte].decode("utf-8"), builder)


def substitution_at(text: str) -> tuple[int, list[str]]:
    """For here-document bodies: (length, command substitutions) of the `$(…)`, `${…}` or backtick at the start of
    `text`, parsed as the argument of a command. Unbalanced → ShellSyntaxError."""
    prefix = b": "
    source = prefix + text.encode("utf-8")
    tree = grammar.parse_bytes(source)
    node = tree.root_node.descendant_for_byte_range(len(prefix), len(prefix) + 1)
    while node is not None and node.parent is not None and node.parent.start_byte == len(prefix) \
            and node.type not in _SUBSTITUTION_LIKE:
        node = node.parent
    if node is None or node.type not in _SUBSTITUTION_LIKE or node.has_error or node.start_byte != len(prefix):
        raise ShellSyntaxError("an unbalanced substitution in a here-document")
    length = len(source[node.start_byte: node.end_byte].decode("utf-8"))
    subs, _ = substitutions_in(node, source)
    return length, subs


_SUBSTITUTION_LIKE = frozenset({"command_substitution", "expansion", "arithmetic_expansion"})


def substitutions_in(node: Node, source: bytes) -> tuple[list[str], list[str]]:
    """The bodies of the outermost command substitutions and process substitutions in `node` (itself included):
    nested ones are found again when the body is judged as a command."""
    commands: list[str] = []
    processes: list[str] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if current.type in ("command_substitution", "process_substitution"):
            (commands if current.type == "command_substitution" else processes).append(_body(current, source))
            continue
        # a leaf literal too: the pattern of `${x#`…`}` or `${x^^$(…)}` is a `regex` leaf, and bash runs it
        if current.type == "word" or (current.type in grammar.LITERALS and not current.children):
            commands.extend(_missed_substitutions(_text(current, source)))
        stack.extend(reversed(current.children))
    return commands, processes


def _body(node: Node, source: bytes) -> str:
    """The command text inside `$(…)`, backticks, `<(…)` or `>(…)`."""
    first, last = node.children[0] if node.children else None, node.children[-1] if node.children else None
    if first is None or last is None or first is last or last.type not in (")", "`"):
        raise ShellSyntaxError("an unbalanced substitution")
    body = source[first.end_byte: last.start_byte].decode("utf-8")
    if first.type == "`":  # inside backticks a backslash quotes only \, ` and $
        body = re.sub(r"\\([\\`$])", r"\1", body)
    return body


def check_continuations(root: Node) -> None:
    """bash removes a backslash-newline before it splits words, so `r\\<newline>m -rf /` runs `rm`; tree-sitter
    reads the pair as a space between two words. One outside a token (a quoted string, a here-document body and a
    comment keep theirs) with a character other than a blank on each side joins two words the parser split:
    refused (Unmodelled) rather than judged as two words. Read from the parsed text, whose here-document bodies
    are blanked (heredoc.py reads their continuations); outside the root's span there are only blanks and
    comments."""
    source, base, blanks = root.text or b"", root.start_byte, (b"", b" ", b"\t", b"\n")
    for match in re.finditer(rb"(?<!\\)(?:\\\\)*\\\n", source):  # a backslash-newline, the backslash unescaped
        at = match.end() - 2  # in the root's text, which starts at its first token (`base` in the tree)
        around = root.descendant_for_byte_range(base + at, base + at + 2)
        backslash = root.descendant_for_byte_range(base + at, base + at + 1)
        if around is None or not around.children or (backslash is not None and backslash.type == "comment"):
            continue
        if source[at - 1: at] not in blanks and source[at + 2: at + 3] not in blanks:
            raise Unmodelled("a backslash-newline that joins two words")
