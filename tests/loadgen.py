"""A small HTTPS load generator for the soak and fault tests: keep-alive connections on asyncio (uvloop).

Why not wrk: every answer is checked (status, the echoed uid, optionally the whole patch), each request
carries its own uid, and failures are classified — a refused connection after shutdown is not a failed
request, a truncated answer is. Everything is bounded: a request count and a deadline.

    result = run_load(port, ssl_context, bodies, total=100_000, concurrency=64, deadline=120)
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvloop

UID_MARK = "@@UID@@"
UID_WIDTH = 12


@dataclass
class Result:
    sent: int = 0
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # seconds, one per completed request
    statuses: Counter[int] = field(default_factory=Counter)
    connections: int = 0  # connections made (each a full TLS handshake)
    refused: int = 0  # could not connect (e.g. the server had stopped listening)
    closed_idle: int = 0  # the server closed a kept-alive connection before this request got any answer
    completed_at: list[float] = field(default_factory=list)  # monotonic end time of each completed request
    elapsed: float = 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0


class Template:
    """A request body with a fixed-width uid slot; `render(i)` gives the full HTTP request bytes."""

    def __init__(self, review: dict[str, Any], path: str = "/mutate") -> None:
        review = {**review, "request": {**review["request"], "uid": UID_MARK}}
        self._before, self._after = orjson.dumps(review).split(UID_MARK.encode())
        length = len(self._before) + UID_WIDTH + len(self._after)
        self._head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n"
        ).encode()

    def render(self, number: int) -> tuple[str, bytes]:
        uid = f"{number:0{UID_WIDTH}d}"
        return uid, b"".join((self._head, self._before, uid.encode(), self._after))


def uid_echo_check(uid: str, status: int, body: bytes) -> str | None:
    if status != 200:
        return f"status {status}: {body[:200]!r}"
    try:
        response = orjson.loads(body)["response"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return f"not an AdmissionReview: {body[:200]!r}"
    if response.get("uid") != uid or response.get("allowed") is not True:
        return f"uid {uid}: {str(response)[:200]}"
    return None


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, server wants to close)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, close = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and "close" in value.lower():
            close = True
    return status, await reader.readexactly(length), close


async def _drive(
    port: int,
    context: ssl.SSLContext,
    templates: Sequence[Template],
    *,
    total: int,
    concurrency: int,
    deadline: float,
    request_timeout: float,
    check: Callable[[str, int, bytes], str | None],
    deep_check: Callable[[int, bytes], str | None] | None,
    deep_every: int,
    stop: Callable[[], bool],
    reconnect_pause: float,
    requests_per_connection: int,
) -> Result:
    result = Result()
    counter = iter(range(total))
    end = time.monotonic() + deadline

    async def worker() -> None:
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        on_this_connection = 0
        while time.monotonic() < end and not stop():
            if writer is None:
                try:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="127.0.0.1"),
                        request_timeout,
                    )
                except (OSError, ssl.SSLError):  # TimeoutError included
                    result.refused += 1
                    await asyncio.sleep(reconnect_pause)
                    continue
                result.connections += 1
                on_this_connection = 0
            number = next(counter, None)
            if number is None:
                break
            uid, request = templates[number % len(templates)].render(number)
            result.sent += 1
            started = time.monotonic()
            answered = False
            assert reader is not None and writer is not None
            try:
                writer.write(request)
                status, body, close = await asyncio.wait_for(_read_response(reader), request_timeout)
                answered = True
            except TimeoutError:  # before OSError: TimeoutError is one
                result.failures.append(f"uid {uid}: no answer within {request_timeout}s")
                close = True
            except asyncio.IncompleteReadError as error:
                if error.partial:
                    result.failures.append(f"uid {uid}: truncated answer {error.partial[:100]!r}")
                else:  # closed before a single byte of the answer: the request was never taken
                    result.closed_idle += 1
                close = True
            except ConnectionError:  # reset or broken pipe before any answer
                result.closed_idle += 1
                close = True
            except (OSError, ssl.SSLError) as error:
                result.failures.append(f"uid {uid}: {error!r}")
                close = True
            if answered:
                now = time.monotonic()
                result.latencies.append(now - started)
                result.completed_at.append(now)
                result.statuses[status] += 1
                problem = check(uid, status, body)
                if problem is None and deep_check is not None and number % deep_every == 0:
                    problem = deep_check(number, body)
                if problem is None:
                    result.ok += 1
                else:
                    result.failures.append(problem)
            on_this_connection += 1
            if close or on_this_connection >= requests_per_connection:
                writer.close()
                writer = reader = None
        if writer is not None:
            writer.close()

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.elapsed = time.monotonic() - started
    return result


def run_load(
    port: int,
    context: ssl.SSLContext,
    reviews: Sequence[dict[str, Any]],
    *,
    total: int,
    concurrency: int,
    deadline: float,
    request_timeout: float = 10.0,
    check: Callable[[str, int, bytes], str | None] = uid_echo_check,
    deep_check: Callable[[int, bytes], str | None] | None = None,
    deep_every: int = 1000,
    stop: Callable[[], bool] = lambda: False,
    reconnect_pause: float = 0.01,
    requests_per_connection: int = 1 << 62,
) -> Result:
    """Send up to `total` reviews (cycling through `reviews`, each with its own uid) within `deadline` seconds."""
    templates = [Template(review) for review in reviews]
    return uvloop.run(
        _drive(
            port,
            context,
            templates,
            total=total,
            concurrency=concurrency,
            deadline=deadline,
            request_timeout=request_timeout,
            check=check,
            deep_check=deep_check,
            deep_every=deep_every,
            stop=stop,
            reconnect_pause=reconnect_pause,
            requests_per_connection=requests_per_connection,
        )
    )


def client_context(ca_file: str) -> ssl.SSLContext:
    """Trusts only the test CA, as the API server trusts only the caBundle."""
    return ssl.create_default_context(cafile=ca_file)
