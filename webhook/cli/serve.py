"""`v4only serve`: the webhook over HTTPS (uvicorn), with certificate reload and graceful shutdown.

Production needs `--cert-file` and `--key-file`; there is no plain-HTTP listener. `--dev` makes a CA
and a serving certificate under a temporary directory and uses a static capability, so it runs on a
laptop with no cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
import uvloop
from uvicorn.server import HANDLED_SIGNALS

from webhook.adapters.kube import KubeApi
from webhook.adapters.kubelet import KubeletConfigz
from webhook.adapters.tls import ReloadingTLS
from webhook.cli.usage import KUBECONFIG_HELP, UsageError, connect, load_settings, parse_labels
from webhook.core import certs
from webhook.core.capability import Capability
from webhook.core.settings import Settings
from webhook.loops.state import ClusterState, UniformNamespaces
from webhook.patcher.reconciler import start_reconciler
from webhook.server.app import Lifecycle, create_app
from webhook.server.metrics import Metrics
from webhook.server.read_deadline import READ_DEADLINE_SECONDS, with_read_deadline
from webhook.tracker.start import start_tracker

log = logging.getLogger("webhook.serve")

DEV_POD = (
    '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"dev-1",'
    '"kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"default",'
    '"object":{"metadata":{"generateName":"demo-","labels":{"v4only.io/inject":"enabled"}},'
    '"spec":{"containers":[{"name":"app","image":"ghcr.io/example/app:1"}]}}}}'
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("serve", help="run the admission webhook (HTTPS)")
    parser.add_argument("--host", default=None, help="address to bind (default 0.0.0.0; 127.0.0.1 with --dev)")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--cert-file", help="PEM serving certificate (reloaded when it changes)")
    parser.add_argument("--key-file", help="PEM private key of the serving certificate")
    parser.add_argument("--config", help="settings YAML (the v4only-config ConfigMap's config.yaml)")
    parser.add_argument("--dev", action="store_true", help="self-signed certificate, static capability, no cluster")
    parser.add_argument(
        "--assume",
        choices=("allowed", "forbidden"),
        default="allowed",
        help="with --dev: the static node capability (default allowed)",
    )
    parser.add_argument("--namespace-labels", help="with --dev: labels every namespace is taken to have (k=v,...)")
    parser.add_argument("--kubeconfig", metavar="FILE", help=KUBECONFIG_HELP)
    parser.add_argument("--context", help="kubeconfig context")
    parser.add_argument(
        "--publish-node-labels",
        action="store_true",
        help="one elected replica keeps v4only.io/ipv6-sysctl on nodes (needed for sysctl+affinity)",
    )
    parser.add_argument(
        "--reconcile",
        action="store_true",
        help="one elected replica rescues SysctlForbidden pods and restarts a namespace's workloads when it "
        "opts in (needs the optional manifests/patcher role)",
    )
    parser.add_argument("--drain-seconds", type=float, default=5.0, help="time /readyz fails before exit")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    parser.set_defaults(func=run)


@dataclass
class ServeOptions:
    host: str
    port: int
    cert_file: str
    key_file: str
    settings: Settings
    state: ClusterState
    drain_seconds: float = 5.0
    reload_interval: float = 1.0
    read_deadline_seconds: float = READ_DEADLINE_SECONDS  # a request not fully read by then: connection closed
    # Started with the server, each returning its stop function (the capability tracker, the reconciler).
    background: list[Callable[[], Callable[[], None]]] = field(default_factory=list)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = load_settings(args.config)
    if not args.dev:
        serve(_production_options(args, settings))
        return 0
    with tempfile.TemporaryDirectory(prefix="v4only-dev-") as directory:  # the dev key goes with the process
        serve(_dev_options(args, settings, Path(directory)))
    return 0


def _dev_options(args: argparse.Namespace, settings: Settings, directory: Path) -> ServeOptions:
    if args.reconcile or args.publish_node_labels:
        raise UsageError("--dev has no cluster: --reconcile and --publish-node-labels need one")
    host = args.host or "127.0.0.1"
    _check_port_free(host, args.port)  # before the "try it" line, which would point at someone else's server
    now = datetime.now(UTC)
    ca = certs.build_ca(common_name="v4only dev CA", now=now, days=30)
    serving = certs.build_serving_cert(
        ca=ca, dns_names=["localhost"], ip_addresses=["127.0.0.1", "::1"], now=now, days=30
    )
    (directory / "ca.crt").write_bytes(ca.cert_pem)
    (directory / "tls.crt").write_bytes(serving.cert_pem)
    (directory / "tls.key").write_bytes(serving.key_pem)
    (directory / "tls.key").chmod(0o600)
    (directory / "review.json").write_text(DEV_POD)
    capability = Capability.assume(args.assume, "serve --dev: static capability, no cluster")
    print(f"v4only dev server: certificates in {directory}")
    print("try it:")
    print(
        f"  curl --cacert {directory}/ca.crt -H 'Content-Type: application/json' "
        f"--data @{directory}/review.json https://localhost:{args.port}/mutate"
    )
    return ServeOptions(
        host=host,
        port=args.port,
        cert_file=str(directory / "tls.crt"),
        key_file=str(directory / "tls.key"),
        settings=settings,
        state=ClusterState.static(capability, UniformNamespaces(parse_labels(args.namespace_labels or ""))),
        drain_seconds=0.0,
    )


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as error:
            raise UsageError(f"cannot listen on {host}:{port}: {error.strerror} (choose another with --port)") from None


def _production_options(args: argparse.Namespace, settings: Settings) -> ServeOptions:
    if not args.cert_file or not args.key_file:
        raise UsageError("--cert-file and --key-file are required (or --dev for a laptop with no cluster)")
    state = ClusterState(max_age_seconds=settings.capability_max_age_seconds)
    options = ServeOptions(
        host=args.host or "0.0.0.0",
        port=args.port,
        cert_file=args.cert_file,
        key_file=args.key_file,
        settings=settings,
        state=state,
        drain_seconds=args.drain_seconds,
    )
    api = connect(args)
    try:
        configz = KubeletConfigz.from_env(api)  # a bad V4ONLY_KUBELET_* setting stops serve before it starts
    except ValueError as error:
        api.close()
        raise UsageError(str(error)) from None
    options.background.append(
        _tracker_starter(api, state, settings, publish_labels=args.publish_node_labels, configz=configz)
    )
    if args.reconcile:
        # After the tracker: background work stops in reverse order, so this stops before `api` is closed.
        options.background.append(lambda: start_reconciler(state, settings, api).stop)
    return options


def _tracker_starter(
    api: KubeApi, state: ClusterState, settings: Settings, *, publish_labels: bool, configz: KubeletConfigz
) -> Callable[[], Callable[[], None]]:
    def start() -> Callable[[], None]:
        handle = start_tracker(state, settings, api, publish_labels=publish_labels, configz=configz)

        def stop() -> None:
            handle.stop()
            api.close()

        return stop

    return start


class _Server(uvicorn.Server):
    """uvicorn, but the first SIGTERM drains: /readyz fails, then in-flight requests finish, then exit."""

    def __init__(self, config: uvicorn.Config, *, lifecycle: Lifecycle, drain_seconds: float) -> None:
        super().__init__(config)
        self.lifecycle, self.drain_seconds = lifecycle, drain_seconds

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and not self.lifecycle.draining and self.drain_seconds > 0:
            self.lifecycle.draining = True
            log.info("SIGTERM: /readyz now fails; exiting in %.1fs", self.drain_seconds)
            asyncio.get_running_loop().call_later(self.drain_seconds, super().handle_exit, sig, frame)
            return
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """uvicorn's, without its last step: after a graceful shutdown uvicorn raises the caught signal again,
        which ends the process there and then, before `serve_async` stops what it started (the tracker's
        threads, the Lease it may hold). `v4only serve` is the whole process: a handled SIGTERM or SIGINT
        ends in a normal return, and the process exits 0 (tests/test_faults.py checks the order)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)


