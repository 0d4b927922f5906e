"""The `smol` command. Heavy imports (docker, litellm, smolagents) happen inside the commands that need them,
so `smol --help` stays fast."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from runner import __version__
from runner.errors import EXIT_CODE_MEANINGS, ExitCode, SmolError

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def _terminate(signum: int, _frame: object) -> NoReturn:
    # SystemExit unwinds through every `with`/`ctx.with_resource`, so sandboxes are removed on SIGTERM too.
    raise SystemExit(128 + signum)


_JSON_KEY = "smol.json"


def _wants_json(ctx: click.Context) -> bool:
    """Whether the command asked for --json: set by the option's callback once parsed; before that (a parse error)
    read from the arguments ahead of any `--`, so even a mistyped option answers in JSON."""
    if _JSON_KEY in ctx.meta:
        return bool(ctx.meta[_JSON_KEY])
    words = ctx.meta.get("smol.argv", [])
    return "--json" in (words[: words.index("--")] if "--" in words else words)


def _json_error(kind: str, message: str, code: int) -> str:
    return json.dumps({"ok": False, "error": {"kind": kind, "message": message, "exit_code": int(code)}})


def _fail(ctx: click.Context, kind: str, message: str, code: int, *, prefix: str = "smol: error: ") -> NoReturn:
    """One line on stderr; under --json also one JSON object on stdout, so a script never reads 0 bytes."""
    click.echo(f"{prefix}{message}", err=True)
    if _wants_json(ctx):
        click.echo(_json_error(kind, message, code))
    ctx.exit(code)


_INTERRUPTED = "interrupted; the sandbox was removed and your tree is unchanged"


class SmolGroup(click.Group):
    """Turns our own errors into one line on stderr and their exit code: never a traceback for a user mistake."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["smol.argv"] = list(args)  # the meta dict is shared with every subcommand's context
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        signal.signal(signal.SIGTERM, _terminate)
        signal.signal(signal.SIGHUP, _terminate)
        # A process started in the background of a non-interactive shell inherits SIGINT ignored, and Python then
        # installs no handler of its own: Ctrl-C (or a supervisor's SIGINT) must still stop smol cleanly.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            return super().invoke(ctx)
        except SmolError as error:
            _fail(ctx, type(error).__name__, str(error), error.exit_code)
        except click.UsageError as error:
            if not _wants_json(ctx):
                raise  # click prints the usage line and exits 2
            _fail(ctx, "UsageError", error.format_message(), ExitCode.USAGE)
        except (KeyboardInterrupt, click.exceptions.Abort):
            # click turns Ctrl-C at a prompt into Abort; either way nothing was written.
            click.echo("", err=True)
            _fail(ctx, "Interrupted", _INTERRUPTED, ExitCode.INTERRUPTED, prefix="smol: ")
        except SystemExit as stop:
            if stop.code in (ExitCode.HANGUP, ExitCode.TERMINATED):  # our signal handler, unwound to here
                _fail(ctx, "Terminated", _INTERRUPTED.replace("interrupted", "terminated"), int(stop.code),
                      prefix="smol: ")
            raise


