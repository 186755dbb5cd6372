"""Start the tracker's threads; the handle that reports on them and stops them."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace

from webhook.adapters.kube import KubeApi
from webhook.adapters.kube_dns import read_finding, write_finding
from webhook.adapters.kubelet import KubeletConfigz
from webhook.core.dns_trap import DnsFinding, carry_since
from webhook.core.settings import Settings
from webhook.loops.leader import default_lease_namespace
from webhook.loops.state import ClusterState
from webhook.tracker.config import TrackerConfig
from webhook.tracker.coordinator import Coordinator
from webhook.tracker.dns_probe import DnsProber
from webhook.tracker.publisher import LabelPublisher


class TrackerHandle:
    """A running tracker: `stop()` ends every thread (and gives the Lease up if this replica held it)."""

    def __init__(self, coordinator: Coordinator, publisher: LabelPublisher | None, prober: DnsProber | None) -> None:
        self._coordinator, self._publisher, self._prober = coordinator, publisher, prober

    @property
    def dns_finding(self) -> DnsFinding | None:
        """The DNS probe's last finding (None before its first round)."""
        return self._coordinator.dns_finding

    @property
    def leading(self) -> bool:
        """This replica currently publishes node labels."""
        return self._publisher is not None and self._publisher.elector.leading

    @property
    def stats(self) -> Mapping[str, int]:
        """Counters: lists, watches, relists and errors per resource, configz reads, publishes, label patches."""
        return self._coordinator.stats.snapshot()

    def stop(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        if self._prober is not None:
            self._prober.stopping.set()
        self._coordinator.stop(timeout)
        if self._publisher is not None:
            self._publisher.join(max(0.0, deadline - time.monotonic()))
        if self._prober is not None:
            self._prober.join(max(0.0, deadline - time.monotonic()))


def start_tracker(
    state: ClusterState,
    settings: Settings,
    api: KubeApi,
    *,
    publish_labels: bool,
    config: TrackerConfig | None = None,
    configz: KubeletConfigz | None = None,
) -> TrackerHandle:
    """Start the tracker's threads; `state` turns ready at the first publish. `configz` defaults to the
    kubelet access the environment configures (V4ONLY_KUBELET_*, webhook/adapters/kubelet.py)."""
    config = config or TrackerConfig()
    configz = configz or KubeletConfigz.from_env(api)
    coordinator = Coordinator(state, settings, api, publish_labels=publish_labels, config=config, configz=configz)
    coordinator.start()
    publisher = LabelPublisher(coordinator, api, config) if publish_labels else None
    if publisher is not None:
        publisher.start()
    prober = None
    if config.dns_probe is not None:
        probe = replace(config.dns_probe, names=settings.dns.probe_names,
                        interval_seconds=settings.dns.probe_interval_seconds)
        namespace = config.lease_namespace or default_lease_namespace()

        def publish(finding: DnsFinding) -> None:  # by the elected replica only (the node-label Lease)
            if publisher is None or not publisher.elector.leading or finding.cluster_domain is None:
                return
            # Each domain's `since` goes on from what is in the cluster (one GET a round), so it survives
            # restarts and a change of leader.
            write_finding(api, namespace, carry_since(read_finding(api, namespace), finding))

        prober = DnsProber(probe, coordinator.dns_found, publish)
        prober.start()
    return TrackerHandle(coordinator, publisher, prober)
