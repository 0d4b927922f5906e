"""`smol chat`: a REPL of tasks in one sandbox session; slash commands are handled here, never by the model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from runner.cli.app import _check_writable, _repo_root, main
from runner.cli.run import REPO_OPTION, _conclude, _start_session, model_options, promote_options


@main.command()
@REPO_OPTION
@click.option("--patch-out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the session's changes to this file as a git patch at the end.")
@model_options
@promote_options
@click.pass_context
def chat(ctx: click.Context, repo: Path, patch_out: Path | None, promote_mode: str | None, reverify: bool, land: str,
         branch: str | None) -> None:
    """Interactive: several tasks, one after another, in one sandbox session. /help lists the commands handled
    locally (/diff, /undo, /tests, /exit); the session's change is then recorded and goes through the same guarded
    promotion as `smol run`."""
    from runner.agent.checkpoint import Checkpoint
    from runner.textsafe import sanitize_for_terminal

    if patch_out is not None:
        _check_writable(patch_out)
    repo, _ = _repo_root(repo, False)
    session = _start_session(ctx, repo, False, reverify=reverify)
    _line_editing()
    click.echo("smol: type a task, or /help", err=True)
    outcome = None
    tasks: list[str] = []
    checkpoints: list[Checkpoint] = []
    undone = False
    while True:
        line = _read_line("task> ")
        if line is None:
            break
        text = line.strip()
        if text in ("exit", "quit") or text.split()[:1] in (["/exit"], ["/quit"]):
            break
        if not text:
            continue
        if text.startswith("/"):
            if text.split()[0] == "/undo" and checkpoints:
                if checkpoints.pop().restore(session.sandbox):
                    tasks.pop()
                    undone = True
                    click.echo("undone: the sandbox holds the change as it was before the last task")
                else:
                    click.echo("the last task could not be undone exactly; /diff shows what the sandbox holds")
            else:
                _chat_command(text, session)
            continue
        checkpoints.append(Checkpoint.take(session.sandbox))
        if undone:  # the model remembers the steps it took; it must know their result is gone
            text = f"(The user undid the change of your previous task.)\n{text}"
            undone = False
        outcome = session.run(text, reset=outcome is None)
        tasks.append(line.strip())
        click.echo(f"[{outcome.status}] {sanitize_for_terminal(outcome.answer or outcome.reason)}")
    if outcome is not None:
        _conclude(ctx, session, "\n".join(tasks), repo, outcome, patch_out, False, promote_mode, reverify, land,
                  branch)


CHAT_HELP = """/diff    the session's change so far (a summary, then the diff)
/undo    take back the last task's change in the sandbox
/tests   run the tests in the sandbox now (SMOL_TEST_COMMAND or the detected command)
/help    this list
/exit    end the session; its change is then reviewed (Ctrl-D does the same, Ctrl-C clears the line)"""


def _line_editing() -> None:
    """Arrow keys and a history that survives sessions (owner-only, next to the run records)."""
    if not sys.stdin.isatty():
        return
    try:
        import atexit
        import readline

        from runner.records import default_db_path, private_dir
    except ImportError:  # a Python built without readline still chats, without line editing
        return
    history = private_dir(default_db_path().parent) / "chat_history"
    try:
        readline.read_history_file(history)
    except OSError:
        pass
    readline.set_history_length(1000)
    atexit.register(_save_history, history)


def _save_history(history: Path) -> None:
    import readline

    from runner.records import write_private

    try:
        readline.write_history_file(str(history) + ".new")
        write_private(history, Path(str(history) + ".new").read_bytes())
        Path(str(history) + ".new").unlink()
    except OSError:
        pass


def _read_line(prompt: str) -> str | None:
    """One line from the user; None at end of input. Ctrl-C abandons the line, not the session."""
    while True:
        try:
            return input(prompt)
        except EOFError:
            click.echo("", err=True)
            return None
        except KeyboardInterrupt:
            click.echo("\n(use /exit or Ctrl-D to end the session)", err=True)


def _chat_command(text: str, session: Any) -> None:
    """A slash command, handled here: never sent to the model."""
    from runner.agent.session import diff_stat
    from runner.textsafe import sanitize_for_terminal

    word = text.split()[0]
    if word == "/help":
        click.echo(CHAT_HELP)
    elif word == "/diff":
        patch = session.sandbox.diff()
        click.echo(diff_stat(patch).render())
        if patch:
            click.echo(sanitize_for_terminal(patch.decode("utf-8", errors="replace")))
    elif word == "/undo":
        click.echo("nothing to undo: no task has changed anything yet")
    elif word == "/tests":
        from runner.promote.verify import verification_command
        from runner.testcmd import classify_test_run

        command, source = verification_command(session.settings, session.sandbox.list_files("*"))
        if not command:
            click.echo("no test command detected: set SMOL_TEST_COMMAND")
            return
        result = session.sandbox.exec(command, timeout=float(session.settings.sandbox_command_timeout))
        verdict = classify_test_run(command, result.exit_code, result.stdout + "\n" + result.stderr,
                                    timed_out=result.timed_out)
        click.echo(f"tests: {verdict.status} ({verdict.passed} passed, {verdict.failed} failed) with `{command}` "
                   f"({source})" + (f": {verdict.note}" if verdict.note else ""))
    else:
        click.echo(f"unknown command {sanitize_for_terminal(word, single_line=True)}: /help lists them")