def _json_flag(help_text: str = "Print one JSON object (errors included) on stdout; never asks for input.") -> Any:
    """--json, remembered at the root as soon as it is parsed (eagerly) so that errors answer in JSON too."""

    def remember(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
        ctx.find_root().meta[_JSON_KEY] = value
        return value

    return click.option("--json", "as_json", is_flag=True, is_eager=True, callback=remember, help=help_text)


def _progress(message: str) -> None:
    click.echo(f"smol: {message}", err=True)


def _settings() -> Any:
    from runner.config import load_settings_and_warnings

    # The command's --repo (if it has one) is the repo whose own .env may only tighten containment.
    ctx = click.get_current_context(silent=True)
    overrides = ctx.find_root().meta.get("smol.overrides", {}) if ctx else {}
    settings, warnings = load_settings_and_warnings(ctx.params.get("repo") if ctx else None, **overrides)
    _configure_logging(settings.log_level, settings.suppress_warnings)
    shown = ctx.find_root().meta.setdefault("smol.config_warnings", set()) if ctx else set()
    for warning in warnings:  # once per invocation, however often the settings are loaded
        if warning not in shown:
            shown.add(warning)
            click.echo(f"smol: warning: {warning}", err=True)
    return settings


_NOISY_LOGGERS = ("LiteLLM", "litellm", "httpx", "httpcore", "urllib3", "docker", "opentelemetry", "smolagents")


def _configure_logging(level: str, suppress_warnings: bool) -> None:
    """LOG_LEVEL sets smol's own messages; SUPPRESS_WARNINGS quiets third-party warnings and log chatter."""
    import logging
    import warnings

    class _Format(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            kind = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
            return f"smol: {kind}{record.getMessage()}"

    class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
        """Writes to whatever sys.stderr is at the time (click's test runner swaps it per invocation)."""

        @property  # type: ignore[override]
        def stream(self) -> Any:
            return sys.stderr

        @stream.setter
        def stream(self, _value: Any) -> None:
            pass

    ours = logging.getLogger("runner")
    if not any(getattr(handler, "_smol", False) for handler in ours.handlers):
        handler = _Stderr()
        handler.setFormatter(_Format())
        handler._smol = True  # type: ignore[attr-defined]
        ours.addHandler(handler)
        ours.propagate = False
    ours.setLevel(level)
    foreign = logging.ERROR if suppress_warnings else (logging.DEBUG if level == "DEBUG" else logging.WARNING)
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(foreign)
    if suppress_warnings:
        warnings.filterwarnings("ignore")
        os.environ.setdefault("LITELLM_LOG", "ERROR")


def _exit_code_epilog() -> str:
    rows = "\n".join(f"  {int(code):>3}  {meaning}" for code, meaning in EXIT_CODE_MEANINGS.items())
    return f"\b\nExit codes:\n{rows}"


@click.group(cls=SmolGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
             epilog=_exit_code_epilog())
@click.version_option(__version__, prog_name="smol")
def main() -> None:
    """A coding agent for local LLMs that only ever works in a hardened, throwaway Docker sandbox."""


# ---------------------------------------------------------------------------------------------- exec
# Options are parsed (and a typo refused) up to the first word of COMMAND; everything from there on is COMMAND's.
@main.command(name="exec", context_settings={"allow_interspersed_args": False})
@click.option("--repo", "repo", type=click.Path(path_type=Path, file_okay=True), default=Path("."),
              show_default=True, help="Repository to mount (read-only, with a writable overlay).")
@click.option("--patch-out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the sandbox's changes to this file as a git patch.")
@click.option("--timeout", type=float, default=None, help="Seconds before the command is stopped.")
@_json_flag("Print one JSON object with the result (or the error) instead of streaming.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_command(ctx: click.Context, repo: Path, patch_out: Path | None, timeout: float | None, as_json: bool,
                 command: tuple[str, ...]) -> None:
    """Run COMMAND in a throwaway sandbox over the repo, exit with its exit code. The repo is never modified.

    Example: smol exec --repo ~/src/app --patch-out fix.patch -- pytest -q
    """
    from runner.sandbox.docker_sandbox import DockerSandbox

    if patch_out is not None:
        _check_writable(patch_out)
    repo, subdir = _repo_root(repo, as_json)
    settings = _settings()
    sandbox = ctx.with_resource(DockerSandbox(repo, settings, progress=_progress))
    info = sandbox.info
    if not as_json:
        _progress(f"sandbox ready ({info.mode.value} mode: {info.mode_reason})")

    def stream(name: str, chunk: bytes) -> None:
        target = sys.stdout.buffer if name == "stdout" else sys.stderr.buffer
        target.write(chunk)
        target.flush()

    result = sandbox.exec(list(command), timeout=timeout, workdir=subdir,
                          on_output=None if as_json else stream)
    patch = sandbox.diff() if (patch_out is not None or as_json) else b""
    if patch_out is not None:
        patch_out.write_bytes(patch)
    if as_json:
        payload = {**result.to_dict(), "sandbox": info.to_dict(), "diff_bytes": len(patch),
                   "patch_out": str(patch_out) if patch_out else None, "left_out": sandbox.left_out}
        click.echo(json.dumps(payload))
    else:
        for note in result.notes:
            _progress(note)
        if result.truncated:
            _progress("output was longer than SANDBOX_OUTPUT_LIMIT; the middle was not kept")
        if patch_out is not None:
            _progress(f"wrote {len(patch)} bytes of changes to {patch_out}")
            for line in left_out_lines(sandbox.left_out):
                _progress(line)
    ctx.exit(result.exit_code if 0 <= result.exit_code < 256 else 1)


def left_out_lines(left_out: dict[str, list[str]]) -> list[str]:
    """What the change does not carry, said once, so nothing the sandbox made vanishes without a word."""
    from runner.promote.guard import sanitize_for_terminal

    def names(paths: list[str]) -> str:
        return ", ".join(sanitize_for_terminal(path, single_line=True) for path in paths[:10]) + \
            (", …" if len(paths) > 10 else "")

    lines = []
    if left_out.get("ignored"):
        lines.append(f"left out of the change: new files your ignore rules match: {names(left_out['ignored'])}")
    if left_out.get("special"):
        lines.append(f"left out of the change: FIFOs, sockets or devices a patch cannot carry: "
                     f"{names(left_out['special'])}")
    return lines


def _repo_root(repo: Path, quiet: bool) -> tuple[Path, str]:
    """The checked repo path, moved up to its git work tree's root (run from a subdirectory, smol still works on
    the whole repo, as git does), and the subdirectory it was given as."""
    from runner.gitroot import find_root
    from runner.sandbox.docker_sandbox import check_repo

    root, subdir = find_root(check_repo(repo))
    if subdir != "." and not quiet:
        _progress(f"working on the git repository at {root} (you are in its subdirectory {subdir})")
    return root, subdir


def _check_writable(path: Path) -> None:
    from runner.errors import UsageError

    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"cannot write {path}: directory {str(parent)!r} does not exist")
    if path.exists() and path.is_dir():
        raise UsageError(f"cannot write {path}: it is a directory; name a file")


# ---------------------------------------------------------------------------------------------- run / chat
REPO_OPTION = click.option("--repo", "repo", type=click.Path(path_type=Path), default=Path("."), show_default=True,
                           help="Repository to work on (the sandbox sees it read-only, with a writable overlay); "
                                "a subdirectory means its git repository.")


def model_options(function: Any) -> Any:
    """--model and --max-steps: this run's MODEL_ID and AGENT_MAX_STEPS, validated like the settings."""

    def remember(key: str) -> Any:
        def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
            if value is not None:
                ctx.find_root().meta.setdefault("smol.overrides", {})[key] = value
            return value
        return callback

    function = click.option("--max-steps", type=click.IntRange(min=1), default=None, expose_value=False,
                            callback=remember("agent_max_steps"),
                            help="Most tool steps the agent may take (AGENT_MAX_STEPS).")(function)
    return click.option("--model", default=None, expose_value=False, callback=remember("model_id"),
                        help="LiteLLM model id with its provider, e.g. ollama_chat/qwen2.5-coder:7b "
                             "(MODEL_ID).")(function)


def _interactive(as_json: bool) -> bool:
    return not as_json and sys.stdin.isatty() and sys.stderr.isatty()


def _ask(kind: str, subject: str) -> str:
    click.echo(f"\nsmol: the agent asks to run a {kind} that needs approval:\n    {subject}", err=True)
    answer = click.prompt("approve [o]nce, for this [r]un, or [d]eny?", type=click.Choice(["o", "r", "d"]),
                          default="d", err=True)
    return {"o": "once", "r": "run", "d": "deny"}[answer]


def _start_session(ctx: click.Context, repo: Path, as_json: bool, *, reverify: bool) -> Any:
    from runner.agent.model import preflight
    from runner.agent.session import AgentSession
    from runner.sandbox.docker_sandbox import DockerSandbox

    from runner.live import LiveStatus

    settings = _settings()
    preflight(settings)
    live = LiveStatus(sys.stderr, interactive=_interactive(as_json))
    ctx.call_on_close(live.close)
    progress = (lambda message: None) if as_json else (lambda message: live.line(f"smol: {message}"))
    tracing = _start_tracing(ctx, settings)
    sandbox = ctx.with_resource(DockerSandbox(repo, settings, progress=progress))
    progress(f"sandbox ready ({sandbox.info.mode.value} mode: {sandbox.info.mode_reason}); model {settings.model_id}")
    if reverify:
        # The re-verification after the run needs a fresh sandbox; half of it is made while the model works.
        sandbox.prepare_spare()
    session = AgentSession(sandbox, settings, asker=_ask if _interactive(as_json) else None, progress=progress)
    session.tracing = tracing
    if not as_json:
        session.state.on_model(live.model_event)
    return session


def _finish(summary: dict[str, Any], outcome: Any, patch: bytes, patch_out: Path | None, as_json: bool) -> int:
    if patch_out is not None:
        patch_out.write_bytes(patch)
    summary["patch_out"] = str(patch_out) if patch_out else None
    if not as_json:
        from runner.agent.session import diff_stat

        click.echo("")
        if summary.get("run_id"):
            click.echo(f"run: {summary['run_id']}")
        click.echo(f"status: {outcome.status}" + (f" ({outcome.reason})" if outcome.reason else ""))
        if outcome.answer:
            click.echo(f"answer: {outcome.answer}")
        tools = ", ".join(f"{name} x{count}" for name, count in summary["tools_used"].items()) or "none"
        click.echo(f"steps: {summary['steps']}   tools: {tools}")
        tests = summary["tests"]
        click.echo("tests: not run" if tests is None else
                   f"tests: {'passed' if tests['ok'] else 'FAILED'} ({tests['passed']} passed, {tests['failed']} failed)"
                   f" with `{tests['command']}`")
        click.echo("changes (made in the sandbox):")
        click.echo(diff_stat(patch).render())
        for line in left_out_lines(summary.get("left_out") or {}):
            click.echo(line)
        if patch_out is not None:
            click.echo(f"patch written to {patch_out}")
    return {"completed": ExitCode.OK, "model_error": ExitCode.MODEL}.get(outcome.status, ExitCode.INCOMPLETE)


PROMOTE_OPTIONS = [
    click.option("--promote", "promote_mode", type=click.Choice(["never", "ask", "auto-if-verified"]), default=None,
                 help="Whether the change reaches your tree: never (save the patch), ask (review), or automatically "
                      "when re-verification passes. Default: ask on a terminal, never otherwise."),
    click.option("--verify/--no-verify", "reverify", default=True, show_default=True,
                 help="Re-run the tests on the change in a fresh sandbox of your current tree before the review."),
    click.option("--land", type=click.Choice(["worktree", "branch", "commit"]), default="worktree", show_default=True,
                 help="Write into the working tree; commit on a new branch; or write and commit on the current "
                      "branch (git repos; refused when the touched files have uncommitted changes)."),
    click.option("--branch", default=None, help="Branch name for --land branch (default smol/RUN_ID)."),
]


def promote_options(function: Any) -> Any:
    for option in reversed(PROMOTE_OPTIONS):
        function = option(function)
    return function


def _review_asker(question: str, choices: list[str]) -> str:
    return str(click.prompt(question, type=click.Choice(choices), show_choices=False, err=True))


def _promote(record: Any, store: Any, settings: Any, mode: str | None, reverify: bool, land: str,
             branch: str | None, as_json: bool) -> dict[str, Any]:
    from runner.promote.flow import Promoter

    interactive = _interactive(as_json)
    chosen = mode or ("ask" if interactive else "never")
    echo = (lambda line: click.echo(line, err=True)) if as_json else click.echo
    promoter = Promoter(record, store, settings, echo=echo, ask=_review_asker if interactive else None,
                        color=interactive and sys.stdout.isatty())
    return promoter.run(chosen, reverify=reverify, land=land, branch=branch)  # type: ignore[arg-type]


def _record_run(session: Any, task: str, repo: Path, outcome: Any, patch: bytes, summary: dict[str, Any]) -> Any:
    from runner.promote.flow import capture_files
    from runner.records import RunRecord, RunStore, new_run_id

    settings = session.settings
    base_files, final_files = capture_files(session.sandbox, patch) if patch else ({}, {})
    store = RunStore(settings.runs_db or None)
    record = RunRecord(
        id=new_run_id(), created_at=time.time(), task=task, repo=str(repo), base_state=_base_state(repo),
        model=settings.model_id, status=outcome.status, reason=outcome.reason, answer=outcome.answer,
        steps=session.state.to_dict()["steps"], approvals=session.state.to_dict()["approvals"], summary=summary,
        diff=patch, base_files=base_files, final_files=final_files,
    )
    store.save(record)
    return record, store


def _base_state(repo: Path) -> dict[str, Any]:
    """The commit the run started from. Only `rev-parse`: host-side git never runs filters or hooks here."""
    import subprocess

    from runner.promote.apply import GIT_ENV, SAFE_GIT

    head = subprocess.run([*SAFE_GIT, "-c", f"safe.directory={repo}", "-C", str(repo), "rev-parse", "HEAD"],
                          capture_output=True, text=True, env=GIT_ENV)
    return {"vcs": "git", "head": head.stdout.strip()} if head.returncode == 0 else {"vcs": "none"}


def _conclude(ctx: click.Context, session: Any, task: str, repo: Path, outcome: Any, patch_out: Path | None,
              as_json: bool, promote_mode: str | None, reverify: bool, land: str, branch: str | None) -> None:
    """Summary, run record, then promotion, once the sandbox is gone; exits with the run's code."""
    patch = session.sandbox.diff()
    summary = session.summary(outcome, patch)
    summary["left_out"] = session.sandbox.left_out
    record, store = _record_run(session, task, repo, outcome, patch, summary)
    session.sandbox.close()  # the overlay must be gone before anything is written to the real tree
    summary["run_id"] = record.id
    code = _finish(summary, outcome, patch, patch_out, as_json)
    summary["promotion"] = _promote(record, store, session.settings, promote_mode, reverify, land, branch, as_json)
    store.update(record.id, spans=list(session.tracing.local.spans))
    if as_json:
        click.echo(json.dumps(summary))
    ctx.exit(code)


@main.command()
@click.argument("task")
@REPO_OPTION
@click.option("--patch-out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the agent's changes to this file as a git patch.")
@_json_flag("Print one JSON summary (or error) on stdout; never asks for input.")
@model_options
@promote_options
@click.pass_context
def run(ctx: click.Context, task: str, repo: Path, patch_out: Path | None, as_json: bool, promote_mode: str | None,
        reverify: bool, land: str, branch: str | None) -> None:
    """Run the agent on TASK in a sandbox over the repo; show progress, a summary and the diff, then the guarded
    promotion of the change into your tree.

    Example: smol run "Fix the failing test in tests/test_app.py" --patch-out fix.patch
    """
    from runner.errors import UsageError

    if not task.strip():
        raise UsageError('the task is empty: say what the agent should do, e.g. smol run "Fix the failing test"')
    if patch_out is not None:
        _check_writable(patch_out)
    repo, _ = _repo_root(repo, as_json)
    session = _start_session(ctx, repo, as_json, reverify=reverify)
    outcome = session.run(task)
    _conclude(ctx, session, task, repo, outcome, patch_out, as_json, promote_mode, reverify, land, branch)


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
        click.echo(f"[{outcome.status}] {outcome.answer or outcome.reason}")
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
    from runner.promote.guard import sanitize_for_terminal

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
        from runner.promote.flow import verification_command
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


# ---------------------------------------------------------------------------------------------- records
def _store() -> Any:
    from runner.records import RunStore

    return RunStore(_settings().runs_db or None)


def _get_run(store: Any, run_id: str) -> Any:
    """A run by id (or a unique prefix/suffix of it), or `last` for the newest one."""
    from runner.errors import UsageError

    if run_id == "last":
        newest = store.list(1)
        if not newest:
            raise UsageError("no runs recorded yet: `smol run TASK` makes one")
        return newest[0]
    return store.get(run_id)


@main.group()
def runs() -> None:
    """Recorded runs."""


@runs.command(name="list")
@_json_flag("Print the runs as one JSON array.")
@click.option("--limit", type=click.IntRange(min=1), default=30, show_default=True, help="Show at most this many.")
@click.option("--repo", "repo", type=click.Path(path_type=Path), default=None,
              help="Only runs on this repository (a subdirectory means its git repository).")
@click.option("--status", type=click.Choice(["completed", "stopped", "max_steps", "model_error"]), default=None,
              help="Only runs that ended with this status.")
def runs_list(as_json: bool, limit: int, repo: Path | None, status: str | None) -> None:
    """The most recent runs, newest first."""
    from runner.promote.guard import sanitize_for_terminal

    from runner.gitroot import find_root

    # Not checked for existence: the runs of a repo since deleted or moved are still listed.
    where = str(find_root(repo)[0]) if repo is not None else None
    records = _store().list(limit, repo=where, status=status)
    if as_json:
        click.echo(json.dumps([{"id": r.id, "created_at": r.created_at, "task": r.task, "repo": r.repo,
                                "status": r.status, "promotion": (r.promotion or {}).get("outcome")} for r in records]))
        return
    if not records:
        click.echo("no runs recorded yet" if where is None and status is None else "no runs match")
        return
    width = max(len(r.id) for r in records)
    click.echo(f"{'RUN':<{width}}  {'WHEN':<16}  {'STATUS':<11}  {'PROMOTION':<10}  TASK")
    for r in records:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created_at))
        promoted = (r.promotion or {}).get("outcome", "-")
        task = sanitize_for_terminal(" ".join(r.task.split()), single_line=True)  # multi-line tasks on one line
        task = task if len(task) <= 60 else task[:59] + "…"
        click.echo(f"{r.id:<{width}}  {when:<16}  {r.status:<11}  {promoted:<10}  {task}")


