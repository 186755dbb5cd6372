"""The sysctl+affinity pin end to end (issue 10 items 1-3): through the real HTTPS server (/mutate), through
`v4only review`, and through `v4only patch` against the fake API server.

- A pin left from an earlier decision goes when the remedy is no longer sysctl+affinity: no node may carry
  `allowed` any more, and a required term nothing matches keeps the pod Pending (component-helpers
  nodeaffinity).
- A DaemonSet template is never pinned: its controller checks the template's node affinity per node and
  would drop the daemon from every node without the label (daemon_controller.go NodeShouldRunDaemonPod).
- An empty node-selector term selects no node (nodeaffinity.go isEmptyNodeSelectorTerm): it stays empty.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import capability_scenarios as sc
from tests import patch_scenarios as ps
from tests.fakekube import FakeKube, RolloutSimulator, objects
from tests.helpers import admission_review, apply_ops, decode_patch, validate
from tests.server_harness import ServerThread, make_tls
from webhook.cli import review as review_cmd
from webhook.cli.main import main
from webhook.core.settings import Settings
from webhook.loops.state import ClusterState

IPV6 = "net.ipv6.conf.all.disable_ipv6"
SYSCTL = {"name": IPV6, "value": "1"}
PIN = {"key": "v4only.io/ipv6-sysctl", "operator": "In", "values": ["allowed"]}
ZONE_A = {"key": "zone", "operator": "In", "values": ["a"]}
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
NS = "--namespace-labels=v4only.io/inject=enabled"
# What the DaemonSet controller adds to each daemon pod (daemonset_util.go AddOrUpdateDaemonPodTolerations).
DAEMON_TOLERATIONS = [
    *({"key": f"node.kubernetes.io/{k}", "operator": "Exists", "effect": "NoExecute"} for k in ("not-ready", "unreachable")),
    *({"key": f"node.kubernetes.io/{k}", "operator": "Exists", "effect": "NoSchedule"}
      for k in ("disk-pressure", "memory-pressure", "pid-pressure", "unschedulable")),
]


def _node(name: str, zone: str, allows: bool, **extra: Any) -> dict[str, Any]:
    """A Node as `review --nodes` reads it: kubelet allowlist annotation, the tracker's published label."""
    return objects.node(name, labels={"zone": zone, "v4only.io/ipv6-sysctl": "allowed" if allows else "forbidden"},
                        annotations={"v4only.io/kubelet-allowed-unsafe-sysctls": IPV6 if allows else ""}, **extra)


# w-a allows; w-b (zone b) and w-c (zone a, cordoned) refuse.
NODES = [_node("w-a", "a", True), _node("w-b", "b", False), _node("w-c", "a", False, unschedulable=True)]


@pytest.fixture
def nodes_file(tmp_path: Path) -> Path:
    path = tmp_path / "nodes.yaml"
    path.write_text(yaml.safe_dump_all(NODES))
    return path


@pytest.fixture
def server(tmp_path: Path, nodes_file: Path):
    capability = review_cmd.capability_from_file(str(nodes_file), Settings())
    state = ClusterState.static(capability, {"team-a": {"v4only.io/inject": "enabled"}})
    with ServerThread(make_tls(tmp_path), state=state) as running:
        yield running


def _terms(*terms: dict[str, Any]) -> dict[str, Any]:
    return {"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": list(terms)}}}


def _pod(**spec: Any) -> dict[str, Any]:
    body = {"containers": [{"name": "app", "image": "registry.example/app:1"}], **spec}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "team-a",
            "labels": {"v4only.io/inject": "enabled"}}, "spec": body}


def _mutate(server: ServerThread, pod: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str], dict[str, Any]]:
    """POST /mutate: (operations, warnings, the pod as admitted, schema-checked)."""
    with server.client() as client:
        reply = client.post("/mutate", content=json.dumps(admission_review(pod)).encode(),
                            headers={"Content-Type": "application/json"})
    assert reply.status_code == 200
    response = reply.json()["response"]
    ops = decode_patch(response) or []
    admitted = apply_ops(pod, ops)
    validate(admitted)
    return ops, response.get("warnings", []), admitted


# ---- /mutate


