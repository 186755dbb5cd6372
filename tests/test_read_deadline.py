"""The read deadline (webhook/server/read_deadline.py) on the real HTTPS server: a connection whose request is
not fully read in time is closed, however it stalls; whole requests and idle keep-alive connections are not
touched. The deadline is 0.5 s here (10 s in production) so the test stays short.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import admission_review, pod
from tests.server_harness import ServerThread, make_tls
from webhook.core.capability import Capability
from webhook.loops.state import ClusterState

DEADLINE = 0.5
BODY = json.dumps(admission_review(pod())).encode()
HEAD = (b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(BODY)}\r\n\r\n".encode())


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    state = ClusterState.static(Capability.assume("allowed", "test"), {"team-a": {"v4only.io/inject": "enabled"}})
    with ServerThread(make_tls(tmp_path), state=state, read_deadline=DEADLINE) as running:
        yield running


def connect(server: ServerThread) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(server.tls_files.ca_file))
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def closed_after(sock: ssl.SSLSocket, limit: float) -> float:
    """Seconds until the server closes the connection (reads return nothing), failing past `limit`."""
    started = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(65536):
            pass
    except ssl.SSLError:  # an abrupt close may surface as a TLS error; either way the server hung up
        pass
    except TimeoutError:
        pytest.fail(f"the connection was still open after {limit} s")
    return time.monotonic() - started


def answer(sock: ssl.SSLSocket) -> bytes:
    data = b""
    while b'"uid"' not in data or not data.endswith(b"}}"):
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    return data


@pytest.mark.parametrize(
    "sent",
    [b"", b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty", HEAD + BODY[: len(BODY) // 2]],
    ids=["nothing", "half the headers", "half the body"],
)
def test_a_stalled_request_is_closed_after_the_deadline(server: ServerThread, sent: bytes) -> None:
    with connect(server) as sock:
        sock.sendall(sent)
        waited = closed_after(sock, limit=DEADLINE + 5)
    assert waited >= DEADLINE * 0.8


def test_headers_dribbled_slower_than_the_deadline_are_cut_off(server: ServerThread) -> None:
    # Each byte arrives well within the deadline: the deadline is for the whole request, not between bytes.
    assert len(HEAD) * DEADLINE / 10 > DEADLINE * 5
    with connect(server) as sock:
        started = time.monotonic()
        try:
            for byte in HEAD:
                sock.sendall(bytes([byte]))
                time.sleep(DEADLINE / 10)
        except OSError:  # the server hung up: the next sends fail
            pass
        else:
            pytest.fail("the server took every byte of a request dribbled over several deadlines")
        elapsed = time.monotonic() - started
    assert DEADLINE * 0.8 <= elapsed < DEADLINE + 3


def test_whole_requests_and_idle_keep_alive_connections_are_served(server: ServerThread) -> None:
    with connect(server) as sock:
        sock.sendall(HEAD + BODY)
        first = answer(sock)
        time.sleep(DEADLINE * 2.5)  # idle between requests: uvicorn's keep-alive timeout (5 s) governs
        sock.sendall(HEAD + BODY[:10])
        time.sleep(DEADLINE / 2)  # a request that takes a while, but less than the deadline
        sock.sendall(BODY[10:])
        second = answer(sock)
    assert first.startswith(b"HTTP/1.1 200") and second.startswith(b"HTTP/1.1 200")
    with server.client() as client:
        assert client.get("/healthz").status_code == 200