@runs.command(name="show")
@click.argument("run_id")
@_json_flag("Print the whole record as one JSON object.")
@click.option("--trace", is_flag=True, help="Draw the run's trace tree (no Phoenix needed).")
def runs_show(run_id: str, as_json: bool, trace: bool) -> None:
    """One run (RUN_ID, a unique part of it, or `last`): task, steps, approvals, verification, promotion, diff."""
    from runner.promote.guard import sanitize_for_terminal

    record = _get_run(_store(), run_id)
    if as_json:
        data = record.to_public_dict()
        if trace:
            data["trace"] = record.spans
        click.echo(json.dumps(data))
        return
    if trace:
        from runner.tracing import render_trace

        for line in render_trace(record.spans):
            click.echo(line)
        return
    clean = sanitize_for_terminal
    click.echo(f"run {record.id}  ({record.status}{': ' + clean(record.reason) if record.reason else ''})")
    click.echo(f"task: {clean(record.task)}\nrepo: {clean(record.repo)}\nmodel: {record.model}")
    for step in record.steps:
        # Records written before steps carried their outcome still say what went wrong.
        outcome = step.get("outcome") or (f"error: {step.get('error_type')}" if step.get("error") else "ok")
        click.echo(f"  [{step['index']}] {step['tool']} {clean(json.dumps(step['arguments']))[:100]} "
                   f"{step['duration_s']:.2f}s {outcome}")
    for approval in record.approvals:
        click.echo(f"  approval: {approval['kind']} {clean(approval['subject'])} -> {approval['outcome']} "
                   f"({approval['scope']})")
    if record.verification:
        checked = record.verification
        by = f" with `{clean(checked['command'], single_line=True)}`" if checked.get("command") else ""
        origin = f" ({checked['source']})" if checked.get("source") else ""
        click.echo(f"verification: {checked.get('status')}{by}{origin}")
    click.echo(f"promotion: {(record.promotion or {}).get('outcome', 'pending')}")
    for decision in (record.promotion or {}).get("decisions", []):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(decision["at"]))
        click.echo(f"  decision: {clean(decision['what'], single_line=True)} -> {clean(decision['outcome'])} "
                   f"(by {decision['by']}, {when})")
    click.echo(clean(record.diff.decode('utf-8', errors='replace')) or "(no changes)")


