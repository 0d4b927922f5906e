"""`smol` on a real pseudo-terminal, answered like a person would: the one helper every interactive test uses."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

SMOL = str(Path(sys.executable).with_name("smol"))


class Terminal:
    """`smol ARGS` with its stdin, stdout and stderr on one pty, in its own session (as a shell job would be).

    `expect` finds text anywhere in what was shown so far; with `fresh=True` each text is matched once, after the
    previous match (for answering the same question several times)."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, term: str = "dumb",
                 sigint_ignored: bool = False, on_start: Callable[[int], object] | None = None,
                 fresh: bool = False) -> None:
        self.master, slave = pty.openpty()
        environment = {**(env if env is not None else {**os.environ, "PHOENIX_ENABLED": "false"}), "TERM": term}

        def inherit_ignored_sigint() -> None:  # as a background job of a non-interactive shell starts
            signal.signal(signal.SIGINT, signal.SIG_IGN)

        self.process = subprocess.Popen([SMOL, *args], stdin=slave, stdout=slave, stderr=slave, env=environment,
                                        start_new_session=True,
                                        preexec_fn=inherit_ignored_sigint if sigint_ignored else None)
        if on_start is not None:
            on_start(self.process.pid)
        os.close(slave)
        self.output = b""
        self.fresh = fresh
        self.mark = 0
        """Where the next expected text is looked for when `fresh`."""

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", errors="replace")

    def _read(self, wait: float) -> bool:
        """Read what is there (waiting up to `wait`); False once the terminal is closed."""
        if not select.select([self.master], [], [], wait)[0]:
            return True
        try:
            chunk = os.read(self.master, 1 << 16)
        except OSError:
            return False
        self.output += chunk
        return bool(chunk)

    def expect(self, text: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        start = self.mark if self.fresh else 0
        while text.encode() not in self.output[start:]:
            assert time.monotonic() < deadline and self._read(0.5), self.text[-3000:]
        if self.fresh:
            self.mark = self.output.index(text.encode(), start) + len(text)

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def answer(self, questions: tuple[str, ...], reply: str, *, until: str) -> int:
        """Reply to each of `questions` as it is asked, until `until` shows; how many were asked."""
        count = 0
        while True:
            rest = self.output[self.mark:]
            found = sorted((rest.index(text.encode()), text) for text in (*questions, until) if text.encode() in rest)
            if found and found[0][1] == until:
                return count
            if found:
                self.mark += found[0][0] + len(found[0][1])
                self.send(reply)
                count += 1
                continue
            assert self._read(120), self.text[-3000:]

    def wait_for_read(self, timeout: float = 30) -> None:
        """Until smol is blocked reading its terminal (in read(0, ...)), as it is when a person answers.

        A signal sent the instant the prompt text appears can land between the prompt's write and the read:
        Python's builtin input() (click's prompt on stderr) then runs the handler too late and the read blocks on
        (see the report of issue 8; the fix belongs in the CLI's prompt). A person's Ctrl-C comes later."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                fields = Path(f"/proc/{self.process.pid}/syscall").read_text().split()
            except OSError:
                return
            if fields[:2] == ["0", "0x0"]:
                return
            time.sleep(0.05)
        raise AssertionError("smol never waited for input: " + self.text[-2000:])

    def signal(self, signum: int) -> None:
        os.killpg(self.process.pid, signum)  # what the terminal sends to the foreground group

    def wait(self, timeout: float = 300) -> int:
        """The exit code, reading the terminal meanwhile (a full pty would otherwise block smol's writes)."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                self.process.kill()
                self.process.wait()
                pytest.fail("smol did not exit; its terminal showed:\n" + self.text[-3000:])
            self._read(0.2)
        while self._read(0.1) and select.select([self.master], [], [], 0)[0]:
            pass  # what smol wrote before it exited
        os.close(self.master)
        assert b"Traceback" not in self.output, self.text[-3000:]
        return self.process.returncode
