"""A one-line progress display on a terminal's standard error; silent when stderr is not a terminal."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


class Progress:
    """`update("planning 120/10000")` redraws the line at most every `interval` seconds; `clear()` erases it."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None, interval: float = 0.1) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self.enabled = self._stream.isatty() if enabled is None else enabled
        self._interval = interval
        self._shown_at = 0.0
        self._width = 0
        self._lock = threading.Lock()
        self.updates = 0  # lines drawn (for tests and the benchmark)

    def update(self, text: str, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        with self._lock:
            if not force and now - self._shown_at < self._interval:
                return
            self._shown_at = now
            line = text[:200]
            self._stream.write("\r" + line + " " * max(0, self._width - len(line)))
            self._stream.flush()
            self._width = len(line)
            self.updates += 1

    def clear(self) -> None:
        if not self.enabled:
            return
        with self._lock:
            if self._width:
                self._stream.write("\r" + " " * self._width + "\r")
                self._stream.flush()
            self._width = 0
