"""The live line while the model thinks: a local 14B model can be silent for minutes, and silence reads as a hang.

On a terminal one status line is redrawn in place every second ("model thinking… 23 s") and cleared before any
other progress line, and the model's words are shown as they stream in (terminal escapes neutralised); without a
terminal (CI logs) a plain line is printed every `quiet_every` seconds instead, so a log shows the run is alive
without filling up."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TextIO

CLEAR_LINE = "\r\x1b[K"


class LiveStatus:
    def __init__(self, stream: TextIO, *, interactive: bool, quiet_every: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream
        self._interactive = interactive
        self._period = 1.0 if interactive else quiet_every
        self._clock = clock
        self._lock = threading.Lock()
        self._since: float | None = None
        self._shown = False  # a status line is on screen (terminal only)
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._texting = False  # the model's streamed words are being written on the current line

    # ------------------------------------------------------------------ events
    def model_event(self, kind: str, text: str = "") -> None:
        """RunState's model listener: "start" begins the timer, "text" shows streamed words, "end" stops."""
        with self._lock:
            if kind == "start":
                self._since = self._clock()
                self._start_thread()
            elif kind == "text":
                self._show_text(text)
            else:
                self._since = None
                self._clear()
                self._end_text()
        self._wake.set()

    def _show_text(self, text: str) -> None:
        from runner.textsafe import sanitize_for_terminal

        if not self._interactive or not text:
            return
        if not self._texting:
            self._clear()
            self._stream.write("smol: model ▸ ")
            self._texting = True
        lines = text.split("\n")  # the model's own line breaks are kept, each line escaped on its own
        self._stream.write("\n    ".join(sanitize_for_terminal(line, single_line=True) for line in lines))
        self._stream.flush()

    def _end_text(self) -> None:
        if self._texting:
            self._stream.write("\n")
            self._stream.flush()
            self._texting = False

    def line(self, message: str) -> None:
        """Print one progress line without tearing the status line (it is redrawn on the next tick)."""
        with self._lock:
            self._clear()
            self._end_text()
            self._stream.write(message + "\n")
            self._stream.flush()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._since = None
            self._clear()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    # ------------------------------------------------------------------ drawing
    def status_text(self) -> str | None:
        since = self._since
        if since is None:
            return None
        return f"smol: model thinking… {int(self._clock() - since)} s"

    def _start_thread(self) -> None:
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self._tick, name="smol-live", daemon=True)
            self._thread.start()

    def _tick(self) -> None:
        while True:
            self._wake.wait(self._period)
            self._wake.clear()
            with self._lock:
                if self._closed:
                    return
                text = self.status_text()
                early = not self._interactive and self._clock() - (self._since or 0) < self._period
                if text is None or self._texting or early:
                    continue
                if self._interactive:
                    self._stream.write(CLEAR_LINE + text)
                    self._shown = True
                else:
                    self._stream.write(text + "\n")
                self._stream.flush()

    def _clear(self) -> None:
        if self._shown:
            self._stream.write(CLEAR_LINE)
            self._stream.flush()
            self._shown = False
