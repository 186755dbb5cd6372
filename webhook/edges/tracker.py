"""The capability tracker inside `v4only serve`: live node capability and namespace labels.

Threads, all stopped by `TrackerHandle.stop()`:
- one reflector per resource (Nodes, Namespaces, failed Pods): list, then watch from the list's
  resourceVersion; `410 Gone` relists at once; any other error reconnects after an exponential,
  capped, jittered backoff. Each watch asks the server to end it after `timeoutSeconds` and reads
  with a client-side timeout a little longer than that: a connection that hangs without events or
  closing is dropped and rewatched (the watchdog);
- the coordinator: the only writer of the `Inventory` (just the fields decisions need), fetches each
  kubelet's /configz through a bounded pool when a node appears, when its kubelet changes (bootID or
  version) and on a jittered timer, and publishes a new immutable `Capability` into `ClusterState`
  when something changed (at most every `publish_interval_seconds`), or confirms the current one
  while the node and namespace watches are alive (failed pods are extra evidence: a missing
  permission to watch them does not make the rest stale);
- with `publish_labels`, the label publisher: leader election on a Lease, and only the leader keeps
  `v4only.io/ipv6-sysctl=allowed|forbidden` on nodes (removed when unknown).

Evidence (`SysctlForbidden` pods naming a managed sysctl as not allowlisted) marks the pod's node
forbidden while the pod exists, until that kubelet's configuration changes: a different configz
allowlist, or a restart seen as a new bootID or kubelet version.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import queue
import random
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from types import MappingProxyType
from typing import Any

from webhook.adapters.kube import KubeApi, KubeError, Resource
from webhook.core import keys
from webhook.core.capability import Capability, NodeFacts, node_facts_from_object
from webhook.core.evidence import rejection_from_pod
from webhook.core.settings import Settings
from webhook.edges.leader import LeaderElector, LeaseTimings
from webhook.edges.state import ClusterState

log = logging.getLogger("webhook.tracker")

FAILED_PODS = "status.phase=Failed"
MIN_WATCH_SECONDS = 1.0  # a watch that ends sooner (without an error) is retried after a backoff
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    """Timings; the defaults suit a cluster, tests shrink them."""

    # Server-side end of each watch. Shorter than client-go's 5-10 min on purpose: a watch that hangs without
    # closing keeps the snapshot "confirmed", so the watchdog below must fire well inside the freshness limit.
    watch_timeout_seconds: int = 60
    watch_grace_seconds: float = 15.0  # read timeout = timeout + grace: the hung-watch watchdog (75 s)
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    configz_refresh_seconds: float = 300.0
    configz_workers: int = 4
    initial_configz_wait_seconds: float = 10.0  # first publish waits this long for the first configz round
    publish_interval_seconds: float = 0.25
    confirm_interval_seconds: float = 5.0
    lease_namespace: str = ""  # "" = this pod's namespace (POD_NAMESPACE, service account), else v4only-system
    lease_name: str = "v4only-node-labels"
    lease: LeaseTimings = field(default_factory=LeaseTimings)
    label_resync_seconds: float = 60.0
    identity: str = ""  # "" = hostname + random suffix


class Backoff:
    """Exponential backoff, capped, with jitter (each delay is 50-100 % of the nominal one)."""

    def __init__(self, initial: float, maximum: float, rng: Callable[[], float] = random.random) -> None:
        self._initial, self._maximum, self._rng, self._attempt = initial, maximum, rng, 0

    def next(self) -> float:
        nominal = min(self._maximum, self._initial * 2.0 ** min(self._attempt, 30))
        self._attempt += 1
        return nominal * (0.5 + self._rng() / 2)

    def reset(self) -> None:
        self._attempt = 0


class Stats:
    """Counters shared by the tracker's threads (for logs and tests)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def snapshot(self) -> Counter[str]:
        """A copy; a key never counted reads 0."""
        with self._lock:
            return Counter(self._counts)


