"""A kubelet's HTTPS endpoint (port 10250 on a real node) answering GET /configz, on 127.0.0.1 with real TLS.

What it does, after the kubelet's server (pkg/kubelet/server/server.go InstallAuthFilter, auth.go):
- authentication: the bearer token is looked up in the FakeKube's users (the kubelet's webhook token
  authenticator asks the API server with a TokenReview); none or unknown -> 401 "Unauthorized".
  `token_auth=False` is a kubelet with `authentication.webhook.enabled: false`: only client certificates
  (the API server's own) authenticate, so every bearer token gets 401.
- authorization: with KubeletFineGrainedAuthz on (default from 1.33), /configz is checked as `get` on
  `nodes/configz` first, then `nodes/proxy`; with the gate off only `nodes/proxy`. The first allowed
  attribute wins. A denial is 403 with text `Forbidden (user=U, verb=get, resource=nodes, subresource(s)=[..])`.
- the body is component-base configz's JSON: {"kubeletconfig": {...}}.
The RBAC decision comes from `FakeKube.node_subresource_allowed` (the kubelet's SubjectAccessReview).
Every request is recorded with whether it carried a token, so tests can assert none reached a kubelet
that did not verify.
"""

from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from . import objects

if TYPE_CHECKING:
    from .server import FakeKube


class KubeletRequest(NamedTuple):
    path: str
    authorization: str | None


class FakeKubelet:
    def __init__(self, kube: FakeKube, node: str, cert_file: Path, key_file: Path, *,
                 fine_grained: bool = True, token_auth: bool = True,
                 allowed_unsafe_sysctls: tuple[str, ...] | None = None) -> None:
        self.kube, self.node, self.fine_grained, self.token_auth = kube, node, fine_grained, token_auth
        # None: answer what `FakeKube.set_configz` scripts for the node at the time of each request, so one
        # call scripts the kubelet whichever path reads it (direct here, or the API server's node proxy).
        self.body: Any = None if allowed_unsafe_sysctls is None else objects.kubelet_config(allowed_unsafe_sysctls)
        self.requests: list[KubeletRequest] = []
        self.handshakes = 0  # TLS connections accepted (completed or not)
        self._lock = threading.Lock()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        kubelet = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                kubelet._serve(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self) -> tuple[Any, Any]:
                sock, address = self.socket.accept()
                with kubelet._lock:
                    kubelet.handshakes += 1
                return context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that rejects our certificate aborts the handshake: expected in tests

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fakekubelet:{node}", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> FakeKubelet:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        header = h.headers.get("Authorization")
        with self._lock:
            self.requests.append(KubeletRequest(h.path, header))
        token = header[7:] if header and header[:7].lower() == "bearer " else None
        user = self.kube.users.get(token or "") if self.token_auth else None
        if user is None:
            _send(h, 401, b"Unauthorized\n", "text/plain; charset=utf-8")
            return
        if h.path != "/configz":
            _send(h, 404, b"404 page not found\n", "text/plain; charset=utf-8")
            return
        subresources = ["configz", "proxy"] if self.fine_grained else ["proxy"]
        if not any(self.kube.node_subresource_allowed(user, s) for s in subresources):
            message = f"Forbidden (user={user}, verb=get, resource=nodes, subresource(s)=[{' '.join(subresources)}])\n"
            _send(h, 403, message.encode(), "text/plain; charset=utf-8")
            return
        body = self.kube.configz_body(self.node) if self.body is None else self.body
        _send(h, 200, json.dumps(body, separators=(",", ":")).encode(), "application/json")


def _send(h: BaseHTTPRequestHandler, status: int, data: bytes, content_type: str) -> None:
    h.send_response(status)
    h.send_header("Content-Type", content_type)
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    h.wfile.write(data)