def _start_tracing(ctx: click.Context, settings: Any) -> Any:
    from runner.tracing import Tracing

    tracing = Tracing(settings, warn=lambda message: click.echo(f"smol: warning: {message}", err=True))
    ctx.call_on_close(tracing.close)
    return tracing


@main.command()
@click.argument("run_id")
@promote_options
@click.pass_context
def promote(ctx: click.Context, run_id: str, promote_mode: str | None, reverify: bool, land: str,
            branch: str | None) -> None:
    """Bring a saved run (RUN_ID or `last`) back to review and, after approval, into your tree."""
    store = _store()
    record = _get_run(store, run_id)
    settings = _settings()
    tracing = _start_tracing(ctx, settings)
    try:
        outcome = _promote(record, store, settings, promote_mode, reverify, land, branch, False)
    finally:
        # This promotion's spans (re-verification, decisions, outcome) join the run's trace.
        store.update(record.id, spans=[*record.spans, *tracing.local.spans])
    if outcome["outcome"] in ("refused", "conflict"):
        ctx.exit(ExitCode.REFUSED)


@main.command()
@click.argument("run_id")
@click.pass_context
def replay(ctx: click.Context, run_id: str) -> None:
    """Re-run a recorded run's tool calls in a fresh sandbox, without a model, and compare the diffs."""
    from runner.replay import replay_run

    record = _get_run(_store(), run_id)
    settings = _settings()
    _start_tracing(ctx, settings)  # the replay's sandbox and tool spans go to Phoenix, not into the record
    identical, patch = replay_run(record, settings, _progress)
    if identical:
        click.echo(f"replay of {record.id}: the diff is identical ({len(patch)} bytes)")
        return
    click.echo(f"replay of {record.id}: the diff DIFFERS from the recorded one")
    ctx.exit(ExitCode.FAILED)