def test_a_pinned_pod_that_now_gets_env_loses_the_pin_and_a_second_call_changes_nothing(server: ServerThread) -> None:
    # Pinned earlier (e.g. a template v4only patched); another webhook has since set nodeSelector zone=b,
    # whose only node refuses the sysctl: with the pin kept it would stay Pending for good.
    pinned = _pod(nodeSelector={"zone": "b"}, securityContext={"sysctls": [SYSCTL]},
                  affinity=_terms({"matchExpressions": [PIN]}))
    _, warnings, admitted = _mutate(server, pinned)
    assert warnings[0].startswith("env: 0 of 1 schedulable node")
    assert "affinity" not in admitted["spec"] and admitted["spec"]["securityContext"]["sysctls"] == []
    assert admitted["metadata"]["annotations"]["v4only.io/applied"] == "env"
    assert _mutate(server, admitted)[0] == []  # reinvocation: nothing more


def test_the_users_own_terms_keep_their_meaning_when_the_pin_goes(server: ServerThread) -> None:
    own = _pod(nodeSelector={"zone": "b"}, securityContext={"sysctls": [SYSCTL]},
               affinity=_terms({"matchExpressions": [ZONE_A, PIN]}, {"matchExpressions": [PIN]}))
    _, _, admitted = _mutate(server, own)
    assert admitted["spec"]["affinity"] == _terms({"matchExpressions": [ZONE_A]})


def test_an_empty_term_is_not_pinned_and_the_second_call_agrees(server: ServerThread) -> None:
    # Tolerating the cordon: w-a and w-c (zone a) are candidates, w-b (zone b) is not, since the empty term
    # selects no node. Pinned, `{}` became "any node labelled allowed" and a second call counted differently.
    tolerate_cordon = [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]
    for empty in ({}, {"matchExpressions": []}):
        pod = _pod(affinity=_terms({"matchExpressions": [ZONE_A]}, empty), tolerations=tolerate_cordon)
        ops, warnings, admitted = _mutate(server, pod)
        assert warnings[0].startswith("sysctl+affinity: 1 of 2 schedulable nodes allow"), warnings
        assert admitted["spec"]["affinity"] == _terms({"matchExpressions": [ZONE_A, PIN]}, empty), ops
        again, again_warnings, _ = _mutate(server, admitted)
        assert again == [] and again_warnings == warnings


