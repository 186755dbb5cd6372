"""`serve --reconcile` against the fake API server: the real tracker feeds the reconciler, as in `serve`.

Timings are shrunk (a pass every 50 ms, a 1 s Lease, failed pods settle for 0.2 s); every wait is
bounded (`wait_until`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from tests import capability_scenarios as sc
from tests import patch_scenarios as ps
from tests.fakekube import FakeKube, objects
from tests.test_tracker import FAST
from webhook.adapters import rbac_patcher, rbac_used
from webhook.adapters.kube import KubeApi
from webhook.adapters.kubelet import KubeletAccess, KubeletConfigz
from webhook.loops.leader import LeaseTimings
from webhook.loops.state import ClusterState
from webhook.patcher.reconciler import ReconcilerConfig, ReconcilerHandle, TokenBucket, start_reconciler
from webhook.tracker.start import start_tracker

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
QUICK = ReconcilerConfig(
    rollouts_per_minute=600.0,
    burst=10,
    max_deletions_per_pass=100,
    pass_seconds=0.05,
    settle_seconds=0.2,
    cooldown_seconds=60.0,
    watch_timeout_seconds=2,
    watch_grace_seconds=1.0,
    backoff_initial_seconds=0.05,
    backoff_max_seconds=0.3,
    lease_namespace="v4only-system",
    lease=LeaseTimings(lease_duration=1.0, renew_deadline=0.7, retry_period=0.1),
)


@pytest.fixture
def kube(quick_kube: FakeKube) -> FakeKube:
    quick_kube.put_object(objects.namespace("v4only-system"))
    return quick_kube


@contextmanager
def reconciling(kube: FakeKube, tmp_path: Path, config: ReconcilerConfig = QUICK, name: str = "a"
                ) -> Iterator[ReconcilerHandle]:
    directory = tmp_path / name
    directory.mkdir(exist_ok=True)
    api = KubeApi.connect(kubeconfig=str(kube.kubeconfig_path(directory)))
    state = ClusterState(max_age_seconds=30.0)
    configz = KubeletConfigz(api, KubeletAccess(proxy_fallback=True))  # kubelets scripted via the node proxy
    tracker = start_tracker(state, sc.SETTINGS, api, publish_labels=False, config=FAST, configz=configz)
    handle = start_reconciler(state, sc.SETTINGS, api, config=replace(config, identity=f"replica-{name}"))
    try:
        sc.wait_until(lambda: state.ready, what="the tracker's first snapshot")
        yield handle
    finally:
        handle.stop()
        tracker.stop()
        api.close()


def _restarted(kube: FakeKube, name: str, ns: str = "team") -> bool:
    obj = kube.get_object("Deployment", name, ns)
    return RESTARTED_AT in ((obj or {}).get("spec", {}).get("template", {}).get("metadata", {}).get("annotations")
                            or {})


def _events(kube: FakeKube, ns: str = "team") -> list[dict]:
    return kube.list_objects("Event", ns, api_version="events.k8s.io/v1")


def _label_namespace(kube: FakeKube, name: str) -> None:
    namespace = kube.get_object("Namespace", name, "")
    assert namespace is not None
    namespace["metadata"]["labels"]["v4only.io/inject"] = "enabled"
    kube.put_object(namespace)


def test_a_namespace_that_gains_the_label_is_restarted(kube: FakeKube, tmp_path: Path) -> None:
    ps.forbidding_nodes(kube)
    ps.namespace(kube, "team", enabled=False)
    for name in ("web", "api"):
        ps.deployment_with_pods(kube, name, "team")
    ps.deployment_with_pods(kube, "done", "team", applied="env")  # its pods already went through the webhook
    with reconciling(kube, tmp_path) as handle:
        sc.wait_until(lambda: handle.leading and handle.watching, what="leadership")
        assert not _restarted(kube, "web")  # nothing happens before the label
        _label_namespace(kube, "team")
        sc.wait_until(lambda: _restarted(kube, "web") and _restarted(kube, "api"), what="both restarted")
        sc.wait_until(lambda: len(_events(kube)) == 2, what="an Event on each")
        # A rollout is counted once its patch and Event are sent: the Event may be seen a moment before.
        sc.wait_until(lambda: handle.stats["rollouts"] >= 2, what="both rollouts counted")
        assert handle.stats["namespaces_opted_in"] == 1 and handle.stats["rollouts"] == 2
    assert not _restarted(kube, "done")
    events = _events(kube)
    assert {(e["reason"], e["regarding"]["name"], e["reportingController"]) for e in events} == {
        ("RemedyRestart", "web", "v4only.io/patcher"), ("RemedyRestart", "api", "v4only.io/patcher")}
    assert all(e["note"].startswith("v4only restarted it for the env remedy: env: 0 of 2") for e in events)


def test_rollouts_are_rate_limited(kube: FakeKube, tmp_path: Path) -> None:
    ps.forbidding_nodes(kube)
    ps.namespace(kube, "team", enabled=False)
    for i in range(4):
        ps.deployment_with_pods(kube, f"web-{i}", "team")
    config = replace(QUICK, rollouts_per_minute=0.5, burst=2)
    with reconciling(kube, tmp_path, config) as handle:
        sc.wait_until(lambda: handle.leading and handle.watching, what="leadership")
        _label_namespace(kube, "team")
        sc.wait_until(lambda: handle.stats["rollouts"] == 2 and handle.stats["rate_limited"] >= 3,
                      what="two rollouts, then the limit")
        assert sum(_restarted(kube, f"web-{i}") for i in range(4)) == 2


def test_a_storm_is_rescued_continuously(kube: FakeKube, tmp_path: Path) -> None:
    ps.forbidding_nodes(kube)
    ps.namespace(kube, "team")
    dep = kube.put_object(objects.deployment("app", "team", sysctls={sc.IPV6: "1"}))
    rs = kube.put_object(objects.replicaset("app-5d8f9c7b6d", "team", owner=dep, sysctls={sc.IPV6: "1"},
                                            pod_labels=dep["spec"]["template"]["metadata"]["labels"]))
    # On a loaded machine the 40 puts take longer than QUICK's 0.2 s settle time, so the storm may be seen over
    # several passes: that must not matter (see the trickle test below).
    config = replace(QUICK, max_deletions_per_pass=10)
    with reconciling(kube, tmp_path, config) as handle:
        sc.wait_until(lambda: handle.leading, what="leadership")
        for i in range(40):
            pod = objects.sysctl_forbidden_pod(f"w-{i % 2 + 1}", "team", replicaset=rs, sysctls=(sc.IPV6,),
                                               name=f"app-5d8f9c7b6d-{i:05d}")
            pod["metadata"]["creationTimestamp"] = f"2025-06-01T10:00:{i:02d}Z"
            kube.put_object(pod)
        sc.wait_until(lambda: _restarted(kube, "app"), what="the Deployment restarted")
        # Ten a pass, until only the newest failed pod on each node is left (the tracker's evidence).
        # Polled slowly: with a 20 ms poll (each one copies every pod out of the fake) the clean-up did not finish
        # in 40 s on a loaded machine; at 0.5 s it takes about 1 s.
        sc.wait_until(lambda: len(kube.list_objects("Pod", "team")) == 2, timeout=30, interval=0.5,
                      what="the storm cleaned up")
        # The pass counts its deletions once it has made them all: the fake may be empty a moment before.
        sc.wait_until(lambda: handle.stats["pods_deleted"] >= 38, what="the deletions counted")
        assert handle.stats["rollouts"] == 1 and handle.stats["pods_deleted"] == 38
        # More failed pods of the old ReplicaSet while the rollout runs: deleted, no second restart.
        for i in range(40, 45):
            pod = objects.sysctl_forbidden_pod("w-1", "team", replicaset=rs, sysctls=(sc.IPV6,),
                                               name=f"app-5d8f9c7b6d-{i:05d}")
            pod["metadata"]["creationTimestamp"] = "2025-06-01T09:00:00Z"
            kube.put_object(pod)
        sc.wait_until(lambda: handle.stats["pods_deleted"] == 43, what="the late pods deleted")
        assert handle.stats["rollouts"] == 1
    reasons = sorted(e["reason"] for e in _events(kube))
    assert reasons[0] == "FailedPodsDeleted" and reasons[-1] == "RemedyRestart"


def test_a_storm_that_trickles_in_is_cleaned_up(kube: FakeKube, tmp_path: Path) -> None:
    """One new failed pod per node in each pass: each pass keeps the newest on each node as the tracker's
    evidence, and the evidence kept by the pass before must go once a newer pod supersedes it. (It was passed
    on as pods that stay for good: nothing of such a storm was ever deleted.)"""
    ps.forbidding_nodes(kube)
    ps.namespace(kube, "team")
    dep = kube.put_object(objects.deployment("app", "team", sysctls={sc.IPV6: "1"}))
    rs = kube.put_object(objects.replicaset("app-5d8f9c7b6d", "team", owner=dep, sysctls={sc.IPV6: "1"},
                                            pod_labels=dep["spec"]["template"]["metadata"]["labels"]))
    with reconciling(kube, tmp_path) as handle:
        sc.wait_until(lambda: handle.leading, what="leadership")
        def rescued() -> int:
            return sum(n for key, n in handle.stats.items() if key.startswith("rescue_"))

        for batch in range(5):
            seen = rescued()
            for node in (1, 2):
                pod = objects.sysctl_forbidden_pod(f"w-{node}", "team", replicaset=rs, sysctls=(sc.IPV6,),
                                                   name=f"app-5d8f9c7b6d-{batch}{node}")
                pod["metadata"]["creationTimestamp"] = f"2025-06-01T10:00:{batch:02d}Z"
                kube.put_object(pod)
            sc.wait_until(lambda: rescued() > seen, what=f"batch {batch} rescued")  # noqa: B023 (waited for at once)
        sc.wait_until(lambda: len(kube.list_objects("Pod", "team")) == 2, timeout=15, interval=0.2,
                      what="all but the newest pod on each node deleted")
        left = sorted(p["metadata"]["name"] for p in kube.list_objects("Pod", "team"))
        assert left == ["app-5d8f9c7b6d-41", "app-5d8f9c7b6d-42"]
        assert handle.stats["rollouts"] == 1


def test_one_replica_acts(kube: FakeKube, tmp_path: Path) -> None:
    ps.forbidding_nodes(kube)
    ps.namespace(kube, "team", enabled=False)
    ps.deployment_with_pods(kube, "web", "team")
    with reconciling(kube, tmp_path, name="a") as first, reconciling(kube, tmp_path, name="b") as second:
        sc.wait_until(lambda: first.leading != second.leading and first.watching and second.watching,
                      what="one leader")
        _label_namespace(kube, "team")
        sc.wait_until(lambda: _restarted(kube, "web"), what="the restart")
        sc.wait_until(lambda: len(_events(kube)) == 1, what="its Event")
        sc.wait_until(lambda: first.stats["rollouts"] + second.stats["rollouts"] >= 1, what="the rollout counted")
        assert first.stats["rollouts"] + second.stats["rollouts"] == 1
        leader = "replica-a" if first.leading else "replica-b"
        assert _events(kube)[0]["reportingInstance"] == leader


def test_the_reconciler_uses_only_its_declared_permissions(kube: FakeKube, tmp_path: Path) -> None:
    ps.forbidding_nodes(kube)
    ps.namespace(kube, "team", enabled=False)
    ps.deployment_with_pods(kube, "web", "team")
    rs = kube.get_object("ReplicaSet", "web-5d8f9c7b6d", "team")
    kube.clear_requests()
    with reconciling(kube, tmp_path) as handle:
        sc.wait_until(lambda: handle.leading and handle.watching, what="leadership")
        _label_namespace(kube, "team")
        kube.put_object(objects.sysctl_forbidden_pod("w-1", "team", replicaset=rs, sysctls=(sc.IPV6,)))
        kube.put_object(objects.sysctl_forbidden_pod("w-1", "team", replicaset=rs, sysctls=(sc.IPV6,)))
        sc.wait_until(lambda: handle.stats["pods_deleted"] == 1, what="a rescue")
    used = ps.permissions(kube)
    # nodes/proxy: these scenarios script kubelets through the node proxy, the opt-in fallback (`reconciling`).
    declared = rbac_used.SERVE | rbac_patcher.RECONCILER | rbac_used.PROXY_FALLBACK
    assert used <= declared, sorted(used - declared)


def test_the_token_bucket() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=1.0, capacity=2, clock=lambda: now[0])
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    now[0] = 0.5
    assert not bucket.take()
    now[0] = 1.0
    assert bucket.take() and not bucket.take()
    now[0] = 100.0
    assert [bucket.take() for _ in range(3)] == [True, True, False]