class Inventory:
    """What the tracker keeps: node facts, kubelet identities, evidence and namespace labels. No I/O."""

    def __init__(self, managed: Iterable[str]) -> None:
        self._managed = tuple(managed)
        self._nodes: dict[str, NodeFacts] = {}
        self._kubelets: dict[str, tuple[str, str]] = {}  # node -> (bootID, kubeletVersion)
        self._last_allowlist: dict[str, tuple[str, ...]] = {}  # node -> last allowlist actually read
        self._unread: set[str] = set()  # nodes whose configz has not answered since they (re)appeared
        self._evidence: dict[str, tuple[str, frozenset[str]]] = {}  # pod uid -> (node, refused names)
        self._dismissed: set[str] = set()  # pod uids whose evidence a later kubelet change voided
        self._namespaces: dict[str, Mapping[str, str]] = {}

    # ---- nodes

    def replace_nodes(self, objects: Iterable[Mapping[str, Any]]) -> tuple[bool, set[str]]:
        """A full node list: (anything changed, nodes whose configz must be read)."""
        seen: set[str] = set()
        changed, refetch = False, set()
        for obj in objects:
            name, node_changed, node_refetch = self.upsert_node(obj)
            seen.add(name)
            changed |= node_changed
            if node_refetch:
                refetch.add(name)
        for name in set(self._nodes) - seen:
            changed |= self.remove_node(name)
        return changed, refetch

    def upsert_node(self, obj: Mapping[str, Any]) -> tuple[str, bool, bool]:
        """(name, facts changed, configz must be read): new node, or its kubelet restarted or changed."""
        facts = node_facts_from_object(obj)
        info = (obj.get("status") or {}).get("nodeInfo") or {}
        kubelet = (str(info.get("bootID") or ""), facts.kubelet_version)
        old, old_kubelet = self._nodes.get(facts.name), self._kubelets.get(facts.name)
        restarted = old_kubelet is not None and old_kubelet != kubelet
        if restarted:
            self._dismiss(facts.name)
            self._last_allowlist.pop(facts.name, None)
        # The allowlist comes from configz only (the annotation is for offline review); unknown after a restart.
        allowlist = old.allowlist if old is not None and not restarted else None
        facts = replace(facts, allowlist=allowlist)
        self._nodes[facts.name], self._kubelets[facts.name] = facts, kubelet
        if old is None or restarted:
            self._unread.add(facts.name)
        return facts.name, facts != old or restarted, old is None or restarted

    def remove_node(self, name: str) -> bool:
        self._kubelets.pop(name, None)
        self._unread.discard(name)
        self._last_allowlist.pop(name, None)
        return self._nodes.pop(name, None) is not None

    def set_allowlist(self, name: str, allowlist: tuple[str, ...] | None) -> bool:
        """A configz answer (None: could not be read). A different allowlist voids the node's evidence."""
        node = self._nodes.get(name)
        if node is None:
            return False
        dismissed = False
        self._unread.discard(name)
        if allowlist is not None:
            last = self._last_allowlist.get(name)
            if last is not None and last != allowlist:
                dismissed = self._dismiss(name)
            self._last_allowlist[name] = allowlist
        self._nodes[name] = replace(node, allowlist=allowlist)
        return dismissed or node.allowlist != allowlist

    def has_node(self, name: str) -> bool:
        return name in self._nodes

    def unread(self) -> frozenset[str]:
        """Nodes still waiting for their first configz answer: unknown for now, not known to be unknown."""
        return frozenset(self._unread)

    def node_facts(self) -> list[NodeFacts]:
        """Every node, with `refused` from the evidence that still stands."""
        refused: dict[str, set[str]] = {}
        for node, names in self._evidence.values():
            refused.setdefault(node, set()).update(names)
        return [
            replace(facts, refused=frozenset(refused[name])) if name in refused else facts
            for name, facts in self._nodes.items()
        ]

    # ---- failed pods (evidence)

    def replace_pods(self, objects: Iterable[Mapping[str, Any]]) -> bool:
        before = dict(self._evidence)
        present: set[str] = set()
        self._evidence = {}
        for obj in objects:
            present.add(_uid(obj))
            self.upsert_pod(obj)
        self._dismissed &= present
        return before != self._evidence

    def upsert_pod(self, obj: Mapping[str, Any]) -> bool:
        uid = _uid(obj)
        rejection = rejection_from_pod(obj)
        names = rejection.refuses(self._managed) if rejection is not None else frozenset()
        if rejection is None or not names or not rejection.node:
            return self._evidence.pop(uid, None) is not None
        if uid in self._dismissed:
            return False
        entry = (rejection.node, names)
        changed = self._evidence.get(uid) != entry
        self._evidence[uid] = entry
        return changed

    def remove_pod(self, obj: Mapping[str, Any]) -> bool:
        uid = _uid(obj)
        self._dismissed.discard(uid)
        return self._evidence.pop(uid, None) is not None

    def _dismiss(self, node: str) -> bool:
        voided = [uid for uid, (on, _) in self._evidence.items() if on == node]
        for uid in voided:
            del self._evidence[uid]
            self._dismissed.add(uid)
        return bool(voided)

    # ---- namespaces

    def replace_namespaces(self, objects: Iterable[Mapping[str, Any]]) -> bool:
        fresh = dict(_namespace_entry(obj) for obj in objects)
        changed = fresh != self._namespaces
        self._namespaces = fresh
        return changed

    def upsert_namespace(self, obj: Mapping[str, Any]) -> bool:
        name, labels = _namespace_entry(obj)
        changed = self._namespaces.get(name) != labels
        self._namespaces[name] = labels
        return changed

    def remove_namespace(self, obj: Mapping[str, Any]) -> bool:
        return self._namespaces.pop(_namespace_entry(obj)[0], None) is not None

    def namespace_labels(self) -> Mapping[str, Mapping[str, str]]:
        return MappingProxyType(dict(self._namespaces))


