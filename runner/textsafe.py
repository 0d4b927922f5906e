"""Text from outside smol, made safe to print on a terminal: the one place that decides what a terminal may see.

Whatever smol prints may hold bytes someone else chose: file names and diffs from the sandbox, the model's words,
a repository's `.env` values, a run's task. A terminal obeys escape sequences in them (colour, cursor moves,
window titles, OSC 8 links, clipboard writes on some terminals) and bidi controls reorder what a reviewer reads
(Trojan Source), so every such string passes through `sanitize_for_terminal` on its way out. It imports nothing
from the rest of smol, so every layer (cli, agent, promote, the live line) can use it.

Standard library only, on purpose: the rule is a short, reviewed character class, and a library that "strips ANSI"
removes only well-formed sequences, which is exactly what an attacker does not send.
"""

from __future__ import annotations

import re

# C0 controls except \t and \n, DEL, C1 controls (0x9b is a one-byte CSI, 0x9d a one-byte OSC), the bidi
# controls that reorder what a reviewer sees (Trojan Source), the Unicode line/paragraph separators some
# terminals break lines on, and lone surrogates (surrogate-escaped non-UTF-8 bytes: printing them would raise).
_UNSAFE_CLASS = ("\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
                 "\u2028\u2029\ud800-\udfff")
_UNSAFE = re.compile(f"[{_UNSAFE_CLASS}]")
_UNSAFE_SINGLE_LINE = re.compile(f"[\t\n{_UNSAFE_CLASS}]")


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"  # a surrogate-escaped raw byte: show the byte itself
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def sanitize_for_terminal(text: str, *, single_line: bool = False) -> str:
    """`text` with every character that could drive or deceive a terminal replaced by a visible escape.

    ESC (and with it every CSI/OSC/DCS sequence, which cannot start without it or its C1 form), the other C0/C1
    controls, DEL, bidi controls and line separators become `\\x1b`, `\\u202e`, ...; tabs and newlines are kept
    unless `single_line` is set (use it for file names and anything printed on one line: a newline in a name
    could otherwise forge a whole line of output).
    """
    pattern = _UNSAFE_SINGLE_LINE if single_line else _UNSAFE
    return pattern.sub(_escape_char, text)


def one_line(text: str | None) -> str:
    """`sanitize_for_terminal(text, single_line=True)`, with None as "": for names and one-line messages."""
    return sanitize_for_terminal(text or "", single_line=True)


def has_unsafe_name_chars(name: str) -> bool:
    """Whether a file name holds controls or bidi characters (what a reviewer would be deceived by).

    Surrogates (non-UTF-8 bytes) are only a display matter, not deception, so they do not count here."""
    return any(_UNSAFE_SINGLE_LINE.match(ch) and not 0xD800 <= ord(ch) <= 0xDFFF for ch in name)


__all__ = ["has_unsafe_name_chars", "one_line", "sanitize_for_terminal"]
