"""FakeKube: a small Kubernetes API server on 127.0.0.1 that the real `kubernetes` client talks to over HTTP.

Tests start it, point the client at `kubeconfig_path()`, and drive faults while it serves. Response
shapes follow the apiserver (see status.py, registry.py, store.py for the sources); where the fake
is simpler than the real thing, the module that does it says so.
"""

from __future__ import annotations

import json
import queue
import re
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

import yaml

from . import objects
from .registry import Registry
from .resources import ResourceType, Route, by_kind, from_storage, parse_path
from .selectors import field_matcher, label_matcher
from .status import (
    ApiError,
    bad_request,
    forbidden,
    forbidden_path,
    method_not_allowed,
    route_not_found,
    service_unavailable,
    unauthorized,
)
from .store import Event, Obj, Store, Watcher, meta

TOKEN = "fakekube-token"
ALT_TOKEN = "fakekube-alt-token"
DEFAULT_USER = "system:serviceaccount:v4only:v4only"
ALT_USER = "system:serviceaccount:default:other"
# namespaces every cluster starts with
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
NODES = by_kind("Node")
_CONFIGZ_PATH = re.compile(r"^/api/v1/nodes/([^/]+)/proxy/configz$")
_REVIEWS = {
    "/apis/authorization.k8s.io/v1/subjectaccessreviews": "SubjectAccessReview",
    "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews": "SelfSubjectAccessReview",
    "/apis/authentication.k8s.io/v1/selfsubjectreviews": "SelfSubjectReview",
}
_TRUE = {"1", "t", "T", "true", "TRUE", "True"}  # Go strconv.ParseBool, as the apiserver parses booleans
_HTTP_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}
Visible = Callable[[Obj | None], bool]
_FLOW_SCHEMA_UID, _PRIORITY_UID = str(uuid.uuid4()), str(uuid.uuid4())


class RecordedRequest(NamedTuple):
    method: str
    path: str
    query: dict[str, str]
    body: Any  # parsed JSON, or the raw text when it is not JSON, or None
    content_type: str
    user: str | None  # None when the bearer token was missing or wrong

    @property
    def dry_run(self) -> bool:
        return self.query.get("dryRun") == "All"


@dataclass
class _Configz:
    body: Any = None  # None: objects.kubelet_config()
    status: int = 200
    delay: float = 0.0