def _daemon_pod(template_spec: dict[str, Any], node: str) -> dict[str, Any]:
    """The pod the DaemonSet controller creates for `node`: its tolerations added
    (AddOrUpdateDaemonPodTolerations) and its required affinity replaced by the node's name
    (ReplaceDaemonSetPodNodeNameNodeAffinity)."""
    spec = copy.deepcopy(template_spec)
    spec["tolerations"] = [*spec.get("tolerations", []), *DAEMON_TOLERATIONS]
    spec["affinity"] = _terms({"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]})
    return _pod(**spec)


def test_a_daemonset_template_is_never_pinned_and_each_node_gets_what_review_said(
    server: ServerThread, nodes_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ds = objects.daemonset("agent", "team-a")
    path = tmp_path / "ds.yaml"
    path.write_text(yaml.safe_dump(ds))
    assert main(["review", str(path), "--nodes", str(nodes_file), NS, "-o", "review"]) == 0
    warnings = json.loads(capsys.readouterr().out)["response"]["warnings"]
    # w-c is cordoned, but the controller's unschedulable toleration keeps a daemon pod there.
    assert warnings[0] == f"env: 1 of 3 nodes running its pods allow {IPV6}; each pod gets its node's remedy"
    assert "daemon pods: sysctl on w-a; env on w-b, w-c" in warnings
    assert main(["review", str(path), "--nodes", str(nodes_file), NS, "-o", "json"]) == 0
    assert "affinity" not in json.loads(capsys.readouterr().out)["spec"]["template"]["spec"]
    for node, remedy in (("w-a", "sysctl"), ("w-b", "env"), ("w-c", "env")):
        _, _, admitted = _mutate(server, _daemon_pod(ds["spec"]["template"]["spec"], node))
        assert admitted["metadata"]["annotations"]["v4only.io/applied"] == remedy, node


def test_a_daemonset_whose_only_refusing_node_is_cordoned_does_not_get_the_sysctl(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = tmp_path / "two.yaml"
    nodes.write_text(yaml.safe_dump_all([NODES[0], NODES[2]]))
    path = tmp_path / "ds.yaml"
    path.write_text(yaml.safe_dump(objects.daemonset("agent", "team-a")))
    assert main(["review", str(path), "--nodes", str(nodes), NS, "-o", "json"]) == 0
    template = json.loads(capsys.readouterr().out)["spec"]["template"]
    assert template["metadata"]["annotations"]["v4only.io/applied"] == "env"
    assert "sysctls" not in template["spec"]["securityContext"]


# ---- v4only patch against the fake API server


@pytest.fixture
def kube(fake_kube: FakeKube) -> FakeKube:
    return fake_kube


@pytest.fixture
def rollouts(kube: FakeKube):
    with RolloutSimulator(kube, interval=0.02) as simulator:
        yield simulator


def _mixed(kube: FakeKube) -> None:
    """w-1 (zone a) allows, w-2 (zone b) refuses; the tracker's labels are published."""
    sc.add_node(kube, "w-1", (IPV6,), labels={"zone": "a", "v4only.io/ipv6-sysctl": "allowed"})
    sc.add_node(kube, "w-2", ("net.ipv4.ip_forward",), labels={"zone": "b", "v4only.io/ipv6-sysctl": "forbidden"})


def _template(kube: FakeKube, kind: str, name: str) -> dict[str, Any]:
    obj = kube.get_object(kind, name, "team")
    assert obj is not None
    validate(obj)
    return obj["spec"]["template"]


def test_patch_template_takes_the_pin_off_a_template_that_now_gets_env(
    kube: FakeKube, tmp_path: Path, rollouts: RolloutSimulator
) -> None:
    ps.forbidding_nodes(kube)
    ps.namespace(kube, "team")
    ps.deployment_with_pods(kube, "web", "team", sysctls={IPV6: "1"}, affinity=_terms({"matchExpressions": [PIN]}),
                            applied="sysctl+affinity")
    status, out = ps.patch(kube, tmp_path, "-n", "team", "--kind", "deploy", "--strategy", "template",
                           "--dry-run=none")
    assert status == 0, out
    spec = _template(kube, "Deployment", "web")["spec"]
    assert "affinity" not in spec and spec["securityContext"]["sysctls"] == []


def test_recreate_pods_takes_the_pin_off_a_bare_pod(kube: FakeKube, tmp_path: Path) -> None:
    ps.forbidding_nodes(kube)
    ps.namespace(kube, "team")
    kube.put_object(objects.pod("bare", "team", node_name="w-1", sysctls={IPV6: "1"},
                                affinity=_terms({"matchExpressions": [PIN]}),
                                annotations={"v4only.io/applied": "sysctl+affinity"}))
    status, out = ps.patch(kube, tmp_path, "-n", "team", "--kind", "pods", "--strategy", "template",
                           "--recreate-pods", "--dry-run=none")
    assert status == 0, out
    new = kube.get_object("Pod", "bare", "team")
    assert new is not None and "affinity" not in new["spec"] and "nodeName" not in new["spec"]
    validate(new)


def test_patch_template_never_pins_a_daemonset(kube: FakeKube, tmp_path: Path, rollouts: RolloutSimulator) -> None:
    _mixed(kube)
    ps.namespace(kube, "team")
    ds = kube.put_object(objects.daemonset("agent", "team", scheduled=2))
    ps.add_pods_of(kube, ds, "agent-1", node="w-1")
    ps.add_pods_of(kube, ds, "agent-2", node="w-2")
    status, out = ps.patch(kube, tmp_path, "-n", "team", "--kind", "ds", "--strategy", "template", "--dry-run=none")
    assert status == 0, out
    assert "daemon pods: sysctl on w-1; env on w-2" in out
    template = _template(kube, "DaemonSet", "agent")
    assert "affinity" not in template["spec"]
    assert template["metadata"]["annotations"]["v4only.io/applied"] == "env"


def test_patch_template_leaves_an_empty_term_empty_and_a_second_run_changes_nothing(
    kube: FakeKube, tmp_path: Path, rollouts: RolloutSimulator
) -> None:
    _mixed(kube)
    sc.add_node(kube, "w-3", ("net.ipv4.ip_forward",), labels={"zone": "a", "v4only.io/ipv6-sysctl": "forbidden"})
    ps.namespace(kube, "team")
    ps.deployment_with_pods(kube, "web", "team", affinity=_terms({"matchExpressions": [ZONE_A]}, {}))
    status, out = ps.patch(kube, tmp_path, "-n", "team", "--kind", "deploy", "--strategy", "template",
                           "--dry-run=none")
    assert status == 0, out
    terms = _template(kube, "Deployment", "web")["spec"]["affinity"]["nodeAffinity"][REQUIRED]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [ZONE_A, PIN]}, {}]
    status, out = ps.patch(kube, tmp_path, "-n", "team", "--kind", "deploy", "--strategy", "template", "-o", "json")
    assert [i["outcome"] for i in json.loads(out)["items"] if i["kind"] == "Deployment"] == ["unchanged"]
