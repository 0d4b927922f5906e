"""Shell → plain commands: tree-sitter-bash parses the command line; this module reduces the tree to simple
commands (argv words, redirections, whether stdin is a pipe) plus findings about the shapes around them.

The reduction is an allow-list, in the manner of Codex CLI's `bash -lc` reduction: every node type it meets must be
one it models. A syntax error (an ERROR or MISSING node) raises ShellSyntaxError; a node type it does not model raises
Unmodelled. Both make the policy deny the command: it never guesses what a shape it cannot read would do.
"""

from __future__ import annotations

import re

from tree_sitter import Node

from runner.policy import grammar, heredoc, words
from runner.policy.commands import ASSIGNMENT, SHELLS
from runner.policy.grammar import iter_nodes
from runner.policy.script import Part, Redirection, Script, ShellSyntaxError, Unmodelled, Word
from runner.policy.verdict import PolicyResult, approve, deny

MAX_DEPTH = 100
"""How deep compound commands may nest before the command is refused as unreadable (the walk recurses)."""


def parse(command: str, piped_in: bool = False) -> Script:
    """Reduce a command line (`piped_in`: its stdin is a pipe); raises ShellSyntaxError or Unmodelled."""
    try:
        source = command.encode("utf-8")
    except UnicodeEncodeError:
        raise ShellSyntaxError("the command is not valid Unicode text") from None
    try:
        tree, heredocs = heredoc.read_heredocs(source, grammar.parse_bytes)
    except heredoc.HereDocError as error:
        raise ShellSyntaxError(str(error)) from None
    except heredoc.HereDocUnmodelled as error:
        raise Unmodelled(str(error)) from None
    _check_syntax(tree.root_node, source)
    words.check_continuations(tree.root_node)
    return Reducer(source, heredocs).run(tree.root_node, piped_in)


def _check_syntax(root: Node, source: bytes) -> None:
    if not root.has_error:
        return
    for node in iter_nodes(root):
        if node.is_missing:
            raise ShellSyntaxError(f"`{node.type}` is missing at line {node.start_point.row + 1}")
        if node.is_error:
            text = source[node.start_byte: node.end_byte].decode("utf-8", "replace")
            text = " ".join(text.split())
            near = f" near {text[:30]!r}" if text else ""
            raise ShellSyntaxError(f"syntax error at line {node.start_point.row + 1}, column "
                                   f"{node.start_point.column + 1}{near}")
    raise ShellSyntaxError("syntax error")


def _inside_substitution(root: Node, offset: int) -> bool:
    node: Node | None = root.descendant_for_byte_range(offset, offset + 1)
    while node is not None:
        if node.type in ("command_substitution", "process_substitution"):
            return True
        node = node.parent
    return False


def background() -> PolicyResult:
    return approve("`&` starts a background job that outlives the check", "structure:background")


def subshell() -> PolicyResult:
    return approve("subshells, grouping and case branches are not allowed automatically", "structure:subshell")


def control() -> PolicyResult:
    return approve("shell control structures (if/for/while/{ …}) are not allowed automatically", "structure:control")


def function(name: str, calls_itself: bool) -> PolicyResult:
    if calls_itself:
        return deny(f"shell function {name!r} calls itself: the fork-bomb shape", "default:fork-bomb")
    return approve(f"defines the shell function {name!r}", "structure:function")


# ----------------------------------------------------------------------------------------------------------
# The reduction: an allow-list of node types
# ----------------------------------------------------------------------------------------------------------

_NAME_BREAKS = re.compile(r"[\s|&;()<>`$'\"\\{}]+")
"""What separates the names in shell code read as plain text (quotes and backslashes too: `"f"` and `\\f` run f)."""

_ANY_FUNCTION = "\0any function"
"""Stands for a word that may name any shell function of the script (no real word holds a NUL byte)."""