# ---------------------------------------------------------------------------------------------- doctor
@main.command()
@_json_flag("Print the checks as JSON.")
@click.pass_context
def doctor(ctx: click.Context, as_json: bool) -> None:
    """Check the Docker engine, the sandbox image, the model endpoint, Phoenix and the configuration."""
    from runner.doctor import render_table, run_checks

    checks = run_checks()
    failed = any(check.status == "fail" for check in checks)
    if as_json:
        click.echo(json.dumps({"ok": not failed, "checks": [check.to_dict() for check in checks]}))
    else:
        for line in render_table(checks):
            click.echo(line)
    ctx.exit(ExitCode.FAILED if failed else ExitCode.OK)


# ---------------------------------------------------------------------------------------------- gc
@main.command()
@click.option("--all", "everything", is_flag=True, help="Also remove sandboxes of processes still running.")
def gc(everything: bool) -> None:
    """Remove sandbox containers and volumes left behind by killed processes."""
    from runner.sandbox.engine import connect
    from runner.sandbox.labels import collect_garbage

    removed = collect_garbage(connect(), everything=everything)
    for item in removed:
        click.echo(f"removed {item.kind} {item.name}")
    click.echo(f"smol gc: removed {len(removed)} object(s)")


# ---------------------------------------------------------------------------------------------- image
@main.group()
def image() -> None:
    """The sandbox image."""


@image.command(name="build")
@click.option("--force", is_flag=True, help="Rebuild even when the image for these inputs exists.")
def image_build(force: bool) -> None:
    """Build the sandbox image (offline: from Debian packages when no registry is reachable)."""
    from runner.sandbox.engine import connect
    from runner.sandbox.image import build_image

    tag = build_image(connect(), _settings(), _progress, force=force)
    click.echo(tag)


@image.command(name="tag")
def image_tag_command() -> None:
    """Print the tag of the image these sources build."""
    from runner.sandbox.image import resolve_image

    click.echo(resolve_image(_settings()))

