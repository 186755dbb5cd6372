"""Pure parts of the capability tracker: evidence parsing, the inventory's rules, the backoff."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import orjson
import pytest

from tests.fakekube import objects
from webhook.core.capability import node_facts_from_object
from webhook.core.evidence import rejection_from_pod
from webhook.loops.backoff import Backoff
from webhook.tracker.inventory import Inventory, trim

IPV6 = "net.ipv6.conf.all.disable_ipv6"
MANAGED = frozenset({IPV6})


def _failed(message: str, *, reason: str = "SysctlForbidden", node: str = "n1") -> dict[str, Any]:
    pod = objects.pod("p", "team", node_name=node, phase="Failed")
    pod["status"] = {"phase": "Failed", "reason": reason, "message": message}
    return pod


MESSAGES = [
    # kubelet >= 1.29 (rejectPod prefix + allowlist.go), older wording, older prefix, slash form
    (f'Pod was rejected: forbidden sysctl: "{IPV6}" not allowlisted', {IPV6}, set()),
    (f'Pod was rejected: forbidden sysctl: "{IPV6}" not whitelisted', {IPV6}, set()),
    (f'Pod forbidden sysctl: "{IPV6}" not whitelisted', {IPV6}, set()),
    ('Pod was rejected: forbidden sysctl: "net/ipv6/conf/all/disable_ipv6" not allowlisted', {IPV6}, set()),
    # host-namespace failures are the pod's own, not node evidence
    (f'Pod was rejected: forbidden sysctl: "{IPV6}" not allowed with host Net enabled', set(), {IPV6}),
    (f'Pod was rejected: forbidden sysctl: "{IPV6}" not allowed with host net enabled', set(), {IPV6}),
    ('Pod was rejected: forbidden sysctl: "kernel.msgmax" not allowlisted', {"kernel.msgmax"}, set()),
    ("Pod was rejected: something else entirely", set(), set()),
]


@pytest.mark.parametrize(("message", "refused", "host"), MESSAGES)
def test_rejection_messages(message: str, refused: set[str], host: set[str]) -> None:
    rejection = rejection_from_pod(_failed(message))
    assert rejection is not None
    assert (set(rejection.not_allowlisted), set(rejection.host_namespace)) == (refused, host)
    assert rejection.refuses(["net/ipv6/conf/all/disable_ipv6"]) == (MANAGED & refused)


def test_only_sysctl_forbidden_pods_are_rejections() -> None:
    assert rejection_from_pod(_failed(f'forbidden sysctl: "{IPV6}" not allowlisted', reason="Evicted")) is None
    assert rejection_from_pod(objects.pod("ok", node_name="n1")) is None


def test_the_fake_servers_rejected_pod_is_evidence() -> None:
    rejection = rejection_from_pod(objects.sysctl_forbidden_pod("n1", "team", name="app-1"))
    assert rejection is not None
    assert (rejection.node, rejection.namespace, rejection.name, rejection.refuses(MANAGED)) == (
        "n1",
        "team",
        "app-1",
        MANAGED,
    )


# ---- inventory


def _inventory_with(node: dict[str, Any]) -> Inventory:
    inventory = Inventory(MANAGED)
    inventory.replace_nodes([node])
    return inventory


def _refused(inventory: Inventory, name: str = "n1") -> frozenset[str]:
    return next(f.refused for f in inventory.node_facts() if f.name == name)


def test_new_node_needs_configz_and_a_heartbeat_does_not() -> None:
    node = objects.node("n1")
    inventory = Inventory(MANAGED)
    assert inventory.replace_nodes([node]) == (True, {"n1"})
    beat = copy.deepcopy(node)
    beat["status"]["conditions"][0]["lastHeartbeatTime"] = "2030-01-01T00:00:00Z"
    assert inventory.upsert_node(beat) == ("n1", False, False)


def test_label_change_changes_facts_but_keeps_the_allowlist() -> None:
    node = objects.node("n1")
    inventory = _inventory_with(node)
    inventory.set_allowlist("n1", (IPV6,))
    relabelled = copy.deepcopy(node)
    relabelled["metadata"]["labels"]["zone"] = "a"
    assert inventory.upsert_node(relabelled) == ("n1", True, False)
    (facts,) = inventory.node_facts()
    assert facts.allowlist == (IPV6,) and facts.labels["zone"] == "a"


def test_the_annotation_is_not_a_live_allowlist() -> None:
    node = objects.node("n1", annotations={"v4only.io/kubelet-allowed-unsafe-sysctls": IPV6})
    (facts,) = _inventory_with(node).node_facts()
    assert facts.allowlist is None


def test_evidence_stands_until_the_allowlist_changes() -> None:
    inventory = _inventory_with(objects.node("n1"))
    inventory.set_allowlist("n1", ())
    pod = objects.sysctl_forbidden_pod("n1", "team", name="app-1")
    assert inventory.upsert_pod(pod)
    assert _refused(inventory) == MANAGED
    assert not inventory.set_allowlist("n1", ())  # the same configuration read again
    assert _refused(inventory) == MANAGED
    assert inventory.set_allowlist("n1", (IPV6,))  # reconfigured
    assert _refused(inventory) == frozenset()
    assert not inventory.replace_pods([pod])  # a relist does not bring voided evidence back
    assert _refused(inventory) == frozenset()
    fresh = objects.sysctl_forbidden_pod("n1", "team", name="app-2")
    assert inventory.upsert_pod(fresh)  # a new refusal counts again
    assert _refused(inventory) == MANAGED


def test_evidence_ends_when_the_kubelet_restarts_or_the_pod_goes() -> None:
    node = objects.node("n1")
    inventory = _inventory_with(node)
    pod = objects.sysctl_forbidden_pod("n1", "team", name="app-1")
    inventory.upsert_pod(pod)
    assert _refused(inventory) == MANAGED
    rebooted = copy.deepcopy(node)
    rebooted["status"]["nodeInfo"]["bootID"] = "another-boot"
    assert inventory.upsert_node(rebooted) == ("n1", True, True)
    assert _refused(inventory) == frozenset()
    other = objects.sysctl_forbidden_pod("n1", "team", name="app-2")
    inventory.upsert_pod(other)
    assert inventory.remove_pod(other)
    assert _refused(inventory) == frozenset()


def test_a_failed_allowlist_read_is_unknown_not_a_change() -> None:
    inventory = _inventory_with(objects.node("n1"))
    inventory.set_allowlist("n1", ())
    inventory.upsert_pod(objects.sysctl_forbidden_pod("n1", "team", name="app-1"))
    assert inventory.set_allowlist("n1", None)
    assert inventory.set_allowlist("n1", ())
    assert _refused(inventory) == MANAGED


def test_evidence_of_other_sysctls_or_host_network_is_ignored() -> None:
    inventory = _inventory_with(objects.node("n1"))
    other = objects.sysctl_forbidden_pod("n1", "team", name="a", sysctls=("kernel.msgmax",))
    host = _failed(f'Pod was rejected: forbidden sysctl: "{IPV6}" not allowed with host Net enabled')
    assert not inventory.upsert_pod(other)
    assert not inventory.upsert_pod(host)
    assert _refused(inventory) == frozenset()


def test_namespaces_keep_only_labels() -> None:
    inventory = Inventory(MANAGED)
    ns = objects.namespace("team", labels={"v4only.io/inject": "enabled"})
    assert inventory.replace_namespaces([ns])
    assert not inventory.upsert_namespace(copy.deepcopy(ns))
    assert dict(inventory.namespace_labels()["team"]) == {
        "kubernetes.io/metadata.name": "team",
        "v4only.io/inject": "enabled",
    }
    assert inventory.remove_namespace(ns)
    assert "team" not in inventory.namespace_labels()


def test_backoff_doubles_caps_and_jitters() -> None:
    backoff = Backoff(0.5, 4.0, rng=lambda: 1.0)
    assert [backoff.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    low = Backoff(0.5, 4.0, rng=lambda: 0.0)
    assert [low.next() for _ in range(3)] == [0.25, 0.5, 1.0]
    backoff.reset()
    assert backoff.next() == 0.5


def test_trimming_keeps_everything_the_inventory_reads() -> None:
    node = objects.node(
        "n1",
        labels={"pool": "a"},
        taints=[{"key": "gpu", "value": "true", "effect": "NoSchedule"}],
        unschedulable=True,
        annotations={"v4only.io/kubelet-allowed-unsafe-sysctls": IPV6},
    )
    slim = trim("nodes", node)
    # The annotation is for offline review only; the tracker takes the allowlist from configz.
    assert node_facts_from_object(slim) == replace(node_facts_from_object(node), allowlist=None)
    assert slim["status"]["nodeInfo"] == {"kubeletVersion": "v1.33.1", "kernelVersion": "6.8.0-60-generic",
                                          "bootID": node["status"]["nodeInfo"]["bootID"]}
    assert len(orjson.dumps(slim)) < len(orjson.dumps(node)) / 2
    pod = objects.sysctl_forbidden_pod("n1", "team", name="app-1")
    assert rejection_from_pod(trim("pods", pod)) == rejection_from_pod(pod)
    assert trim("pods", pod)["metadata"]["uid"] == pod["metadata"]["uid"]
    namespace = objects.namespace("team", labels={"v4only.io/inject": "enabled"})
    assert trim("namespaces", namespace) == {"metadata": {"name": "team", "labels": namespace["metadata"]["labels"]}}


def test_unread_nodes_are_told_apart_from_unknown_ones() -> None:
    node = objects.node("n1")
    inventory = _inventory_with(node)
    assert inventory.unread() == {"n1"}
    inventory.set_allowlist("n1", None)  # read, and not readable: unknown for a reason
    assert inventory.unread() == frozenset()
    rebooted = copy.deepcopy(node)
    rebooted["status"]["nodeInfo"]["bootID"] = "another-boot"
    inventory.upsert_node(rebooted)
    assert inventory.unread() == {"n1"}
    inventory.remove_node("n1")
    assert inventory.unread() == frozenset()
