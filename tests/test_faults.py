"""Faults around the webhook, each against the real server in a process of its own (tests/launcher.py runs
`webhook.cli.serve.serve`: uvloop, uvicorn, TLS reload, SIGTERM drain) on 127.0.0.1:

- the Kubernetes API (tests/fakekube) unreachable at start, lost mid-run and back: every review is answered
  within 100 ms, the decision falls back to `env` once capability is older than capabilityMaxAgeSeconds,
  and the tracker recovers when the API returns;
- a watch that hangs without closing: the watchdog drops and restarts it, and the change held back reaches
  the decisions (the tracker-level version is tests/test_tracker.py::test_a_hung_watch_is_dropped_by_the_watchdog);
- the serving certificate rotated the way a Kubernetes Secret volume does it (a `..data` symlink swap) under
  load with connections made and dropped all the time: no failed request (the in-process version with a
  two-step, half-written rotation is tests/test_server.py::test_certificate_rotation_under_load_fails_no_request);
- SIGTERM under load: /readyz fails first, requests keep being answered while draining, a request in flight
  when the listener closes is finished, what `serve` started in the background is stopped, then the process
  exits 0;
- 50 slow clients holding connections open (no TLS handshake, half the headers, half a body): other
  requests are still answered, quickly.

Every loop is bounded in count and time.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import capability_scenarios as sc
from tests.fakekube import FakeKube
from tests.helpers import admission_review, pod
from tests.loadgen import client_context, run_load
from tests.process_harness import ServerProcess
from tests.server_harness import TLSFiles, make_tls
from webhook.core import certs, keys

LATENCY_LIMIT = 0.100  # seconds: every review answered within this, whatever the API server does
MAX_AGE = 2.0  # capabilityMaxAgeSeconds for these tests


# ---- a steady trickle of reviews, each timed


@dataclass
class Answer:
    at: float  # monotonic time the answer arrived
    latency: float
    status: int
    remedy: str | None  # v4only.io/applied from the patch, None when there is no patch
    warning: str


class Prober(threading.Thread):
    """Posts one review every `interval` seconds over a kept-alive connection and records each answer."""

    def __init__(self, server: ServerProcess, review: dict[str, Any], interval: float = 0.02,
                 limit_seconds: float = 90.0) -> None:
        super().__init__(daemon=True)
        self.server, self.review, self.interval = server, review, interval
        self.answers: list[Answer] = []
        self.errors: list[str] = []
        self.stopping = threading.Event()
        self._end = time.monotonic() + limit_seconds

    def run(self) -> None:
        body = json.dumps(self.review).encode()
        with self.server.client(timeout=5.0) as client:
            while not self.stopping.is_set() and time.monotonic() < self._end:
                started = time.monotonic()
                try:
                    reply = client.post("/mutate", content=body, headers={"Content-Type": "application/json"})
                except httpx.HTTPError as error:
                    self.errors.append(repr(error))
                else:
                    now = time.monotonic()
                    response = reply.json()["response"]
                    self.answers.append(Answer(now, now - started, reply.status_code, _applied(response),
                                               (response.get("warnings") or [""])[0]))
                self.stopping.wait(self.interval)

    def since(self, moment: float) -> list[Answer]:
        return [a for a in list(self.answers) if a.at >= moment]

    def wait_for(self, predicate: Any, *, after: float, timeout: float, what: str) -> Answer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for answer in self.since(after):
                if predicate(answer):
                    return answer
            time.sleep(0.02)
        seen = [(round(a.at - after, 2), a.remedy, a.warning) for a in self.since(after)][-5:]
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; last answers {seen}")


def _applied(response: dict[str, Any]) -> str | None:
    if "patch" not in response:
        return None
    for op in json.loads(base64.b64decode(response["patch"])):
        if op["path"] == "/metadata/annotations":
            return str(op["value"].get(keys.APPLIED))
        if op["path"] == "/metadata/annotations/" + keys.APPLIED.replace("/", "~1"):
            return str(op["value"])
    return "?"


@contextmanager
def probing(server: ServerProcess, review: dict[str, Any]) -> Iterator[Prober]:
    prober = Prober(server, review)
    prober.start()
    try:
        yield prober
    finally:
        prober.stopping.set()
        prober.join(10)


def readyz(server: ServerProcess) -> int:
    with server.client(timeout=2.0) as client:
        return client.get("/readyz").status_code


def team_review() -> dict[str, Any]:
    return admission_review(pod(), namespace="team")  # `team` opts in (capability_scenarios.add_namespaces)


def served_within_limit(server: ServerProcess) -> tuple[float, float]:
    """(reviews the server answered within LATENCY_LIMIT, all it answered), from its own histogram."""
    with server.client() as client:
        metrics = client.get("/metrics").text
    counts = {}
    for line in metrics.splitlines():
        if line.startswith("v4only_admission_duration_seconds_bucket{"):
            counts[line.split('le="')[1].split('"')[0]] = float(line.split()[-1])
    return counts[str(LATENCY_LIMIT)], counts["+Inf"]


def assert_all_fast(prober: Prober, server: ServerProcess) -> None:
    """Every review answered, each within LATENCY_LIMIT as the server measured it, and as the client saw it
    (the 99th percentile; the slowest within 2.5x: a test process competing for 2 CPUs with the fake API
    server's threads can lose the odd scheduling slice — a request waiting on the API would take seconds)."""
    assert prober.errors == []
    assert prober.answers and all(a.status == 200 for a in prober.answers)
    within, total = served_within_limit(server)
    assert within == total >= len(prober.answers), (within, total)
    latencies = sorted(a.latency for a in prober.answers)
    p99, slowest = latencies[int(0.99 * (len(latencies) - 1))], latencies[-1]
    assert p99 < LATENCY_LIMIT, f"p99 {p99 * 1e3:.1f} ms"
    assert slowest < 2.5 * LATENCY_LIMIT, f"a review took {slowest * 1e3:.1f} ms"


# ---- the Kubernetes API


@pytest.fixture
def kube(quick_kube: FakeKube) -> FakeKube:
    return quick_kube


def tracked_server(tmp_path: Path, kube: FakeKube) -> ServerProcess:
    kubeconfig = kube.kubeconfig_path(tmp_path)
    (tmp_path / "tls").mkdir()
    return ServerProcess.launcher(make_tls(tmp_path / "tls"), "--kubeconfig", str(kubeconfig),
                                  "--max-age", str(MAX_AGE))


@pytest.mark.timeout(90)
def test_api_unreachable_at_start_lost_mid_run_and_back(kube: FakeKube, tmp_path: Path) -> None:
    sc.allowing(kube)
    kube.stop()  # unreachable from the start: connections refused
    with tracked_server(tmp_path, kube) as server, probing(server, team_review()) as prober:
        start = time.monotonic()
        first = prober.wait_for(lambda a: True, after=start, timeout=5, what="a first answer")
        assert first.remedy == "env" and "not known yet" in first.warning, first
        assert readyz(server) == 503
        time.sleep(1.0)
        assert {a.remedy for a in prober.since(start)} == {"env"}

        back = time.monotonic()
        kube.start()
        prober.wait_for(lambda a: a.remedy == "sysctl", after=back, timeout=15, what="sysctl once the API answers")
        assert readyz(server) == 200

        lost = time.monotonic()
        kube.stop()  # mid-run: refused, open watches cut
        stale = prober.wait_for(lambda a: a.remedy == "env", after=lost, timeout=MAX_AGE + 5,
                                what="the env fallback once capability is too old")
        assert f"over the {MAX_AGE:.0f}s limit" in stale.warning, stale
        # Fresh enough until the limit: the fallback comes no earlier than capabilityMaxAgeSeconds after the
        # last confirmation (which is at most one confirm interval, 0.2 s, before the API went away).
        assert stale.at - lost >= MAX_AGE - 0.3, stale.at - lost
        assert readyz(server) == 200, "readiness stays: every replica would fail it at once, for nothing"

        returned = time.monotonic()
        kube.start()
        prober.wait_for(lambda a: a.remedy == "sysctl", after=returned, timeout=15,
                        what="sysctl again once the API is back")
        time.sleep(0.3)
        prober.stopping.set()
        prober.join(10)
        assert_all_fast(prober, server)


@pytest.mark.timeout(90)
def test_a_hung_watch_is_detected_and_restarted(kube: FakeKube, tmp_path: Path) -> None:
    sc.allowing(kube)
    with tracked_server(tmp_path, kube) as server, probing(server, team_review()) as prober:
        prober.wait_for(lambda a: a.remedy == "sysctl", after=0, timeout=15, what="sysctl")
        assert kube.wait_for_watches(3)
        kube.hang_watches()  # open streams stay open and silent; so do new ones while this lasts
        hung = time.monotonic()
        for name in ("w-1", "w-2"):
            sc.update_node(kube, name, lambda n: n["metadata"]["labels"].update({keys.NODE_OVERRIDE: "forbidden"}))
        # The watch's read timeout (timeoutSeconds 2 + grace 1 in the launcher) drops the silent stream...
        sc.wait_until(lambda: _watchdog_fired(server), timeout=10, what="the watchdog's log line")
        detected = time.monotonic()
        assert detected - hung >= 1.5, "dropped before its read timeout: that was not the watchdog"
        # ...and a new watch is made, from the same resourceVersion (it is hung too, while the fault lasts).
        watches = _node_watches(kube)
        sc.wait_until(lambda: _node_watches(kube) > watches, timeout=5, what="a new node watch")
        # Nothing of the held-back change can be known yet. (Today the tracker also keeps confirming the old
        # snapshot while the stream hangs, so the answers stay `sysctl`; a tracker that stopped confirming a
        # silent watch would turn them into the stale `env` fallback instead, which is fine here too.)
        assert not [a for a in prober.since(hung) if "0 of 2" in a.warning or "1 of 2" in a.warning]
        kube.hang_watches(False)
        unhung = time.monotonic()
        prober.wait_for(lambda a: a.remedy == "env" and "0 of 2 schedulable nodes allow" in a.warning,
                        after=unhung, timeout=10, what="the change delivered by the restarted watch")
        prober.stopping.set()
        prober.join(10)
        assert_all_fast(prober, server)


def _watchdog_fired(server: ServerProcess) -> bool:
    return any(line.split(" WARNING webhook.tracker ")[-1].startswith("nodes: ") and "retrying in" in line
               for line in server.log().splitlines())


def _node_watches(kube: FakeKube) -> int:
    return sum(1 for r in kube.requests if r.path == "/api/v1/nodes" and r.query.get("watch") == "true")


# ---- certificates


def secret_volume(directory: Path, pair: certs.KeyPair, generation: int) -> None:
    """Write a pair the way the kubelet updates a Secret volume: a new timestamped directory, then an atomic
    swap of the `..data` symlink; tls.crt and tls.key are symlinks through `..data`."""
    data = directory / f"..{generation}"
    data.mkdir()
    (data / "tls.crt").write_bytes(pair.cert_pem)
    (data / "tls.key").write_bytes(pair.key_pem)
    link = directory / "..data_tmp"
    link.symlink_to(data.name)
    link.replace(directory / "..data")
    for name in ("tls.crt", "tls.key"):
        if not (directory / name).is_symlink():
            (directory / name).symlink_to(f"..data/{name}")


def serving_pair(ca: certs.KeyPair) -> certs.KeyPair:
    return certs.build_serving_cert(ca=ca, dns_names=["localhost"], ip_addresses=["127.0.0.1"],
                                    now=datetime.now(UTC), days=1)


def served_fingerprint(port: int, ca_file: Path) -> str:
    context = ssl.create_default_context(cafile=str(ca_file))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return certs.fingerprint(ssl.DER_cert_to_PEM_cert(der).encode())


@pytest.mark.timeout(90)
def test_secret_volume_rotation_under_load_fails_no_request(tmp_path: Path) -> None:
    ca = certs.build_ca(common_name="rotation CA", now=datetime.now(UTC), days=2)
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "ca.crt").write_bytes(ca.cert_pem)
    pairs = [serving_pair(ca) for _ in range(3)]
    secret_volume(volume, pairs[0], 0)
    tls = TLSFiles(volume, ca)
    served: list[str] = []
    with ServerProcess.launcher(tls) as server:
        context = client_context(str(tls.ca_file))

        def rotate() -> None:
            for generation in (1, 2):
                time.sleep(1.0)
                secret_volume(volume, pairs[generation], generation)
                deadline = time.monotonic() + 10
                wanted = certs.fingerprint(pairs[generation].cert_pem)
                while served_fingerprint(server.port, tls.ca_file) != wanted and time.monotonic() < deadline:
                    time.sleep(0.05)
                served.append(served_fingerprint(server.port, tls.ca_file))

        rotator = threading.Thread(target=rotate, daemon=True)
        rotator.start()
        # A new connection (a full handshake) every 20 requests, 16 at a time, across both rotations.
        result = run_load(server.port, context, [team_review_for_launcher()], total=1_000_000, concurrency=16,
                          deadline=30, requests_per_connection=20, stop=lambda: not rotator.is_alive())
        rotator.join(15)
    assert result.failures == [], result.failures[:10]
    assert (result.refused, result.closed_idle) == (0, 0)
    assert result.ok > 500 and result.connections > 50
    assert served == [certs.fingerprint(p.cert_pem) for p in pairs[1:]]


