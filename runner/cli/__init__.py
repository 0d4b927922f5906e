"""The `smol` command: `app` holds the group and what every command shares; each module adds its commands.
The CLI parses and renders; the services below it (agent, promote, sandbox) know nothing of click."""

from runner.cli import admin, batch_cmd, chat, ci_cmd, env_cmd, exec_cmd, queue_cmd, run, runs  # noqa: F401 - importing a module registers its commands
from runner.cli.app import _configure_logging, main

__all__ = ["_configure_logging", "main"]
