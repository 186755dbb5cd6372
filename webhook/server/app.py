"""The HTTP edge: `POST /mutate` as a plain ASGI callable, everything else through FastAPI.

Why two layers: measured in reference/performance-notes.md, a FastAPI endpoint costs about 60 % of the
throughput this stack gives, and its middleware about a third even for a raw route. The admission
path is the only hot path, so the dispatcher hands `/mutate` straight to `AdmissionEndpoint` and sends
the small endpoints (`/healthz`, `/readyz`, `/metrics`) through FastAPI. `bench/admission.py` keeps
the figures honest: measured 2026-11-26 (server CPU per request, Chronicle pod, 16 connections), this
edge with a fixed answer costs ~25 us against the floor server's ~23 us; a replica answered from the
replica cache (server/replay.py) ~30 us; a new pod (orjson parse, decision, patch, response) ~60 us.
What is left to gain is in that work, not in HTTP.

Error channels (core/errors.py): a malformed call gets HTTP 400 with `{"error": ...}`; a body over
3 MiB gets 413 (the API server's own request limit is 3 MiB, apiserver `maxRequestBodyBytes`); an
object v4only cannot read, or any internal error, is admitted unchanged with a warning. Nothing here
logs pod contents: environment values never reach a log line (an internal error is logged with its
traceback's locations and exception type, never the exception's message, which could quote the pod).
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from webhook.core.admission import Review, build_response, parse_review, review_request
from webhook.core.errors import InvalidReview
from webhook.core.settings import Settings
from webhook.loops.state import ClusterState, View
from webhook.server.metrics import Metrics
from webhook.server.replay import ReplayCache, split_uid

log = logging.getLogger("webhook.admission")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY_BYTES = 3 * 1024 * 1024
_CONTENT_TYPE_JSON = (b"content-type", b"application/json")
INTERNAL_ERROR_WARNING = "v4only: internal error, pod admitted unchanged (see the webhook's log)"


class Lifecycle:
    """Readiness as the process sees it: `draining` turns /readyz false before shutdown."""

    def __init__(self) -> None:
        self.draining = False


class AdmissionEndpoint:
    def __init__(self, *, state: ClusterState, settings: Settings, metrics: Metrics) -> None:
        self.state, self.settings, self.metrics = state, settings, metrics
        self.replays = ReplayCache()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await _send_json(send, 405, {"error": "use POST with an AdmissionReview"})
            return
        body = await _read_body(scope, receive)
        started = time.perf_counter()
        if body is None:
            self.metrics.outcomes["too_large"].inc()
            await _send_json(send, 413, {"error": f"request body over {MAX_BODY_BYTES} bytes"})
            return
        status, answer = self.answer(body)
        await _send(send, status, answer)
        self.metrics.latency.observe(time.perf_counter() - started)

    def answer(self, body: bytes) -> tuple[int, bytes]:
        """The HTTP status and JSON body answering one request body."""
        split = split_uid(body)
        view = self._view()
        if view is not None:
            self.replays.rebase(view)
            if split is not None and (replay := self.replays.get(split[0])) is not None:
                self.metrics.replayed.inc()
                self._account(split[1], replay.namespace, replay.outcome, replay.applied, replay.ops)
                return 200, replay.render(split[1])
        status, payload, reviewed = self._answer_parsed(body, view)
        answer = orjson.dumps(payload)
        if split is not None and reviewed is not None:
            self.replays.put(split[0], split[1], reviewed[0], reviewed[1], answer)
        return status, answer

    def _view(self) -> View | None:
        try:
            return self.state.view()
        except Exception:  # reported by _answer_parsed, which asks again inside its guard
            return None

    def _answer_parsed(
        self, body: bytes, view: View | None
    ) -> tuple[int, Any, tuple[Mapping[str, Any], Review] | None]:
        """Status, payload, and (request, review) when the review can be replayed for the same body."""
        try:
            request = parse_review(_parse_json(body))
        except InvalidReview as error:
            self.metrics.outcomes["invalid"].inc()
            return 400, {"error": _clip(str(error))}, None
        except RecursionError:  # describing a value nested ~1,000 deep (orjson accepts up to 1,024)
            self.metrics.outcomes["invalid"].inc()
            return 400, {"error": "the body is not an AdmissionReview (a field is nested too deeply)"}, None
        try:
            view = view or self.state.view()
            review = review_request(
                request, namespaces=view.namespaces, capability=view.capability, settings=self.settings
            )
        except Exception as error:  # never block pod creation because of v4only itself
            log.error(
                "internal error on admission request uid=%s; admitted unchanged\n%s",
                _safe_uid(request.get("uid")),
                _redacted_traceback(error),
            )
            self.metrics.outcomes["error"].inc()
            return 200, build_response(str(request["uid"]), warnings=[INTERNAL_ERROR_WARNING]), None
        ops = len(review.plan.ops)
        self._account(request.get("uid"), request.get("namespace"), review.outcome, review.applied, ops)
        return 200, review.response, (request, review)

    def _account(self, uid: Any, namespace: Any, outcome: str, applied: str | None, ops: int) -> None:
        """`applied` as in `v4only.io/applied`: the remedy, and `+dns` when rule 7 added the DNS remedy."""
        self.metrics.outcomes[outcome].inc()
        if applied is not None:
            self.metrics.remedies[applied.removesuffix("+dns")].inc()
            if applied.endswith("+dns"):
                self.metrics.dns_remedies.inc()
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "uid=%s namespace=%s outcome=%s remedy=%s ops=%d",
                _safe_uid(uid),
                _safe_uid(namespace),
                outcome,
                applied,
                ops,
            )


def _parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InvalidReview(f"the body is not valid JSON ({str(error).split(':')[0]})") from None


def _clip(message: str, limit: int = 300) -> str:
    # A reason may quote a field of the body (`kind is '...'`); it never needs to be long.
    return message if len(message) <= limit else message[: limit - 3] + "..."


_UID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")


def _safe_uid(value: Any) -> str:
    """An identifier from the request, fit for a log line: at most 64 plain characters, nothing else."""
    if isinstance(value, bytes):  # a replayed request's uid, as cut from the body (plain ASCII: replay.py)
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        return f"({type(value).__name__})"
    shown = "".join(c if c in _UID_CHARS else "?" for c in value[:64])
    return shown + ("..." if len(value) > 64 else "")


def _redacted_traceback(error: BaseException) -> str:
    """Where it failed (type, files, lines, code) but never the exception's message: messages can carry pod
    contents (an environment value in a ValueError, a key in a KeyError), and logs must not."""
    lines = []
    for frame in traceback.extract_tb(error.__traceback__):
        lines.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}: {frame.line or ""}')
    lines.append(f"{type(error).__module__}.{type(error).__qualname__} (message withheld: it may quote the pod)")
    return "\n".join(lines)


async def _read_body(scope: Scope, receive: Receive) -> bytes | None:
    """The whole body, or None as soon as it passes MAX_BODY_BYTES (it is not buffered further)."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > MAX_BODY_BYTES:
            return None
    message = await receive()
    if not message.get("more_body", False):  # the usual case: the whole body in one message
        if message["type"] == "http.disconnect":
            return b""
        body: bytes = message.get("body", b"")
        return body if len(body) <= MAX_BODY_BYTES else None
    chunks: list[bytes] = []
    size = 0
    while True:
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
        message = await receive()


