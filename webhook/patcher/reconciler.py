"""`v4only serve --reconcile`: the workload patcher as a controller, in one elected replica.

Threads, all stopped by `ReconcilerHandle.stop()`:
- the failed-pod reflector: list, then watch, pods with `status.phase=Failed` (the tracker's selector),
  keeping only those refused with SysctlForbidden for a managed sysctl (trimmed); every replica runs it;
- the loop: leader election on its own Lease (`v4only-patcher`, next to the tracker's), and while this
  replica leads, every `pass_seconds`:
  1. rescue: the failed pods first seen at least `settle_seconds` ago (a storm arrives in bursts) go
     through the same `Rescuer` as `v4only patch --rescue --dry-run=none`: their workload is restarted
     (or patched, with strategy `template`), then the failed pods are deleted, oldest first, at most
     `max_deletions_per_pass`, the newest on each node kept as the tracker's evidence;
  2. namespaces that gained `v4only.io/inject=enabled` (seen in the tracker's namespace labels) get the
     restart strategy, workload by workload (Kyverno#4968 is the same gap in a peer).
Capability and namespace labels come from the tracker's `ClusterState`, so the webhook and the
reconciler decide with the same snapshot. Rollouts (restarts and template patches) pass a token bucket
(`rollouts_per_minute`, `burst`); a workload the reconciler restarted is not restarted again for
`cooldown_seconds` (its old pods keep failing while the rollout proceeds). Every action is an Event
(events.k8s.io/v1) on the workload.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook.adapters.kube import KubeApi, KubeError
from webhook.adapters.kube_workloads import WorkloadApi
from webhook.adapters.progress import Progress
from webhook.core import keys
from webhook.core.evidence import FAILED_PODS
from webhook.core.settings import Settings
from webhook.core.workload_plan import WorkloadPlan
from webhook.core.workload_pods import refused_by_sysctl
from webhook.core.workload_rollout import Strategy
from webhook.loops.backoff import Backoff
from webhook.loops.leader import LeaderElector, LeaseTimings, default_lease_namespace
from webhook.loops.state import ClusterState
from webhook.loops.stats import Stats
from webhook.patcher.rescue import Rescuer
from webhook.patcher.workloads import (
    EventRecorder,
    Executor,
    Planner,
    Scope,
    now_rfc3339,
    plan_scope,
    read_pods,
    trim_pod,
)

log = logging.getLogger("webhook.reconciler")

NAMESPACE_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


@dataclass(frozen=True, slots=True)
class ReconcilerConfig:
    """Limits and timings; the defaults suit a cluster, tests shrink them."""

    strategy: Strategy = "restart"
    rollouts_per_minute: float = 6.0  # token bucket refill
    burst: int = 3  # token bucket size
    max_deletions_per_pass: int = 100
    pass_seconds: float = 2.0
    settle_seconds: float = 5.0
    cooldown_seconds: float = 600.0
    watch_timeout_seconds: int = 300
    watch_grace_seconds: float = 30.0
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    lease_namespace: str = ""  # "" = this pod's namespace, as the tracker's
    lease_name: str = "v4only-patcher"
    lease: LeaseTimings = field(default_factory=LeaseTimings)
    identity: str = ""


class TokenBucket:
    """`capacity` tokens, refilled at `rate` per second; `take()` spends one if there is one."""

    def __init__(self, rate: float, capacity: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate, self._capacity, self._clock = rate, max(1, capacity), clock
        self._tokens, self._at = float(self._capacity), clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class _FailedPods(threading.Thread):
    """List and watch failed pods; keep the SysctlForbidden ones (uid -> (first seen, trimmed pod))."""

    def __init__(self, api: KubeApi, settings: Settings, config: ReconcilerConfig, stopping: threading.Event,
                 stats: Stats) -> None:
        super().__init__(name="v4only-reconcile-pods", daemon=True)
        self._api, self._settings, self._config, self._stopping, self._stats = api, settings, config, stopping, stats
        self._lock = threading.Lock()
        self._pods: dict[str, tuple[float, dict[str, Any]]] = {}
        self._stream: Any = None
        self.synced = False

    def settled(self, older_than: float) -> list[dict[str, Any]]:
        """The pods first seen before `older_than` (monotonic)."""
        with self._lock:
            return [pod for seen, pod in self._pods.values() if seen <= older_than]

    def forget(self, uids: set[str]) -> None:
        with self._lock:
            for uid in uids:
                self._pods.pop(uid, None)

    def run(self) -> None:
        backoff = Backoff(self._config.backoff_initial_seconds, self._config.backoff_max_seconds)
        version = ""
        while not self._stopping.is_set():
            try:
                if not version:
                    version = self._list()
                version = self._watch(version)
                backoff.reset()
            except KubeError as error:
                if self._stopping.is_set():
                    break
                if error.status == 410:
                    version = ""
                    continue
                self._stats.count("error_pods")
                delay = backoff.next()
                log.warning("failed pods: %s; retrying in %.1fs", error, delay)
                self._stopping.wait(delay)

    def interrupt(self) -> None:
        stream = self._stream
        if stream is not None:
            stream.close()

    def _keep(self, obj: dict[str, Any]) -> dict[str, Any]:
        return trim_pod(obj) if refused_by_sysctl(obj, self._settings) else {}

    def _list(self) -> str:
        listing = self._api.list("pods", field_selector=FAILED_PODS, keep=self._keep)
        now = time.monotonic()
        with self._lock:
            old = self._pods
            self._pods = {}
            for pod in listing.items:
                if pod:
                    uid = _uid(pod)
                    self._pods[uid] = (old[uid][0] if uid in old else now, pod)
        self.synced = True
        return listing.resource_version

    def _watch(self, version: str) -> str:
        timeout = self._config.watch_timeout_seconds
        stream = self._api.watch("pods", resource_version=version, timeout_seconds=timeout,
                                 read_timeout=timeout + self._config.watch_grace_seconds, field_selector=FAILED_PODS)
        self._stream = stream
        try:
            for kind, obj in stream:
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if kind == "BOOKMARK":
                    continue
                kept = self._keep(obj) if kind != "DELETED" else {}
                with self._lock:
                    uid = _uid(obj)
                    if kept:
                        self._pods.setdefault(uid, (time.monotonic(), kept))
                    else:
                        self._pods.pop(uid, None)
                if self._stopping.is_set():
                    break
        finally:
            self._stream = None
            stream.close()
        return version


def _uid(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")


class _Loop(threading.Thread):
    def __init__(self, state: ClusterState, settings: Settings, api: KubeApi, config: ReconcilerConfig,
                 pods: _FailedPods, stopping: threading.Event, stats: Stats) -> None:
        super().__init__(name="v4only-reconcile", daemon=True)
        self._state, self._settings, self._config = state, settings, config
        self._pods, self._stopping, self.stats = pods, stopping, stats
        self._wapi = WorkloadApi(api)
        self._events = EventRecorder(self._wapi, instance=config.identity)
        identity = config.identity or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
        self.elector = LeaderElector(api, namespace=config.lease_namespace or default_lease_namespace(),
                                     name=config.lease_name, identity=identity, timings=config.lease)
        self._bucket = TokenBucket(config.rollouts_per_minute / 60.0, config.burst)
        self._restarted: dict[str, float] = {}  # workload uid -> monotonic time the reconciler rolled it
        self._handled: set[str] = set()  # failed pod uids dealt with for good (v4only cannot fix their workload)
        self._evidence: set[str] = set()  # failed pod uids kept as the tracker's evidence (newest on their node)
        self._opted_in: set[str] | None = None  # opted-in namespaces at the last look (None: not looked yet)
        self._namespaces: list[str] = []  # namespaces waiting for the restart strategy, oldest first
        self._pending: dict[str, list[WorkloadPlan]] = {}  # namespace -> restarts not yet sent (rate limit)

    @property
    def watching(self) -> bool:
        return self._opted_in is not None

    def run(self) -> None:
        next_pass = 0.0
        while not self._stopping.is_set():
            leading = self.elector.try_acquire_or_renew()
            self._watch_namespaces()
            now = time.monotonic()
            if leading and self._state.ready and now >= next_pass:
                next_pass = now + self._config.pass_seconds
                cooldown = self._config.cooldown_seconds
                self._restarted = {uid: at for uid, at in self._restarted.items() if now - at < cooldown}
                try:
                    self._rescue()
                    self._restart_namespaces()
                except Exception:  # a bug must not end the controller: log it, try again next pass
                    log.exception("reconciler: unexpected error")
            self._stopping.wait(min(self._config.lease.retry_period, self._config.pass_seconds))
        self.elector.release()

    # ---- namespaces that gain the opt-in label

    def _watch_namespaces(self) -> None:
        """Queue the namespaces that gained the opt-in label since the last look. Followers queue them too:
        one that becomes the leader restarts them again, which changes nothing where the old leader already
        did (pods in line are never restarted)."""
        if not self._state.ready:
            return
        labels = self._state.view().namespaces
        opted = {name for name, ns in labels.items()
                 if ns.get(keys.INJECT) == keys.ENABLED and name not in self._settings.excluded_namespaces}
        if self._opted_in is not None:
            for name in sorted(opted - self._opted_in):
                if name not in self._namespaces:
                    log.info("namespace %s gained %s=%s: restarting its workloads", name, keys.INJECT, keys.ENABLED)
                    self._namespaces.append(name)
                    self.stats.count("namespaces_opted_in")
        self._opted_in = opted

    def _restart_namespaces(self) -> None:
        while self._namespaces and not self._stopping.is_set():
            namespace = self._namespaces[0]
            if namespace not in self._pending:
                self._pending[namespace] = self._plan_namespace(namespace)
            plans = self._pending[namespace]
            while plans:
                if not self._bucket.take():
                    self.stats.count("rate_limited")
                    return
                self._send(plans.pop(0))
            del self._pending[namespace]
            self._namespaces.pop(0)

    def _plan_namespace(self, namespace: str) -> list[WorkloadPlan]:
        planner = self._planner(strategy="restart")
        scope = Scope(namespace, None, NAMESPACE_KINDS)
        quiet = Progress(enabled=False)
        read_pods(self._wapi, planner, scope, quiet)
        return [p for p in plan_scope(self._wapi, planner, scope, quiet) if p.outcome == "changed" and p.patch]

    def _send(self, plan: WorkloadPlan) -> None:
        executor = Executor(self._wapi, self._planner(strategy="restart"), dry_run=False, events=self._events)
        result = executor.send(plan)
        if result.ok and result.result in ("restarted", "patched"):
            self._restarted[plan.uid] = time.monotonic()
            self.stats.count("rollouts")
        elif not result.ok:
            log.warning("%s %s/%s: %s: %s", plan.kind, plan.namespace, plan.name, result.result, result.detail)
            executor.record(plan, "could not restart", result.detail, warning=True, reason="RemedyFailed")

    # ---- rescue

    def _rescue(self) -> None:
        known = self._pods.settled(time.monotonic() - self._config.settle_seconds)
        uids = {_uid(p) for p in known}
        self._handled &= uids  # forget pods that are gone
        self._evidence &= uids
        fresh = [p for p in known if _uid(p) not in self._handled and _uid(p) not in self._evidence]
        if not fresh:
            return
        # The evidence kept earlier goes round again with the new pods: once a newer failed pod stands on its
        # node it is deleted like the others. Passed as `others` it stayed for good, so a storm that trickled
        # in over several passes (one new pod per node each time) was never cleaned up.
        again = [p for p in known if _uid(p) in self._evidence]
        planner = self._planner(strategy=self._config.strategy)
        executor = Executor(self._wapi, planner, dry_run=False, events=self._events)
        rescuer = Rescuer(self._wapi, planner, executor, self._settings, "none",
                          self._config.max_deletions_per_pass, labels_published=False, gate=self._gate)
        report = rescuer.rescue([*fresh, *again], {}, others=[p for p in known if _uid(p) in self._handled])
        held = {(e.kind, e.namespace, e.name) for e in report.entries if e.result == "held back"}
        for entry in report.entries:
            self.stats.count(f"rescue_{entry.result.replace(' ', '_')}")
            if entry.plan is not None and entry.result in ("restarted", "patched"):
                self._restarted[entry.plan.uid] = time.monotonic()
                self.stats.count("rollouts")
        for _ in range(report.deleted):
            self.stats.count("pods_deleted")
        # Looked at again next pass: pods of a workload the rate limit held back, and pods over the
        # deletion limit. Deleted pods leave through the watch; the tracker's evidence is kept until a newer
        # one supersedes it; the others stay for good (a workload v4only cannot fix: the report says why).
        self._evidence = set(report.kept_uids)
        for pod in [*fresh, *again]:
            uid = _uid(pod)
            if uid not in report.held_back_uids and uid not in report.kept_uids and rescuer.owner_key(pod) not in held:
                self._handled.add(uid)

    def _gate(self, plan: WorkloadPlan) -> tuple[bool, str] | None:
        """Hold a rollout back: (True, why) it was rolled recently (counts as fixed); (False, why) rate limit."""
        restarted = self._restarted.get(plan.uid)
        if restarted is not None and time.monotonic() - restarted < self._config.cooldown_seconds:
            return True, f"restarted {time.monotonic() - restarted:.0f}s ago; its rollout replaces the failing pods"
        if not self._bucket.take():
            self.stats.count("rate_limited")
            return False, f"rate limit ({self._config.rollouts_per_minute:g} rollouts a minute): next pass"
        return None

    def _planner(self, *, strategy: Strategy) -> Planner:
        view = self._state.view()
        return Planner(capability=view.capability, namespaces=view.namespaces, settings=self._settings,
                       strategy=strategy, restarted_at=now_rfc3339())


class ReconcilerHandle:
    """A running reconciler: `stop()` ends its threads and gives its Lease up."""

    def __init__(self, loop: _Loop, pods: _FailedPods, stopping: threading.Event) -> None:
        self._loop, self._pods, self._stopping = loop, pods, stopping

    @property
    def leading(self) -> bool:
        return self._loop.elector.leading

    @property
    def watching(self) -> bool:
        """The namespaces' labels have been seen once: from now on a namespace gaining the label is restarted."""
        return self._loop.watching

    @property
    def stats(self) -> Counter[str]:
        """Counters: rollouts, pods_deleted, rate_limited, namespaces_opted_in, rescue_<result>, error_pods."""
        return self._loop.stats.snapshot()

    def stop(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        self._stopping.set()
        self._pods.interrupt()
        for thread in (self._loop, self._pods):
            thread.join(max(0.0, deadline - time.monotonic()))


def start_reconciler(
    state: ClusterState, settings: Settings, api: KubeApi, *, config: ReconcilerConfig | None = None
) -> ReconcilerHandle:
    """Start the reconciler next to the tracker that fills `state` (same api connection is fine)."""
    config = config or ReconcilerConfig()
    stopping = threading.Event()
    stats = Stats()
    pods = _FailedPods(api, settings, config, stopping, stats)
    loop = _Loop(state, settings, api, config, pods, stopping, stats)
    pods.start()
    loop.start()
    return ReconcilerHandle(loop, pods, stopping)
