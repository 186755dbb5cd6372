"""A deadline for reading each request: uvicorn's httptools protocol with one timer per connection.

Why: uvicorn arms its keep-alive timer only after a response. A connection that never sends a request,
or sends half a request line and stops, or dribbles headers a byte a minute, is held open forever, and
enough of them use up the process's file descriptors (slowloris). The API server sends a whole
AdmissionReview at once and gives up after the webhook's `timeoutSeconds` (at most 30 s,
admissionregistration/v1 `timeoutSeconds`), so a request still being read after READ_DEADLINE_SECONDS
will never be answered usefully: the connection is closed.

Cost on the hot path: two attribute stores per request (when a request begins and when its body is
complete). The timer is re-armed lazily, at most once per deadline period, not per request.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

READ_DEADLINE_SECONDS = 10.0


class ReadDeadlineProtocol(HttpToolsProtocol):
    """Closes a connection whose current request (or, at first, whose first request) is not fully read in
    `read_deadline` seconds. Idle keep-alive connections stay under uvicorn's own keep-alive timeout."""

    read_deadline = READ_DEADLINE_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_since: float | None = None
        self._watch: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._reading_since = self.loop.time()  # waiting for the first request counts as reading it
        self._watch = self.loop.call_later(self.read_deadline, self._check)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_since = self.loop.time()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_since = None

    def _check(self) -> None:
        if self.transport.is_closing():
            return
        wait = self.read_deadline
        if self._reading_since is not None:
            wait = self._reading_since + self.read_deadline - self.loop.time()
            if wait <= 0:
                self.transport.close()
                return
        self._watch = self.loop.call_later(wait, self._check)


def with_read_deadline(seconds: float) -> type[ReadDeadlineProtocol]:
    """The protocol class for uvicorn's `http=` setting, with its deadline."""
    return type("ReadDeadlineProtocol", (ReadDeadlineProtocol,), {"read_deadline": seconds})
