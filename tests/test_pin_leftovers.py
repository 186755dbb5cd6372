"""Pins an earlier decision (or an older v4only) left behind, end to end (issue 10 items 1 and 3): through the real
HTTPS server (/mutate, reinvoked as the API server does), and `v4only patch` against the fake API server.

- A term that holds only v4only's pin, beside the pod's own terms (an older v4only pinned empty terms), is
  v4only's: any remedy but sysctl+affinity removes it, so the decision may not count it as matching every node.
  Counted so, a second review (the reinvocation) disagreed with the first, and nodes the pod's own terms exclude
  were counted, and kept reachable through the pin.
- A pod left Pending by a pin it no longer needs (`env`, and no node labelled `allowed`) is replaced by `patch`:
  only a new pod, which the webhook admits without the pin, can be scheduled.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import capability_scenarios as sc
from tests import patch_scenarios as ps
from tests.fakekube import FakeKube, RolloutSimulator, objects
from tests.helpers import admission_review, apply_ops, decode_patch, pod, validate
from tests.server_harness import ServerThread, make_tls
from webhook.core.capability import Capability, NodeFacts
from webhook.core.settings import Settings
from webhook.loops.state import ClusterState

IPV6 = "net.ipv6.conf.all.disable_ipv6"
PIN = {"key": "v4only.io/ipv6-sysctl", "operator": "In", "values": ["allowed"]}
ZONE_A = {"key": "zone", "operator": "In", "values": ["a"]}
ZONE_B = {"key": "zone", "operator": "In", "values": ["b"]}


def _required(*terms: dict[str, Any]) -> dict[str, Any]:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}}


def _terms(obj: dict[str, Any]) -> list[Any]:
    return obj["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]


# ---- /mutate


def _facts(name: str, allows: bool, zone: str) -> NodeFacts:
    labels = {"kubernetes.io/hostname": name, "zone": zone, "v4only.io/ipv6-sysctl": "allowed" if allows else "forbidden"}
    return NodeFacts(name=name, labels=labels, allowlist=("net.ipv6.*",) if allows else ())


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    """Zone a: w-1 and w-2 allow. Zone b: w-3 refuses."""
    nodes = [_facts("w-1", True, "a"), _facts("w-2", True, "a"), _facts("w-3", False, "b")]
    capability = Capability.build(nodes, sysctl_names=Settings().sysctl_names, labels_published=True)
    state = ClusterState.static(capability, {"team-a": {"v4only.io/inject": "enabled"}})
    with ServerThread(make_tls(tmp_path), state=state) as running:
        yield running


def _admit(server: ServerThread, obj: dict[str, Any], uid: str) -> tuple[dict[str, Any], dict[str, Any]]:
    with server.client() as client:
        reply = client.post("/mutate", content=json.dumps(admission_review(obj, uid=uid)).encode(),
                            headers={"Content-Type": "application/json"})
    assert reply.status_code == 200
    response = reply.json()["response"]
    admitted = apply_ops(obj, decode_patch(response) or [])
    validate(admitted)
    return response, admitted


def test_a_pin_only_term_beside_the_pods_own_leaves_and_a_reinvocation_agrees(server: ServerThread) -> None:
    # The pod's own term keeps it in zone b, whose only node refuses; an older v4only pinned its empty second term.
    pinned = pod(affinity=_required({"matchExpressions": [ZONE_B, PIN]}, {"matchExpressions": [PIN]}),
                 securityContext={"sysctls": [{"name": IPV6, "value": "1"}]})
    first, admitted = _admit(server, pinned, "u-1")
    assert first["warnings"][0] == f"env: 0 of 1 schedulable node allows {IPV6} (kubelet allowedUnsafeSysctls)"
    assert _terms(admitted["spec"]) == [{"matchExpressions": [ZONE_B]}]  # zone a is out of reach again
    assert admitted["spec"]["securityContext"] == {"sysctls": []}
    second, _ = _admit(server, admitted, "u-2")
    assert "patch" not in second, decode_patch(second)
    assert second["warnings"][0] == first["warnings"][0]


def test_v4onlys_own_selector_alone_still_counts_as_none(server: ServerThread) -> None:
    # The pin-only term is the whole selector v4only added to a pod that had none: the pod may go anywhere.
    response, admitted = _admit(server, pod(affinity=_required({"matchExpressions": [PIN]})), "u-1")
    assert response["warnings"][0] == (f"sysctl+affinity: 2 of 3 schedulable nodes allow {IPV6}; "
                                       "pinned to v4only.io/ipv6-sysctl=allowed")
    assert _terms(admitted["spec"]) == [{"matchExpressions": [PIN]}]
    assert "patch" not in _admit(server, admitted, "u-2")[0]


# ---- v4only patch


@pytest.fixture
def rollouts(fake_kube: FakeKube) -> Iterator[RolloutSimulator]:
    with RolloutSimulator(fake_kube, interval=0.02) as simulator:
        yield simulator


def _node(kube: FakeKube, name: str, allows: bool, zone: str) -> None:
    labels = {"zone": zone, "v4only.io/ipv6-sysctl": "allowed" if allows else "forbidden"}
    sc.add_node(kube, name, (IPV6,) if allows else ("net.ipv4.ip_forward",), labels=labels)


def _items(out: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(i["kind"], i["name"]): i for i in json.loads(out)["items"] if i.get("skip") != "owned"}


def test_the_template_strategy_takes_a_pin_only_term_out(fake_kube: FakeKube, tmp_path: Path,
                                                         rollouts: RolloutSimulator) -> None:
    kube = fake_kube
    _node(kube, "w-1", True, "a")
    _node(kube, "w-2", True, "a")
    _node(kube, "w-3", False, "b")
    ps.namespace(kube, "team")
    kube.put_object(objects.deployment("web", "team", sysctls={IPV6: "1"}, affinity=_required(
        {"matchExpressions": [ZONE_B, PIN]}, {"matchExpressions": [PIN]})))
    status, out = ps.patch(kube, tmp_path, "-n", "team", "--kind", "deploy", "--strategy", "template",
                           "--dry-run=none")
    assert status == 0, out
    stored = kube.get_object("Deployment", "web", "team")
    assert stored is not None
    validate(stored)
    template = stored["spec"]["template"]
    assert _terms(template["spec"]) == [{"matchExpressions": [ZONE_B]}]
    assert template["metadata"]["annotations"]["v4only.io/applied"] == "env"
    status, out = ps.patch(kube, tmp_path, "-n", "team", "--kind", "deploy", "--strategy", "template", "-o", "json")
    assert status == 0 and _items(out)[("Deployment", "web")]["outcome"] == "unchanged"


def test_a_pod_left_pending_by_its_pin_is_restarted(fake_kube: FakeKube, tmp_path: Path) -> None:
    # A webhook that kept the pin when it chose env: the pod waits for a node labelled `allowed`, and none is.
    kube = fake_kube
    _node(kube, "w-1", False, "a")
    ps.namespace(kube, "team")
    dep = ps.deployment_with_pods(kube, "web", "team", applied="env", affinity=_required({"matchExpressions": [PIN]}))
    stuck = kube.get_object("Pod", "web-5d8f9c7b6d-p0", "team")
    assert stuck is not None
    del stuck["spec"]["nodeName"]
    stuck["spec"]["affinity"] = dep["spec"]["template"]["spec"]["affinity"]
    stuck["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
    kube.put_object(stuck)
    status, out = ps.patch(kube, tmp_path, "-n", "team", "--kind", "deploy", "-o", "json")
    web = _items(out)[("Deployment", "web")]
    assert status == 0 and (web["outcome"], web["action"]) == ("changed", "restart"), web
    assert "1 of 1 pods do not have env yet" in web["notes"]
