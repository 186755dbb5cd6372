"""Run the real `serve` (webhook.cli.serve.serve: uvloop, uvicorn, TLS reload, SIGTERM drain) in a process of
its own, with what a test needs underneath, so the test can measure its memory and signal it:

    python -m tests.launcher --cert-file C --key-file K --port P --flip-ms 5
        a static capability republished every 5 ms, cycling allowed / forbidden / mixed (the soak);
    python -m tests.launcher --cert-file C --key-file K --port P --kubeconfig KUBECONFIG [--max-age 2]
        the capability tracker against (fake) Kubernetes with test-sized timings (the fault tests).

Nothing here changes how requests are served: it only chooses the ClusterState's source.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import replace

from webhook.cli.serve import ServeOptions, serve
from webhook.core.capability import Capability, NodeFacts
from webhook.core.settings import Settings
from webhook.loops.state import ClusterState

IPV6 = "net.ipv6.conf.all.disable_ipv6"
WORKER = {"node-role.kubernetes.io/worker": "true"}  # the Chronicle pod's nodeSelector
NAMESPACES = {
    "team-a": {"v4only.io/inject": "enabled"},
    "chronicle": {"v4only.io/inject": "enabled"},
}


def capabilities(settings: Settings) -> list[Capability]:
    """Three clusters: every node allows, none does, half do (with published labels: sysctl+affinity)."""

    def build(allowlists: list[tuple[str, ...]]) -> Capability:
        nodes = [NodeFacts(name=f"w-{i}", labels=WORKER, allowlist=allow) for i, allow in enumerate(allowlists)]
        return Capability.build(nodes, sysctl_names=settings.sysctl_names, labels_published=True)

    return [build([(IPV6,)] * 4), build([()] * 4), build([(IPV6,), (), (IPV6,), ()])]


def flipper(state: ClusterState, settings: Settings, interval: float, stopping: threading.Event) -> None:
    cycle = itertools.cycle(capabilities(settings))
    while not stopping.wait(interval):
        # A fresh namespace mapping each time too, as the tracker publishes one.
        state.publish(next(cycle), {name: dict(labels) for name, labels in NAMESPACES.items()})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert-file", required=True)
    parser.add_argument("--key-file", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--drain-seconds", type=float, default=0.0)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--flip-ms", type=float, help="republish a static capability every N ms")
    parser.add_argument("--kubeconfig", help="run the capability tracker against this cluster")
    parser.add_argument("--max-age", type=float, default=600.0, help="capabilityMaxAgeSeconds")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = replace(Settings(), capability_max_age_seconds=args.max_age)
    background: list[Callable[[], Callable[[], None]]] = [_marker]
    if args.kubeconfig:
        state = ClusterState(max_age_seconds=args.max_age)
        background.append(lambda: _start_tracker(state, settings, args.kubeconfig))
    else:
        state = ClusterState.static(capabilities(settings)[0], NAMESPACES)
        if args.flip_ms:
            background.append(lambda: _start_flipper(state, settings, args.flip_ms / 1000))
    options = ServeOptions(
        host="127.0.0.1",
        port=args.port,
        cert_file=args.cert_file,
        key_file=args.key_file,
        settings=settings,
        state=state,
        drain_seconds=args.drain_seconds,
        reload_interval=0.1,
        background=background,
    )
    serve(options)


def _marker() -> Callable[[], None]:
    """A background task that says when it is stopped: `serve` must stop what it started, SIGTERM included."""
    return lambda: logging.getLogger("launcher").warning("background stopped")


def _start_flipper(state: ClusterState, settings: Settings, interval: float) -> Callable[[], None]:
    stopping = threading.Event()
    thread = threading.Thread(target=flipper, args=(state, settings, interval, stopping), daemon=True)
    thread.start()

    def stop() -> None:
        stopping.set()
        thread.join(5)

    return stop


def _start_tracker(state: ClusterState, settings: Settings, kubeconfig: str) -> Callable[[], None]:
    from webhook.adapters.kube import KubeApi
    from webhook.adapters.kubelet import KubeletAccess, KubeletConfigz
    from webhook.tracker.config import TrackerConfig
    from webhook.tracker.start import start_tracker

    config = TrackerConfig(
        watch_timeout_seconds=2,
        watch_grace_seconds=1.0,
        backoff_initial_seconds=0.05,
        backoff_max_seconds=0.3,
        initial_configz_wait_seconds=2.0,
        publish_interval_seconds=0.02,
        confirm_interval_seconds=0.2,
    )
    api = KubeApi.connect(kubeconfig=kubeconfig)
    configz = KubeletConfigz(api, KubeletAccess(proxy_fallback=True))  # kubelets scripted via the node proxy
    handle = start_tracker(state, settings, api, publish_labels=False, config=config, configz=configz)

    def stop() -> None:
        handle.stop()
        api.close()

    return stop


if __name__ == "__main__":
    main()