def _uid(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}")


def _namespace_entry(obj: Mapping[str, Any]) -> tuple[str, Mapping[str, str]]:
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    return str(meta.get("name") or ""), MappingProxyType({str(k): str(v) for k, v in labels.items()})


def trim(resource: Resource, obj: Mapping[str, Any]) -> dict[str, Any]:
    """Only the fields `Inventory` reads, taken as an object arrives: the rest is never held.

    Nodes: name, labels, taints, unschedulable, Ready, kubelet version and bootID (the allowlist comes
    from configz, not from an annotation). Pods: identity, node, reason and message. Namespaces: name
    and labels.
    """
    meta = obj.get("metadata") or {}
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if resource == "nodes":
        info = status.get("nodeInfo") or {}
        return {
            "metadata": {k: meta[k] for k in ("name", "labels") if k in meta},
            "spec": {k: spec[k] for k in ("taints", "unschedulable") if k in spec},
            "status": {
                "conditions": [c for c in status.get("conditions") or [] if c.get("type") == "Ready"],
                "nodeInfo": {k: info[k] for k in ("kubeletVersion", "kernelVersion", "bootID") if k in info},
            },
        }
    if resource == "pods":
        return {
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid") if k in meta},
            "spec": {"nodeName": spec.get("nodeName")},
            "status": {k: status[k] for k in ("reason", "message") if k in status},
        }
    return {"metadata": {k: meta[k] for k in ("name", "labels") if k in meta}}


# ---- threads ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Listed:
    resource: Resource
    items: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class _Event:
    resource: Resource
    kind: str
    obj: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Configz:
    node: str
    token: int
    allowlist: tuple[str, ...] | None
    error: KubeError | None


_Message = _Listed | _Event | _Configz | None


