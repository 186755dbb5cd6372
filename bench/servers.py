"""The two servers the admission benchmark compares, each run as its own process.

`v4only`: the real app (`webhook.cli.serve.build_server`) with a static capability of three nodes
that allow the sysctl, so every review takes the full decision-and-patch path.
`floor`: the same uvicorn settings (`serve.uvicorn_config`), uvloop, httptools and TLS set-up, answering a
fixed allow response with no work at all: the best this stack can do, so the ratio isolates v4only's own cost.
For `bench/admission.py --breakdown`, two halfway servers: the real app whose `AdmissionEndpoint.answer` is
replaced by a fixed answer of the same size (`v4only-fixed`: the HTTP edge alone), or by orjson.loads of the
body and that fixed answer (`v4only-parse`: the edge and the JSON parsing), or the real app with the replica
cache never storing (`v4only-noreplay`: what the cache costs when nothing repeats).
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn
import uvloop

from webhook.adapters.tls import ReloadingTLS
from webhook.cli.serve import ServeOptions, build_server, uvicorn_config
from webhook.core.capability import Capability, NodeFacts
from webhook.core.settings import Settings
from webhook.loops.state import ClusterState

FIXED = b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"fixed","allowed":true}}'


async def floor_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(FIXED)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": FIXED})


def run_floor(port: int, cert: str, key: str) -> None:
    tls = ReloadingTLS(cert, key)
    # The very uvicorn settings v4only runs with, so the ratio isolates v4only's own work.
    config = uvicorn_config(floor_app, host="127.0.0.1", port=port, tls=tls)
    uvloop.run(uvicorn.Server(config).serve())


def run_v4only(port: int, cert: str, key: str, variant: str = "") -> None:
    settings = Settings()
    nodes = [
        NodeFacts(name=f"worker-{i}", labels={"node-role.kubernetes.io/worker": "true"}, allowlist=("net.ipv6.*",))
        for i in range(3)
    ]
    capability = Capability.build(nodes, sysctl_names=settings.sysctl_names, labels_published=True)
    state = ClusterState.static(
        capability, {"chronicle": {"v4only.io/inject": "enabled"}, "team-a": {"v4only.io/inject": "enabled"}}
    )
    options = ServeOptions(
        host="127.0.0.1", port=port, cert_file=cert, key_file=key, settings=settings, state=state, drain_seconds=0
    )
    if variant:
        _replace_answer(variant, state, settings)
    server, _ = build_server(options)
    uvloop.run(server.serve())


def _replace_answer(variant: str, state: ClusterState, settings: Settings) -> None:
    import orjson

    from webhook.server import app
    from webhook.server.metrics import Metrics

    real = app.AdmissionEndpoint(state=state, settings=settings, metrics=Metrics())
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "operation": "CREATE",
        "namespace": "team-a", "object": {"metadata": {"labels": {"v4only.io/inject": "enabled"}},
                                          "spec": {"containers": [{"name": "a", "image": "b"}]}}}}
    fixed = real.answer(orjson.dumps(review))  # an answer of the usual size, computed once

    def fixed_answer(_self: app.AdmissionEndpoint, _body: bytes) -> tuple[int, bytes]:
        return fixed

    def parse_answer(_self: app.AdmissionEndpoint, body: bytes) -> tuple[int, bytes]:
        orjson.loads(body)
        return fixed

    if variant == "noreplay":
        from webhook.server.replay import ReplayCache

        ReplayCache.put = lambda *_args: None  # type: ignore[method-assign]
        return
    replacement = fixed_answer if variant == "fixed" else parse_answer
    app.AdmissionEndpoint.answer = replacement  # type: ignore[method-assign,assignment]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("which", choices=("floor", "v4only", "v4only-fixed", "v4only-parse", "v4only-noreplay"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    if args.which == "floor":
        run_floor(args.port, args.cert, args.key)
    else:
        run_v4only(args.port, args.cert, args.key, args.which.removeprefix("v4only").removeprefix("-"))
