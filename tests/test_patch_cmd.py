"""`v4only patch` against the fake API server: real HTTP, a real kubeconfig, the real client.

Rollouts are driven by tests/fakekube/controllers.py (status only, one step every 20 ms); every wait is
bounded. The client dry run of the Chronicle Deployment is compared exactly with
tests/fixtures/patch/chronicle-client-dry-run.txt (`V4ONLY_UPDATE_GOLDEN=1` rewrites it; read the diff).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import patch_scenarios as ps
from tests.fakekube import FakeKube, RolloutSimulator, objects
from tests.helpers import validate
from webhook.adapters import rbac_patcher
from webhook.cli.usage import UsageError

GOLDEN = ps.FIXTURES / "patch" / "chronicle-client-dry-run.txt"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


@pytest.fixture
def kube(fake_kube: FakeKube) -> FakeKube:
    """The shared fake API server (tests/fakekube/fixtures.py), under the short name these tests use."""
    return fake_kube


@pytest.fixture
def rollouts(kube: FakeKube) -> Iterator[RolloutSimulator]:
    with RolloutSimulator(kube, interval=0.02) as simulator:
        yield simulator


def _template(kube: FakeKube, kind: str, name: str, ns: str = "team") -> dict:
    obj = kube.get_object(kind, name, ns)
    assert obj is not None
    return obj["spec"]["jobTemplate"]["spec"]["template"] if kind == "CronJob" else obj["spec"]["template"]


def _env_names(template: dict) -> list[str]:
    return [e["name"] for e in template["spec"]["containers"][0].get("env", [])]


# ---- the Chronicle Deployment: see what will change, then fix it


def test_client_dry_run_of_the_chronicle_deployment_is_exact(kube: FakeKube, tmp_path: Path) -> None:
    ps.chronicle(kube)
    kube.clear_requests()
    status, out = ps.patch(kube, tmp_path, "-n", "chronicle")
    assert status == 0
    if os.environ.get("V4ONLY_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(out)
    assert out == GOLDEN.read_text()
    assert ps.writes(kube) == []  # a client dry run sends nothing


def test_one_command_fixes_chronicle_and_a_second_run_changes_nothing(
    kube: FakeKube, tmp_path: Path, rollouts: RolloutSimulator
) -> None:
    before = ps.chronicle(kube)
    status, out = ps.patch(kube, tmp_path, "-n", "chronicle", "--dry-run=none")
    assert status == 0, out
    assert "Deployment  chronicle  chronicle-backend  rolled out" in out
    after = kube.get_object("Deployment", "chronicle-backend", "chronicle")
    assert after is not None
    template = after["spec"]["template"]
    # The restart strategy leaves the spec alone: only the restart annotation is new.
    assert template["spec"] == before["spec"]["template"]["spec"]
    assert set(template["metadata"]["annotations"]) == {RESTARTED_AT}
    events = kube.list_objects("Event", "chronicle", api_version="events.k8s.io/v1")
    assert [(e["reason"], e["regarding"]["name"]) for e in events] == [("RemedyRestart", "chronicle-backend")]
    validate(events[0])
    # The new pods came through the webhook: the next run has nothing to do.
    kube.delete_object("Pod", "chronicle-backend-6b9f7c8d5-x7k2p", "chronicle")
    rs = kube.get_object("ReplicaSet", "chronicle-backend-6b9f7c8d5", "chronicle")
    ps.add_pods_of(kube, rs, "chronicle-backend-7c4d9b8f6-q2w3e", applied="env")
    kube.clear_requests()
    status, out = ps.patch(kube, tmp_path, "-n", "chronicle", "--dry-run=none")
    assert status == 0
    assert "chronicle-backend  unchanged" in out and "its 1 pod already has env" in out
    assert ps.writes(kube) == []


# ---- each kind


def _every_kind(kube: FakeKube) -> None:
    ps.forbidding_nodes(kube)
    ps.namespace(kube, "team")
    ps.deployment_with_pods(kube, "web", "team", replicas=2)
    sts = kube.put_object(objects.statefulset("db", "team"))
    ps.add_pods_of(kube, sts, "db-0")
    ds = kube.put_object(objects.daemonset("agent", "team"))
    ps.add_pods_of(kube, ds, "agent-x1")
    rs = kube.put_object(objects.replicaset("loose", "team"))
    ps.add_pods_of(kube, rs, "loose-a1")
    kube.put_object(objects.cronjob("nightly", "team"))
    kube.put_object(objects.job("once", "team"))
    kube.put_object(objects.pod("bare", "team", node_name="w-1"))


def test_every_kind_in_a_client_dry_run(kube: FakeKube, tmp_path: Path) -> None:
    _every_kind(kube)
    status, out = ps.patch(kube, tmp_path, "-n", "team", "--kind", "deployments,sts,ds,rs,cronjobs,jobs,pods",
                           "-o", "json")
    assert status == 0
    items = {(i["kind"], i["name"]): i for i in json.loads(out)["items"]}
    assert {k: (i["outcome"], i["result"]) for k, i in items.items() if i.get("skip") != "owned"} == {
        ("Deployment", "web"): ("changed", "would restart"),
        ("StatefulSet", "db"): ("changed", "would restart"),
        ("DaemonSet", "agent"): ("changed", "would restart"),
        ("ReplicaSet", "loose"): ("skipped", "skipped"),
        ("CronJob", "nightly"): ("skipped", "skipped"),
        ("Job", "once"): ("skipped", "skipped"),
        ("Pod", "bare"): ("skipped", "skipped"),
    }
    assert "immutable" in items[("Job", "once")]["skip"]
    assert "--recreate-pods" in items[("Pod", "bare")]["reason"]
    assert "does not roll out" in items[("ReplicaSet", "loose")]["reason"]
    assert items[("Deployment", "web")]["remedy"] == "env"
    # The owned ReplicaSet and pods are planned through their owners.
    assert {k for k, i in items.items() if i.get("skip") == "owned"} == {
        ("ReplicaSet", "web-5d8f9c7b6d"), ("Pod", "web-5d8f9c7b6d-p0"), ("Pod", "web-5d8f9c7b6d-p1"),
        ("Pod", "db-0"), ("Pod", "agent-x1"), ("Pod", "loose-a1"),
    }
    restart = items[("Deployment", "web")]["patch"]
    assert restart[0] == {"op": "replace", "path": "/metadata/resourceVersion",
                          "value": kube.get_object("Deployment", "web", "team")["metadata"]["resourceVersion"]}
    assert restart[1]["path"] == "/spec/template/metadata/annotations"


def test_every_kind_with_the_template_strategy_applied(
    kube: FakeKube, tmp_path: Path, rollouts: RolloutSimulator
) -> None:
    _every_kind(kube)
    status, out = ps.patch(kube, tmp_path, "-n", "team", "--kind", "deploy,sts,ds,rs,cj,pods", "--strategy",
                           "template", "--recreate-pods", "--dry-run=none")
    assert status == 0, out
    for kind, name in (("Deployment", "web"), ("StatefulSet", "db"), ("DaemonSet", "agent"),
                       ("ReplicaSet", "loose"), ("CronJob", "nightly")):
        template = _template(kube, kind, name)
        assert "NODE_OPTIONS" in _env_names(template), kind
        assert template["metadata"]["annotations"]["v4only.io/applied"] == "env"
        assert RESTARTED_AT not in template["metadata"]["annotations"]
    # The unowned ReplicaSet's pod was deleted (it re-creates it from the patched template); the bare pod
    # was deleted and created again, its change written in, unscheduled.
    assert kube.get_object("Pod", "loose-a1", "team") is None
    bare = kube.get_object("Pod", "bare", "team")
    assert bare is not None and "nodeName" not in bare["spec"] and "NODE_OPTIONS" in _env_names(bare)
    assert {("Deployment", "web"), ("StatefulSet", "db"), ("DaemonSet", "agent")} <= {
        (k, n) for k, _, n in rollouts.completed}
    # Run again: the templates have it now.
    status, out = ps.patch(kube, tmp_path, "-n", "team", "--strategy", "template", "-o", "json")
    outcomes = {(i["kind"], i["name"]): i["outcome"] for i in json.loads(out)["items"] if i.get("skip") != "owned"}
    assert outcomes[("Deployment", "web")] == outcomes[("CronJob", "nightly")] == "unchanged"


def test_a_bare_pod_is_recreated_unchanged_with_the_restart_strategy(kube: FakeKube, tmp_path: Path) -> None:
    ps.forbidding_nodes(kube)
    ps.namespace(kube, "team")
    old = kube.put_object(objects.pod("bare", "team", node_name="w-1"))
    status, out = ps.patch(kube, tmp_path, "-n", "team", "--kind", "pods", "--recreate-pods", "--dry-run=none")
    assert status == 0, out
    new = kube.get_object("Pod", "bare", "team")
    assert new is not None and new["metadata"]["uid"] != old["metadata"]["uid"]
    # Same spec, not scheduled yet: the webhook makes the change as the API server creates it.
    assert new["spec"]["containers"] == old["spec"]["containers"]
    assert "nodeName" not in new["spec"]
    delete = next(r for r in kube.requests if r.method == "DELETE")
    assert delete.body["preconditions"] == {"uid": old["metadata"]["uid"]}


# ---- dry-run modes


def test_server_dry_run_sends_dry_run_all_and_changes_nothing(kube: FakeKube, tmp_path: Path) -> None:
    _every_kind(kube)
    before = {(o["kind"], o["metadata"]["name"]): o["metadata"]["resourceVersion"]
              for kind in ("Deployment", "StatefulSet", "DaemonSet", "Pod") for o in kube.list_objects(kind, "team")}
    kube.clear_requests()
    status, out = ps.patch(kube, tmp_path, "-n", "team", "--dry-run=server", "--recreate-pods")
    assert status == 0, out
    sent = ps.writes(kube)
    assert sent and all(dry for _, _, dry in sent), sent
    assert {(m, p) for m, p, _ in sent} >= {
        ("PATCH", "/apis/apps/v1/namespaces/team/deployments/web"),
        ("PATCH", "/apis/apps/v1/namespaces/team/statefulsets/db"),
        ("DELETE", "/api/v1/namespaces/team/pods/bare"),
        ("POST", "/api/v1/namespaces/team/pods"),
    }
    after = {(o["kind"], o["metadata"]["name"]): o["metadata"]["resourceVersion"]
             for kind in ("Deployment", "StatefulSet", "DaemonSet", "Pod") for o in kube.list_objects(kind, "team")}
    assert after == before
    assert kube.list_objects("Event", "team") == []
    assert "dry run ok" in out and "server dry run (dryRun=All)" in out


def test_the_default_is_a_client_dry_run(kube: FakeKube, tmp_path: Path) -> None:
    _every_kind(kube)
    kube.clear_requests()
    status, out = ps.patch(kube, tmp_path, "-A")
    assert status == 0
    assert ps.writes(kube) == []
    assert out.count("\n--- ") + out.startswith("--- ") == 3  # one diff per changed workload
    assert "dry run: nothing was sent" in out


# ---- concurrency, conflicts, failures


def test_a_conflict_is_read_again_and_retried(kube: FakeKube, tmp_path: Path, rollouts: RolloutSimulator) -> None:
    ps.forbidding_nodes(kube)
    ps.namespace(kube, "team")
    ps.deployment_with_pods(kube, "web", "team")
    kube.conflict_next("Deployment", "web", 1, namespace="team")
    kube.clear_requests()
    status, out = ps.patch(kube, tmp_path, "-n", "team", "--kind", "deployments", "--dry-run=none")
    assert status == 0, out
    calls = [(r.method, r.body[0]["value"] if r.method == "PATCH" else None) for r in kube.requests
             if r.path == "/apis/apps/v1/namespaces/team/deployments/web"]
    # A 409, a fresh read, the plan made again from it, the patch again with that resourceVersion; then the
    # rollout is followed (more reads).
    assert [m for m, _ in calls[:3]] == ["PATCH", "GET", "PATCH"]
    rv = kube.get_object("Deployment", "web", "team")["metadata"]["resourceVersion"]
    assert calls[2][1] != rv  # the object moved on since (the rollout's status writes)
    assert "rolled out" in out


def test_a_precondition_that_no_longer_holds_is_a_conflict(kube: FakeKube, tmp_path: Path) -> None:
    """The resourceVersion precondition is real: another writer in between makes the API server answer 409."""
    ps.forbidding_nodes(kube)
    ps.namespace(kube, "team")
    ps.deployment_with_pods(kube, "web", "team")
    kube.conflict_next("Deployment", "web", 10, namespace="team")
    status, out = ps.patch(kube, tmp_path, "-n", "team", "--kind", "deployments", "--dry-run=none")
    assert status == 1
    assert "web   failed  409 Conflict 6 times: it kept changing while being patched; run again" in out
    assert "stopped: Deployment team/web: failed" in out


def test_max_in_flight_bounds_the_rollouts_and_a_failure_stops_the_rest(
    kube: FakeKube, tmp_path: Path, rollouts: RolloutSimulator
) -> None:
    ps.forbidding_nodes(kube)
    ps.namespace(kube, "team")
    for i in range(6):
        ps.deployment_with_pods(kube, f"web-{i}", "team")
    rollouts.fail("Deployment", "team", "web-2")
    status, out = ps.patch(kube, tmp_path, "-n", "team", "--kind", "deployments", "--dry-run=none",
                           "--max-in-flight", "1", "-o", "json")
    assert status == 1
    results = {i["name"]: i["result"] for i in json.loads(out)["items"] if i["kind"] == "Deployment"}
    assert results == {"web-0": "rolled out", "web-1": "rolled out", "web-2": "rollout failed",
                       "web-3": "not started", "web-4": "not started", "web-5": "not started"}
    assert rollouts.in_flight_max == 1
    failed = kube.list_objects("Event", "team", api_version="events.k8s.io/v1")
    assert ("RolloutFailed", "web-2", "Warning") in {(e["reason"], e["regarding"]["name"], e["type"]) for e in failed}
    status, text = ps.patch(kube, tmp_path, "-n", "team", "--kind", "deployments", "--dry-run=none",
                            "--max-in-flight", "2")
    assert 'deployment "web-2" exceeded its progress deadline' in text


def test_rollouts_run_several_at_a_time(kube: FakeKube, tmp_path: Path, rollouts: RolloutSimulator) -> None:
    ps.forbidding_nodes(kube)
    ps.namespace(kube, "team")
    for i in range(6):
        ps.deployment_with_pods(kube, f"web-{i}", "team")
    status, _ = ps.patch(kube, tmp_path, "-n", "team", "--kind", "deployments", "--dry-run=none",
                         "--max-in-flight", "3")
    assert status == 0
    assert 1 <= rollouts.in_flight_max <= 3
    assert len(rollouts.completed) == 6


# ---- GitOps, selectors, opt-in, usage


def test_gitops_managed_workloads_are_named(kube: FakeKube, tmp_path: Path) -> None:
    ps.forbidding_nodes(kube)
    ps.namespace(kube, "team")
    ps.deployment_with_pods(kube, "argo", "team", labels={"argocd.argoproj.io/instance": "shop"})
    ps.deployment_with_pods(kube, "flux", "team", labels={"kustomize.toolkit.fluxcd.io/name": "apps"})
    ps.deployment_with_pods(kube, "helm", "team", labels={"app.kubernetes.io/instance": "shop"})
    status, out = ps.patch(kube, tmp_path, "-n", "team", "--strategy", "template")
    assert status == 0
    assert ("note: GitOps: Argo CD (label argocd.argoproj.io/instance=shop) manages this Deployment and WILL REVERT "
            "a pod template change at its next sync; make the change in Git, or use --strategy restart") in out
    assert "note: GitOps: Flux (label kustomize.toolkit.fluxcd.io/name=apps) manages this Deployment" in out
    assert out.count("GitOps") == 2  # a Helm release label alone is not Argo CD
    _, restart = ps.patch(kube, tmp_path, "-n", "team", "-o", "json")
    notes = {i["name"]: i["notes"] for i in json.loads(restart)["items"]}
    assert any("the restart only adds kubectl.kubernetes.io/restartedAt" in n for n in notes["argo"])


def test_only_opted_in_workloads_and_the_selector(kube: FakeKube, tmp_path: Path) -> None:
    ps.forbidding_nodes(kube)
    ps.namespace(kube, "team")
    ps.namespace(kube, "plain", enabled=False)
    ps.deployment_with_pods(kube, "a", "team", labels={"tier": "web"})
    ps.deployment_with_pods(kube, "b", "team", labels={"tier": "db"})
    ps.deployment_with_pods(kube, "c", "plain")
    ps.deployment_with_pods(kube, "d", "plain", pod_labels={"app": "d", "v4only.io/inject": "enabled"})
    ps.deployment_with_pods(kube, "e", "team", pod_labels={"app": "e", "v4only.io/inject": "disabled"})
    _, out = ps.patch(kube, tmp_path, "-A", "--kind", "deployments", "-o", "json")
    outcomes = {i["name"]: (i["outcome"], i.get("skip")) for i in json.loads(out)["items"]}
    assert outcomes == {"a": ("changed", None), "b": ("changed", None), "c": ("skipped", "not-managed"),
                        "d": ("changed", None), "e": ("skipped", "not-managed")}
    _, out = ps.patch(kube, tmp_path, "-n", "team", "--kind", "deployments", "-l", "tier=web", "-o", "json")
    assert [i["name"] for i in json.loads(out)["items"]] == ["a"]
    _, text = ps.patch(kube, tmp_path, "-A", "--kind", "deployments")
    assert "3 changed, 0 unchanged, 0 skipped (not listed: 2 not opted in)" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((), "say where to look: -n NAMESPACE, or -A for all namespaces"),
        (("-n", "x", "--kind", "widgets"), "--kind: unknown kind 'widgets'"),
    ],
)
def test_usage_errors(kube: FakeKube, tmp_path: Path, argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        ps.patch(kube, tmp_path, *argv)


def test_bounds_are_checked_by_the_parser(kube: FakeKube, tmp_path: Path) -> None:
    for argv in (("--max-deletions", "100000"), ("--max-in-flight", "0")):
        with pytest.raises(SystemExit):
            ps.parse(kube, tmp_path, "-A", *argv)


def test_patch_uses_only_its_declared_permissions(kube: FakeKube, tmp_path: Path, rollouts: RolloutSimulator) -> None:
    _every_kind(kube)
    kube.conflict_next("Deployment", "web", 1, namespace="team")
    kube.clear_requests()
    for argv in (("--kind", "deploy,sts,ds,rs,cj,jobs,pods", "--recreate-pods", "--dry-run=none"),
                 ("--strategy", "template", "--dry-run=server")):
        ps.patch(kube, tmp_path, "-A", *argv)
    used = ps.permissions(kube)
    assert used <= rbac_patcher.PATCH_CMD, sorted(used - rbac_patcher.PATCH_CMD)


def test_templates_without_metadata_are_patched(kube: FakeKube, tmp_path: Path, rollouts: RolloutSimulator) -> None:
    """Valid, and common in hand-written manifests: a CronJob whose jobTemplate and pod template have no
    metadata, a Deployment whose template has labels and null annotations (issue 11)."""
    ps.forbidding_nodes(kube)
    ps.namespace(kube, "team")
    cron = objects.cronjob("bare-cron", "team")
    del cron["spec"]["jobTemplate"]["metadata"], cron["spec"]["jobTemplate"]["spec"]["template"]["metadata"]
    kube.put_object(cron)
    web = objects.deployment("nulls", "team")
    web["spec"]["template"]["metadata"]["annotations"] = None
    kube.put_object(web)
    status, out = ps.patch(kube, tmp_path, "-n", "team", "--kind", "cj,deploy", "--strategy", "template",
                           "--dry-run=none")
    assert status == 0, out
    for kind, name in (("CronJob", "bare-cron"), ("Deployment", "nulls")):
        template = _template(kube, kind, name)
        assert template["metadata"]["annotations"]["v4only.io/applied"] == "env", kind
        obj = kube.get_object(kind, name, "team")
        validate({k: v for k, v in obj.items() if k != "status"})
