"""The coordinator: the tracker's single writer. It applies the reflectors' events to the `Inventory`, reads
each kubelet's /configz through a bounded pool, and publishes or confirms snapshots in `ClusterState`.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import random
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from webhook.adapters.kube import KubeApi, KubeError, Resource
from webhook.adapters.kubelet import KubeletConfigz
from webhook.core.capability import Capability
from webhook.core.configz_reads import ConfigzRecord
from webhook.core.dns_remedy import DnsFacts, KubeletDns
from webhook.core.dns_trap import DnsFinding
from webhook.core.evidence import FAILED_PODS
from webhook.core.settings import Settings
from webhook.loops.state import ClusterState
from webhook.loops.stats import Stats
from webhook.tracker.config import TrackerConfig, configz_refresh_seconds
from webhook.tracker.inventory import Inventory
from webhook.tracker.reflector import Event, Listed, Reflector

log = logging.getLogger("webhook.tracker")



@dataclass(frozen=True, slots=True)
class _Configz:
    node: str
    token: int
    allowlist: tuple[str, ...] | None
    error: KubeError | None
    dns: KubeletDns | None = None  # the kubelet's clusterDNS/clusterDomain (None: not read)
    path: str = "none"  # which path answered: direct, proxy, none
    why: str = ""  # why not directly (or not at all), in doctor's short words


_Message = Listed | Event | _Configz | DnsFinding | None


class Coordinator(threading.Thread):
    """The single writer: applies events, reads configz through a bounded pool, publishes snapshots."""

    def __init__(
        self,
        state: ClusterState,
        settings: Settings,
        api: KubeApi,
        *,
        publish_labels: bool,
        config: TrackerConfig,
        configz: KubeletConfigz,
    ) -> None:
        super().__init__(name="v4only-tracker", daemon=True)
        self._state, self._settings, self._api = state, settings, api
        self._configz = configz  # direct kubelet reads (nodes/configz), the node proxy only if enabled
        self._labels_published, self._config = publish_labels, config
        self.stopping = threading.Event()
        self.stats = Stats()
        self._queue: queue.SimpleQueue[_Message] = queue.SimpleQueue()
        self._dns = DnsFacts()  # the DNS probe's last finding, as the decision reads it (rule 7)
        self.dns_finding: DnsFinding | None = None
        # Each kubelet's clusterDNS/clusterDomain: rule 7's cluster DNS comes from them before serve's resolv.conf.
        self._kubelet_dns: dict[str, KubeletDns] = {}
        self._dns_dirty = False  # the finding or a kubelet's DNS changed, or a node went: recompute at publish
        self._inventory = Inventory(settings.sysctl_names)
        self._pool = ThreadPoolExecutor(config.configz_workers, thread_name_prefix="v4only-configz")
        self._tokens = itertools.count(1)
        self._inflight: dict[str, int] = {}  # node -> token of the configz read in flight
        self._due: list[tuple[float, str]] = []  # heap of (monotonic time, node) for the next configz read
        self._next_read: dict[str, float] = {}
        self._warned: set[str] = set()
        # Each node's last configz answer (when, which path), for the elected replica to publish for doctor.
        # Written here only; the publisher takes `dict(...)` of it, one C-level copy under the GIL.
        self.configz_reads: dict[str, ConfigzRecord] = {}
        self._nodes_dirty = self._namespaces_dirty = False
        self._synced_at: float | None = None
        self._published_at = self._confirmed_at = 0.0
        self.capability: Capability | None = None  # the last published
        # For the label publisher, set in one assignment: the last published capability, and which of
        # its nodes had no configz answer yet.
        self.published: tuple[Capability, frozenset[str]] | None = None
        watched: tuple[tuple[Resource, str | None], ...] = (
            ("nodes", None),
            ("namespaces", None),
            ("pods", FAILED_PODS),
        )
        self.reflectors = [
            Reflector(
                r,
                api=api,
                config=config,
                sink=self._queue.put,
                stopping=self.stopping,
                stats=self.stats,
                field_selector=s,
            )
            for r, s in watched
        ]

    def start(self) -> None:
        super().start()
        for reflector in self.reflectors:
            reflector.start()

    def stop(self, timeout: float) -> None:
        self.stopping.set()
        self._queue.put(None)
        for reflector in self.reflectors:
            reflector.interrupt()
        self._pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + timeout
        for thread in [self, *self.reflectors]:
            thread.join(max(0.0, deadline - time.monotonic()))

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self._handle(self._queue.get(timeout=self._wait_seconds()))
                while True:  # apply a burst of events before publishing once
                    self._handle(self._queue.get_nowait())
            except queue.Empty:
                pass
            except Exception:  # a bug must not silently end the tracker: log it, keep going
                log.exception("tracker: unexpected error")
            now = time.monotonic()
            self._read_due_configz(now)
            self._publish_or_confirm(now)

    def _wait_seconds(self) -> float:
        waits = [self._config.confirm_interval_seconds, self._config.publish_interval_seconds]
        if self._due:
            waits.append(self._due[0][0] - time.monotonic())
        return max(0.01, min(waits))

    def dns_found(self, finding: DnsFinding) -> None:
        """The DNS probe's thread hands its finding over here: the coordinator stays the only writer."""
        self._queue.put(finding)

    def _handle(self, message: _Message) -> None:
        inventory = self._inventory
        if isinstance(message, Listed):
            self._listed(message)
        elif isinstance(message, Event):
            obj, deleted = message.obj, message.kind == "DELETED"
            if message.resource == "nodes":
                if deleted:
                    self._nodes_dirty |= inventory.remove_node(str((obj.get("metadata") or {}).get("name")))
                    self._dns_dirty = True
                else:
                    name, changed, refetch = inventory.upsert_node(obj)
                    self._nodes_dirty |= changed
                    if refetch:
                        self._read_configz_soon(name)
            elif message.resource == "namespaces":
                changed = inventory.remove_namespace(obj) if deleted else inventory.upsert_namespace(obj)
                self._namespaces_dirty |= changed
            else:
                self._nodes_dirty |= inventory.remove_pod(obj) if deleted else inventory.upsert_pod(obj)
        elif isinstance(message, _Configz):
            self._configz_answered(message)
        elif isinstance(message, DnsFinding):
            self.dns_finding, self._dns_dirty = message, True

    def _listed(self, message: Listed) -> None:
        if message.resource == "nodes":
            changed, refetch = self._inventory.replace_nodes(message.items)
            self._nodes_dirty |= changed
            self._dns_dirty = True
            for name in refetch:
                self._read_configz_soon(name)
        elif message.resource == "namespaces":
            self._namespaces_dirty |= self._inventory.replace_namespaces(message.items)
        else:
            self._nodes_dirty |= self._inventory.replace_pods(message.items)

    # ---- configz

    def _read_configz_soon(self, node: str) -> None:
        """Read now; a read already in flight may predate a kubelet restart, so its answer is dropped."""
        self._inflight.pop(node, None)
        self._schedule(node, time.monotonic())

    def _schedule(self, node: str, when: float) -> None:
        self._next_read[node] = when
        heapq.heappush(self._due, (when, node))

    def _read_due_configz(self, now: float) -> None:
        while self._due and self._due[0][0] <= now:
            when, node = heapq.heappop(self._due)
            endpoint = self._inventory.kubelet_endpoint(node)
            if endpoint is None:
                self._next_read.pop(node, None)  # the node is gone
                self.configz_reads.pop(node, None)
                continue
            if self._next_read.get(node) != when or node in self._inflight:
                continue  # rescheduled, or already being read
            token = next(self._tokens)
            self._inflight[node] = token
            self.stats.count("configz_reads")
            try:
                self._pool.submit(self._read_configz, node, token, endpoint)
            except RuntimeError:  # the pool is shut down: we are stopping
                return

    def _read_configz(self, node: str, token: int, endpoint: Mapping[str, Any]) -> None:
        read = self._configz.read(endpoint)
        if read.config is None:
            error = KubeError(0, f"configz of node {node}: {read.detail or read.error}")
            self._queue.put(_Configz(node, token, None, error, path=read.path, why=read.error))
        else:
            config = read.config
            self._queue.put(_Configz(node, token, config.allowed_unsafe_sysctls, None, config.dns, read.path,
                                     read.direct_error))

    def _configz_answered(self, answer: _Configz) -> None:
        if self._inflight.get(answer.node) != answer.token:
            return
        del self._inflight[answer.node]
        self.configz_reads[answer.node] = ConfigzRecord(answer.path, datetime.now(UTC), answer.why)
        if answer.error is not None and answer.node not in self._warned:
            self._warned.add(answer.node)
            log.warning(
                "node %s: kubelet configuration not readable, capability unknown: %s", answer.node, answer.error
            )
        elif answer.error is None:
            self._warned.discard(answer.node)
        self._nodes_dirty |= self._inventory.set_allowlist(answer.node, answer.allowlist)
        if answer.dns is not None and self._kubelet_dns.get(answer.node) != answer.dns:
            self._kubelet_dns[answer.node] = answer.dns
            self._dns_dirty = True
        if self._inventory.has_node(answer.node):
            jitter = random.uniform(0.9, 1.1)
            interval = configz_refresh_seconds(self._inventory.node_count(), self._config)
            self._schedule(answer.node, time.monotonic() + interval * jitter)

    # ---- publishing

    def _refresh_dns(self) -> None:
        """Rule 7's facts from the probe's finding and the kubelets still in the inventory (once per publish:
        a pass over the nodes, not one per configz answer)."""
        self._kubelet_dns = {n: d for n, d in self._kubelet_dns.items() if self._inventory.has_node(n)}
        facts = DnsFacts.from_finding(self.dns_finding, self._kubelet_dns.values())
        self._nodes_dirty |= facts != self._dns
        self._dns, self._dns_dirty = facts, False

    def _publish_or_confirm(self, now: float) -> None:
        nodes, namespaces, pods = self.reflectors
        if self._synced_at is None:
            if not (nodes.synced and namespaces.synced and (pods.synced or pods.failed)):
                return
            self._synced_at = now
        first = self.capability is None
        if first and self._inflight and now - self._synced_at < self._config.initial_configz_wait_seconds:
            return
        dirty = first or self._nodes_dirty or self._namespaces_dirty or self._dns_dirty
        if dirty and now - self._published_at >= self._config.publish_interval_seconds:
            self._publish(now)
        elif nodes.healthy and namespaces.healthy and now - self._confirmed_at >= self._config.confirm_interval_seconds:
            # Failed pods are extra evidence: without permission to watch them the rest is still fresh.
            self._state.confirm()
            self._confirmed_at = now

    def _publish(self, now: float) -> None:
        if self._dns_dirty:
            self._refresh_dns()
        capability = self.capability
        if capability is None or self._nodes_dirty:
            capability = replace(Capability.build(
                self._inventory.node_facts(),
                sysctl_names=self._settings.sysctl_names,
                labels_published=self._labels_published,
            ), dns=self._dns)
        self._state.publish(capability, self._inventory.namespace_labels())
        self.capability = capability
        self.published = (capability, self._inventory.unread())
        self._nodes_dirty = self._namespaces_dirty = False
        self._published_at = self._confirmed_at = now
        self.stats.count("publishes")
