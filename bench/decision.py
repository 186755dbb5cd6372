"""How fast the decision is, and how much memory the capability snapshot takes, at cluster scale.

    .venv/bin/python -m bench.decision            # decision times, snapshot memory, growth 1k/5k/20k
    .venv/bin/python -m bench.decision --live     # plus the real tracker over HTTP (fake API server in a
                                                  # subprocess) holding 5,000 nodes and 2,000 namespaces

Targets (issue 3): with 5,000 nodes and 2,000 namespaces, median decision under 50 us for a pod with
no node constraints and under 1 ms for one with a nodeSelector and tolerations; server memory under
150 MiB. Prints figures only; no asserts.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.memory import rss_mib
from webhook.core.capability import Capability, NodeFacts, Taint
from webhook.core.decision import decide
from webhook.core.dns_remedy import DnsFacts
from webhook.core.settings import Settings

IPV6 = "net.ipv6.conf.all.disable_ipv6"
SETTINGS = Settings()
ZONES = ("zone-a", "zone-b", "zone-c")
POOLS = tuple(f"pool-{i}" for i in range(10))
TAINT_GROUPS = (
    (Taint("node-role.kubernetes.io/control-plane", "", "NoSchedule"),),
    (Taint("gpu", "true", "NoSchedule"),),
    (Taint("dedicated", "batch", "NoSchedule"),),
    (Taint("dedicated", "ingress", "NoExecute"),),
    (Taint("spot", "true", "NoSchedule"), Taint("gpu", "true", "NoSchedule")),
)
PLAIN = {"metadata": {"labels": {"v4only.io/inject": "enabled"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
CONSTRAINED = {
    "metadata": {"labels": {"v4only.io/inject": "enabled"}},
    "spec": {
        "containers": [{"name": "c", "image": "x"}],
        "nodeSelector": {"topology.kubernetes.io/zone": "zone-b", "pool": "pool-3"},
        "tolerations": [
            {"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"},
            {
                "key": "node.kubernetes.io/not-ready",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            },
            {
                "key": "node.kubernetes.io/unreachable",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            },
        ],
    },
}


def node_facts(count: int, seed: int = 1) -> list[NodeFacts]:
    """A cluster shaped like a big one: zones, pools, 8 % tainted in five groups, 2 % cordoned, 80 % allow."""
    rng = random.Random(seed)
    nodes = []
    for i in range(count):
        name = f"node-{i:05}"
        labels = {
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "topology.kubernetes.io/zone": ZONES[i % 3],
            "pool": POOLS[i % 10],
            "node.kubernetes.io/instance-type": rng.choice(("m5.large", "m5.xlarge", "c5.2xlarge")),
        }
        taints = TAINT_GROUPS[i % 5] if rng.random() < 0.08 else ()
        allowlist = (IPV6,) if rng.random() < 0.8 else ("net.ipv4.ip_forward",)
        nodes.append(
            NodeFacts(
                name,
                labels=labels,
                taints=taints,
                unschedulable=rng.random() < 0.02,
                kubelet_version="v1.33.1",
                allowlist=allowlist,
            )
        )
    return nodes


def namespaces(count: int) -> dict[str, dict[str, str]]:
    return {
        f"ns-{i:04}": {"kubernetes.io/metadata.name": f"ns-{i:04}", "v4only.io/inject": "enabled", "team": f"t{i % 50}"}
        for i in range(count)
    }


def median_seconds(call: Callable[[], object], *, rounds: int = 2000) -> float:
    """Median over `rounds` single calls (after a warm-up), in seconds."""
    for _ in range(50):
        call()
    samples = []
    clock = time.perf_counter
    for _ in range(rounds):
        start = clock()
        call()
        samples.append(clock() - start)
    return statistics.median(samples)


# A cluster whose nodes' search list ends in a trap domain (rule 7 adds the cluster-only search list).
TRAP = DnsFacts(known=True, traps=("corp.example",), nameservers=("10.96.0.10",), cluster_domain="cluster.local")


def decision_times(capability: Capability, labels: dict[str, dict[str, str]]) -> tuple[float, float, float]:
    ns = "ns-0007"
    trapped = replace(capability, dns=TRAP)

    def plain() -> object:
        return decide(PLAIN, namespace=ns, namespace_labels=labels[ns], capability=capability, settings=SETTINGS)

    def constrained() -> object:
        return decide(CONSTRAINED, namespace=ns, namespace_labels=labels[ns], capability=capability, settings=SETTINGS)

    def with_trap() -> object:
        return decide(PLAIN, namespace=ns, namespace_labels=labels[ns], capability=trapped, settings=SETTINGS)

    return median_seconds(plain), median_seconds(constrained), median_seconds(with_trap)


def in_process(node_count: int, namespace_count: int) -> None:
    gc.collect()
    before = rss_mib()
    nodes = node_facts(node_count)
    labels = namespaces(namespace_count)
    start = time.perf_counter()
    capability = Capability.build(nodes, sysctl_names=SETTINGS.sysctl_names, labels_published=True)
    build = time.perf_counter() - start
    del nodes
    gc.collect()
    held = rss_mib() - before
    plain, constrained, trapped = decision_times(capability, labels)
    print(
        f"{node_count:>6} nodes  {namespace_count:>5} ns  build {build * 1e3:7.1f} ms  "
        f"plain pod {plain * 1e6:7.1f} us  nodeSelector+tolerations {constrained * 1e6:7.1f} us  "
        f"plain pod, DNS trap {trapped * 1e6:7.1f} us  snapshot ~{held:6.1f} MiB"
    )


# ---- the real tracker, over HTTP, against a fake API server in another process


def _serve_fake(node_count: int, namespace_count: int, ready: Any, port: Any, done: Any) -> None:
    from tests.fakekube import FakeKube, objects

    kube = FakeKube(history_size=20000)
    rng = random.Random(2)
    for i in range(node_count):
        name = f"node-{i:05}"
        kube.put_object(objects.node(name, labels={"topology.kubernetes.io/zone": ZONES[i % 3], "pool": POOLS[i % 10]}))
        kube.set_configz(name, objects.kubelet_config((IPV6,) if rng.random() < 0.8 else ()))
    for name, labels in namespaces(namespace_count).items():
        kube.put_object(objects.namespace(name, labels=labels))
    kube.start()
    port.value = kube.port
    ready.set()
    done.wait(600)
    kube.stop()


def live(node_count: int, namespace_count: int) -> None:
    from tests.fakekube import FakeKube
    from webhook.adapters.kube import KubeApi
    from webhook.loops.state import ClusterState
    from webhook.server import app  # noqa: F401  (the server's imports count towards its memory)
    from webhook.tracker.config import TrackerConfig
    from webhook.tracker.start import start_tracker

    context = multiprocessing.get_context("spawn")
    ready, done, port = context.Event(), context.Event(), context.Value("i", 0)
    server = context.Process(target=_serve_fake, args=(node_count, namespace_count, ready, port, done), daemon=True)
    server.start()
    try:
        if not ready.wait(300):
            print("live: the fake API server did not start")
            return
        fake = FakeKube()
        fake._port = port.value  # only to write a kubeconfig pointing at the other process
        gc.collect()
        before = rss_mib()
        api = KubeApi.connect(kubeconfig=str(fake.kubeconfig_path(Path(tempfile.mkdtemp()))))
        state = ClusterState(max_age_seconds=600)
        config = TrackerConfig(configz_workers=8, initial_configz_wait_seconds=600)
        start = time.perf_counter()
        handle = start_tracker(state, SETTINGS, api, publish_labels=False, config=config)
        deadline = time.monotonic() + 600
        while not state.ready and time.monotonic() < deadline:
            time.sleep(0.1)
        synced = time.perf_counter() - start
        capability = state.view().capability
        gc.collect()
        after = rss_mib()
        plain, constrained, _ = decision_times(capability, dict(state.view().namespaces))  # type: ignore[arg-type]
        print(
            f"live tracker: {len(capability.nodes)} nodes, {len(state.view().namespaces)} namespaces, "
            f"{sum(v.verdict == 'allowed' for v in capability.verdicts)} allowed; first publish after "
            f"{synced:.1f} s ({handle.stats['configz_reads']} configz reads, 8 at a time)"
        )
        print(
            f"live tracker: process RSS {after:.1f} MiB (server modules imported; {after - before:+.1f} MiB for "
            f"the tracker and its snapshot); decision plain {plain * 1e6:.1f} us, constrained "
            f"{constrained * 1e6:.1f} us"
        )
        handle.stop()
        api.close()
    finally:
        done.set()
        server.join(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--live", action="store_true", help="also run the real tracker against a fake API server")
    args = parser.parse_args()
    print(f"start RSS {rss_mib():.1f} MiB")
    print("decision (median of 2,000 calls) and snapshot, as the node count grows:")
    for count in (1000, 5000, 20000):
        in_process(count, 2000)
    if args.live:
        live(5000, 2000)


if __name__ == "__main__":
    main()
