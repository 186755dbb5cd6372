"""The two servers the admission benchmark compares, each run as its own process.

`v4only`: the real app (`webhook.edges.serve.build_server`) with a static capability of three nodes
that allow the sysctl, so every review takes the full decision-and-patch path.
`floor`: the same uvicorn, uvloop, httptools and TLS set-up, answering a fixed allow response with no
work at all: the best this stack can do, so the ratio isolates v4only's own cost.
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn
import uvloop

from webhook.adapters.tls import ReloadingTLS
from webhook.core.capability import Capability, NodeFacts
from webhook.core.settings import Settings
from webhook.edges.serve import ServeOptions, build_server
from webhook.edges.state import ClusterState

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
    config = uvicorn.Config(
        floor_app,
        host="127.0.0.1",
        port=port,
        lifespan="off",
        access_log=False,
        log_config=None,
        ssl_context_factory=lambda _c, _d: tls.context,
    )
    uvloop.run(uvicorn.Server(config).serve())


def run_v4only(port: int, cert: str, key: str) -> None:
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
    server, _ = build_server(options)
    uvloop.run(server.serve())


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("which", choices=("floor", "v4only"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    (run_floor if args.which == "floor" else run_v4only)(args.port, args.cert, args.key)
