"""tree-sitter-bash: the parser, and the node types the reduction models (anything else is refused)."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache

import tree_sitter_bash
from tree_sitter import Language, Node, Parser, Tree


@cache
def _language() -> Language:
    return Language(tree_sitter_bash.language())


def parse_bytes(source: bytes) -> Tree:
    """The syntax tree of `source`; a Parser per call because a policy may be used from several threads."""
    return Parser(_language()).parse(source)


def iter_nodes(root: Node) -> Iterator[Node]:
    """Every node in document order, without recursion (a hostile command can nest thousands deep)."""
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(node.children))


SEPARATORS = frozenset({";", "&", "&&", "||", "\n"})
TOKENS: dict[str, frozenset[str]] = {
    "program": SEPARATORS, "list": SEPARATORS, "subshell": SEPARATORS | {"(", ")"},
    "compound_statement": SEPARATORS | {"{", "}", "((", "))"}, "do_group": SEPARATORS | {"do", "done"},
    "if_statement": SEPARATORS | {"if", "then", "fi"}, "elif_clause": SEPARATORS | {"elif", "then"},
    "else_clause": SEPARATORS | {"else"}, "while_statement": SEPARATORS | {"while", "until"},
    "for_statement": SEPARATORS | {"for", "select", "in"}, "case_statement": SEPARATORS | {"case", "in", "esac"},
    "case_item": SEPARATORS | {"(", ")", "|", ";;", ";&", ";;&"}, "negated_command": frozenset({"!"}),
    "test_command": frozenset({"[", "]", "[[", "]]"}),
}
"""Per construct, the separators and keywords the walk follows; any other token is refused, because the grammar
accepts some that bash rejects (`pytest ;;` parses without an error)."""
RESERVED = frozenset({"{", "}", "!", "[[", "]]", "if", "then", "elif", "else", "fi", "for", "select", "in", "do",
                      "done", "while", "until", "case", "esac", "function", ";;"})
"""Words bash reads as keywords in command position; a command named like one is a grammar misreading
(`do { { sudo` parses as the command `do`), so it is refused."""
COMMANDS = frozenset({"command", "declaration_command", "unset_command"})
CONTROL = frozenset({"if_statement", "while_statement", "for_statement", "c_style_for_statement", "case_statement",
                     "compound_statement", "negated_command", "test_command"})
CLAUSES = frozenset({"do_group", "elif_clause", "else_clause", "case_item"})
EXPRESSIONS = frozenset({"binary_expression", "unary_expression", "postfix_expression", "parenthesized_expression",
                         "ternary_expression"})
REDIRECTS = frozenset({"file_redirect", "herestring_redirect", "heredoc_redirect"})
REDIRECTION_OPS = frozenset({"<", ">", ">>", ">|", "&>", "&>>", ">&", "<&", "<<<"})
LITERALS = frozenset({"number", "variable_name", "test_operator", "brace_expression", "extglob_pattern", "regex",
                      "subscript", "special_variable_name"})
"""Leaves taken as their source text; one holding `$` or a backtick counts as an expansion."""
EXPANSIONS = frozenset({"simple_expansion", "expansion", "arithmetic_expansion", "command_substitution",
                        "process_substitution", "ansi_c_string", "translated_string"})
WORDS = LITERALS | EXPANSIONS | {"word", "string", "raw_string", "concatenation"}
DECLARATIONS = frozenset({"export", "declare", "local", "readonly", "typeset", "unset", "unsetenv"})