def uvicorn_config(
    app: Any, *, host: str, port: int, tls: ReloadingTLS, read_deadline: float = READ_DEADLINE_SECONDS
) -> uvicorn.Config:
    """How v4only runs uvicorn; `bench/servers.py` gives its floor server the very same settings."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        ssl_context_factory=lambda _config, _default: tls.context,
        # httptools (what "auto" picks), with a deadline for reading each request: server/read_deadline.py.
        http=with_read_deadline(read_deadline),
        ws="none",  # no WebSocket upgrade: nothing but the documented paths is served
        interface="asgi3",
        lifespan="off",
        # The API server calls us directly: no X-Forwarded-* to trust, and the middleware that would read
        # them costs a layer per request.
        proxy_headers=False,
        server_header=False,  # no product banner
        access_log=False,  # one line per admission is too costly on the hot path; metrics count them
        log_config=None,
        timeout_graceful_shutdown=30,
    )


def build_server(options: ServeOptions, *, metrics: Metrics | None = None) -> tuple[_Server, ReloadingTLS]:
    metrics = metrics or Metrics()
    lifecycle = Lifecycle()
    tls = ReloadingTLS(options.cert_file, options.key_file)
    app = create_app(state=options.state, settings=options.settings, metrics=metrics, lifecycle=lifecycle)
    config = uvicorn_config(
        app, host=options.host, port=options.port, tls=tls, read_deadline=options.read_deadline_seconds
    )
    server = _Server(config, lifecycle=lifecycle, drain_seconds=options.drain_seconds)
    return server, tls


async def serve_async(options: ServeOptions, *, metrics: Metrics | None = None) -> None:
    metrics = metrics or Metrics()
    server, tls = build_server(options, metrics=metrics)
    reloader = asyncio.create_task(_watch_tls(tls, metrics, options.reload_interval))
    stoppers = [start() for start in options.background]
    try:
        await server.serve()
    finally:
        reloader.cancel()
        for stop in reversed(stoppers):
            await asyncio.to_thread(stop)  # the tracker joins its threads; keep the loop free meanwhile


def serve(options: ServeOptions) -> None:
    uvloop.run(serve_async(options))


async def _watch_tls(tls: ReloadingTLS, metrics: Metrics, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        failures = tls.failures
        if tls.check():
            metrics.tls_reloads.labels("ok").inc()
        elif tls.failures > failures:
            metrics.tls_reloads.labels("failed").inc()