class Reducer:
    """Walks the tree into Parts (in source order) and structural findings."""

    def __init__(self, source: bytes, heredocs: dict[int, heredoc.HereDoc]) -> None:
        self.source = source
        self.heredocs = heredocs
        self.parts: list[Part] = []
        self.findings: list[PolicyResult] = []
        self._seen_heredocs: set[int] = set()
        self._depth = 0
        # (name, words its body names, index of its finding, body)
        self._functions: list[tuple[str, set[str], int, Node]] = []
        self._fed: set[str] = set()  # functions whose definition redirects their stdin from a pipe (`< <(…)`)

    def run(self, root: Node, piped_in: bool = False) -> Script:
        self.statement(root, piped_in)
        self._piped_functions()
        self._recursion()
        for start in set(self.heredocs) - self._seen_heredocs:
            if not _inside_substitution(root, start):  # those are judged with the substitution's command
                raise Unmodelled("a here-document outside a command")
        return Script(self.source, self.parts, self.findings)

    def text(self, node: Node) -> str:
        return self.source[node.start_byte: node.end_byte].decode("utf-8")

    # --- statements ---------------------------------------------------------------------------------------

    def statement(self, node: Node, piped_in: bool) -> None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise Unmodelled(f"compound commands nested more than {MAX_DEPTH} deep")
            self._statement(node, piped_in)
        finally:
            self._depth -= 1

    def _statement(self, node: Node, piped_in: bool) -> None:
        kind = node.type
        if kind in ("program", "list"):
            self.children(node, piped_in)
        elif kind == "pipeline":
            position = 0
            for child in node.children:
                if not child.is_named:
                    if child.type not in ("|", "|&"):
                        raise Unmodelled(f"the pipeline operator {child.type!r}")
                elif child.type != "comment":
                    # stdin of every later stage is a pipe; inside a compound stage every command may read it
                    self.statement(child, piped_in or position > 0)
                    position += 1
        elif kind in grammar.COMMANDS:
            self.parts.append(self.command(node, piped_in))
        elif kind == "redirected_statement":
            self.redirected(node, piped_in)
        elif kind == "variable_assignment":
            self.parts.append(Part([self.assignment(node)], piped_in=piped_in))
        elif kind == "variable_assignments":
            self.parts.append(Part([self.assignment(child) for child in node.named_children], piped_in=piped_in))
        elif kind == "subshell":
            self.findings.append(subshell())
            self.children(node, piped_in)
        elif kind in grammar.CONTROL:
            self.findings.append(control())
            self.children(node, piped_in)
        elif kind == "function_definition":
            self.function(node)
        elif kind != "comment":
            raise Unmodelled(f"`{kind}`")

    def children(self, node: Node, piped_in: bool) -> None:
        """The children of a program, list or compound command; the words of a control structure (loop values,
        case patterns, test operands) become one control part, so their expansions are judged."""
        words: list[Word] = []
        self._collect(node, piped_in, words, expression=False)
        if words:
            self.parts.append(Part(words, piped_in=piped_in, control=True))

    def _collect(self, node: Node, piped_in: bool, words: list[Word], *, expression: bool) -> None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise Unmodelled(f"compound commands nested more than {MAX_DEPTH} deep")
            for child in node.children:
                if not child.is_named:
                    if child.type == "&" and not expression:
                        self.findings.append(background())
                    elif node.type == "c_style_for_statement" or expression:
                        continue  # arithmetic operators: they run nothing
                    elif child.type not in grammar.TOKENS.get(node.type, ()):
                        raise Unmodelled(f"the token {child.type!r} in `{node.type}`")
                elif child.type in grammar.WORDS:
                    words.append(self.word(child))
                elif child.type in grammar.EXPRESSIONS:
                    self._collect(child, piped_in, words, expression=True)
                elif child.type in grammar.CLAUSES:
                    self._collect(child, piped_in, words, expression=False)
                elif child.type != "comment":
                    self.statement(child, piped_in)
        finally:
            self._depth -= 1

    def command(self, node: Node, piped_in: bool) -> Part:
        part = Part(piped_in=piped_in)
        for child in node.children:
            kind = child.type
            if not child.is_named:
                if node.type == "command" or kind not in grammar.DECLARATIONS:
                    raise Unmodelled(f"the token {kind!r} in a command")
                part.words.append(Word(kind, child.start_byte, child.end_byte, (False,) * len(kind)))
            elif kind == "command_name":
                if child.named_child_count != 1:
                    raise Unmodelled("a command name made of several parts")
                name = self.word(child.named_children[0])
                if name.text in grammar.RESERVED and not any(name.mask):
                    raise ShellSyntaxError(f"the reserved word {name.text!r} where a command is expected")
                part.words.append(name)
            elif kind == "variable_assignment":
                part.words.append(self.assignment(child))
            elif kind in grammar.REDIRECTS:
                self.redirect(child, part)
            elif kind in grammar.WORDS:
                part.words.append(self.word(child))
            else:  # a comment too: the grammar puts one here only when a backslash-newline follows it, and bash
                raise Unmodelled(f"`{kind}` in a command")  # then runs the next line as a command of its own
        return part

    def redirected(self, node: Node, piped_in: bool) -> None:
        body = node.child_by_field_name("body")
        if body is not None and body.type in grammar.COMMANDS:
            part = self.command(body, piped_in)
            self.parts.append(part)
        else:
            if body is not None:
                self.statement(body, piped_in)
            last = body.named_children[-1] if body is not None and body.type == "pipeline" else None
            if last is not None and last.type in grammar.COMMANDS:
                part = self.parts[-1]  # `a | b < f`: the grammar hangs `< f` on the pipeline; bash gives it to b
            else:
                part = Part(piped_in=piped_in)  # `(…) > out`: the redirections are judged on their own
                self.parts.append(part)
        for child in node.children:
            if child.type in grammar.REDIRECTS:
                self.redirect(child, part)
            elif child != body:  # a comment too (see command)
                raise Unmodelled(f"`{child.type}` in a redirected command")

    def function(self, node: Node) -> None:
        """`f() {…}`: one whose body names the function is the fork-bomb shape `:(){ :|:& };:` and is denied; so
        are functions that call each other round (`a() { b|b& }; b() { a|a& }`), decided once all are read."""
        name_node, body = node.child_by_field_name("name"), node.child_by_field_name("body")
        if name_node is None or body is None:
            raise Unmodelled("a function definition without a name or body")
        name = self.word(name_node).text
        # a word anywhere in the body in any quoting (`echo f` counts too: over-cautious, never under; `eval 'f'`
        # runs it), command names included (`"f"`, `f''`, `$"f"`: the shell runs the same function)
        named = {self.word(child).text for child in iter_nodes(body)
                 if child.type in ("word", "string", "raw_string", "concatenation")}
        # `$'f'` runs f too: its text without escapes is the name; with escapes (`$'\x66'`) it may name any
        # function, so it counts as naming all of them (over-cautious, never under)
        for child in iter_nodes(body):
            if child.type == "ansi_c_string":
                inner = self.source[child.start_byte + 2:child.end_byte - 1].decode("utf-8", "surrogateescape")
                named.add(_ANY_FUNCTION if "\\" in inner else inner)
        self._functions.append((name, named, len(self.findings), body))
        self.findings.append(function(name, calls_itself=False))  # _recursion decides once all are read
        self.statement(body, piped_in=False)
        redirects = [child for child in node.children if child.type in grammar.REDIRECTS]
        if redirects:  # `f() { …; } > FILE`: bash opens FILE each time f runs, judged like `(…) > FILE`
            part = Part(piped_in=False)
            self.parts.append(part)
            for child in redirects:
                self.redirect(child, part)
            if part.reads_pipe():  # `f() { sh; } < <(curl …)`: every run of f reads that pipe
                self._fed.add(name)

    def _calls(self) -> dict[str, set[str]]:
        """Which functions of the script each function's body may call."""
        defined = {name for name, _, _, _ in self._functions}
        calls: dict[str, set[str]] = {}
        for name, named, _, _ in self._functions:
            calls.setdefault(name, set()).update(defined if _ANY_FUNCTION in named else named & defined)
        return calls

    def _piped_functions(self) -> None:
        """`f() { sh; }; curl … | f`: a function run with a pipe as its stdin hands the pipe to its body, so a body
        that reads its program from stdin is the `curl … | sh` shape. Bodies were walked as unpiped; each one that
        may run on a pipe (see _piped_calls), and the functions it calls in turn, is walked again as piped."""
        done: set[str] = set()
        while True:
            calls = self._calls()
            piped = self._fed & set(calls)
            for part in self.parts:
                piped |= self._piped_calls(part, set(calls))
            frontier = piped - done
            while frontier:
                piped |= frontier
                frontier = {callee for caller in frontier for callee in calls[caller]} - piped
            new = piped - done
            if not new:
                return
            done |= new
            for name, _, _, body in list(self._functions):
                if name in new:
                    self.statement(body, piped_in=True)

    @staticmethod
    def _piped_calls(part: Part, defined: set[str]) -> set[str]:
        """The functions a part may run with a pipe as their stdin: its command when it reads a pipe (any function
        when the command is an expansion), and any function named in shell code that holds a pipe or a process
        substitution and is parsed on its own, without the script's functions - a `$(…)` or `<(…)` body, the
        words of `eval` or `bash -c` (bash imports exported functions). Over-cautious, never under: a name in
        such code counts wherever it stands."""
        found: set[str] = set()
        command = next((word for word in part.words if not ASSIGNMENT.match(word.text)), None)
        code = command is not None and command.text in ("eval", *SHELLS)
        texts = [text for word in (*part.words, *(r.target for r in part.redirections))
                 for text in (*word.substitutions, *word.processes)]
        if code:
            texts += [word.text for word in part.words]
        for text in texts:
            if "|" in text or "<(" in text or (code and part.reads_pipe()):
                found |= set(_NAME_BREAKS.split(text)) & defined
        if command is not None and part.reads_pipe():
            if command.expansion or (code and any(word.expansion for word in part.words)):
                return set(defined)
            if command.text in defined:
                found.add(command.text)
        return found

    def _recursion(self) -> None:
        """Deny each function that can reach itself through the other functions of the script."""
        calls = self._calls()
        for name, _, index, _ in self._functions:
            seen, frontier = set(), set(calls[name])
            while frontier:
                seen |= frontier
                frontier = {callee for caller in frontier for callee in calls[caller]} - seen
            if name in seen:
                self.findings[index] = function(name, True)

    # --- words and redirections ---------------------------------------------------------------------------

    def word(self, node: Node) -> Word:
        return words.word(node, self.source)

    def assignment(self, node: Node) -> Word:
        return words.assignment(node, self.source)

    def redirect(self, node: Node, part: Part) -> None:
        if node.type == "heredoc_redirect":
            self.heredoc(node, part)
            return
        fd: str | None = None
        op = ""
        op_end = node.start_byte
        targets: list[Word] = []
        for child in node.children:
            if child.type == "file_descriptor":
                fd = self.text(child)
            elif not child.is_named:
                op += child.type
                op_end = child.end_byte
            elif child.type in grammar.WORDS:
                targets.append(self.word(child))
            else:
                raise Unmodelled(f"`{child.type}` in a redirection")
        last = part.words[-1] if part.words else None
        if fd is None and last is not None and last.end == node.start_byte and last.text.isdigit() \
                and not any(last.mask):  # the grammar reads the `0` of `0<x` as a word; bash, as its descriptor
            fd = part.words.pop().text
        if op in (">&-", "<&-"):  # closing a descriptor: read as `>&` with the target `-`, as bash documents it
            op, targets = op[:-1], [Word("-", node.end_byte, node.end_byte, (False,)), *targets]
        if op != "<<<" and op not in grammar.REDIRECTION_OPS:
            raise Unmodelled(f"the redirection {op!r}")
        if not targets:
            raise ShellSyntaxError(f"redirection {op!r} has no target")
        if b"\n" in self.source[op_end: targets[0].start].replace(b"\\\n", b""):
            # bash ends the command at the newline; the grammar takes the next line's first word as the target
            raise ShellSyntaxError(f"redirection {op!r} has no target on its line")
        # `echo > a b`: the parser hangs `b` on the redirection, but it is an argument of the command
        part.redirections.append(Redirection(op, targets[0], fd))
        part.words.extend(targets[1:])

    def heredoc(self, node: Node, part: Part) -> None:
        """`<<EOF`: the body was read by heredoc.py; tree-sitter must agree on where it ends. The parser hangs the
        rest of the line (`> out`, `| python3 -`) on the here-document, so it is walked from here."""
        op: str | None = None
        start: Node | None = None
        end: Node | None = None
        for child in node.children:
            kind = child.type
            if kind in ("<<", "<<-"):
                op = kind
            elif kind == "heredoc_start":
                start = child
            elif kind == "heredoc_end":
                end = child
            elif kind in grammar.REDIRECTS:
                self.redirect(child, part)
            elif kind == "pipeline":
                for stage in child.named_children:
                    self.statement(stage, piped_in=True)
                if any(not token.is_named and token.type not in ("|", "|&") for token in child.children):
                    raise Unmodelled("a pipeline operator after a here-document")
            elif kind == "&":
                self.findings.append(background())
            elif not child.is_named and kind in grammar.SEPARATORS:
                continue
            elif kind not in ("heredoc_body", "comment"):
                self.statement(child, part.piped_in)
        doc = self.heredocs.get(start.start_byte) if start is not None else None
        if op is None or start is None or doc is None or end is None or end.end_byte != doc.end:
            raise Unmodelled("a here-document the parser and the here-document reader do not read alike")
        self._seen_heredocs.add(start.start_byte)
        expands, substitutions = (False, []) if doc.literal else heredoc.expansions_in(doc.body, words.substitution_at)
        target = Word(doc.delimiter, start.start_byte, start.end_byte, (doc.literal,) * len(doc.delimiter), expands,
                      tuple(substitutions), body=doc.body)
        part.redirections.append(Redirection(op, target))
