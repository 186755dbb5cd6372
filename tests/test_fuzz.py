"""Hostile input: generated, mutated and broken AdmissionReviews (hypothesis, a few thousand per run).

Most cases call `AdmissionEndpoint.answer(body)` in-process — the exact code `POST /mutate` runs after
reading the body — and a few hundred go over real HTTPS to a running server. For every body:
- never an exception out of our code (uvicorn would turn it into a 500), never a 5xx over HTTPS, never a
  hang (each answer is timed; the HTTPS client has a timeout);
- a malformed body (not JSON as orjson reads it, not an AdmissionReview v1 with a request and a uid) gets
  400 with a JSON `{"error": reason}`; anything else gets 200 with the request's uid echoed;
- a patch always applies (the `jsonpatch` package, not v4only's code); when the pod validated (Kubernetes
  1.33, strict), the patched pod validates too, and reviewing it again yields no patch;
- the answer always serialises (the HTTP path does `orjson.dumps` on it) and warnings stay short;
- the server answers /healthz and /readyz afterwards, and counted no internal error.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import socket
import ssl
import time
from collections.abc import Iterator
from typing import Any

import jsonpatch
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import FIXTURES, admission_review, pod, validate
from tests.server_harness import ServerThread, make_tls
from tests.test_properties import CAPABILITIES, pods
from webhook.core.settings import Settings
from webhook.loops.state import ClusterState
from webhook.server.app import MAX_BODY_BYTES, AdmissionEndpoint
from webhook.server.metrics import Metrics

NAMESPACES = {
    "team": {"v4only.io/inject": "enabled"},
    "strict": {"v4only.io/inject": "enabled", "pod-security.kubernetes.io/enforce": "restricted"},
    "off": {"v4only.io/inject": "disabled"},
}
ENDPOINTS = [AdmissionEndpoint(state=ClusterState.static(c, NAMESPACES), settings=Settings(), metrics=Metrics())
             for c in CAPABILITIES]
CHRONICLE = json.loads((FIXTURES / "admission" / "chronicle-allowed.request.json").read_text())
SLOW = 2.0  # seconds: no single answer may take longer (the API server's default webhook timeout is 10 s)


def fuzz(examples: int) -> settings:
    # V4ONLY_FUZZ_SCALE=20 for a longer hunt on a workstation; CI runs the counts as written (~30 s in all).
    scale = float(os.environ.get("V4ONLY_FUZZ_SCALE", "1"))
    return settings(max_examples=max(1, int(examples * scale)), deadline=None,
                    suppress_health_check=list(HealthCheck))


# JSON values of every type, unicode included (no lone surrogates: orjson cannot hold them, see below).
TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=20)  # utf-8: no lone surrogates
SCALARS = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False) | TEXT
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
                    max_leaves=12)


def review_of(obj: Any, *, namespace: str = "team", uid: str = "fuzz-uid") -> dict[str, Any]:
    review = admission_review({}, uid=uid, namespace=namespace)
    review["request"]["object"] = obj
    return review


def expected_request(body: bytes) -> dict[str, Any] | None:
    """The request, when the body is a well-formed AdmissionReview v1; None when it is malformed.
    Restated from the contract (README: 400 for a malformed call), not from webhook/core."""
    try:
        review = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(review, dict) or review.get("kind") != "AdmissionReview":
        return None
    if review.get("apiVersion") != "admission.k8s.io/v1":
        return None
    request = review.get("request")
    if not isinstance(request, dict) or not isinstance(request.get("uid"), str) or not request["uid"]:
        return None
    return request


def check_answer(endpoint: AdmissionEndpoint, body: bytes) -> tuple[int, Any]:
    started = time.monotonic()
    status, answer = endpoint.answer(body)
    assert time.monotonic() - started < SLOW
    payload = orjson.loads(answer)  # what the HTTP path sends: it must be JSON
    check_payload(body, status, payload)
    return status, payload


def check_payload(body: bytes, status: int, payload: Any) -> None:
    request = expected_request(body)
    if request is None:
        assert status == 400, payload
        assert isinstance(payload, dict) and list(payload) == ["error"], payload
        assert isinstance(payload["error"], str) and 0 < len(payload["error"]) <= 300
        return
    assert status == 200, payload
    assert payload["apiVersion"] == "admission.k8s.io/v1" and payload["kind"] == "AdmissionReview"
    response = payload["response"]
    assert response["uid"] == request["uid"] and response["allowed"] is True
    assert set(response) <= {"uid", "allowed", "patch", "patchType", "warnings"}
    for warning in response.get("warnings", []):
        assert isinstance(warning, str) and len(warning) <= 120, warning
    if "patch" not in response:
        assert "patchType" not in response
        return
    assert response["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(response["patch"], validate=True))
    patched = jsonpatch.JsonPatch(ops).apply(copy.deepcopy(request["object"]))
    # Schema validation of a 100,000-entry pod takes seconds; the huge cases are about not crashing.
    if len(body) < 200_000 and _valid(request["object"]):
        validate(patched)


def _valid(obj: Any) -> bool:
    if not isinstance(obj, dict) or obj.get("kind") != "Pod" or obj.get("apiVersion") != "v1":
        return False
    try:
        validate(obj)
    except AssertionError:
        return False
    return True


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, (*prefix, index))


def replace_at(document: Any, path: tuple[Any, ...], new: Any, *, delete: bool) -> Any:
    if not path:
        return new
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = new
    return document


@st.composite
def mutated_reviews(draw: st.DrawFn) -> dict[str, Any]:
    """A valid review (a generated pod, or the Chronicle pod) with 1-3 values replaced by any JSON, or removed."""
    if draw(st.booleans()):
        # a copy: the strategy shares its sampled dicts between examples, and this one is about to be mutated
        review = review_of(copy.deepcopy(draw(pods())), namespace=draw(st.sampled_from(sorted(NAMESPACES))))
    else:
        review = copy.deepcopy(CHRONICLE)
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(list(paths(review))))
        delete = bool(where) and draw(st.integers(0, 3)) == 0
        review = replace_at(review, where, draw(JSON), delete=delete)
    return review


# ---- in-process: thousands of cases


@fuzz(1500)
@given(review=mutated_reviews(), which=st.integers(0, len(ENDPOINTS) - 1))
def test_mutated_reviews(review: Any, which: int) -> None:
    check_answer(ENDPOINTS[which], orjson.dumps(review))


@fuzz(600)
@given(obj=pods(), namespace=st.sampled_from(sorted(NAMESPACES)), which=st.integers(0, len(ENDPOINTS) - 1))
def test_valid_reviews_get_a_patch_that_applies_validates_and_is_final(obj: Any, namespace: str, which: int) -> None:
    endpoint = ENDPOINTS[which]
    _, payload = check_answer(endpoint, orjson.dumps(review_of(obj, namespace=namespace)))
    response = payload["response"]
    if "patch" in response:
        patched = jsonpatch.JsonPatch(json.loads(base64.b64decode(response["patch"]))).apply(copy.deepcopy(obj))
        validate(patched)
        _, again = endpoint.answer(orjson.dumps(review_of(patched, namespace=namespace)))
        assert "patch" not in orjson.loads(again)["response"], again


@fuzz(500)
@given(value=JSON)
def test_any_json_document(value: Any) -> None:
    check_answer(ENDPOINTS[0], orjson.dumps(value))


@fuzz(400)
@given(data=st.binary(max_size=200))
def test_any_bytes(data: bytes) -> None:
    check_answer(ENDPOINTS[0], data)


CHRONICLE_BODY = orjson.dumps(CHRONICLE)


@fuzz(400)
@given(cut=st.integers(0, len(CHRONICLE_BODY) - 1))
def test_truncated_bodies(cut: int) -> None:
    status, _ = check_answer(ENDPOINTS[0], CHRONICLE_BODY[:cut])
    assert status == 400


@fuzz(300)
@given(key=st.sampled_from(["kind", "apiVersion", "request", "uid", "operation", "namespace", "object", "spec",
                            "metadata", "labels", "containers", "env", "name", "value"]),
       value=JSON)
def test_duplicate_keys(key: str, value: Any) -> None:
    """A key written twice wherever it appears: orjson keeps the last one, as Go's encoding/json does."""
    text = CHRONICLE_BODY.decode()
    needle = f'"{key}":'
    at = text.find(needle)
    body = (text[:at] + needle + orjson.dumps(value).decode() + "," + text[at:]).encode()
    check_answer(ENDPOINTS[0], body)
    body = (text[:at] + text[at:].replace(needle, "\"dup\":1," + needle, 1)).encode()
    check_answer(ENDPOINTS[0], body)


