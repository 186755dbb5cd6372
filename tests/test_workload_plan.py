"""The pure planning of `v4only patch` (webhook/core/workload_plan.py) and kubectl's rollout rules
(webhook/core/rollout_status.py), without a server."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest

from tests.fakekube import objects
from tests.helpers import apply_ops, validate
from webhook.core.capability import Capability, NodeFacts
from webhook.core.dns_remedy import DnsFacts
from webhook.core.rollout_status import rollout_status
from webhook.core.settings import Settings
from webhook.core.workload_plan import plan_workload, pod_in_line, restart_ops, substantive
from webhook.core.workload_pods import deletion_order, pods_by_workload, recreated_pod
from webhook.core.workload_rollout import RESTARTED_AT, gitops_owner

SETTINGS = Settings()
ENABLED = {"v4only.io/inject": "enabled"}
FORBIDDEN = Capability.assume("forbidden", "test")
ALLOWED = Capability.assume("allowed", "test")
NOW = "2025-06-02T10:00:00Z"
IPV6 = "net.ipv6.conf.all.disable_ipv6"


def _plan(obj: dict[str, Any], **options: Any) -> Any:
    options.setdefault("namespace_labels", ENABLED)
    options.setdefault("capability", FORBIDDEN)
    options.setdefault("strategy", "restart")
    return plan_workload(obj, settings=SETTINGS, restarted_at=NOW, **options)


def _pod(owner: dict[str, Any], *, applied: str | None = None, name: str = "p", **extra: Any) -> dict[str, Any]:
    annotations = {"v4only.io/applied": applied} if applied else None
    return objects.pod(name, owner["metadata"]["namespace"], owner=owner, node_name="w-1", annotations=annotations,
                       labels=owner["spec"]["template"]["metadata"]["labels"], **extra)


def _stored(obj: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj["metadata"]["resourceVersion"] = "1234"
    return obj


# ---- shapes the webhook's template operations must handle, for both strategies

WORKLOADS = {
    "deployment": objects.deployment("web", "team"),
    "deployment-with-env-and-sysctl": objects.deployment(
        "web", "team", sysctls={IPV6: "1"},
        containers=[objects.container(env={"NODE_OPTIONS": "--max-old-space-size=512"})]),
    "statefulset": objects.statefulset("db", "team"),
    "daemonset": objects.daemonset("agent", "team"),
    "cronjob": objects.cronjob("nightly", "team"),
    "replicaset": objects.replicaset("loose", "team"),
}


@pytest.mark.parametrize("name", WORKLOADS)
def test_the_template_patch_applies_validates_and_is_idempotent(name: str) -> None:
    obj = _stored(WORKLOADS[name])
    plan = _plan(obj, strategy="template")
    assert plan.outcome == "changed" and plan.action == "patch"
    assert plan.patch[0] == {"op": "replace", "path": "/metadata/resourceVersion", "value": "1234"}
    patched = apply_ops(obj, list(plan.patch))  # RFC 6902 by the independent `jsonpatch` package
    validate(patched)
    again = _plan(patched, strategy="template")
    assert again.outcome == "unchanged", again.template_ops


@pytest.mark.parametrize("name", [n for n in WORKLOADS if n not in ("cronjob", "replicaset")])
def test_the_restart_patch_only_adds_the_annotation(name: str) -> None:
    obj = _stored(WORKLOADS[name])
    plan = _plan(obj)  # pods not known: the template decides
    assert plan.outcome == "changed" and plan.action == "restart" and plan.waitable
    patched = apply_ops(obj, list(plan.patch))
    validate(patched)
    template = patched["spec"]["template"]
    assert template["metadata"]["annotations"] == {**obj["spec"]["template"]["metadata"].get("annotations", {}),
                                                   RESTARTED_AT: NOW}
    assert template["spec"] == obj["spec"]["template"]["spec"]


def test_restart_ops_create_missing_parents_and_overwrite_an_earlier_restart() -> None:
    bare = {"spec": {"template": {"spec": {}}}}
    assert restart_ops(bare, "/spec/template", NOW) == [
        {"op": "add", "path": "/spec/template/metadata", "value": {"annotations": {RESTARTED_AT: NOW}}}]
    earlier = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: "2020-01-01T00:00:00Z"}}}}}
    ops = restart_ops(earlier, "/spec/template", NOW)
    assert ops == [{"op": "add", "path": "/spec/template/metadata/annotations/kubectl.kubernetes.io~1restartedAt",
                    "value": NOW}]
    assert apply_ops(earlier, ops)["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT] == NOW


def test_a_new_reason_wording_alone_is_no_change() -> None:
    ops = [{"op": "add", "path": "/spec/template/metadata/annotations/v4only.io~1reason", "value": "x"},
           {"op": "add", "path": "/spec/template/spec/containers/0/env", "value": []}]
    assert substantive(ops, "/spec/template") == (ops[1],)


# ---- the restart strategy looks at the pods


def test_restart_only_when_a_pod_is_not_what_the_webhook_makes_now() -> None:
    dep = _stored(objects.deployment("web", "team"))
    assert _plan(dep, pods=[]).outcome == "unchanged"
    assert _plan(dep, pods=[_pod(dep, applied="env")]).reason.startswith("its 1 pod already has env")
    stale = _plan(dep, pods=[_pod(dep, applied="env", name="a"), _pod(dep, name="b")])
    assert stale.outcome == "changed" and "1 of 2 pods do not have env yet" in stale.notes
    # Another remedy now (the nodes allow it): restart; sysctl and sysctl+affinity count as the same.
    assert _plan(dep, pods=[_pod(dep, applied="env")], capability=ALLOWED).outcome == "changed"
    assert _plan(dep, pods=[_pod(dep, applied="sysctl+affinity")], capability=ALLOWED).outcome == "unchanged"
    # Finished and deleting pods do not count; a refused one always does.
    done = _pod(dep, name="done")
    done["status"] = {"phase": "Succeeded"}
    assert _plan(dep, pods=[done]).outcome == "unchanged"
    refused = objects.sysctl_forbidden_pod("w-1", "team", sysctls=(IPV6,))
    refused["metadata"]["annotations"] = {"v4only.io/applied": "sysctl"}
    assert not pod_in_line(refused, namespace_labels=ENABLED, capability=ALLOWED, settings=SETTINGS)


PINNED = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    {"matchExpressions": [{"key": "v4only.io/ipv6-sysctl", "operator": "In", "values": ["allowed"]}]}]}}}


def test_a_pending_pod_held_by_a_pin_it_no_longer_needs_is_not_in_line() -> None:
    # Issue 10 item 1: made `env` by a webhook that kept the pin, it waits for a node labelled `allowed` forever
    # (component-helpers nodeaffinity); only a new pod, which the webhook now admits without the pin, gets
    # scheduled. A running one is past scheduling (IgnoredDuringExecution): it is left alone.
    dep = _stored(objects.deployment("web", "team", affinity=PINNED))
    pending = _pod(dep, applied="env", affinity=PINNED)
    del pending["spec"]["nodeName"]
    running = _pod(dep, applied="env", affinity=PINNED)
    assert not pod_in_line(pending, namespace_labels=ENABLED, capability=FORBIDDEN, settings=SETTINGS)
    assert pod_in_line(running, namespace_labels=ENABLED, capability=FORBIDDEN, settings=SETTINGS)
    plan = _plan(dep, pods=[pending])
    assert (plan.outcome, plan.action) == ("changed", "restart")
    assert _plan(dep, pods=[running]).outcome == "unchanged"


def test_with_a_trap_a_pod_is_in_line_when_it_has_the_dns_remedy() -> None:
    """The webhook gives these pods `sysctl+dns`: that is in line, and restarting them would give them the
    same again (a restart loop under `serve --reconcile`). A pod without the DNS remedy is not in line."""
    trap = DnsFacts(True, ("corp.example",), ("10.96.0.10",), "cluster.local", False)
    allowed = dataclasses.replace(ALLOWED, dns=trap)
    dep = _stored(objects.deployment("web", "team"))
    assert _plan(dep, pods=[_pod(dep, applied="sysctl+dns")], capability=allowed).outcome == "unchanged"
    assert _plan(dep, pods=[_pod(dep, applied="sysctl+affinity+dns")], capability=allowed).outcome == "unchanged"
    stale = _plan(dep, pods=[_pod(dep, applied="sysctl")], capability=allowed)
    assert stale.outcome == "changed" and stale.decision is not None and stale.decision.applied == "sysctl+dns"
    # The trap gone, or the finding unknown for a while: a pod keeps its harmless DNS remedy, nothing restarts
    # (no churn when the finding flaps); another remedy still counts.
    assert _plan(dep, pods=[_pod(dep, applied="sysctl+dns")], capability=ALLOWED).outcome == "unchanged"
    assert _plan(dep, pods=[_pod(dep, applied="env+dns")], capability=ALLOWED).outcome == "changed"


def test_pods_older_than_the_last_restart_belong_to_its_rollout() -> None:
    dep = _stored(objects.deployment("web", "team"))
    dep["spec"]["template"]["metadata"]["annotations"] = {RESTARTED_AT: "2025-06-02T12:00:00+02:00"}  # kubectl's
    old, new = _pod(dep, name="old"), _pod(dep, name="new")
    old["metadata"]["creationTimestamp"] = "2025-06-02T09:59:59Z"
    new["metadata"]["creationTimestamp"] = "2025-06-02T10:00:00Z"
    plan = _plan(dep, pods=[old])
    assert plan.outcome == "unchanged" and "1 pods predate its restart" in plan.notes[0]
    assert _plan(dep, pods=[old, new]).outcome == "changed"


def test_a_daemonset_pod_is_decided_for_its_own_node() -> None:
    nodes = [NodeFacts("a", allowlist=(IPV6,)), NodeFacts("b", allowlist=())]
    capability = Capability.build(nodes, sysctl_names=SETTINGS.sysctl_names, labels_published=True)
    ds = _stored(objects.daemonset("agent", "team"))
    pinned = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["b"]}]}]}}}
    pod = _pod(ds, applied="env", affinity=pinned)
    pod["spec"]["nodeName"] = "a"  # ignored: the webhook decides before scheduling
    assert pod_in_line(pod, namespace_labels=ENABLED, capability=capability, settings=SETTINGS)
    # Its template is never pinned (the controller would drop the daemon from b): env, and each pod its node's.
    plan = _plan(ds, capability=capability, strategy="template")
    assert plan.remedy == "env" and plan.reason.endswith("each pod gets its node's remedy")
    assert "daemon pods: sysctl on a; env on b" in plan.notes
    assert not any("affinity" in op["path"] for op in plan.template_ops)


# ---- kinds and skips


def test_what_is_skipped_and_why() -> None:
    dep = objects.deployment("web", "team")
    rs = objects.replicaset("web-1", "team", owner=dep)
    assert _plan(rs).skip == "owned" and "owned by Deployment/web" in _plan(rs).reason
    assert _plan(_pod(rs)).skip == "owned"
    assert _plan(objects.job("once", "team")).skip == "immutable"
    assert _plan(objects.cronjob("nightly", "team")).skip == "other"
    assert _plan(dep, namespace_labels={}).skip == "not-managed"
    paused = objects.deployment("web", "team")
    paused["spec"]["paused"] = True
    assert "kubectl rollout resume" in _plan(paused).reason
    assert _plan(paused, strategy="template").waitable is False
    loose = _stored(objects.replicaset("loose", "team"))
    assert _plan(loose, pods=[_pod(loose)]).skip == "other"
    deletes = _plan(loose, pods=[_pod(loose, name="a"), _pod(loose, applied="env", name="b")], recreate_pods=True)
    assert deletes.action == "delete-pods" and [p.name for p in deletes.delete_pods] == ["a"]
    opted_out = objects.deployment("web", "team", pod_annotations={"v4only.io/remedy": "none"})
    assert _plan(opted_out).outcome == _plan(opted_out, strategy="template").outcome == "unchanged"
    on_delete = objects.statefulset("db", "team")
    on_delete["spec"]["updateStrategy"] = {"type": "OnDelete"}
    plan = _plan(on_delete)
    assert plan.outcome == "changed" and not plan.waitable and "OnDelete" in plan.notes[-1]


def test_a_bare_pod() -> None:
    pod = objects.pod("bare", "team", node_name="w-1", labels=ENABLED)
    assert _plan(pod, namespace_labels={}).skip == "other"
    plan = _plan(pod, namespace_labels={}, recreate_pods=True)
    assert plan.outcome == "changed" and plan.recreate and plan.decision.remedy == "env"
    pod["metadata"]["annotations"] = {"v4only.io/applied": "env"}
    assert _plan(pod, namespace_labels={}).outcome == "unchanged"
    ended = objects.pod("ended", "team", phase="Succeeded", labels=ENABLED)
    assert _plan(ended, namespace_labels={}, recreate_pods=True).reason == "the pod has ended"


def test_a_recreated_pod_carries_only_what_create_accepts() -> None:
    pod = objects.pod("bare", "team", node_name="w-1")
    pod["metadata"].update(resourceVersion="9", managedFields=[{}], generateName="bare-")
    pod["spec"]["ephemeralContainers"] = [{"name": "debug", "image": "busybox"}]
    created = recreated_pod(pod, [{"op": "add", "path": "/metadata/labels", "value": {"x": "y"}}])
    assert set(created["metadata"]) == {"name", "generateName", "namespace", "labels"}
    assert "nodeName" not in created["spec"] and "ephemeralContainers" not in created["spec"]
    assert "status" not in created
    validate(created)


@pytest.mark.parametrize(
    ("labels", "annotations", "expected"),
    [
        ({"argocd.argoproj.io/instance": "shop"}, {}, "Argo CD (label argocd.argoproj.io/instance=shop)"),
        ({}, {"argocd.argoproj.io/tracking-id": "shop:apps/Deployment:team/web"},
         "Argo CD (annotation argocd.argoproj.io/tracking-id)"),
        ({"kustomize.toolkit.fluxcd.io/name": "apps"}, {}, "Flux (label kustomize.toolkit.fluxcd.io/name=apps)"),
        ({"helm.toolkit.fluxcd.io/name": "web"}, {}, "Flux (label helm.toolkit.fluxcd.io/name=web)"),
        ({"app.kubernetes.io/instance": "shop"}, {"argocd.argoproj.io/sync-wave": "1"},
         "Argo CD (label app.kubernetes.io/instance=shop)"),
        ({"app.kubernetes.io/instance": "shop", "app.kubernetes.io/managed-by": "Helm"}, {}, None),
        ({}, {}, None),
    ],
)
def test_gitops_owners(labels: dict[str, str], annotations: dict[str, str], expected: str | None) -> None:
    assert gitops_owner({"metadata": {"labels": labels, "annotations": annotations}}) == expected


# ---- pods and deletions


def test_pods_are_grouped_under_every_controller_above_them() -> None:
    dep = objects.deployment("web", "team")
    rs = objects.replicaset("web-1", "team", owner=dep)
    loose = objects.pod("bare", "team")
    owned = _pod(rs)
    grouped = pods_by_workload([owned, loose], [rs])
    assert grouped == {rs["metadata"]["uid"]: [owned], dep["metadata"]["uid"]: [owned]}


def _failed(name: str, node: str, created: str) -> dict[str, Any]:
    pod = objects.sysctl_forbidden_pod(node, "team", name=name, sysctls=(IPV6,))
    pod["metadata"]["creationTimestamp"] = created
    return pod


def test_deletions_go_oldest_first_within_the_limit_and_keep_the_newest_on_each_node() -> None:
    pods = [_failed(f"p{i}", f"n{i % 2}", f"2025-06-01T10:00:{i:02d}Z") for i in range(10)]
    delete, held = deletion_order(reversed(pods), 3)
    assert [p["metadata"]["name"] for p in delete] == ["p0", "p1", "p2"]
    assert [p["metadata"]["name"] for p in held] == ["p3", "p4", "p5", "p6", "p7"]  # p8, p9 kept (n0, n1)
    # A newer pod kept earlier (not in this batch) is the evidence now: the whole batch may go.
    newer = _failed("kept", "n0", "2025-06-01T11:00:00Z")
    delete, held = deletion_order(pods[::2], 10, others=[newer])
    assert len(delete) == 5 and not held
    assert deletion_order(pods, 0) == ([], [p for p in pods if p["metadata"]["name"] not in ("p8", "p9")])


# ---- rollout status (kubectl's rules and messages)


def _deployment(**status: Any) -> dict[str, Any]:
    dep = objects.deployment("web", "team", replicas=3)
    dep["metadata"]["generation"] = 2
    dep["status"] = {"observedGeneration": 2, **status}
    return dep


@pytest.mark.parametrize(
    ("status", "done", "message"),
    [
        ({"observedGeneration": 1}, False, "Waiting for deployment spec update to be observed..."),
        ({"updatedReplicas": 1, "replicas": 3}, False,
         'Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been updated...'),
        ({"updatedReplicas": 3, "replicas": 4}, False,
         'Waiting for deployment "web" rollout to finish: 1 old replicas are pending termination...'),
        ({"updatedReplicas": 3, "replicas": 3, "availableReplicas": 2}, False,
         'Waiting for deployment "web" rollout to finish: 2 of 3 updated replicas are available...'),
        ({"updatedReplicas": 3, "replicas": 3, "availableReplicas": 3}, True,
         'deployment "web" successfully rolled out'),
    ],
)
def test_deployment_rollout_status(status: dict[str, Any], done: bool, message: str) -> None:
    result = rollout_status(_deployment(**status))
    assert (result.done, result.failed, result.message) == (done, False, message)


def test_a_deployment_past_its_progress_deadline_has_failed() -> None:
    dep = _deployment(conditions=[{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}])
    result = rollout_status(dep)
    assert result.failed and result.message == 'deployment "web" exceeded its progress deadline'


def test_statefulset_and_daemonset_rollout_status() -> None:
    sts = objects.statefulset("db", "team", replicas=2)
    sts["metadata"]["generation"] = 2
    sts["status"].update(observedGeneration=2, readyReplicas=1)
    assert rollout_status(sts).message == "Waiting for 1 pods to be ready..."
    sts["status"].update(readyReplicas=2, updatedReplicas=1)
    assert rollout_status(sts).message == "Waiting for partitioned roll out to finish: 1 out of 2 new pods have " \
                                          "been updated..."
    sts["status"].update(updatedReplicas=2)
    assert rollout_status(sts).done
    del sts["spec"]["updateStrategy"]["rollingUpdate"]
    sts["status"].update(updateRevision="db-2", currentRevision="db-1")
    assert rollout_status(sts).message == "waiting for statefulset rolling update to complete 2 pods at revision " \
                                          "db-2..."
    ds = objects.daemonset("agent", "team", scheduled=3)
    ds["metadata"]["generation"] = 2
    ds["status"].update(observedGeneration=2, updatedNumberScheduled=2)
    assert rollout_status(ds).message == 'Waiting for daemon set "agent" rollout to finish: 2 out of 3 new pods ' \
                                         "have been updated..."
    ds["status"].update(updatedNumberScheduled=3, numberAvailable=3)
    assert rollout_status(ds).done
    ds["spec"]["updateStrategy"] = {"type": "OnDelete"}
    assert rollout_status(ds).done


def test_a_template_with_null_metadata_is_patched_with_either_strategy() -> None:
    dep = _stored(objects.deployment("web", "team"))
    dep["spec"]["template"]["metadata"] = None  # valid: ObjectMeta is optional
    for strategy in ("template", "restart"):
        plan = _plan(dep, strategy=strategy, namespace_labels={"v4only.io/inject": "enabled"})
        assert plan.outcome == "changed", plan.reason
        patched = apply_ops(dep, list(plan.patch))
        validate(patched)
        assert patched["spec"]["template"]["metadata"]["annotations"]


def test_a_statefulset_partition_keeps_its_lower_ordinals_and_patch_says_so() -> None:
    # stateful_set_control.go: a rolling update replaces only ordinals >= partition (minus ordinals.start).
    sts = _stored(objects.statefulset("db", "team", replicas=3))
    sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = 2
    sts["spec"]["template"]["metadata"]["annotations"] = {RESTARTED_AT: "2025-06-02T10:00:00Z"}
    old = [_pod(sts, name=f"db-{i}") for i in (0, 1)]
    for p in old:
        p["metadata"]["creationTimestamp"] = "2025-06-02T09:00:00Z"
    new = _pod(sts, name="db-2", applied="env")
    new["metadata"]["creationTimestamp"] = "2025-06-02T10:01:00Z"
    plan = _plan(sts, pods=[*old, new])
    assert plan.outcome == "unchanged"
    assert not any("replaces them" in n for n in plan.notes), plan.notes
    assert "partition 2 keeps the 2 pods below ordinal 2 as they are (2 without env): a rollout replaces only " \
           "ordinals >= 2 (spec.updateStrategy.rollingUpdate.partition)" in plan.notes
    # With spec.ordinals.start 5, the partition counts from the first ordinal: db-5 and db-6 are kept.
    sts["spec"]["ordinals"] = {"start": 5}
    shifted = [_pod(sts, name=f"db-{i}") for i in (5, 6, 7)]
    plan = _plan(sts, pods=shifted)
    assert "partition 2 keeps the 2 pods below ordinal 7 as they are (2 without env)" in plan.notes[-2]
    assert "1 of 1 pods do not have env yet" in plan.notes


def test_a_pod_with_the_dns_remedy_is_in_line_and_one_without_it_is_not() -> None:
    """`v4only.io/applied: sysctl+dns` matches a decision that adds the DNS remedy: a cured pod's workload is
    not restarted on every pass; a pod made before the trap was found is."""
    from dataclasses import replace as _replace

    from webhook.core.dns_remedy import DnsFacts

    trap = DnsFacts(known=True, traps=("corp.example",), nameservers=("10.152.183.10",), cluster_domain="cluster.local")
    capability = _replace(ALLOWED, dns=trap)
    dep = _stored(objects.deployment("web", "team"))
    cured = _pod(dep, applied="sysctl+dns")
    assert pod_in_line(cured, namespace_labels=ENABLED, capability=capability, settings=SETTINGS)
    assert not pod_in_line(_pod(dep, applied="sysctl"), namespace_labels=ENABLED, capability=capability,
                           settings=SETTINGS)
    # The finding went unknown: a pod that has the DNS remedy keeps it, nothing to restart.
    assert pod_in_line(cured, namespace_labels=ENABLED, capability=ALLOWED, settings=SETTINGS)
    assert _plan(dep, pods=[cured], capability=capability).outcome == "unchanged"