async def _send_json(send: Send, status: int, payload: Any) -> None:
    await _send(send, status, orjson.dumps(payload))


async def _send(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [_CONTENT_TYPE_JSON, (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


def create_app(
    *,
    state: ClusterState,
    settings: Settings,
    metrics: Metrics | None = None,
    lifecycle: Lifecycle | None = None,
) -> ASGIApp:
    """The whole ASGI application: `/mutate` raw, the rest through FastAPI."""
    metrics = metrics or Metrics()
    metrics.watch_dns(lambda: state.view().capability.dns)
    lifecycle = lifecycle or Lifecycle()
    admission = AdmissionEndpoint(state=state, settings=settings, metrics=metrics)
    small = _small_endpoints(state=state, metrics=metrics, lifecycle=lifecycle)

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/mutate":
            await admission(scope, receive, send)
        else:
            await small(scope, receive, send)

    return dispatch


def _small_endpoints(*, state: ClusterState, metrics: Metrics, lifecycle: Lifecycle) -> FastAPI:
    # Only the documented paths: no /docs, /redoc or /openapi.json on an admission webhook.
    # No slash redirects either: `/healthz/` is a 404, not a 307 to somewhere else.
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> Response:
        if lifecycle.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        if not state.ready:
            return JSONResponse({"status": "capability not known yet"}, status_code=503)
        return JSONResponse({"status": "ready", "capability": state.view().capability.state})

    @app.get("/metrics")
    def prometheus() -> Response:
        metrics.capability_ready.set(1 if state.ready else 0)
        age = state.age_seconds()
        metrics.capability_age.set(-1 if age is None else age)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