# ---- hand-picked extremes


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


CHRONICLE_ENV = b'"env":[{"name":"LOG_LEVEL","value":"info"}]'
assert CHRONICLE_BODY.count(CHRONICLE_ENV) == 1


def with_raw(field: str, raw: str) -> bytes:
    """The Chronicle review with its container's `env` replaced by `raw`, or a new `field` added to it."""
    if field == "env":
        return CHRONICLE_BODY.replace(CHRONICLE_ENV, b'"env":' + raw.encode())
    text = CHRONICLE_BODY.decode()
    at = text.index('"containers":[{') + len('"containers":[{')
    return (text[:at] + f'"{field}":{raw},' + text[at:]).encode()


EXTREMES: list[tuple[str, bytes]] = [
    ("10,000 levels of [", nested(10_000).encode()),
    ("10,000 levels unclosed", b"[" * 10_000),
    ("10,000 levels in the pod", with_raw("x", nested(10_000))),
    ("1,000 levels as kind", b'{"kind":' + nested(1000).encode() + b"}"),
    ("1,000 levels as apiVersion", b'{"kind":"AdmissionReview","apiVersion":' + nested(1000).encode() + b"}"),
    ("1,000 levels as uid", orjson.dumps(CHRONICLE).replace(b'"uid":"8d3c', b'"uid":' + nested(1000).encode() + b',"x":"')),
    ("1,020 levels in the pod", with_raw("x", nested(1020))),
    ("1,020 levels of objects as env", with_raw("env", '[{"name":"NODE_OPTIONS","value":' + '{"a":' * 1000 + "1"
                                                + "}" * 1000 + "}]")),
    ("1,020 levels in securityContext", CHRONICLE_BODY.replace(b'"securityContext":{}',
                                                               b'"securityContext":{"sysctls":' + nested(1000).encode() + b"}")),
    ("a 2 MiB kind", orjson.dumps({"kind": "x" * (2 << 20)})),
    ("a 2 MiB uid", orjson.dumps({**CHRONICLE, "request": {**CHRONICLE["request"], "uid": "u" * (2 << 20)}})),
    ("a 2 MiB env value", with_raw("env", orjson.dumps([{"name": "NODE_OPTIONS", "value": "v" * (2 << 20)}]).decode())),
    ("100,000 env entries", with_raw("env", orjson.dumps([{"name": f"V{i}", "value": "x"} for i in range(100_000)]).decode())),
    ("5,000 containers", orjson.dumps(review_of(pod(containers=[{"name": f"c{i}", "image": "x"} for i in range(5000)])))),
    ("200,000 numbers", with_raw("x", orjson.dumps(list(range(200_000))).decode())),
    ("a lone surrogate", CHRONICLE_BODY.replace(b'"LOG_LEVEL"', b'"\\ud800"')),
    ("invalid UTF-8", CHRONICLE_BODY.replace(b'"info"', b'"\xff\xfe"')),
    ("a BOM", b"\xef\xbb\xbf" + CHRONICLE_BODY),
    ("NaN", CHRONICLE_BODY.replace(b'"priority":0', b'"priority":NaN')),
    ("1e400", CHRONICLE_BODY.replace(b'"priority":0', b'"priority":1e400')),
    ("a 30-digit integer", CHRONICLE_BODY.replace(b'"priority":0', b'"priority":123456789012345678901234567890')),
    ("NUL and controls", orjson.dumps(review_of(pod(annotations={"a": "\x00\x01\u2028\u202e\ufeff"})))),
    ("astral and combining", orjson.dumps(review_of(pod(labels={"v4only.io/inject": "enabled", "😀": "e\u0301"})))),
    ("trailing garbage", CHRONICLE_BODY + b"}"),
    ("two documents", CHRONICLE_BODY + b"\n" + CHRONICLE_BODY),
    ("uid empty", CHRONICLE_BODY.replace(b'"uid":"8d3c6a4e-1f0b-4c1e-9a7d-000000000001"', b'"uid":""')),
]


