"""One replica at a time: leader election on a coordination.k8s.io/v1 Lease, as client-go does it.

Model: k8s.io/client-go tools/leaderelection (`tryAcquireOrRenew`, `release`) with the Lease lock
(resourcelock/leaselock.go): the record is `holderIdentity`, `leaseDurationSeconds`, `acquireTime`,
`renewTime`, `leaseTransitions`; writes carry the resourceVersion that was read, so of two replicas
racing only one write succeeds (the other gets 409 Conflict and stays a follower). Like client-go, a
follower judges expiry by its own clock: the time it last *saw the record change*, plus the lease
duration, never by comparing `renewTime` with its clock (replicas' clocks may differ).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from webhook.adapters.kube import KubeApi, KubeError

log = logging.getLogger("webhook.leader")

SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


@dataclass(frozen=True, slots=True)
class LeaseTimings:
    """client-go's defaults for controllers (kube-controller-manager): 15 s / 10 s / 2 s."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


def micro_time(moment: datetime) -> str:
    """metav1.MicroTime as JSON: RFC 3339 with microseconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """`try_acquire_or_renew()` is one step (call it every `retry_period`); `leading` says the outcome."""

    def __init__(
        self,
        api: KubeApi,
        *,
        namespace: str,
        name: str,
        identity: str,
        timings: LeaseTimings = LeaseTimings(),
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._api, self._namespace, self._name, self.identity = api, namespace, name, identity
        self._timings, self._clock, self._wall = timings, clock, wall
        self._observed: tuple[Any, ...] | None = None  # the record as last seen
        self._observed_at = 0.0  # monotonic time it was last seen to change
        self._renewed_at: float | None = None  # monotonic time of our last successful write

    @property
    def leading(self) -> bool:
        """True while our last successful renewal is within the renew deadline."""
        renewed = self._renewed_at
        return renewed is not None and self._clock() - renewed < self._timings.renew_deadline

    def try_acquire_or_renew(self) -> bool:
        try:
            self._step()
        except KubeError as error:
            if error.status == 409:
                log.info("lease %s/%s: another replica wrote it first", self._namespace, self._name)
            else:
                log.warning("lease %s/%s: %s", self._namespace, self._name, error)
        return self.leading

    def release(self) -> None:
        """Give the lease up (client-go ReleaseOnCancel) so another replica takes over at once."""
        if self._renewed_at is None:
            return
        self._renewed_at = None
        try:
            lease = self._api.get_lease(self._namespace, self._name)
            if lease is None or _spec(lease).get("holderIdentity") != self.identity:
                return
            now = micro_time(self._wall())
            spec = {**_spec(lease), "holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": now}
            self._api.replace_lease(self._namespace, self._name, {**lease, "spec": spec})
            log.info("lease %s/%s released by %s", self._namespace, self._name, self.identity)
        except KubeError as error:
            log.warning("lease %s/%s: could not release: %s", self._namespace, self._name, error)

    def _step(self) -> None:
        now = self._wall()
        lease = self._api.get_lease(self._namespace, self._name)
        if lease is None:
            self._api.create_lease(self._namespace, self._new_lease(now))
            self._won("created")
            return
        spec = _spec(lease)
        self._observe(spec)
        holder = spec.get("holderIdentity") or ""
        if holder and holder != self.identity and not self._expired(spec):
            self._renewed_at = None
            return
        ours = holder == self.identity
        new_spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": _seconds(self._timings.lease_duration),
            "acquireTime": spec.get("acquireTime") if ours else micro_time(now),
            "renewTime": micro_time(now),
            "leaseTransitions": int(spec.get("leaseTransitions") or 0) + (0 if ours else 1),
        }
        # The read resourceVersion stays in metadata: a concurrent write makes this PUT fail with 409.
        self._api.replace_lease(self._namespace, self._name, {**lease, "spec": new_spec})
        self._won("renewed" if ours else f"taken over from {holder or 'nobody'}")

    def _won(self, how: str) -> None:
        if self._renewed_at is None:
            log.info("lease %s/%s %s: %s now leads", self._namespace, self._name, how, self.identity)
        self._renewed_at = self._clock()

    def _observe(self, spec: Mapping[str, Any]) -> None:
        record = (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseTransitions"))
        if record != self._observed:
            self._observed, self._observed_at = record, self._clock()

    def _expired(self, spec: Mapping[str, Any]) -> bool:
        duration = float(spec.get("leaseDurationSeconds") or self._timings.lease_duration)
        return self._clock() > self._observed_at + duration

    def _new_lease(self, now: datetime) -> dict[str, Any]:
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self._name, "namespace": self._namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": _seconds(self._timings.lease_duration),
                "acquireTime": micro_time(now),
                "renewTime": micro_time(now),
                "leaseTransitions": 0,
            },
        }


def _spec(lease: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = lease.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _seconds(value: float) -> int:
    # leaseDurationSeconds is an int32 in the API.
    return max(1, round(value))


def default_lease_namespace() -> str:
    """This pod's namespace ($POD_NAMESPACE or the service account's), else v4only-system."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE, encoding="utf-8") as handle:
            return handle.read().strip() or "v4only-system"
    except OSError:
        return "v4only-system"