@dataclass
class _ForbidRule:
    method: str  # HTTP method ("GET"), Kubernetes verb ("watch") or "*"
    pattern: re.Pattern[str]
    user: str | None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # restart() binds the same port again at once

    def __init__(self, port: int, kube: FakeKube) -> None:
        self.kube = kube
        super().__init__(("127.0.0.1", port), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up mid-stream is routine here (broken watches, stop()); stay quiet."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked watch streams, as the apiserver speaks
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Go's net package sets TCP_NODELAY on every TCP connection, the apiserver's included; without it the
        # headers and body written apart wait for the client's delayed ACK (~40 ms a request).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.kube._track(self.connection, open_=True)

    def finish(self) -> None:
        self.server.kube._track(self.connection, open_=False)
        super().finish()

    def _serve(self) -> None:
        self.server.kube._handle(self)

    def send_response(self, code: int, message: str | None = None) -> None:
        # as BaseHTTPRequestHandler's, minus the Server header, which the apiserver does not send
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FakeKube:
    """An in-memory API server with fault injection. Use as a context manager or start()/stop()."""

    def __init__(self, *, user: str = DEFAULT_USER, alt_user: str = ALT_USER, history_size: int = 1000,
                 default_watch_timeout: float = 60.0, bookmark_interval: float = 60.0,
                 version: str = "v1.33.1") -> None:
        self.users = {TOKEN: user, ALT_TOKEN: alt_user}
        self.default_watch_timeout = default_watch_timeout  # the real one is 30-60 min; tests want less
        self.bookmark_interval = bookmark_interval  # cacher's bookmarkFrequency is 1 minute
        self.version = version
        self.store = Store(history_size)
        self.registry = Registry(self.store)
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._forbid: list[_ForbidRule] = []
        self._configz: dict[str, _Configz] = {}
        self._configz_calls: dict[str, int] = {}
        self._denied_node_subresources: set[tuple[str | None, str]] = set()
        self._hang = threading.Event()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        for name in SYSTEM_NAMESPACES:
            self.registry.put(objects.namespace(name))

    # ------------------------------------------------------------------------------- lifecycle

    def start(self) -> FakeKube:
        self._stopping.clear()
        self._server = _Server(self._port, self)
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fakekube:{self._port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: the port refuses connections and every open connection is cut."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes delayed configz answers
        server.shutdown()
        server.server_close()
        self.break_watches()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # idle keep-alive connections too: the client must reconnect
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _track(self, conn: socket.socket, *, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def restart(self) -> None:
        """Serve again on the same port, with the same objects and history (etcd survived)."""
        self.stop()
        self.start()

    def __enter__(self) -> FakeKube:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def kubeconfig_path(self, tmp_dir: Path | str, *, second_context: str | None = None,
                        certificate_authority: Path | None = None) -> Path:
        """Write a kubeconfig: context "fakekube" (current) authenticates as `user`; the optional
        second context authenticates with another token as `alt_user`. `certificate_authority` is the
        cluster CA the client loads (the fake serves plain HTTP; fake kubelets chain to this CA)."""
        contexts = [{"name": "fakekube", "context": {"cluster": "fakekube", "user": "fakekube", "namespace": "default"}}]
        users = [{"name": "fakekube", "user": {"token": TOKEN}}]
        if second_context:
            contexts.append({"name": second_context, "context": {"cluster": "fakekube", "user": "fakekube-alt"}})
            users.append({"name": "fakekube-alt", "user": {"token": ALT_TOKEN}})
        cluster: dict[str, str] = {"server": self.url}
        if certificate_authority is not None:
            cluster["certificate-authority"] = str(certificate_authority)
        config = {"apiVersion": "v1", "kind": "Config", "preferences": {}, "current-context": "fakekube",
                  "clusters": [{"name": "fakekube", "cluster": cluster}],
                  "contexts": contexts, "users": users}
        path = Path(tmp_dir) / "kubeconfig"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    # ------------------------------------------------------------------------- fault injection

    def set_configz(self, node: str, body: Any = None, *, status: int = 200, delay: float = 0.0) -> None:
        """How GET /api/v1/nodes/NODE/proxy/configz answers.

        body: dict (sent as JSON), str/bytes (sent as is), None (objects.kubelet_config()).
        status 200: the kubelet's answer. 403: RBAC denial of nodes/proxy. 503: the apiserver cannot dial
        the kubelet (a str body replaces the dial error, e.g. "dial tcp 10.0.0.5:10250: i/o timeout").
        Any other status: passed through as the kubelet's (or a middlebox's) own answer.
        delay: seconds to wait before answering (0.. ; cut short by stop()).
        """
        with self._lock:
            self._configz[node] = _Configz(body, status, delay)

    def configz_body(self, node: str) -> Any:
        """What `set_configz` scripted for the node's kubelet (objects.kubelet_config() if nothing)."""
        with self._lock:
            cfg = self._configz.get(node, _Configz())
        return objects.kubelet_config() if cfg.body is None else cfg.body

    def deny_node_subresource(self, subresource: str, *, user: str | None = None) -> None:
        """RBAC has no `get nodes/<subresource>` for `user` (None: anyone), as a kubelet's SubjectAccessReview
        sees it (tests/fakekube/kubelet.py). Everything is allowed until denied, like the rest of the fake."""
        with self._lock:
            self._denied_node_subresources.add((user, subresource))

    def node_subresource_allowed(self, user: str, subresource: str) -> bool:
        with self._lock:
            denied = self._denied_node_subresources
            return (None, subresource) not in denied and (user, subresource) not in denied

    def configz_count(self, node: str) -> int:
        with self._lock:
            return self._configz_calls.get(node, 0)

    @property
    def configz_calls(self) -> dict[str, int]:
        with self._lock:
            return dict(self._configz_calls)

    def forbid(self, method: str, path_regex: str, *, user: str | None = None) -> None:
        """Answer 403 (RBAC-shaped) to matching requests. `method` is an HTTP method, a Kubernetes verb
        (get, list, watch, create, update, patch, delete) or "*"; `path_regex` is searched in the path."""
        with self._lock:
            self._forbid.append(_ForbidRule(method, re.compile(path_regex), user))

    def clear_forbidden(self) -> None:
        with self._lock:
            self._forbid.clear()

    def conflict_next(self, kind: str, name: str, times: int = 1, *, namespace: str | None = None) -> None:
        """The next `times` updates/patches of this object answer 409 Conflict (kind: "Deployment" or
        "deployments"; namespace None matches any)."""
        self.registry.conflict_next(by_kind(kind), name, namespace, times)

    def break_watches(self) -> int:
        """Cut every open watch stream mid-chunk; returns how many were cut."""
        watchers = self.store.watchers()
        for watcher in watchers:
            watcher.break_stream()
        return len(watchers)

    def hang_watches(self, hang: bool = True) -> None:
        """While hung, open watch streams stay open but send nothing and ignore their timeoutSeconds, like
        a stalled connection. Held events go out after release (or replay to a client resuming from its
        last resourceVersion)."""
        if hang:
            self._hang.set()
        else:
            self._hang.clear()

    def compact(self) -> None:
        """Drop the event history: a watch or Exact list from any older resourceVersion gets 410."""
        self.store.compact()

    @property
    def watch_count(self) -> int:
        return len(self.store.watchers())

    def wait_for_watches(self, count: int = 1, timeout: float = 5.0) -> bool:
        """Wait until at least `count` watch streams are open (to sequence a test after a watch starts).
        Counted as the server sees them: a stream the client dropped counts until its next write."""
        deadline = time.monotonic() + timeout
        while self.watch_count < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    # ---------------------------------------------------------------------------- state access

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    @property
    def resource_version(self) -> str:
        return str(self.store.resource_version)

    def put_object(self, obj: Obj) -> Obj:
        """Create or replace an object directly (no validation; status kept); watchers see the event."""
        return self.registry.put(obj)

    def delete_object(self, kind: str, name: str, namespace: str = "default", *,
                      api_version: str | None = None) -> bool:
        rt = by_kind(kind, api_version)
        return self.registry.remove(rt, namespace if rt.namespaced else "", name)

    def get_object(self, kind: str, name: str, namespace: str = "default", *,
                   api_version: str | None = None) -> Obj | None:
        rt = by_kind(kind, api_version)
        obj = self.store.get(self.registry.key(rt, namespace if rt.namespaced else "", name))
        return from_storage(rt, obj) if obj is not None else None

    def list_objects(self, kind: str, namespace: str = "", *, api_version: str | None = None) -> list[Obj]:
        rt = by_kind(kind, api_version)
        return [from_storage(rt, o) for o in self.store.items(rt.store_key, namespace)]

    # ------------------------------------------------------------------------- request handling

    def _handle(self, h: _Handler) -> None:
        if self._stopping.is_set():  # accepted in the instant before stop(): a dying server just hangs up
            h.close_connection = True
            return
        url = urlsplit(h.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        content_type = h.headers.get("Content-Type", "")
        raw = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        body: Any = None
        body_error = ""
        if raw:
            try:
                body = json.loads(raw)
            except ValueError as exc:
                body, body_error = raw.decode(errors="replace"), str(exc)
        auth = h.headers.get("Authorization", "")
        user = self.users.get(auth.removeprefix("Bearer ")) if auth.startswith("Bearer ") else None
        with self._lock:
            self._requests.append(RecordedRequest(h.command, url.path, query, body, content_type, user))
            if m := _CONFIGZ_PATH.match(url.path):
                self._configz_calls[m[1]] = self._configz_calls.get(m[1], 0) + 1
        try:
            if user is None:
                raise unauthorized()
            route = parse_path(url.path)
            self._authorize(h.command, url.path, query, route, user)
            if body_error:
                raise bad_request(f"couldn't get version/kind; json parse error: {body_error}")
            self._route(h, url.path, query, route, body, content_type, user)
        except ApiError as error:
            self._send_json(h, error.code, error.body)
        except OSError:
            h.close_connection = True  # the client went away

    def _authorize(self, method: str, path: str, query: dict[str, str], route: Route | None, user: str) -> None:
        verb = _verb(method, query, route)
        with self._lock:
            rules = list(self._forbid)
        for rule in rules:
            if rule.method not in ("*", method, verb) or not rule.pattern.search(path):
                continue
            if rule.user not in (None, user):
                continue
            if route is None:
                raise forbidden_path(user, method.lower(), path)
            rt = route.rtype
            raise forbidden(user, verb, rt.group, rt.plural, "/".join(route.subresource[:1]), route.namespace,
                            route.name)

    def _route(self, h: _Handler, path: str, query: dict[str, str], route: Route | None, body: Any,
               content_type: str, user: str) -> None:
        if path in ("/version", "/version/") and h.command == "GET":
            self._send_json(h, 200, self._version_info())
        elif path in _REVIEWS and h.command == "POST":
            self._review(h, _REVIEWS[path], body if isinstance(body, dict) else {}, user)
        elif route is None:
            raise route_not_found()
        elif route.rtype == NODES and route.subresource[:1] == ("proxy",) and route.name:
            self._node_proxy(h, route.name, "/".join(route.subresource[1:]), user)
        elif route.subresource not in ((), ("status",)):
            raise route_not_found()
        elif route.name:
            self._item(h, route, query, body, content_type)
        else:
            self._collection(h, route, query, body)

    def _collection(self, h: _Handler, route: Route, query: dict[str, str], body: Any) -> None:
        rt, namespace = route.rtype, route.namespace
        if h.command == "GET" and query.get("watch") in _TRUE:
            self._watch(h, rt, namespace, query)
        elif h.command == "GET":
            self._send_json(h, 200, self.registry.list(rt, namespace, query))
        elif h.command == "POST" and (namespace or not rt.namespaced):
            created = self.registry.create(rt, namespace, _object_body(body), dry_run=_dry_run(query))
            self._send_json(h, 201, created)
        else:  # deletecollection is not modelled
            raise method_not_allowed()

    def _item(self, h: _Handler, route: Route, query: dict[str, str], body: Any, content_type: str) -> None:
        rt, namespace, name = route.rtype, route.namespace, route.name
        subresource, dry_run = "/".join(route.subresource), _dry_run(query)
        if h.command == "GET":
            result = self.registry.get(rt, namespace, name)
        elif h.command == "PUT":
            result = self.registry.update(rt, namespace, name, _object_body(body), subresource=subresource,
                                          dry_run=dry_run)
        elif h.command == "PATCH":
            result = self.registry.patch(rt, namespace, name, content_type, body, subresource=subresource,
                                         dry_run=dry_run)
        elif h.command == "DELETE" and not subresource:
            options = body if isinstance(body, dict) else None
            result = self.registry.delete(rt, namespace, name, options, dry_run=dry_run)
        else:
            raise method_not_allowed()
        self._send_json(h, 200, result)

    def _version_info(self) -> Obj:
        major, minor, *_ = self.version.lstrip("v").split(".")
        return {"major": major, "minor": minor, "gitVersion": self.version, "gitCommit": "0" * 40,
                "gitTreeState": "clean", "buildDate": "2025-05-15T08:00:00Z", "goVersion": "go1.24.2",
                "compiler": "gc", "platform": "linux/amd64"}

    @staticmethod
    def _send_json(h: _Handler, code: int, body: Any) -> None:
        _send(h, code, json.dumps(body, separators=(",", ":")).encode(), "application/json")

    # --------------------------------------------------------------------------- access reviews

    def _review(self, h: _Handler, kind: str, body: dict[str, Any], user: str) -> None:
        """POST of a SubjectAccessReview, SelfSubjectAccessReview or SelfSubjectReview: the object back with
        `status` (201 Created), as the API reference shows them. The fake's authorizer knows only the node
        subresources (`deny_node_subresource`); everything else is allowed, as the rest of the fake is."""
        if body.get("kind") != kind:
            raise bad_request(f"expected kind {kind}, got {body.get('kind')!r}")
        spec = body.get("spec") or {}
        if kind == "SelfSubjectReview":
            status: dict[str, Any] = {"userInfo": {"username": user, "groups": ["system:authenticated"]}}
        else:
            subject = spec.get("user", "") if kind == "SubjectAccessReview" else user
            attrs = spec.get("resourceAttributes") or {}
            allowed = True
            if attrs.get("resource") == "nodes" and attrs.get("subresource"):
                allowed = self.node_subresource_allowed(subject, str(attrs["subresource"]))
            status = {"allowed": allowed} if allowed else {"allowed": False, "reason": ""}
        self._send_json(h, 201, {**body, "metadata": {"creationTimestamp": None}, "status": status})

    # ------------------------------------------------------------------------------ node proxy

    def _node_proxy(self, h: _Handler, name: str, path: str, user: str) -> None:
        """GET /api/v1/nodes/NAME/proxy/PATH, answered as if the apiserver reached the node's kubelet."""
        node = self.registry.get(NODES, "", name)  # 404 for an unknown node, before any dialling
        if path != "configz":  # the kubelet's mux: healthz answers "ok", unknown paths its plain 404
            found = path == "healthz"
            _send(h, 200 if found else 404, b"ok" if found else b"404 page not found\n", "text/plain; charset=utf-8")
            return
        with self._lock:
            cfg = self._configz.get(name, _Configz())
        if cfg.delay and self._stopping.wait(cfg.delay):
            h.close_connection = True  # stopped while "waiting for the kubelet": the connection just dies
            return
        if cfg.status == 403 or not self.node_subresource_allowed(user, "proxy"):  # the same RBAC the kubelet asks
            raise forbidden(user, "get", "", "nodes", "proxy", "", name)
        if cfg.status == 503:
            # k8s.io/apimachinery/pkg/util/proxy/transport.go RoundTrip: a failed dial becomes
            # errors.NewServiceUnavailable(fmt.Sprintf("error trying to reach service: %v", err))
            ip, port = _kubelet_endpoint(node)
            dial_error = cfg.body if isinstance(cfg.body, str) else f"dial tcp {ip}:{port}: connect: connection refused"
            raise service_unavailable(f"error trying to reach service: {dial_error}")
        body = objects.kubelet_config() if cfg.body is None and cfg.status == 200 else cfg.body
        if isinstance(body, dict | list):
            # component-base configz.handle sets Content-Type application/json
            _send(h, cfg.status, json.dumps(body, separators=(",", ":")).encode(), "application/json")
        else:
            data = body.encode() if isinstance(body, str) else bytes(body or b"")
            _send(h, cfg.status, data, "text/plain; charset=utf-8")

    # ----------------------------------------------------------------------------------- watch

    def _watch(self, h: _Handler, rt: ResourceType, namespace: str, query: dict[str, str]) -> None:
        """Stream watch events as newline-delimited JSON in HTTP chunks (endpoints/handlers/watch.go)."""
        labels = label_matcher(query.get("labelSelector"))
        fields = field_matcher(rt, query.get("fieldSelector"))
        rv = query.get("resourceVersion", "")
        if rv not in ("", "0") and not rv.isdigit():
            raise bad_request(f"invalid resource version: {rv!r}")
        timeout = _seconds(query.get("timeoutSeconds")) or self.default_watch_timeout
        stream = _ChunkedStream(h)
        try:
            watcher, replay = self.store.watch(rt.store_key, int(rv) if rv not in ("", "0") else None)
        except ApiError as error:
            # cacher.Watch: once the request is accepted, errors go out as an ERROR event in a 200 stream
            stream.start()
            stream.send({"type": "ERROR", "object": error.body})
            stream.end()
            return
        watcher.sock = h.connection

        def visible(obj: Obj | None) -> bool:
            if obj is None or (namespace and meta(obj).get("namespace") != namespace):
                return False
            view = from_storage(rt, obj)
            return labels(meta(view).get("labels") or {}) and fields(view)

        try:
            stream.start()
            self._pump(stream, watcher, rt, replay, visible, timeout, query.get("allowWatchBookmarks") in _TRUE)
        except OSError:
            h.close_connection = True
        finally:
            self.store.unwatch(watcher)

    def _pump(self, stream: _ChunkedStream, watcher: Watcher, rt: ResourceType, replay: list[Event],
              visible: Visible, timeout: float, bookmarks: bool) -> None:
        pending = deque(replay)
        sent_rv = watcher.start_rv  # the stream has covered every revision up to here (for BOOKMARKs)
        start = time.monotonic()
        deadline = start + timeout
        next_bookmark = _next_bookmark(start, deadline, self.bookmark_interval) if bookmarks else None
        while True:
            if watcher.broken.is_set():
                stream.abort()
                return
            if self._hang.is_set():  # hold everything back, deadline included
                watcher.broken.wait(0.05)
                continue
            if pending:
                self._send_event(stream, rt, pending.popleft(), visible)
                continue
            now = time.monotonic()
            if now >= deadline:
                break
            if next_bookmark is not None and now >= next_bookmark:
                # a BOOKMARK carries only the type's kind/apiVersion and the resourceVersion reached
                stream.send({"type": "BOOKMARK", "object": {
                    "kind": rt.kind, "apiVersion": rt.api_version, "metadata": {"resourceVersion": str(sent_rv)}}})
                next_bookmark = _next_bookmark(now, deadline, self.bookmark_interval)
            try:
                event = watcher.events.get(timeout=0.05)
            except queue.Empty:
                continue
            sent_rv = max(sent_rv, event.rv)
            pending.append(event)
        stream.end()

    @staticmethod
    def _send_event(stream: _ChunkedStream, rt: ResourceType, event: Event, visible: Visible) -> None:
        """cacher.go convertToWatchEvent: selector transitions turn MODIFIED into ADDED or DELETED."""
        now_visible = event.type != "DELETED" and visible(event.obj)
        was_visible = visible(event.prev)
        if now_visible:
            kind, obj = ("MODIFIED" if was_visible else "ADDED"), event.obj
        elif was_visible:
            assert event.prev is not None
            kind, obj = "DELETED", {**event.prev, "metadata": {**meta(event.prev), "resourceVersion": str(event.rv)}}
        else:
            return
        stream.send({"type": kind, "object": from_storage(rt, obj)})


class _ChunkedStream:
    """HTTP/1.1 chunked transfer of one JSON document per line."""

    def __init__(self, h: _Handler) -> None:
        self.h = h

    def start(self) -> None:
        self.h.send_response(200)
        for name, value in _headers("application/json").items():
            self.h.send_header(name, value)
        self.h.send_header("Transfer-Encoding", "chunked")
        self.h.end_headers()
        self.h.wfile.flush()

    def send(self, document: Obj) -> None:
        data = json.dumps(document, separators=(",", ":")).encode() + b"\n"
        self.h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.h.wfile.flush()

    def end(self) -> None:
        self.h.wfile.write(b"0\r\n\r\n")
        self.h.wfile.flush()

    def abort(self) -> None:
        self.h.close_connection = True  # no terminating chunk: the client sees a truncated stream


def _seconds(value: str | None) -> float:
    try:
        return float(value or 0)
    except ValueError:
        raise bad_request(f"invalid value for timeoutSeconds: {value!r}") from None


def _dry_run(query: dict[str, str]) -> bool:
    return query.get("dryRun") == "All"


def _object_body(body: Any) -> Obj:
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    return body


def _headers(content_type: str) -> dict[str, str]:
    """The headers every apiserver response carries (audit id, API Priority and Fairness uids)."""
    return {"Audit-Id": str(uuid.uuid4()), "Cache-Control": "no-cache, private", "Content-Type": content_type,
            "X-Kubernetes-Pf-Flowschema-Uid": _FLOW_SCHEMA_UID, "X-Kubernetes-Pf-Prioritylevel-Uid": _PRIORITY_UID}


def _send(h: _Handler, code: int, data: bytes, content_type: str) -> None:
    h.send_response(code)
    for name, value in _headers(content_type).items():
        h.send_header(name, value)
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    h.wfile.write(data)
    h.wfile.flush()


def _verb(method: str, query: dict[str, str], route: Route | None) -> str:
    """The authorization verb the apiserver's RequestInfoFactory derives."""
    if method == "GET":
        if route is not None and not route.name:
            return "watch" if query.get("watch") in _TRUE else "list"
        return "get"
    if method == "DELETE":
        return "deletecollection" if route is not None and not route.name else "delete"
    return _HTTP_VERBS.get(method, method.lower())


def _next_bookmark(now: float, deadline: float, interval: float) -> float | None:
    """cacheWatcher.nextBookmarkTime: every `interval`, and 2 s before the watch's deadline."""
    when = min(now + interval, deadline - 2.0)
    return when if when >= now else None


def _kubelet_endpoint(node: Obj) -> tuple[str, int]:
    status = node.get("status") or {}
    ips = [a["address"] for a in status.get("addresses") or [] if a.get("type") == "InternalIP"]
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port", 10250)
    return (ips[0] if ips else "10.0.0.1"), port