@pytest.mark.parametrize(("case", "body"), EXTREMES, ids=[case for case, _ in EXTREMES])
def test_extremes(case: str, body: bytes) -> None:
    assert len(body) <= MAX_BODY_BYTES, "over 3 MiB is the reader's job (413), tested in test_server.py"
    for endpoint in ENDPOINTS:
        check_answer(endpoint, body)


def test_no_internal_errors_were_counted() -> None:
    """Everything above was either a 400, an admitted-unchanged warning, or a real answer: never our own error
    (which would also mean an ERROR log line). Runs after the cases above, in file order."""
    for endpoint in ENDPOINTS:
        assert endpoint.metrics.outcomes["error"]._value.get() == 0


# ---- over real HTTPS: a few hundred


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    tls = make_tls(tmp_path_factory.mktemp("fuzz-tls"))
    with ServerThread(tls, state=ENDPOINTS[0].state) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: ServerThread) -> Iterator[Any]:
    with server.client() as http:
        yield http


@fuzz(250)
@given(review=mutated_reviews() | JSON.map(lambda v: {"kind": "AdmissionReview", "junk": v}))
def test_over_https(server: ServerThread, client: Any, review: Any) -> None:
    body = orjson.dumps(review)
    reply = client.post("/mutate", content=body, headers={"Content-Type": "application/json"})
    assert reply.status_code < 500
    assert reply.headers["content-type"] == "application/json"
    check_payload(body, reply.status_code, reply.json())