class _Reflector(threading.Thread):
    """List, then watch from the list's resourceVersion, forever; events go to `sink`."""

    def __init__(
        self,
        resource: Resource,
        *,
        api: KubeApi,
        config: TrackerConfig,
        sink: Callable[[_Message], None],
        stopping: threading.Event,
        stats: Stats,
        field_selector: str | None = None,
    ) -> None:
        super().__init__(name=f"v4only-watch-{resource}", daemon=True)
        self.resource, self._api, self._config, self._sink = resource, api, config, sink
        self._stopping, self._stats, self._selector = stopping, stats, field_selector
        self._stream: Any = None
        self.synced = False  # listed at least once
        self.failed = False  # failed at least once (a missing permission must not block readiness)
        self.healthy = False  # the last list or watch request succeeded and nothing failed since

    def run(self) -> None:
        backoff = Backoff(self._config.backoff_initial_seconds, self._config.backoff_max_seconds)
        version, expired = "", 0
        while not self._stopping.is_set():
            try:
                if not version:
                    version = self._list()
                started = time.monotonic()
                version = self._watch(version)
                if time.monotonic() - started >= MIN_WATCH_SECONDS:
                    backoff.reset()
                    expired = 0
                else:  # a server that ends every watch at once must not make this spin
                    self._stopping.wait(backoff.next())
            except KubeError as error:
                if self._stopping.is_set():
                    break
                if error.status == 410:
                    log.info("%s: resourceVersion %s expired (410 Gone); listing again", self.resource, version)
                    self._stats.count(f"relist_{self.resource}")
                    version, expired = "", expired + 1
                    if expired > 1:  # expired again right after a relist: back off like any error
                        self._stopping.wait(backoff.next())
                    continue
                self.healthy, self.failed = False, True
                self._stats.count(f"error_{self.resource}")
                delay = backoff.next()
                log.warning("%s: %s; retrying in %.1fs", self.resource, error, delay)
                self._stopping.wait(delay)

    def interrupt(self) -> None:
        stream = self._stream
        if stream is not None:
            stream.close()

    def _list(self) -> str:
        listing = self._api.list(self.resource, field_selector=self._selector, keep=partial(trim, self.resource))
        self._sink(_Listed(self.resource, listing.items))
        self._stats.count(f"list_{self.resource}")
        self.synced = self.healthy = True
        return listing.resource_version

    def _watch(self, version: str) -> str:
        timeout = self._config.watch_timeout_seconds
        grace = self._config.watch_grace_seconds
        stream = self._api.watch(
            self.resource,
            resource_version=version,
            timeout_seconds=timeout,
            read_timeout=timeout + grace,
            field_selector=self._selector,
        )
        self._stream, self.healthy = stream, True
        self._stats.count(f"watch_{self.resource}")
        deadline = time.monotonic() + timeout + grace
        try:
            for kind, obj in stream:
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if kind != "BOOKMARK":
                    self._sink(_Event(self.resource, kind, trim(self.resource, obj)))
                if self._stopping.is_set() or time.monotonic() > deadline:
                    break
        finally:
            self._stream = None
            stream.close()
        return version