def team_review_for_launcher() -> dict[str, Any]:
    return admission_review(pod(), namespace="team-a")  # opted in by tests/launcher.py's namespaces


# ---- shutdown


def _partial_request(port: int, ca_file: Path, body: bytes, sent: int) -> ssl.SSLSocket:
    """A TLS connection that has sent the headers and `sent` bytes of the body, and waits."""
    context = ssl.create_default_context(cafile=str(ca_file))
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    tls = context.wrap_socket(raw, server_hostname="127.0.0.1")
    head = (f"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    tls.sendall(head + body[:sent])
    return tls


def _read_answer(tls: ssl.SSLSocket) -> bytes:
    data = b""
    with suppress(OSError):
        while chunk := tls.recv(65536):
            data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), None)
            if length is not None and len(rest) >= length:
                break
    return data


@pytest.mark.timeout(90)
def test_sigterm_under_load_fails_readiness_first_finishes_in_flight_then_exits(tmp_path: Path) -> None:
    drain = 2.0
    tls = make_tls(tmp_path)
    with ServerProcess.launcher(tls, "--drain-seconds", str(drain), "--log-level", "info") as server:
        assert readyz(server) == 200
        context = client_context(str(tls.ca_file))
        # (asked at, answered at, status): a poll asked before SIGTERM may be answered after it, so both count.
        ready_log: list[tuple[float, float, int]] = []
        exited = threading.Event()

        def poll_readyz() -> None:
            end = time.monotonic() + 20
            while not exited.is_set() and time.monotonic() < end:
                asked = time.monotonic()
                try:
                    status = readyz(server)
                except httpx.HTTPError:
                    status = 0  # not listening any more, or timed out
                ready_log.append((asked, time.monotonic(), status))
                time.sleep(0.02)

        results: list[Any] = []
        loader = threading.Thread(daemon=True, target=lambda: results.append(run_load(
            server.port, context, [team_review_for_launcher()], total=10_000_000, concurrency=8, deadline=20,
            stop=exited.is_set, reconnect_pause=0.05)))
        poller = threading.Thread(target=poll_readyz, daemon=True)
        loader.start()
        poller.start()
        time.sleep(1.0)
        body = json.dumps(admission_review(pod(), uid="in-flight", namespace="team-a")).encode()
        in_flight = _partial_request(server.port, tls.ca_file, body, len(body) // 2)
        sigterm = time.monotonic()
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        # Wait until the listener is gone (the drain is over), then finish the request that was in flight.
        deadline = time.monotonic() + drain + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", server.port)) != 0:
                    break
            time.sleep(0.02)
        closed = time.monotonic()
        in_flight.sendall(body[len(body) // 2:])
        answer = _read_answer(in_flight)
        in_flight.close()
        code = server.process.wait(10)
        gone = time.monotonic()
        exited.set()
        loader.join(25)
        poller.join(5)
    load = results[0]
    first_unready = min(answered for _, answered, status in ready_log if answered > sigterm and status != 200)
    served_while_draining = [t for t in load.completed_at if first_unready < t < closed]
    assert first_unready - sigterm < 0.5, "readiness did not fail at once"
    before = [status for _, answered, status in ready_log if answered < sigterm]
    # Ready before the signal. A poll that timed out (0) under a loaded CI machine is not a readiness answer.
    assert 200 in before and all(status in (200, 0) for status in before), before
    # Asked after the signal: never ready again.
    assert [s for asked, _, s in ready_log if sigterm < asked < closed and s not in (0, 503)] == []
    assert len(served_while_draining) > 20, "requests must keep being answered while /readyz fails"
    assert closed - sigterm >= drain - 0.1, "the listener closed before the drain time"
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert b'"uid":"in-flight"' in answer
    assert code == 0 and gone - closed < 5
    assert load.failures == [], load.failures[:10]  # no request that was taken went unanswered
    assert load.ok > 100
    log = server.log()
    assert "SIGTERM: /readyz now fails" in log
    # In order, and what serve started is stopped before the process ends (the tracker, its Lease).
    assert (log.index("SIGTERM: /readyz now fails") < log.index("Shutting down")
            < log.index("Finished server process") < log.index("background stopped"))


# ---- slow clients


@pytest.mark.timeout(90)
def test_slow_clients_holding_connections_do_not_stop_others(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    body = json.dumps(team_review_for_launcher()).encode()
    context = ssl.create_default_context(cafile=str(tls.ca_file))
    held: list[socket.socket] = []
    with ServerProcess.launcher(tls) as server:
        try:
            for i in range(50):
                raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
                if i % 3 == 0:  # TCP only: the TLS handshake never starts
                    held.append(raw)
                    continue
                tls_socket = context.wrap_socket(raw, server_hostname="127.0.0.1")
                if i % 3 == 1:  # half the request line and headers
                    tls_socket.sendall(b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
                else:  # the headers and half the body
                    tls_socket.sendall(b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                                       + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[: len(body) // 2])
                held.append(tls_socket)
            result = run_load(server.port, client_context(str(tls.ca_file)), [team_review_for_launcher()],
                              total=3000, concurrency=8, deadline=30)
            with server.client() as client:
                assert client.get("/healthz").status_code == 200
        finally:
            for sock in held:
                sock.close()
    assert result.failures == [] and result.ok == 3000, result.failures[:10]
    assert result.percentile(0.99) < LATENCY_LIMIT, f"p99 {result.percentile(0.99) * 1e3:.1f} ms"


def test_process_harness_cleans_up(tmp_path: Path) -> None:
    """The server processes above are always ended; a stray one would skew every later measurement."""
    tls = make_tls(tmp_path)
    server = ServerProcess.launcher(tls)
    with server:
        pid = server.pid
    assert server.process is not None and server.process.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