@pytest.mark.parametrize(("case", "body"), EXTREMES[:10], ids=[case for case, _ in EXTREMES[:10]])
def test_extremes_over_https(client: Any, case: str, body: bytes) -> None:
    reply = client.post("/mutate", content=body, headers={"Content-Type": "application/json"})
    assert reply.status_code in (200, 400)
    check_payload(body, reply.status_code, reply.json())


def test_truncated_and_abandoned_requests_over_https(server: ServerThread, client: Any) -> None:
    """Clients that promise a body and hang up: the server carries on."""
    context = ssl.create_default_context(cafile=str(server.tls_files.ca_file))
    for cut in (0, 1, len(CHRONICLE_BODY) // 2, len(CHRONICLE_BODY) - 1):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        + f"Content-Length: {len(CHRONICLE_BODY)}\r\n\r\n".encode() + CHRONICLE_BODY[:cut])
    for head in (b"POST /mutate HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n12345",
                 b"POST /mutate HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                 b"POST /mutate HTTP/9.9\r\n\r\n", b"\x16\x03\x01garbage\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(head)
            tls.settimeout(5)
            try:
                answer = tls.recv(65536)
            except (TimeoutError, OSError):
                answer = b""
            assert not answer.startswith(b"HTTP/1.1 5"), answer[:100]
    assert client.get("/healthz").status_code == 200


def test_healthy_afterwards(server: ServerThread, client: Any) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    reply = client.post("/mutate", content=orjson.dumps(review_of(pod())), headers={"Content-Type": "application/json"})
    assert reply.status_code == 200 and "patch" in reply.json()["response"]
    metrics = client.get("/metrics").text
    assert 'v4only_admission_requests_total{outcome="error"} 0.0' in metrics