class _Coordinator(threading.Thread):
    """The single writer: applies events, reads configz through a bounded pool, publishes snapshots."""

    def __init__(
        self, state: ClusterState, settings: Settings, api: KubeApi, *, publish_labels: bool, config: TrackerConfig
    ) -> None:
        super().__init__(name="v4only-tracker", daemon=True)
        self._state, self._settings, self._api = state, settings, api
        self._labels_published, self._config = publish_labels, config
        self.stopping = threading.Event()
        self.stats = Stats()
        self._queue: queue.SimpleQueue[_Message] = queue.SimpleQueue()
        self._inventory = Inventory(settings.sysctl_names)
        self._pool = ThreadPoolExecutor(config.configz_workers, thread_name_prefix="v4only-configz")
        self._tokens = itertools.count(1)
        self._inflight: dict[str, int] = {}  # node -> token of the configz read in flight
        self._due: list[tuple[float, str]] = []  # heap of (monotonic time, node) for the next configz read
        self._next_read: dict[str, float] = {}
        self._warned: set[str] = set()
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
            _Reflector(
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

    def _handle(self, message: _Message) -> None:
        inventory = self._inventory
        if isinstance(message, _Listed):
            self._listed(message)
        elif isinstance(message, _Event):
            obj, deleted = message.obj, message.kind == "DELETED"
            if message.resource == "nodes":
                if deleted:
                    self._nodes_dirty |= inventory.remove_node(str((obj.get("metadata") or {}).get("name")))
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

    def _listed(self, message: _Listed) -> None:
        if message.resource == "nodes":
            changed, refetch = self._inventory.replace_nodes(message.items)
            self._nodes_dirty |= changed
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
            if not self._inventory.has_node(node):
                self._next_read.pop(node, None)  # the node is gone
                continue
            if self._next_read.get(node) != when or node in self._inflight:
                continue  # rescheduled, or already being read
            token = next(self._tokens)
            self._inflight[node] = token
            self.stats.count("configz_reads")
            try:
                self._pool.submit(self._read_configz, node, token)
            except RuntimeError:  # the pool is shut down: we are stopping
                return

    def _read_configz(self, node: str, token: int) -> None:
        try:
            self._queue.put(_Configz(node, token, self._api.kubelet_allowlist(node), None))
        except KubeError as error:
            self._queue.put(_Configz(node, token, None, error))

    def _configz_answered(self, answer: _Configz) -> None:
        if self._inflight.get(answer.node) != answer.token:
            return
        del self._inflight[answer.node]
        if answer.error is not None and answer.node not in self._warned:
            self._warned.add(answer.node)
            log.warning(
                "node %s: kubelet configuration not readable, capability unknown: %s", answer.node, answer.error
            )
        elif answer.error is None:
            self._warned.discard(answer.node)
        self._nodes_dirty |= self._inventory.set_allowlist(answer.node, answer.allowlist)
        if self._inventory.has_node(answer.node):
            jitter = random.uniform(0.9, 1.1)
            self._schedule(answer.node, time.monotonic() + self._config.configz_refresh_seconds * jitter)

    # ---- publishing

    def _publish_or_confirm(self, now: float) -> None:
        nodes, namespaces, pods = self.reflectors
        if self._synced_at is None:
            if not (nodes.synced and namespaces.synced and (pods.synced or pods.failed)):
                return
            self._synced_at = now
        first = self.capability is None
        if first and self._inflight and now - self._synced_at < self._config.initial_configz_wait_seconds:
            return
        dirty = first or self._nodes_dirty or self._namespaces_dirty
        if dirty and now - self._published_at >= self._config.publish_interval_seconds:
            self._publish(now)
        elif nodes.healthy and namespaces.healthy and now - self._confirmed_at >= self._config.confirm_interval_seconds:
            # Failed pods are extra evidence: without permission to watch them the rest is still fresh.
            self._state.confirm()
            self._confirmed_at = now

    def _publish(self, now: float) -> None:
        capability = self.capability
        if capability is None or self._nodes_dirty:
            capability = Capability.build(
                self._inventory.node_facts(),
                sysctl_names=self._settings.sysctl_names,
                labels_published=self._labels_published,
            )
        self._state.publish(capability, self._inventory.namespace_labels())
        self.capability = capability
        self.published = (capability, self._inventory.unread())
        self._nodes_dirty = self._namespaces_dirty = False
        self._published_at = self._confirmed_at = now
        self.stats.count("publishes")


class _LabelPublisher(threading.Thread):
    """While this replica holds the Lease: keep `v4only.io/ipv6-sysctl` on every node equal to its verdict."""

    def __init__(self, coordinator: _Coordinator, api: KubeApi, config: TrackerConfig) -> None:
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

    def run(self) -> None:
        stopping = self._coordinator.stopping
        while not stopping.is_set():
            if self._renew():
                published = self._coordinator.published
                if published is not None:
                    self._reconcile(*published)
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


def default_lease_namespace() -> str:
    """This pod's namespace ($POD_NAMESPACE or the service account's), else v4only-system."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE, encoding="utf-8") as handle:
            return handle.read().strip() or "v4only-system"
    except OSError:
        return "v4only-system"


class TrackerHandle:
    """A running tracker: `stop()` ends every thread (and gives the Lease up if this replica held it)."""

    def __init__(self, coordinator: _Coordinator, publisher: _LabelPublisher | None) -> None:
        self._coordinator, self._publisher = coordinator, publisher

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
        self._coordinator.stop(timeout)
        if self._publisher is not None:
            self._publisher.join(max(0.0, deadline - time.monotonic()))


def start_tracker(
    state: ClusterState,
    settings: Settings,
    api: KubeApi,
    *,
    publish_labels: bool,
    config: TrackerConfig | None = None,
) -> TrackerHandle:
    """Start the tracker's threads; `state` turns ready at the first publish."""
    config = config or TrackerConfig()
    coordinator = _Coordinator(state, settings, api, publish_labels=publish_labels, config=config)
    coordinator.start()
    publisher = _LabelPublisher(coordinator, api, config) if publish_labels else None
    if publisher is not None:
        publisher.start()
    return TrackerHandle(coordinator, publisher)
