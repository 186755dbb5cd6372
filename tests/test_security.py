"""Security properties, each a test:

- TLS only, 1.2 or newer: TLS 1.0/1.1 handshakes and weak cipher suites are refused (a control server on the
  same machine accepts them, so the client really offered them); plain HTTP on the TLS port gets no HTTP
  answer; `serve` listens on exactly one port;
- nothing but the documented paths: POST /mutate, GET /healthz /readyz /metrics; every other path is a 404
  and every other method a 405 (HEAD, GET without a body, may be allowed on the GET paths); no WebSocket
  upgrade, no HTTP/2, no redirects, no server banner;
- request bodies and pod environment values never reach a log line, at DEBUG, on every path: admitted,
  unmanaged, 400, 413, an object v4only cannot read, and an internal error whose exception message
  quotes the pod; identifiers that are logged are cleaned of control characters;
- the webhook's ClusterRole and Role grant nothing beyond what the code calls (webhook/adapters/rbac_used.py).
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.fakekube import FakeKube
from tests.helpers import admission_review, pod
from tests.process_harness import ROOT, ServerProcess
from tests.server_harness import ServerThread, TLSFiles, make_tls
from tests.test_server import golden_state
from webhook.adapters import rbac_used
from webhook.server import app as app_module

SECRET = "pa55w0rd-never-in-a-log-7f3a9c"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    with ServerThread(make_tls(tmp_path), state=golden_state()) as running:
        yield running


# ---- TLS


def _client_context(version: ssl.TLSVersion, ciphers: str = "ALL:@SECLEVEL=0") -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = context.maximum_version = version
    context.set_ciphers(ciphers)
    return context


def _handshake(port: int, context: ssl.SSLContext) -> str | None:
    """The negotiated version, or None when the handshake was refused."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, context.wrap_socket(raw) as tls:
            return tls.version()
    except (ssl.SSLError, ConnectionError):
        return None


class PermissiveServer:
    """A TLS server that accepts anything this OpenSSL can do: proves the client offered what we refuse."""

    def __init__(self, tls: TLSFiles) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        self.context.set_ciphers("ALL:@SECLEVEL=0")
        self.context.load_cert_chain(tls.cert_file, tls.key_file)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            conn.settimeout(5)
            try:
                with self.context.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                conn.close()

    def close(self) -> None:
        self.listener.close()


LEGACY = [pytest.param("TLSv1", id="TLS 1.0"), pytest.param("TLSv1_1", id="TLS 1.1")]


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize("version", LEGACY)
def test_tls_below_1_2_is_refused(server: ServerThread, version: str) -> None:
    legacy = getattr(ssl.TLSVersion, version)
    control = PermissiveServer(server.tls_files)
    try:
        offered = _handshake(control.port, _client_context(legacy))
    finally:
        control.close()
    if offered is None:
        pytest.skip(f"this OpenSSL cannot speak {version} even to a permissive server: nothing to prove")
    assert _handshake(server.port, _client_context(legacy)) is None


@pytest.mark.parametrize(("version", "expected"), [("TLSv1_2", "TLSv1.2"), ("TLSv1_3", "TLSv1.3")])
def test_tls_1_2_and_1_3_are_served(server: ServerThread, version: str, expected: str) -> None:
    assert _handshake(server.port, _client_context(getattr(ssl.TLSVersion, version), "DEFAULT")) == expected


# CBC suites (SHA-1 and SHA-2), anonymous key exchange, an 8-byte tag. (RC4, DES, 3DES, NULL and export suites are not even
# in this OpenSSL; static-RSA suites cannot work with v4only's ECDSA certificates.) Each is first offered to a
# permissive server with the same certificate: a suite that cannot work there would prove nothing.
WEAK = ["ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA", "ECDHE-ECDSA-AES128-SHA256", "ECDHE-ECDSA-AES256-SHA384",
        "AECDH-AES128-SHA", "aNULL", "ECDHE-ECDSA-AES128-CCM8"]


@pytest.mark.parametrize("ciphers", WEAK)
def test_weak_tls_1_2_cipher_suites_are_refused(server: ServerThread, ciphers: str) -> None:
    try:
        context = _client_context(ssl.TLSVersion.TLSv1_2, f"{ciphers}:@SECLEVEL=0")
    except ssl.SSLError:
        pytest.skip(f"this OpenSSL has no {ciphers} suite to offer")
    control = PermissiveServer(server.tls_files)
    try:
        if _handshake(control.port, context) is None:
            pytest.skip(f"no {ciphers} suite works with this certificate even on a permissive server")
    finally:
        control.close()
    assert _handshake(server.port, context) is None


