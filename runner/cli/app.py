"""The `smol` group and what every command shares: errors turned into one line and their exit code (JSON under
--json), signals, settings and logging, the repo root. Heavy imports (docker, litellm, smolagents) happen inside
the commands that need them, so `smol --help` stays fast."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from runner import __version__
from runner.errors import EXIT_CODE_MEANINGS, ExitCode, SmolError
from runner.textsafe import one_line

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
    # Messages name paths from the agent's patch and lines of git's stderr: never raw on the terminal.
    message = one_line(message)
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
            _recover_killed_promotions(ctx)
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


def _recover_killed_promotions(ctx: click.Context) -> None:
    """A promotion killed mid-write (SIGKILL: no handler ran) left a journal: roll it back before anything else,
    so no command ever starts on a half-written tree. Costs one directory listing when there is none."""
    words = ctx.meta.get("smol.argv", [])
    if not words or words[0] in ("--help", "-h", "--version"):
        return
    from runner.promote.journal import journal_dir, recover

    try:
        recover(lambda message: click.echo(f"smol: {one_line(message)}", err=True))  # names the patch's paths
    except OSError as error:  # an unreadable state directory must not stop every command
        click.echo(f"smol: warning: could not check {journal_dir()} for interrupted promotions ({error})", err=True)


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
            click.echo(f"smol: warning: {one_line(warning)}", err=True)  # may quote the repo's own .env
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


def left_out_lines(left_out: dict[str, list[str]]) -> list[str]:
    """What the change does not carry, said once, so nothing the sandbox made vanishes without a word."""
    from runner.textsafe import sanitize_for_terminal

    def names(paths: list[str]) -> str:
        return ", ".join(sanitize_for_terminal(path, single_line=True) for path in paths[:10]) + \
            (", …" if len(paths) > 10 else "")

    lines = []
    if left_out.get("ignored"):
        lines.append(f"left out of the change: new files your ignore rules match: {names(left_out['ignored'])}")
    if left_out.get("special"):
        lines.append(f"left out of the change: FIFOs, sockets or devices a patch cannot carry: "
                     f"{names(left_out['special'])}")
    if left_out.get("git"):
        lines.append(f"left out of the change: git metadata (a .git in some spelling, or a nested repository): "
                     f"{names(left_out['git'])}")
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


def _interactive(as_json: bool) -> bool:
    return not as_json and sys.stdin.isatty() and sys.stderr.isatty()


def _start_tracing(ctx: click.Context, settings: Any, *, link: tuple[str, str] | None = None) -> Any:
    """Tracing for this command, under one root span named after it ("smol run"): one command, one trace."""
    from runner.tracing import Tracing

    tracing = Tracing(settings, warn=lambda message: click.echo(f"smol: warning: {message}", err=True))
    ctx.call_on_close(tracing.close)
    tracing.start_root(f"smol {ctx.command_path.split(' ', 1)[-1]}", link=link)
    return tracing

