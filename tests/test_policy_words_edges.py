"""How the command policy reads a shell word and a here-document, at the edges mutation testing found untested
(see MUTATION.md): backslashes inside double quotes, multi-line strings around an expansion, nested backticks,
substitutions hidden inside `${…}`, here-document bodies that expand, continue or end early.

Each case is a command an agent could send; the decision is the contract. A dangerous command hidden by unusual
quoting or an expansion must not become ALLOW (nor escape its DENY); a harmless one read the way bash reads it
must not become DENY or a question."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.policy import CommandPolicy, Decision, PolicyResult

ALLOW, ASK, DENY = Decision.ALLOW, Decision.REQUIRE_APPROVAL, Decision.DENY


@pytest.fixture(scope="module")
def policy() -> CommandPolicy:
    return CommandPolicy()


def judge(policy: CommandPolicy, command: str) -> PolicyResult:
    return policy.evaluate(command)


# --- double-quoted strings ---------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [
    pytest.param('echo "a \\"quoted\\" word"', id="escaped-quotes-inside"),
    pytest.param('echo "say \\"hi\\""', id="escaped-quote-last"),
    pytest.param('echo "back\\\\slash"', id="escaped-backslash-inside"),
    pytest.param('echo "dir\\\\"', id="escaped-backslash-last"),
    pytest.param('echo "C:\\temp"', id="backslash-before-an-ordinary-character-stays"),
    pytest.param('echo "X marks the spot"', id="plain-text"),
    pytest.param('echo ""', id="empty-string"),
    pytest.param('echo "" x', id="empty-string-then-a-word"),
    pytest.param('echo "{a,b}"', id="quoted-braces-are-not-brace-expansion"),
])
def test_a_harmless_double_quoted_argument_is_read_like_bash_and_allowed(policy: CommandPolicy,
                                                                           command: str) -> None:
    # bash removes the backslash only before $ ` " \ and newline; shlex agrees on these, so the two readings
    # match and a read-only command runs without a prompt. A misread escape would turn it into a question.
    result = judge(policy, command)
    assert result.decision is ALLOW, result


def test_a_backslash_newline_inside_double_quotes_cannot_hide_a_parent_directory(policy: CommandPolicy) -> None:
    # bash joins ".\<newline>./x" into "../x": the parent directory, which `rm -rf` must never touch.
    result = judge(policy, 'rm -rf ".\\\n./x"')
    assert result.decision is DENY
    assert result.rule == "default:destructive"


@pytest.mark.parametrize("command", [
    pytest.param('echo "Done:\n$RESULT"', id="newline-between-text-and-expansion"),
    pytest.param('echo "\n$RESULT"', id="newline-before-expansion"),
    pytest.param('echo "$RESULT\n"', id="newline-after-expansion"),
    pytest.param('git commit -m "Fix the parser\n\nSee $URL"', id="commit-message"),
])
def test_a_multi_line_string_with_a_variable_is_a_question_not_an_internal_error(policy: CommandPolicy,
                                                                                   command: str) -> None:
    # The grammar leaves the newlines next to an expansion outside every child node; the reader must still
    # take them as text. A multi-line message with a variable is ordinary and needs approval for the variable.
    result = judge(policy, command)
    assert result.decision is ASK, result
    assert result.rule == "structure:expansion"


def test_a_newline_that_opens_a_string_belongs_to_the_word(policy: CommandPolicy) -> None:
    # bash passes "\n/home/u": a relative name starting with a newline, not the home directory. Dropping the
    # newline would make the policy judge a different path than the one that is removed.
    result = judge(policy, 'rm -rf "\n$HOME"')
    assert result.decision is ASK, result
    assert result.rule != "default:destructive"


# --- assignments ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["LANG=C ls; pwd", "ls; LANG=C ls", "ls && FOO=1 ls"])
def test_an_assignment_prefix_in_a_command_list_is_a_question(policy: CommandPolicy, command: str) -> None:
    # The verdict names the part it comes from, which needs the assignment's place in the line.
    result = judge(policy, command)
    assert result.decision is ASK, result
    assert result.rule == "structure:assignment"


# --- command substitutions inside words ----------------------------------------------------------------------

@pytest.mark.parametrize("command", [
    pytest.param("echo `echo \\`rm -rf /\\``", id="escaped-backticks-nest"),
    pytest.param("echo `rm -rf \\$HOME`", id="escaped-dollar-in-backticks"),
    pytest.param("echo ${x:-`rm -rf /`}", id="backticks-in-a-default"),
    pytest.param('echo "a${x:-`rm -rf /`}"', id="backticks-in-a-quoted-default"),
    pytest.param("echo ${x:-$(ls) $(rm -rf /)}", id="second-substitution-in-a-default"),
    pytest.param('echo "${x:-$(ls) $(rm -rf /)}"', id="second-substitution-in-a-quoted-default"),
])
def test_a_destructive_command_inside_a_substitution_is_denied_for_what_it_does(policy: CommandPolicy,
                                                                                 command: str) -> None:
    # Inside backticks `\`` and `\$` are quote removal, so the inner command is `rm -rf /` (or $HOME), and every
    # substitution in a `${x:-…}` runs, not only the first. The DENY must come from the command itself.
    result = judge(policy, command)
    assert result.decision is DENY, result
    assert result.rule == "default:destructive"


# --- here-documents ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [
    pytest.param("cat <<EOF\n$(ls)\n$(rm -rf /)\nEOF\n", id="second-substitution"),
    pytest.param("cat <<EOF\n${x}\n$(rm -rf /)\nEOF\n", id="after-a-parameter"),
    pytest.param("cat <<EOF\n`ls`\nx `rm -rf /`\nEOF\n", id="second-backticks"),
    pytest.param("cat <<EOF\n${x:-$(ls) $(rm -rf /)}\nEOF\n", id="second-in-a-default"),
])
def test_every_substitution_of_an_expanding_here_document_is_judged(policy: CommandPolicy, command: str) -> None:
    # bash runs every `$(…)` and backtick of an unquoted here-document body; a harmless first one must not
    # hide the next.
    result = judge(policy, command)
    assert result.decision is DENY, result
    assert result.rule == "default:destructive"


@pytest.mark.parametrize("command", [
    "cat <<EOF\nhello $USER\nEOF\n", "cat <<EOF\n${HOME}\nEOF\n", "cat <<EOF\n$((1+2))\nEOF\n",
])
def test_an_expanding_here_document_is_flagged_as_an_expansion(policy: CommandPolicy, command: str) -> None:
    # The reviewer is told the body is not plain data: bash substitutes into it before the command reads it.
    result = judge(policy, command)
    assert result.decision is ASK, result
    assert result.rule == "structure:expansion"


@pytest.mark.parametrize("command", [
    "cat <<'EOF'\nhello $USER\nEOF\n", "cat <<EOF\nhello \\$USER\nEOF\n", "cat <<EOF\nhello\nEOF\n",
])
def test_a_here_document_that_expands_nothing_is_only_data(policy: CommandPolicy, command: str) -> None:
    result = judge(policy, command)
    assert result.decision is ASK, result
    assert result.rule == "structure:heredoc"


@pytest.mark.parametrize("command", [
    pytest.param("cat <<EOF\n${x\nEOF\n", id="unterminated-parameter"),
    pytest.param("cat <<EOF\n${(((((\nEOF\n", id="unterminated-parameter-with-parentheses"),
    pytest.param("cat <<EOF\n$(echo hi\nEOF\n", id="unterminated-substitution"),
    pytest.param("cat <<EOF\n`rm -rf /\nEOF\n", id="unterminated-backticks"),
])
def test_an_unbalanced_substitution_in_a_here_document_is_a_parse_error(policy: CommandPolicy,
                                                                         command: str) -> None:
    # bash would fail or read further than the policy did; the policy refuses to guess.
    result = judge(policy, command)
    assert result.decision is DENY, result
    assert result.rule == "parse-error"


@pytest.mark.parametrize("command", [
    pytest.param("cat <<EOF\nx\n", id="no-delimiter-line"),
    pytest.param("cat <<EOF\nEOF\\\n", id="delimiter-continued-into-the-end"),
])
def test_an_unterminated_here_document_is_a_parse_error(policy: CommandPolicy, command: str) -> None:
    result = judge(policy, command)
    assert result.decision is DENY, result
    assert result.rule == "parse-error"


def test_an_odd_run_of_backslashes_continues_a_here_document_line_past_the_delimiter(
        policy: CommandPolicy) -> None:
    # `ls \\\` ends in an escaped backslash and then a continuation: bash joins the next line, so that `EOF` is
    # not the delimiter and `rm -rf /` is part of the script bash reads.
    result = judge(policy, "bash <<EOF\nls \\\\\\\nEOF\nrm -rf /\nEOF\n")
    assert result.decision is DENY, result
    assert result.rule == "default:destructive"


def test_a_continued_line_in_a_here_document_script_is_joined(policy: CommandPolicy) -> None:
    # bash reads `rm -rf /\<newline>x` as `rm -rf /x`: a top-level directory, denied.
    result = judge(policy, "bash <<EOF\nrm -rf /\\\nx\nEOF\n")
    assert result.decision is DENY, result
    assert result.rule == "default:destructive"


@pytest.mark.parametrize("command", [
    pytest.param("cat <<EOF\n\tEOF\nrm -rf /\nEOF\n", id="tab-indented-delimiter-in-plain-heredoc"),
    pytest.param("cat <<-EOF\n  EOF\nrm -rf /\nEOF\n", id="space-indented-delimiter-in-dash-heredoc"),
    pytest.param("cat <<-EOF\nXEOF\nrm -rf /\nEOF\n", id="prefixed-delimiter-in-dash-heredoc"),
])
def test_only_the_exact_delimiter_line_ends_a_here_document(policy: CommandPolicy, command: str) -> None:
    # `<<` ends at a line that is exactly the delimiter and `<<-` strips leading tabs only: the `rm -rf /` line
    # after a look-alike is data handed to `cat`, not a command.
    result = judge(policy, command)
    assert result.decision is ASK, result
    assert result.rule == "structure:heredoc"


@pytest.mark.parametrize("command", [
    pytest.param('echo "$MSG\n"', id="newline-after-the-variable"),
    pytest.param('echo "$MSG\n\n"', id="blank-line-after-the-variable"),
    pytest.param('echo "\n$MSG"', id="newline-before-the-variable"),
])
def test_a_user_regex_rule_sees_the_newlines_around_a_variable_in_a_string(tmp_path: Path, command: str) -> None:
    # A user who denies multi-line arguments (say, to stop header or log injection) writes a regex on the
    # re-quoted argv; the grammar leaves these newlines outside every child node, and the reader must keep them
    # or the user's rule silently stops matching.
    path = tmp_path / "policy.toml"
    path.write_text('[[rule]]\nregex = "\\\\n"\ndecision = "deny"\nreason = "no multi-line arguments"\n')
    result = CommandPolicy.from_file(path).evaluate(command)
    assert result.decision is DENY, result
    assert result.reason == "no multi-line arguments"


# --- substitutions the grammar leaves in a pattern, and words bash joins ------------------------------------------

@pytest.mark.parametrize("command", [
    pytest.param("echo ${x#`rm -rf /`}", id="backticks-in-a-prefix-pattern"),
    pytest.param("echo ${x%%$(rm -rf /)}", id="dollar-paren-in-a-suffix-pattern"),
    pytest.param("echo ${x^^$(rm -rf /)}", id="dollar-paren-in-a-case-pattern"),
    pytest.param("echo ${x,,`rm -rf /`}", id="backticks-in-a-case-pattern"),
    pytest.param("echo ${x/#`rm -rf ~`/y}", id="backticks-in-an-anchored-replace-pattern"),
    pytest.param("cat ${f%$(rm -rf ~)}", id="a-home-directory-in-the-pattern"),
])
def test_a_substitution_in_the_pattern_of_a_parameter_expansion_is_judged(policy: CommandPolicy,
                                                                          command: str) -> None:
    # bash runs a `$(…)` or backtick in the pattern of `${x#…}`, `${x%…}`, `${x^^…}`, `${x,,…}`; tree-sitter-bash
    # 0.25 reads that pattern as one `regex` leaf, so these were only "uses shell expansion" (a question) where
    # the same substitution anywhere else is DENY for what it runs.
    result = judge(policy, command)
    assert result.decision is DENY, result
    assert result.rule == "default:destructive", result
    assert "command substitution runs `rm -rf" in result.reason


@pytest.mark.parametrize("command", [
    pytest.param("r\\\nm -rf /", id="the-command-name"),
    pytest.param("ch\\\nmod -R 777 /etc", id="another-command-name"),
    pytest.param("echo a\\\nb", id="an-argument"),
    pytest.param("ls $(r\\\nm -rf /)", id="inside-a-substitution"),
    pytest.param("cat <<EOF\nx\nEOF\nr\\\nm -rf /", id="after-a-here-document"),
    pytest.param("echo 'a\\\nb'; r\\\nm -rf /", id="after-one-inside-quotes"),
])
def test_a_backslash_newline_that_joins_two_words_is_refused(policy: CommandPolicy, command: str) -> None:
    # bash removes a backslash-newline before it splits words, so `r\<newline>m -rf /` runs `rm -rf /`; the grammar
    # reads two words, `r` and `m`, and the line was a question about an unknown `r` instead of a DENY.
    result = judge(policy, command)
    assert result.decision is DENY, result
    assert result.rule in ("structure:unmodelled", "default:destructive"), result
    if result.rule == "structure:unmodelled":
        assert "a backslash-newline that joins two words" in result.reason


@pytest.mark.parametrize(("command", "expected"), [
    pytest.param("rm -rf \\\n  /", DENY, id="between-words-it-is-a-space"),
    pytest.param("ls \\\n  src", ASK, id="an-ordinary-continued-line-is-a-question-not-refused"),
    pytest.param("echo 'a\\\nb'", ALLOW, id="single-quotes-keep-it"),
    pytest.param("cat <<EOF\na\\\nb\nEOF", ASK, id="a-here-document-body-keeps-it"),
    pytest.param("# note\\\nls", ALLOW, id="a-comment-ends-at-the-newline"),
    pytest.param("echo a\\\\\nls", ALLOW, id="an-escaped-backslash-then-a-newline-separates-commands"),
    pytest.param("\\\nls", ALLOW, id="before-the-first-word"),
    pytest.param("\n\n\n\n\n\n\n\n\necho 'x\\\ny'", ALLOW, id="in-quotes-after-leading-blank-lines"),
    pytest.param('echo "a\\\n"', ASK, id="at-the-end-of-a-double-quoted-string"),
    pytest.param("ls \\\n-a", ASK, id="a-blank-on-one-side-is-enough"),
    pytest.param("ls\\\n -a", ASK, id="a-blank-after-it"),
    pytest.param("ls\t\\\n\t-a", ASK, id="tabs-around-it"),
    pytest.param("ls\\\n\necho x", ALLOW, id="an-empty-line-after-it"),
])
def test_a_backslash_newline_between_words_or_inside_quotes_is_read_as_bash_reads_it(
        policy: CommandPolicy, command: str, expected: Decision) -> None:
    result = judge(policy, command)
    assert result.decision is expected, result
    assert result.rule != "structure:unmodelled", result


@pytest.mark.parametrize(("command", "expected"), [
    pytest.param("echo \\{a,b}", ALLOW, id="an-escaped-brace-is-literal"),
    pytest.param("echo a\\{b,c\\}", ALLOW, id="escaped-braces-after-a-letter"),
    pytest.param("echo {1..3}", ASK, id="a-sequence-expression-expands"),
    pytest.param("echo x{1..3}", ASK, id="a-sequence-expression-after-a-letter-expands"),
    pytest.param("echo ab\\c", ALLOW, id="a-backslash-inside-a-word"),
    pytest.param("cat src/a\\ b.txt", ALLOW, id="an-escaped-space-inside-a-path"),
])
def test_an_escaped_character_is_literal_and_an_unescaped_brace_sequence_expands(
        policy: CommandPolicy, command: str, expected: Decision) -> None:
    # `{1..3}` is three words to bash (the grammar calls it a `brace_expression`); `\{a,b}` is one word.
    result = judge(policy, command)
    assert result.decision is expected, result
    if expected is ASK:
        assert result.rule == "structure:brace-expansion", result


@pytest.mark.parametrize("command", [
    pytest.param("declare a[$i]=1", id="declare-a-variable-subscript"),
    pytest.param("declare a[`id`]=1", id="declare-a-backtick-subscript"),
    pytest.param("export a[$i]=1", id="export-a-variable-subscript"),
])
def test_a_subscript_that_expands_is_a_question_even_where_the_command_is_allowed(tmp_path: Path,
                                                                                  command: str) -> None:
    # An array subscript is arithmetic: with i='x[$(cmd)]', `declare a[$i]=1` runs cmd (checked on bash 5.2). A
    # user who allows `declare` and `export` allows setting variables, not whatever `$i` holds.
    path = tmp_path / "policy.toml"
    path.write_text('[[rule]]\nregex = "^(declare|export) "\ndecision = "allow"\n')
    policy = CommandPolicy.from_file(path)
    assert policy.evaluate("declare a=1").decision is ALLOW
    result = policy.evaluate(command)
    assert result.decision is ASK, result
    assert result.rule == "structure:expansion", result
