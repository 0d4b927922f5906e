"""runner.textsafe: the one rule for what a terminal may see of text someone else chose."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from runner.textsafe import has_unsafe_name_chars, one_line, sanitize_for_terminal

RUNNER = Path(__file__).resolve().parents[1] / "runner"


@pytest.mark.parametrize(("raw", "shown"), [
    ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),                    # CSI colour
    ("\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),                              # clear screen, cursor home
    ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),                        # OSC window title, BEL-terminated
    ("\x1b]8;;https://evil.example\x1b\\ok\x1b]8;;\x1b\\",            # OSC 8 hyperlink, ST-terminated
     "\\x1b]8;;https://evil.example\\x1b\\ok\\x1b]8;;\\x1b\\"),
    ("\x1b]52;c;ZWNobyBoaQ==\x07", "\\x1b]52;c;ZWNobyBoaQ==\\x07"),      # OSC 52 clipboard write
    ("\x1bP+q\x1b\\", "\\x1bP+q\\x1b\\"),                              # DCS
    ("\x9b31m", "\\x9b31m"),                                         # one-byte C1 CSI
    ("\x9d0;t\x9c", "\\x9d0;t\\x9c"),                                  # one-byte C1 OSC and ST
    ("\x85next", "\\x85next"),                                       # C1 NEL
    ("a\x00b\x08c\x7f", "a\\x00b\\x08c\\x7f"),                         # NUL, backspace, DEL
])
def test_escape_sequences_and_controls_become_visible_text(raw: str, shown: str) -> None:
    assert sanitize_for_terminal(raw) == shown
    assert "\x1b" not in sanitize_for_terminal(raw) and "\x9b" not in sanitize_for_terminal(raw)


def test_every_c0_and_c1_control_is_escaped_except_tab_and_newline() -> None:
    for code in [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]:
        char = chr(code)
        out = sanitize_for_terminal(f"x{char}y")
        if char in "\t\n":
            assert out == f"x{char}y"
            assert one_line(f"x{char}y") == f"x\\x{code:02x}y"
        else:
            assert out == f"x\\x{code:02x}y", hex(code)


@pytest.mark.parametrize("code", [0x061C, 0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067,
                                  0x2068, 0x2069, 0x2028, 0x2029])
def test_bidi_controls_and_line_separators_are_escaped(code: int) -> None:
    assert sanitize_for_terminal(f"if admin{chr(code)}:") == f"if admin\\u{code:04x}:"


def test_trojan_source_line_reads_in_logical_order() -> None:
    # The classic: RLO ... LRI makes `/* } if (isAdmin) begin admins only */` display as something else.
    raw = 'access = "user\u202e \u2066// Check if admin\u2069 \u2066"'
    shown = sanitize_for_terminal(raw)
    assert shown == 'access = "user\\u202e \\u2066// Check if admin\\u2069 \\u2066"'
    assert not any(0x2066 <= ord(c) <= 0x2069 or ord(c) == 0x202E for c in shown)


def test_carriage_return_cannot_overwrite_what_was_printed() -> None:
    # "safe.txt\rEVIL" would print EVIL over the start of the line; a lone \r mid-diff-line would hide the rest.
    assert sanitize_for_terminal("+print('ok')\r+os.system('rm -rf ~')") == "+print('ok')\\x0d+os.system('rm -rf ~')"
    assert one_line("innocent.py\r\x1b[2Kevil.py") == "innocent.py\\x0d\\x1b[2Kevil.py"


def test_newline_in_a_name_cannot_forge_an_output_line() -> None:
    assert one_line("a.py\nREFUSED nothing") == "a.py\\x0aREFUSED nothing"
    assert sanitize_for_terminal("line one\nline two") == "line one\nline two"  # multi-line text keeps its lines


def test_surrogate_escaped_bytes_show_as_the_byte_and_never_raise() -> None:
    name = b"caf\xe9\x1b.txt".decode("utf-8", "surrogateescape")
    shown = one_line(name)
    assert shown == "caf\\xe9\\x1b.txt"
    shown.encode("utf-8")  # printable: a lone surrogate would raise UnicodeEncodeError here
    assert sanitize_for_terminal("\ud800") == "\\ud800"


def test_ordinary_text_is_untouched() -> None:
    text = "héllo wörld — 日本語 ✓ tabs\tand spaces, emoji 🎉, zero-width joiner in 👩\u200d💻"
    assert sanitize_for_terminal(text) == text
    assert one_line(None) == ""


def test_name_check_counts_deception_not_encoding() -> None:
    assert has_unsafe_name_chars("a\u202eb.py")
    assert has_unsafe_name_chars("a\nb.py")
    assert has_unsafe_name_chars("a\x1b[31m.py")
    assert not has_unsafe_name_chars(b"caf\xe9.py".decode("utf-8", "surrogateescape"))
    assert not has_unsafe_name_chars("café.py")


def test_textsafe_imports_nothing_from_smol() -> None:
    """Every layer uses it, so it must sit below all of them: no import of any runner module."""
    tree = ast.parse((RUNNER / "textsafe.py").read_text())
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert imported and not [name for name in imported if name.startswith("runner")]


def test_no_module_keeps_its_own_terminal_escaping() -> None:
    """One rule, one place: other modules import it instead of matching control characters themselves."""
    own_rule = [path.relative_to(RUNNER).as_posix() for path in RUNNER.rglob("*.py")
                if path.name != "textsafe.py" and "\\u202e" in path.read_text().lower()]
    assert own_rule == []


# ------------------------------------------------------------- the CLI's own lines: errors and recovered journals
ESCAPED_NAME = "a\x1b]0;pwned\x07\x1b[2K\u202e.txt"
"""A name the agent chose: sets the window title, erases the line, reverses what follows."""


def _cli(args: list[str], state: Path, group: object | None = None) -> tuple[int, str]:
    from click.testing import CliRunner

    from runner.cli.app import main

    result = CliRunner().invoke(group or main, args, env={"XDG_STATE_HOME": str(state), "PHOENIX_ENABLED": "false"})
    return result.exit_code, result.stderr


def test_an_error_naming_an_agent_path_reaches_the_terminal_escaped(tmp_path: Path) -> None:
    """Promotion errors name the patch's paths ("X changed while the change was being written", git's stderr,
    "conflicts in: X"); the one place that prints every SmolError must not pass their escapes to the terminal."""
    from runner.cli.app import SmolGroup
    from runner.promote.apply import PromotionError

    group = SmolGroup("smol")

    @group.command()
    def write() -> None:
        raise PromotionError(f"{ESCAPED_NAME} changed while the change was being written\nsmol: promotion: applied")

    code, stderr = _cli(["write"], tmp_path, group)
    assert code == PromotionError.exit_code
    assert "\x1b" not in stderr and "\x07" not in stderr and "\u202e" not in stderr
    assert "a\\x1b]0;pwned\\x07\\x1b[2K\\u202e.txt changed while" in stderr
    assert stderr.count("\n") == 1  # one line: a newline in the message cannot forge a second line of output


def test_a_recovered_journal_names_kept_paths_escaped(tmp_path: Path) -> None:
    """A promotion killed mid-write is rolled back by the next command, which names the paths it left alone:
    paths from the agent's patch."""
    import json

    from runner.promote.journal import encode_state
    from runner.sandbox.base import FileState

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ESCAPED_NAME).write_bytes(b"the user's bytes since\n")
    journal = tmp_path / "state" / "smol" / "journal"
    journal.mkdir(parents=True)
    entry = {"repo": str(repo), "pid": 1, "boot": "a boot long gone",
             "changes": [{"path": ESCAPED_NAME, "before": encode_state(FileState("file", b"before\n")),
                          "after": encode_state(FileState("file", b"after\n")), "times": None, "mode": None}]}
    (journal / "killed.json").write_text(json.dumps(entry))
    code, stderr = _cli(["runs", "list"], tmp_path / "state")
    assert code == 0, stderr
    assert "killed mid-write" in stderr and "a\\x1b]0;pwned\\x07\\x1b[2K\\u202e.txt" in stderr
    assert "\x1b" not in stderr and "\x07" not in stderr and "\u202e" not in stderr
    assert (repo / ESCAPED_NAME).read_bytes() == b"the user's bytes since\n"  # theirs now: left alone


def test_ci_annotations_carry_no_terminal_escapes() -> None:
    """`smol ci` prints its annotations on stdout, into a CI log that renders ANSI: the paths are the agent's."""
    from runner.ci import build_result, workflow_commands
    from tests.test_ci import _summary

    findings = {"refused": [{"path": ESCAPED_NAME, "reason": "a symlink out of the repo"}], "flagged": []}
    result = build_result("t", _summary(), findings, "never")
    command = workflow_commands(result)[0]
    assert command == "::error title=smol guard::a\\x1b]0;pwned\\x07\\x1b[2K\\u202e.txt: a symlink out of the repo"
