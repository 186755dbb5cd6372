"""The label publisher (`serve --publish-node-labels`): only the replica holding the Lease keeps
`v4only.io/ipv6-sysctl=allowed|forbidden` on nodes (removed when unknown), and writes when and how each
kubelet's configz was last read (ConfigMap v4only-configz) for `doctor`.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid

from webhook.adapters.kube import KubeApi, KubeError
from webhook.adapters.kube_configz import write_records
from webhook.core import keys
from webhook.core.capability import Capability
from webhook.core.configz_reads import ConfigzRecord
from webhook.loops.leader import LeaderElector, default_lease_namespace
from webhook.tracker.config import TrackerConfig
from webhook.tracker.coordinator import Coordinator

log = logging.getLogger("webhook.tracker")


class LabelPublisher(threading.Thread):
    """While this replica holds the Lease: keep `v4only.io/ipv6-sysctl` on every node equal to its verdict."""

    def __init__(self, coordinator: Coordinator, api: KubeApi, config: TrackerConfig) -> None:
        super().__init__(name="v4only-node-labels", daemon=True)
        self._coordinator, self._api, self._config = coordinator, api, config
        self.elector = LeaderElector(
            api,
            namespace=config.lease_namespace or default_lease_namespace(),
            name=config.lease_name,
            identity=config.identity or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}",
            timings=config.lease,
        )
        self._written: dict[str, tuple[str | None, float]] = {}  # node -> (value written, when)
        self._attempted_at = 0.0
        self._records_written: tuple[float, dict[str, ConfigzRecord]] | None = None  # (when, what)

    def run(self) -> None:
        stopping = self._coordinator.stopping
        while not stopping.is_set():
            if self._renew():
                published = self._coordinator.published
                if published is not None:
                    self._reconcile(*published)
                    self._write_records(published[0])
            stopping.wait(self._config.lease.retry_period)
        self.elector.release()

    def _renew(self) -> bool:
        self._attempted_at = time.monotonic()
        return self.elector.try_acquire_or_renew()

    def _still_leading(self) -> bool:
        if time.monotonic() - self._attempted_at >= self._config.lease.retry_period:
            return self._renew()
        return self.elector.leading

    def _reconcile(self, capability: Capability, unread: frozenset[str]) -> None:
        now = time.monotonic()
        for node, verdict in zip(capability.nodes, capability.verdicts, strict=True):
            wanted = verdict.verdict if verdict.verdict in (keys.ALLOWED, keys.FORBIDDEN) else None
            if wanted is None and node.name in unread:
                continue  # not read yet (a new leader starting up): keep the label until we know
            if node.labels.get(keys.NODE_CAPABILITY) == wanted:
                self._written.pop(node.name, None)
                continue
            written = self._written.get(node.name)
            if written is not None and written[0] == wanted and now - written[1] < self._config.label_resync_seconds:
                continue  # written already; the node watch has not shown it yet
            if self._coordinator.stopping.is_set() or not self._still_leading():
                return
            try:
                self._api.patch_node_labels(node.name, {keys.NODE_CAPABILITY: wanted})
                self._written[node.name] = (wanted, now)
                self._coordinator.stats.count("label_patches")
            except KubeError as error:
                if error.status != 404:  # a node deleted meanwhile is no news
                    log.warning("node %s: could not set %s: %s", node.name, keys.NODE_CAPABILITY, error)

    def _write_records(self, capability: Capability) -> None:
        """At most every `configz_record_interval_seconds`, and only when a record changed."""
        now = time.monotonic()
        last = self._records_written
        if last is not None and now - last[0] < self._config.configz_record_interval_seconds:
            return
        names = capability.by_name
        reads = {n: r for n, r in dict(self._coordinator.configz_reads).items() if n in names}
        if last is not None and reads == last[1]:
            return
        if self._coordinator.stopping.is_set() or not self._still_leading():
            return
        try:
            write_records(self._api, self._config.lease_namespace or default_lease_namespace(), reads)
            self._records_written = (now, reads)
            self._coordinator.stats.count("configz_record_writes")
        except KubeError as error:
            self._records_written = (now, last[1] if last else {})  # retry after the interval, not at once
            log.warning("could not write the configz read records: %s", error)