def test_plain_http_on_the_tls_port_gets_no_http_answer(server: ServerThread) -> None:
    body = json.dumps(admission_review(pod())).encode()
    for request in (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
                    b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            raw.sendall(request)
            try:
                answer = raw.recv(4096)
            except OSError:
                answer = b""
        assert not answer.startswith(b"HTTP/"), answer[:80]
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5)


def test_no_http2_and_no_server_banner(server: ServerThread) -> None:
    context = ssl.create_default_context(cafile=str(server.tls_files.ca_file))
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert tls.selected_alpn_protocol() in (None, "http/1.1")
    with server.client() as client:
        for reply in (client.get("/healthz"), client.post("/mutate", content=b"{}")):
            assert "server" not in reply.headers
            assert "x-powered-by" not in reply.headers


def _listening_ports(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink()
        except OSError:
            continue
        if str(target).startswith("socket:["):
            inodes.add(str(target)[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # state LISTEN, a socket this process holds
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_serve_listens_on_one_tls_port_only(tmp_path: Path) -> None:
    """`v4only serve` (production mode, its tracker pointed at a fake API server) opens one listener: TLS."""
    tls = make_tls(tmp_path)
    with FakeKube() as kube:
        kubeconfig = kube.kubeconfig_path(tmp_path)
        server = ServerProcess.cli(tls, "serve", "--host", "127.0.0.1", "--cert-file", str(tls.cert_file),
                                   "--key-file", str(tls.key_file), "--kubeconfig", str(kubeconfig))
        with server:
            assert _listening_ports(server.pid) == {server.port}
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
                raw.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
                try:
                    answer = raw.recv(4096)
                except OSError:
                    answer = b""
            assert not answer.startswith(b"HTTP/")


# ---- paths and methods


DOCUMENTED = {("POST", "/mutate"), ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")}
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]
OTHER_PATHS = ["/", "/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect", "/mutate/", "/healthz/",
               "/readyz/", "/metrics/", "/MUTATE", "/Healthz", "/mutate/x", "/mutate.json",
               "/validate", "/convert", "/debug/pprof/", "/.env", "/.git/config", "/static/x", "/favicon.ico",
               "/metrics/x", "/healthz/x", "/%2e%2e/healthz", "/mutate%00"]


def test_documented_paths_and_methods_only(server: ServerThread) -> None:
    review = json.dumps(admission_review(pod())).encode()
    unexpected = []
    with server.client() as client:  # httpx follows no redirect unless asked
        for path in ["/mutate", "/healthz", "/readyz", "/metrics"]:
            for method in METHODS:
                reply = client.request(method, path, content=review if method == "POST" else None)
                if (method, path) in DOCUMENTED:
                    expected = {200}
                elif method == "HEAD" and ("GET", path) in DOCUMENTED:
                    expected = {200, 405}  # GET without the body, if at all (FastAPI routes do not add HEAD)
                else:
                    expected = {405}
                if reply.status_code not in expected:
                    unexpected.append((method, path, reply.status_code))
        for path in OTHER_PATHS:
            for method in METHODS:
                reply = client.request(method, path, content=review if method == "POST" else None)
                if reply.status_code != 404:
                    unexpected.append((method, path, reply.status_code))
    assert unexpected == []


def test_no_websocket_upgrade(server: ServerThread) -> None:
    headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    with server.client() as client:
        for path in ("/healthz", "/mutate", "/ws"):
            assert client.get(path, headers=headers).status_code != 101


# ---- logs


def _secret_bodies() -> list[bytes]:
    secret_env = [{"name": "TOKEN", "value": SECRET}, {"name": "NODE_OPTIONS", "value": f"--x={SECRET}"}]
    managed = pod(containers=[{"name": "app", "image": "a", "env": secret_env}],
                  annotations={"note": SECRET})
    unmanaged = pod(labels={"v4only.io/inject": "disabled"}, containers=[{"name": "a", "image": "a",
                                                                          "env": secret_env}])
    unreadable = pod(containers=[{"name": "a", "image": "a", "env": {"TOKEN": SECRET}}])  # env not a list
    null_container = pod(containers=[None, {"name": "a", "image": "a", "env": secret_env}])
    return [
        json.dumps(admission_review(managed)).encode(),
        json.dumps(admission_review(unmanaged)).encode(),
        json.dumps(admission_review(unreadable)).encode(),
        json.dumps(admission_review(null_container)).encode(),
        json.dumps({"kind": SECRET, "apiVersion": SECRET}).encode(),  # 400, the reason quotes the kind
        b'{"kind": "AdmissionReview", "x": "' + SECRET.encode() + b'"',  # not JSON
        json.dumps(admission_review(pod(annotations={"big": SECRET * 120_000}))).encode(),  # 413
    ]


def _post_all(client: httpx.Client) -> None:
    for body in _secret_bodies():
        assert client.post("/mutate", content=body, headers={"Content-Type": "application/json"}).status_code < 500


def test_logs_never_carry_bodies_or_env_values_in_process(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("uvicorn", "uvicorn.error", "webhook", "asyncio"):
        caplog.set_level(logging.DEBUG, logger=name)
    with ServerThread(make_tls(tmp_path), state=golden_state()) as running, running.client() as client:
        _post_all(client)

        # An internal error whose message quotes the pod (a bug of that shape): the log says where, not what.
        def broken(*args: Any, **kwargs: Any) -> Any:
            raise ValueError(f"cannot use {SECRET!r} from the pod")

        monkeypatch.setattr(app_module, "review_request", broken)
        reply = client.post("/mutate", content=json.dumps(admission_review(pod(), uid="uid-bug")).encode())
        assert reply.json()["response"]["warnings"] == [app_module.INTERNAL_ERROR_WARNING]
        # A uid with control characters cannot forge log lines.
        client.post("/mutate", content=json.dumps(admission_review(pod(), uid="a\nFAKE LOG LINE\x1b[31m")).encode())
    text = "\n".join(record.getMessage() + (record.exc_text or "") for record in caplog.records)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("uid=uid-bug" in r.getMessage() and "ValueError" in r.getMessage() for r in errors), text
    assert any(r.levelno == logging.DEBUG and r.name == "webhook.admission" for r in caplog.records)
    assert SECRET[:12] not in text
    assert "\nFAKE LOG LINE" not in text and "\x1b" not in text


def test_logs_never_carry_bodies_or_env_values_from_serve_at_debug(tmp_path: Path) -> None:
    """The real command line and its own logging set-up, at --log-level debug."""
    tls = make_tls(tmp_path)
    server = ServerProcess.cli(tls, "serve", "--dev", "--namespace-labels", "v4only.io/inject=enabled",
                               "--log-level", "debug")
    with server:
        # --dev makes its own CA: trust it for this client.
        ca = next(Path(line.split("certificates in ")[1].strip()) for line in server.log().splitlines()
                  if "certificates in " in line) / "ca.crt"
        context = ssl.create_default_context(cafile=str(ca))
        with httpx.Client(base_url=f"https://localhost:{server.port}", verify=context, timeout=10) as client:
            _post_all(client)
            assert client.get("/metrics").status_code == 200
    log = server.log()
    assert "DEBUG webhook.admission uid=" in log, log[-2000:]
    assert SECRET[:12] not in log


# ---- RBAC


def _rules(path: Path) -> set[tuple[str, str, str]]:
    granted = set()
    for document in yaml.safe_load_all(path.read_text()):
        for rule in document.get("rules") or []:
            assert "nonResourceURLs" not in rule and "resourceNames" not in rule
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        assert "*" not in (group, resource, verb), rule
                        granted.add((group, resource, verb))
    return granted


def test_the_roles_grant_everything_the_code_calls() -> None:
    granted = _rules(ROOT / "manifests/base/clusterrole.yaml") | _rules(ROOT / "manifests/base/role.yaml")
    assert granted >= rbac_used.SERVE, sorted(rbac_used.SERVE - granted)


def test_the_lease_role_grants_only_what_the_code_calls() -> None:
    assert _rules(ROOT / "manifests/base/role.yaml") == rbac_used.NAMESPACED


def test_the_cluster_role_grants_nothing_the_code_does_not_call() -> None:
    granted = _rules(ROOT / "manifests/base/clusterrole.yaml")
    assert granted - rbac_used.SERVE == set()
