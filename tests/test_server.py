"""The webhook as the API server uses it: real uvicorn over TLS on 127.0.0.1, a client that trusts only the CA."""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.helpers import FIXTURES, admission_review, decode_patch, pod
from tests.server_harness import ServerThread, make_tls, write_serving
from webhook.cli import review as review_cmd
from webhook.core import certs
from webhook.core.capability import Capability
from webhook.core.dns_remedy import DnsFacts
from webhook.core.settings import Settings
from webhook.loops.state import ClusterState, View

ADMISSION = FIXTURES / "admission"
SECRET = "s3cr3t-token-value-that-must-never-be-logged"


def golden_state() -> ClusterState:
    capability = review_cmd.capability_from_file(str(ADMISSION / "nodes-allowed.yaml"), Settings())
    namespaces = review_cmd.namespaces_from_file(str(ADMISSION / "namespaces.yaml"))
    return ClusterState.static(capability, namespaces)


@pytest.fixture
def server(tmp_path: Path):
    with ServerThread(make_tls(tmp_path), state=golden_state()) as running:
        yield running


def post(client: httpx.Client, body: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/mutate", content=content, headers={"Content-Type": "application/json"})


def test_chronicle_pod_over_tls_matches_the_golden_response(server: ServerThread) -> None:
    request = json.loads((ADMISSION / "chronicle-allowed.request.json").read_text())
    expected = yaml.safe_load((ADMISSION / "chronicle-allowed.response.yaml").read_text())
    with server.client() as client:
        reply = post(client, request)
    assert reply.status_code == 200
    body = reply.json()
    body["response"]["patch"] = decode_patch(body["response"])
    assert body == expected


def test_replicas_in_the_api_servers_compact_form_are_replayed_with_their_own_uid(server: ServerThread) -> None:
    # Go's encoding/json writes compact JSON: the form the replica cache keys on (webhook/server/replay.py).
    request = json.loads((ADMISSION / "chronicle-allowed.request.json").read_text())
    expected = yaml.safe_load((ADMISSION / "chronicle-allowed.response.yaml").read_text())
    with server.client() as client:
        replies = []
        for uid in ("9f1c0d2e-0000-4000-8000-000000000001", "9f1c0d2e-0000-4000-8000-000000000002"):
            request["request"]["uid"] = uid
            replies.append(post(client, json.dumps(request, separators=(",", ":")).encode()))
        metrics = client.get("/metrics").text
    for uid, reply in zip(("9f1c0d2e-0000-4000-8000-000000000001", "9f1c0d2e-0000-4000-8000-000000000002"), replies,
                          strict=True):
        assert reply.status_code == 200
        body = reply.json()
        body["response"]["patch"] = decode_patch(body["response"])
        assert body == {**expected, "response": {**expected["response"], "uid": uid}}
    assert "v4only_admission_replayed_total 1.0" in metrics
    assert 'v4only_admission_requests_total{outcome="mutated"} 2.0' in metrics


def test_dry_run_gets_the_same_answer(server: ServerThread) -> None:
    with server.client() as client:
        wet = post(client, admission_review(pod(), uid="a")).json()["response"]
        dry = post(client, admission_review(pod(), uid="a", dry_run=True)).json()["response"]
    assert wet == dry and "patch" in wet


def test_a_client_that_does_not_trust_our_ca_is_refused(server: ServerThread, tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    other = make_tls(tmp_path / "other", ca_name="other CA")
    with pytest.raises(httpx.ConnectError), server.client(other.ca_file) as client:
        post(client, admission_review(pod()))


def test_only_pod_create_is_changed(server: ServerThread) -> None:
    update = admission_review(pod(), operation="UPDATE")
    deployment = admission_review(pod())
    deployment["request"]["kind"] = {"group": "apps", "version": "v1", "kind": "Deployment"}
    binding = admission_review(pod())
    binding["request"]["subResource"] = "binding"
    with server.client() as client:
        for review in (update, deployment, binding):
            assert post(client, review).json()["response"] == {"uid": "u-1", "allowed": True}


BAD_BODIES = [
    ("not json", b"{nope", "the body is not valid JSON"),
    ("empty", b"", "the body is not valid JSON"),
    ("a list", b"[]", "the body is not a JSON object"),
    ("not a review", {"kind": "Pod", "apiVersion": "v1"}, "kind is 'Pod', expected 'AdmissionReview'"),
    ("v1beta1", {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1beta1", "request": {"uid": "x"}},
     "apiVersion is 'admission.k8s.io/v1beta1', expected 'admission.k8s.io/v1'"),
    ("no request", {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"},
     "request is missing or not an object"),
    ("no uid", {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {"operation": "CREATE"}},
     "request.uid is missing or not a non-empty string"),
    ("uid not a string", {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {"uid": 7}},
     "request.uid is missing or not a non-empty string"),
]


@pytest.mark.parametrize(("case", "body", "error"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_malformed_calls_get_400_with_a_reason(server: ServerThread, case: str, body: Any, error: str) -> None:
    with server.client() as client:
        reply = post(client, body)
    assert reply.status_code == 400
    assert list(reply.json()) == ["error"]
    assert reply.json()["error"].startswith(error)


def test_a_body_over_3_mib_gets_413(server: ServerThread) -> None:
    big = admission_review(pod(annotations={"big": "x" * (3 * 1024 * 1024)}))
    with server.client() as client:
        reply = post(client, big)
        assert reply.status_code == 413
        assert "over 3145728 bytes" in reply.json()["error"]
        assert client.get("/healthz").status_code == 200


def test_a_body_streamed_without_length_over_3_mib_gets_413(server: ServerThread) -> None:
    def chunks():
        for _ in range(4):
            yield b"x" * (1024 * 1024)

    with server.client() as client:
        reply = client.post("/mutate", content=chunks(), headers={"Content-Type": "application/json"})
    assert reply.status_code == 413


def test_an_object_v4only_cannot_read_is_admitted_unchanged_with_a_warning(server: ServerThread) -> None:
    weird = pod(securityContext="not-a-mapping")
    with server.client() as client:
        response = post(client, admission_review(weird)).json()["response"]
    assert response == {
        "uid": "u-1",
        "allowed": True,
        "warnings": ["v4only: pod admitted unchanged: spec.securityContext is not a mapping"],
    }


class BrokenState(ClusterState):
    """Our own state holder failing: stands for any bug between the request and the response."""

    def view(self) -> View:
        raise RuntimeError(f"boom {SECRET}")


def test_an_internal_error_admits_unchanged_and_logs_an_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = BrokenState(max_age_seconds=60, initial=View(Capability.unknown("x"), {}, None))
    with ServerThread(make_tls(tmp_path), state=state) as running, running.client() as client:
        reply = post(client, admission_review(pod(), uid="uid-err"))
        assert client.get("/healthz").status_code == 200
    assert reply.status_code == 200
    assert reply.json()["response"] == {
        "uid": "uid-err", "allowed": True,
        "warnings": ["v4only: internal error, pod admitted unchanged (see the webhook's log)"],
    }
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "webhook.admission"]
    assert errors and "uid=uid-err" in errors[0].getMessage()


def test_logs_never_carry_pod_environment_values(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret_pod = pod(containers=[{"name": "app", "image": "a", "env": [{"name": "TOKEN", "value": SECRET}]}])
    with ServerThread(make_tls(tmp_path), state=golden_state()) as running, running.client() as client:
        post(client, admission_review(secret_pod))
        post(client, admission_review(pod(containers=[{"name": "a", "image": "a", "env": {"TOKEN": SECRET}}])))
        post(client, b'{"kind": "AdmissionReview", "x": "' + SECRET.encode() + b'"')
    assert caplog.records, "the server logged nothing at DEBUG, so this test proves nothing"
    assert SECRET not in caplog.text


def test_health_readiness_metrics_and_nothing_else(server: ServerThread) -> None:
    with server.client() as client:
        post(client, admission_review(pod()))
        post(client, admission_review(pod(labels={})))
        post(client, b"nope")
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json() == {"status": "ready", "capability": "known"}
        metrics = client.get("/metrics").text
        for path in ("/docs", "/openapi.json", "/redoc", "/", "/mutate/x"):
            assert client.get(path).status_code == 404, path
        assert client.get("/mutate").status_code == 405
    assert 'v4only_admission_requests_total{outcome="mutated"} 1.0' in metrics
    assert 'v4only_admission_requests_total{outcome="unmanaged"} 1.0' in metrics
    assert 'v4only_admission_requests_total{outcome="invalid"} 1.0' in metrics
    assert 'v4only_decisions_total{remedy="sysctl"} 1.0' in metrics
    assert "v4only_admission_duration_seconds_count 3.0" in metrics


def test_metrics_show_the_dns_finding_the_decisions_use(tmp_path: Path) -> None:
    """Issue 9 item 3: the probe's finding is exposed as metrics, read from the same snapshot as decisions."""
    state = ClusterState(max_age_seconds=60)
    with ServerThread(make_tls(tmp_path), state=state) as running, running.client() as client:
        before = client.get("/metrics").text
        found = DnsFacts(known=True, traps=("corp.example",), nameservers=("10.96.0.10",), cluster_domain="c.local")
        state.publish(replace(Capability.assume("allowed", "test"), dns=found), {"team-a": {}})
        after = client.get("/metrics").text
        applied = post(client, admission_review(pod(), namespace="team-a")).json()["response"]
    assert "v4only_dns_finding_known 0.0" in before and "v4only_dns_trap{" not in before
    assert "v4only_dns_finding_known 1.0" in after and 'v4only_dns_trap{domain="corp.example"} 1.0' in after
    assert "+dns" in json.dumps(decode_patch(applied))  # the same snapshot the webhook decided with


def test_readyz_fails_until_capability_is_known(tmp_path: Path) -> None:
    state = ClusterState(max_age_seconds=60)
    with ServerThread(make_tls(tmp_path), state=state) as running, running.client() as client:
        assert client.get("/readyz").status_code == 503
        reason = post(client, admission_review(pod(), namespace="team-a")).json()["response"]["warnings"][0]
        state.publish(Capability.assume("allowed", "test"), {"team-a": {}})
        assert client.get("/readyz").status_code == 200
    assert reason == "env: namespace labels not known yet, so Pod Security enforcement cannot be checked"


def _served_fingerprint(port: int, ca_file: Path) -> str:
    context = ssl.create_default_context(cafile=str(ca_file))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, context.wrap_socket(
        raw, server_hostname="127.0.0.1"
    ) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return certs.fingerprint(ssl.DER_cert_to_PEM_cert(der).encode())


def test_certificate_rotation_under_load_fails_no_request(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    new_ca = certs.build_ca(common_name="rotated CA", now=datetime.now(UTC), days=2)
    bundle = tmp_path / "bundle.crt"
    bundle.write_bytes(tls.ca.cert_pem + new_ca.cert_pem)  # the caBundle holds both during a rollover
    failures: list[str] = []
    done = threading.Event()
    counts = [0, 0, 0]

    def hammer(slot: int) -> None:
        deadline = time.monotonic() + 20
        while not done.is_set() and time.monotonic() < deadline and counts[slot] < 2000:
            try:
                # A new connection every few requests, so handshakes happen across the rotation.
                with running.client(bundle) as client:
                    for _ in range(5):
                        reply = post(client, admission_review(pod()))
                        if reply.status_code != 200 or "patch" not in reply.json()["response"]:
                            failures.append(f"status {reply.status_code}")
                        counts[slot] += 1
            except httpx.HTTPError as error:
                failures.append(repr(error))

    with ServerThread(tls, state=golden_state(), reload_interval=0.05) as running:
        before = _served_fingerprint(running.port, bundle)
        workers = [threading.Thread(target=hammer, args=(i,)) for i in range(3)]
        for worker in workers:
            worker.start()
        time.sleep(0.5)
        # A rotation that lands in two steps: the certificate first, the key a moment later.
        new_pair = certs.build_serving_cert(ca=new_ca, dns_names=["localhost"], ip_addresses=["127.0.0.1"],
                                            now=datetime.now(UTC))
        tls.cert_file.write_bytes(new_pair.cert_pem)
        time.sleep(0.3)
        tls.key_file.write_bytes(new_pair.key_pem)
        deadline = time.monotonic() + 10
        while _served_fingerprint(running.port, bundle) == before and time.monotonic() < deadline:
            time.sleep(0.05)
        after = _served_fingerprint(running.port, bundle)
        time.sleep(0.5)
        done.set()
        for worker in workers:
            worker.join(30)
        reloads = running.metrics.tls_reloads.labels("ok")._value.get()
    assert failures == []
    assert sum(counts) > 50
    assert after == certs.fingerprint(new_pair.cert_pem) != before
    assert reloads == 1


def test_rotation_with_an_atomic_swap_is_served(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    with ServerThread(tls, state=golden_state(), reload_interval=0.05) as running:
        pair = write_serving(tmp_path, tls.ca)
        deadline = time.monotonic() + 10
        while _served_fingerprint(running.port, tls.ca_file) != certs.fingerprint(pair.cert_pem):
            assert time.monotonic() < deadline, "the new certificate was never served"
            time.sleep(0.05)
