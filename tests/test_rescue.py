"""`v4only patch --rescue` against the fake API server: a SysctlForbidden storm, stopped within its bounds.

The storm is the one from the status report: a Deployment whose own manifest carries the sysctl, on nodes
whose kubelets refuse it, created before v4only managed the namespace; its ReplicaSet has left 200
Failed pods behind. The rescue restarts the Deployment (the webhook then removes the sysctl from each new
pod and adds the fallback), labels the nodes forbidden, and deletes the failed pods oldest first, at most
--max-deletions, keeping the newest one on each node as the capability tracker's evidence.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import capability_scenarios as sc
from tests import patch_scenarios as ps
from tests.fakekube import FakeKube, objects
from tests.fakekube.fixtures import running
from webhook.adapters import rbac_patcher

STORM = 200
LABEL = "v4only.io/ipv6-sysctl"


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with running(history_size=5000) as fake:  # a storm of pods and their events
        yield fake


def _storm(kube: FakeKube, *, namespace: str = "team", enabled: bool = True, count: int = STORM) -> dict:
    ps.forbidding_nodes(kube)
    sc.update_node(kube, "w-1", lambda n: n["metadata"]["labels"].update({LABEL: "allowed"}))  # stale, published
    ps.namespace(kube, namespace, enabled=enabled)
    dep = kube.put_object(objects.deployment("app", namespace, sysctls={sc.IPV6: "1"}))
    rs = kube.put_object(objects.replicaset("app-5d8f9c7b6d", namespace, owner=dep, sysctls={sc.IPV6: "1"},
                                            pod_labels=dep["spec"]["template"]["metadata"]["labels"]))
    for i in range(count):
        pod = objects.sysctl_forbidden_pod(f"w-{i % 2 + 1}", namespace, replicaset=rs, sysctls=(sc.IPV6,),
                                           name=f"app-5d8f9c7b6d-{i:05d}")
        pod["metadata"]["creationTimestamp"] = f"2025-06-01T10:{i // 60:02d}:{i % 60:02d}Z"
        kube.put_object(pod)
    return dep


def _failed_names(kube: FakeKube, namespace: str = "team") -> list[str]:
    return sorted(p["metadata"]["name"] for p in kube.list_objects("Pod", namespace)
                  if p["status"].get("reason") == "SysctlForbidden")


def test_a_storm_of_200_failed_pods_is_stopped_within_the_bounds(kube: FakeKube, tmp_path: Path) -> None:
    before = _storm(kube)
    kube.clear_requests()
    status, out = ps.patch(kube, tmp_path, "-n", "team", "--rescue", "--dry-run=none", "--max-deletions", "50")
    assert status == 0, out
    assert "Deployment  team       app   200     restarted  50" in out
    assert "node w-1: labelled v4only.io/ipv6-sysctl=forbidden" in out
    assert "node w-2: labelled v4only.io/ipv6-sysctl=forbidden" in out
    assert "200 SysctlForbidden pods: 50 deleted (oldest first), 148 left by --max-deletions=50, " \
           "2 kept as evidence (the newest on each node)" in out
    # The 50 oldest went; the newest on each node stays whatever the limit.
    assert _failed_names(kube) == [f"app-5d8f9c7b6d-{i:05d}" for i in range(50, STORM)]
    deletes = [r for r in kube.requests if r.method == "DELETE"]
    assert len(deletes) == 50 and all(r.body["preconditions"]["uid"] for r in deletes)
    # The Deployment restarted, its own spec (sysctl included) untouched: the webhook fixes each new pod.
    dep = kube.get_object("Deployment", "app", "team")
    assert dep["spec"]["template"]["spec"] == before["spec"]["template"]["spec"]
    assert "kubectl.kubernetes.io/restartedAt" in dep["spec"]["template"]["metadata"]["annotations"]
    assert {n: kube.get_object("Node", n)["metadata"]["labels"][LABEL] for n in ("w-1", "w-2")} == {
        "w-1": "forbidden", "w-2": "forbidden"}
    events = {(e["reason"], e["regarding"]["name"])
              for e in kube.list_objects("Event", "team", api_version="events.k8s.io/v1")}
    assert events == {("RemedyRestart", "app"), ("FailedPodsDeleted", "app")}
    assert ps.permissions(kube) <= rbac_patcher.RESCUE_CMD

    # Again, with room to delete the rest: no second restart (the failed pods predate the first one).
    kube.clear_requests()
    status, out = ps.patch(kube, tmp_path, "-n", "team", "--rescue", "--dry-run=none", "--max-deletions", "1000")
    assert status == 0, out
    assert "Deployment  team       app   150     unchanged  148" in out
    assert [r.method for r in kube.requests if r.method == "PATCH"] == []
    assert _failed_names(kube) == ["app-5d8f9c7b6d-00198", "app-5d8f9c7b6d-00199"]
    assert "node w-1: already v4only.io/ipv6-sysctl=forbidden" in out


def test_the_rescue_dry_runs_send_nothing_or_only_dry_runs(kube: FakeKube, tmp_path: Path) -> None:
    _storm(kube, count=20)
    kube.clear_requests()
    status, out = ps.patch(kube, tmp_path, "-n", "team", "--rescue", "--max-deletions", "5")
    assert status == 0
    assert ps.writes(kube) == []
    assert "Deployment  team       app   20      would restart  5" in out
    assert "node w-2: would be labelled v4only.io/ipv6-sysctl=forbidden" in out
    assert "dry run: nothing was sent; --dry-run=none rescues them" in out
    status, out = ps.patch(kube, tmp_path, "-n", "team", "--rescue", "--max-deletions", "5", "--dry-run=server")
    assert status == 0, out
    sent = ps.writes(kube)
    assert [m for m, _, _ in sent].count("DELETE") == 5 and all(dry for _, _, dry in sent)
    assert len(_failed_names(kube)) == 20
    assert kube.get_object("Node", "w-2")["metadata"]["labels"].get(LABEL) is None


def test_a_storm_in_a_namespace_that_is_not_opted_in_is_reported_not_touched(kube: FakeKube, tmp_path: Path) -> None:
    _storm(kube, namespace="plain", enabled=False, count=10)
    status, out = ps.patch(kube, tmp_path, "-A", "--rescue", "--dry-run=none")
    assert status == 0
    assert "Deployment  plain      app   10      skipped  0        neither the pod nor namespace plain has " \
           "v4only.io/inject=enabled" in out
    assert len(_failed_names(kube, "plain")) == 10


def test_owners_of_every_kind(kube: FakeKube, tmp_path: Path) -> None:
    ps.forbidding_nodes(kube)
    ps.namespace(kube, "team")
    sts = kube.put_object(objects.statefulset("db", "team", sysctls={sc.IPV6: "1"}))
    job = kube.put_object(objects.job("once", "team", sysctls={sc.IPV6: "1"}))
    for owner, name in ((sts, "db-0"), (job, "once-abcde"), (None, "bare")):
        pod = objects.sysctl_forbidden_pod("w-1", "team", sysctls=(sc.IPV6,), name=name)
        pod["metadata"]["ownerReferences"] = [objects.owner_reference(owner)] if owner else []
        kube.put_object(pod)
        older = objects.sysctl_forbidden_pod("w-2", "team", sysctls=(sc.IPV6,), name=f"{name}-old")
        older["metadata"]["ownerReferences"] = [objects.owner_reference(owner)] if owner else []
        older["metadata"]["creationTimestamp"] = "2025-01-01T00:00:00Z"
        older["spec"]["nodeName"] = "w-1"
        kube.put_object(older)
    status, out = ps.patch(kube, tmp_path, "-n", "team", "--rescue", "--dry-run=none")
    assert status == 0, out
    rows = {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in (
        "StatefulSet", "Job", "Pod")}
    assert "restarted" in rows["StatefulSet"]
    assert "not patched" in rows["Job"] and "its new pods pass through the webhook" in rows["Job"]
    assert "skipped" in rows["Pod"] and "--recreate-pods" in rows["Pod"]
    # The fixed owners' failed pods went but the newest on the node (evidence); the bare ones stay.
    assert _failed_names(kube) == ["bare", "bare-old", "once-abcde"]
