"""The decision table: one case per rule of shared/product.md "The decision", and the combinations that matter."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakekube import objects
from tests.helpers import pod
from webhook.core.capability import Capability, NodeFacts, Taint, node_facts_from_object
from webhook.core.decision import decide
from webhook.core.errors import UnhandledObject
from webhook.core.settings import Settings, parse_settings

SETTINGS = Settings()
SYSCTL = "net.ipv6.conf.all.disable_ipv6"
ENABLED_NS = {"v4only.io/inject": "enabled"}


def node(name: str, allowlist: tuple[str, ...] | None = ("net.ipv6.*",), **extra: Any) -> NodeFacts:
    labels = {"kubernetes.io/hostname": name, **extra.pop("labels", {})}
    return NodeFacts(name=name, labels=labels, allowlist=allowlist, **extra)


def cluster(*nodes: NodeFacts, published: bool = True) -> Capability:
    return Capability.build(nodes, sysctl_names=SETTINGS.sysctl_names, labels_published=published)


ALLOWING = cluster(node("a"), node("b"), node("c"))
FORBIDDING = cluster(node("a", ()), node("b", ("net.ipv4.ip_forward",)), node("c", ()))
MIXED = cluster(node("a"), node("b"), node("c", ()))
UNKNOWN_NODES = cluster(node("a", None), node("b", None))


def run(p: dict[str, Any], *, ns_labels: dict[str, str] | None = None, capability: Capability = ALLOWING,
        namespace: str = "team-a", settings: Settings = SETTINGS) -> tuple[str | None, str]:
    decision = decide(p, namespace=namespace, namespace_labels=ns_labels if ns_labels is not None else {},
                      capability=capability, settings=settings)
    return decision.remedy, decision.reason


UNLABELLED: dict[str, str] = {}

# (case, pod, namespace labels, namespace, expected remedy or None for not managed, text in the reason)
OPT_IN = [
    ("no labels anywhere", pod(labels={}), UNLABELLED, "team-a", None, "neither the pod nor namespace"),
    ("namespace enabled", pod(labels={}), ENABLED_NS, "team-a", "sysctl", "3 of 3"),
    ("pod enabled", pod(), UNLABELLED, "team-a", "sysctl", "3 of 3"),
    ("namespace disabled beats pod enabled", pod(), {"v4only.io/inject": "disabled"}, "team-a", None,
     "has v4only.io/inject=disabled"),
    ("pod disabled beats namespace enabled", pod(labels={"v4only.io/inject": "disabled"}), ENABLED_NS, "team-a",
     None, "pod has v4only.io/inject=disabled"),
    ("kube-system excluded", pod(), ENABLED_NS, "kube-system", None, "excluded"),
    ("own namespace excluded", pod(), ENABLED_NS, "v4only-system", None, "excluded"),
    ("other label value is not an opt-in", pod(labels={"v4only.io/inject": "yes"}), UNLABELLED, "team-a", None,
     "neither"),
]


@pytest.mark.parametrize(("case", "p", "ns_labels", "namespace", "remedy", "reason"), OPT_IN, ids=[c[0] for c in OPT_IN])
def test_opt_in_and_opt_out(case, p, ns_labels, namespace, remedy, reason) -> None:
    got_remedy, got_reason = run(p, ns_labels=ns_labels, namespace=namespace)
    assert got_remedy == remedy
    assert reason in got_reason


def test_unknown_namespace_manages_only_labelled_pods_and_never_risks_the_sysctl() -> None:
    unlabelled = decide(pod(labels={}), namespace="new", namespace_labels=None, capability=ALLOWING,
                        settings=SETTINGS)
    labelled = decide(pod(), namespace="new", namespace_labels=None, capability=ALLOWING, settings=SETTINGS)
    assert unlabelled.remedy is None
    assert (labelled.remedy, labelled.reason) == (
        "env", "env: namespace labels not known yet, so Pod Security enforcement cannot be checked")


# (case, pod, namespace labels, capability, expected remedy, expected reason — exact)
RULES = [
    ("windows", pod(os={"name": "windows"}), {}, ALLOWING, "none", "none: sysctls cannot be set on Windows pods"),
    ("windows wins over hostNetwork", pod(os={"name": "windows"}, hostNetwork=True), {}, ALLOWING, "none",
     "none: sysctls cannot be set on Windows pods"),
    ("hostNetwork", pod(hostNetwork=True), {}, ALLOWING, "env",
     "env: hostNetwork pods may not set net.* sysctls (API server validation)"),
    ("hostNetwork false is ordinary", pod(hostNetwork=False), {}, ALLOWING, "sysctl",
     f"sysctl: 3 of 3 schedulable nodes allow {SYSCTL}"),
    ("PSA baseline", pod(), {"pod-security.kubernetes.io/enforce": "baseline"}, ALLOWING, "env",
     "env: namespace enforces Pod Security baseline, which forbids unsafe sysctls"),
    ("PSA restricted", pod(), {"pod-security.kubernetes.io/enforce": "restricted"}, ALLOWING, "env",
     "env: namespace enforces Pod Security restricted, which forbids unsafe sysctls"),
    ("PSA invalid level is restricted", pod(), {"pod-security.kubernetes.io/enforce": "bogus"}, ALLOWING, "env",
     "env: namespace enforces Pod Security restricted, which forbids unsafe sysctls"),
    ("PSA privileged", pod(), {"pod-security.kubernetes.io/enforce": "privileged"}, ALLOWING, "sysctl",
     f"sysctl: 3 of 3 schedulable nodes allow {SYSCTL}"),
    ("PSA warn only does not block", pod(), {"pod-security.kubernetes.io/warn": "restricted"}, ALLOWING, "sysctl",
     f"sysctl: 3 of 3 schedulable nodes allow {SYSCTL}"),
    ("all allow", pod(), {}, ALLOWING, "sysctl", f"sysctl: 3 of 3 schedulable nodes allow {SYSCTL}"),
    ("none allow", pod(), {}, FORBIDDING, "env",
     f"env: 0 of 3 schedulable nodes allow {SYSCTL} (kubelet allowedUnsafeSysctls)"),
    ("some allow, labels published", pod(), {}, MIXED, "sysctl+affinity",
     f"sysctl+affinity: 2 of 3 schedulable nodes allow {SYSCTL}; pinned to v4only.io/ipv6-sysctl=allowed"),
    ("some allow, labels not published", pod(), {}, cluster(node("a"), node("b", ()), published=False), "env",
     f"env: 1 of 2 schedulable nodes allow {SYSCTL}; no published node labels to pin to"),
    ("nothing known about the nodes", pod(), {}, UNKNOWN_NODES, "env",
     "env: capability of the 2 schedulable nodes not known yet"),
    ("allowed and unknown is mixed", pod(), {}, cluster(node("a"), node("b", None)), "sysctl+affinity",
     f"sysctl+affinity: 1 of 2 schedulable nodes allow {SYSCTL}; pinned to v4only.io/ipv6-sysctl=allowed"),
    ("node list not read yet", pod(), {}, Capability.unknown("the node list has not been read yet"), "env",
     "env: node capability not known yet (the node list has not been read yet)"),
    ("no node at all", pod(), {}, cluster(), "env",
     "env: no known schedulable node matches this pod's node constraints"),
    ("assumed allowed", pod(), {}, Capability.assume("allowed", "--assume"), "sysctl",
     f"sysctl: assumed allowed for {SYSCTL} (--assume)"),
    ("assumed forbidden", pod(), {}, Capability.assume("forbidden", "--assume"), "env",
     f"env: assumed forbidden for {SYSCTL} (--assume)"),
]


@pytest.mark.parametrize(("case", "p", "ns_labels", "capability", "remedy", "reason"), RULES, ids=[r[0] for r in RULES])
def test_decision_rules(case, p, ns_labels, capability, remedy, reason) -> None:
    assert run(p, ns_labels=ns_labels, capability=capability) == (remedy, reason)


def test_an_unknown_remedy_value_is_reported_as_a_note() -> None:
    decision = decide(_remedy("always"), namespace="t", namespace_labels={}, capability=ALLOWING, settings=SETTINGS)
    assert decision.remedy == "sysctl"
    assert decision.notes == ("v4only: v4only.io/remedy='always' is not auto|sysctl|env|none; using auto",)


def _remedy(annotation: str, **spec: Any) -> dict[str, Any]:
    return pod(annotations={"v4only.io/remedy": annotation}, **spec)


OVERRIDES = [
    ("none", _remedy("none"), {}, ALLOWING, "none", "none: v4only.io/remedy=none"),
    ("env where sysctl would work", _remedy("env"), {}, ALLOWING, "env", "env: v4only.io/remedy=env"),
    ("sysctl where nodes forbid", _remedy("sysctl"), {}, FORBIDDING, "sysctl",
     "sysctl: v4only.io/remedy=sysctl (node capability not checked)"),
    ("sysctl on hostNetwork is not applied", _remedy("sysctl", hostNetwork=True), {}, ALLOWING, "env",
     "env: hostNetwork pods may not set net.* sysctls (API server validation); v4only.io/remedy=sysctl not applied"),
    ("sysctl on windows is not applied", _remedy("sysctl", os={"name": "windows"}), {}, ALLOWING, "none",
     "none: sysctls cannot be set on Windows pods; v4only.io/remedy=sysctl not applied"),
    ("sysctl under baseline is not applied", _remedy("sysctl"), {"pod-security.kubernetes.io/enforce": "baseline"},
     ALLOWING, "env", "env: namespace enforces Pod Security baseline, which forbids unsafe sysctls; "
     "v4only.io/remedy=sysctl not applied"),
    ("auto is the default", _remedy("auto"), {}, ALLOWING, "sysctl", f"sysctl: 3 of 3 schedulable nodes allow {SYSCTL}"),
    ("an unknown value is auto", _remedy("always"), {}, FORBIDDING, "env",
     f"env: 0 of 3 schedulable nodes allow {SYSCTL} (kubelet allowedUnsafeSysctls)"),
]


@pytest.mark.parametrize(("case", "p", "ns_labels", "capability", "remedy", "reason"), OVERRIDES,
                         ids=[o[0] for o in OVERRIDES])
def test_remedy_annotation(case, p, ns_labels, capability, remedy, reason) -> None:
    got = run(p, ns_labels=ns_labels, capability=capability)
    assert got == (remedy, reason)
    assert len(got[1]) <= 120


TAINTED = cluster(
    node("cp", labels={"role": "control-plane"}, taints=(Taint("node-role.kubernetes.io/control-plane", "", "NoSchedule"),)),
    node("gpu-1", (), labels={"role": "gpu"}, taints=(Taint("gpu", "true", "NoSchedule"),)),
    node("w-1", labels={"role": "worker", "zone": "a"}),
    node("w-2", (), labels={"role": "worker", "zone": "b"}),
    node("w-3", labels={"role": "worker", "zone": "a"}, unschedulable=True),
)

PIN = {"key": "v4only.io/ipv6-sysctl", "operator": "In", "values": ["allowed"]}


def _required(*terms: dict[str, Any]) -> dict[str, Any]:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}}


PLACEMENT = [
    ("taints keep ordinary pods off cp and gpu; cordoned w-3 excluded", pod(), "sysctl+affinity", "1 of 2"),
    ("nodeSelector zone a (w-3 cordoned)", pod(nodeSelector={"zone": "a"}), "sysctl", "1 of 1"),
    ("nodeSelector zone b", pod(nodeSelector={"zone": "b"}), "env", "0 of 1"),
    ("nodeSelector matching nothing", pod(nodeSelector={"zone": "z"}), "env", "no known schedulable node"),
    ("toleration opens the gpu node", pod(nodeSelector={"role": "gpu"},
                                          tolerations=[{"key": "gpu", "operator": "Equal", "value": "true",
                                                        "effect": "NoSchedule"}]), "env", "0 of 1"),
    ("wrong toleration value keeps it closed", pod(nodeSelector={"role": "gpu"},
                                                   tolerations=[{"key": "gpu", "value": "false"}]),
     "env", "no known schedulable node"),
    ("tolerate everything opens cp and gpu", pod(tolerations=[{"operator": "Exists"}]), "sysctl+affinity", "3 of 5"),
    ("nodeName bypasses taints and cordons", pod(nodeName="w-3"), "sysctl", "1 of 1"),
    ("nodeName of an unknown node", pod(nodeName="ghost"), "env", "no known schedulable node"),
    ("DaemonSet-style matchFields", pod(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["w-2"]}]}]}}}),
     "env", "0 of 1"),
    # v4only's own pin-only term (the whole selector it added) counts as no selector ...
    ("v4only's own selector", pod(affinity=_required({"matchExpressions": [PIN]})), "sysctl+affinity", "1 of 2"),
    # ... and beside the pod's own terms as nothing: any other remedy removes it, so counting it as every node would
    # change the decision once the patch is applied (and count nodes the pod's own terms exclude). An older v4only
    # left such terms by pinning an empty one (issue 10 item 3).
    ("a pin-only term beside the pod's own", pod(affinity=_required(
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}, PIN]}, {"matchExpressions": [PIN]})),
     "env", "0 of 1"),
]


@pytest.mark.parametrize(("case", "p", "remedy", "reason"), PLACEMENT, ids=[c[0] for c in PLACEMENT])
def test_candidate_nodes_shape_the_decision(case, p, remedy, reason) -> None:
    got_remedy, got_reason = run(p, capability=TAINTED)
    assert got_remedy == remedy
    assert reason in got_reason


def test_only_managed_sysctls_count_and_every_one_must_be_allowed() -> None:
    two = parse_settings({"sysctls": [{"name": SYSCTL, "value": "1"},
                                      {"name": "net.ipv6.conf.default.disable_ipv6", "value": "1"}]})
    half = Capability.build([node("a", (SYSCTL,)), node("b", ("net.ipv6.*",))], sysctl_names=two.sysctl_names,
                            labels_published=False)
    assert run(pod(), capability=half, settings=two) == (
        "env", f"env: 1 of 2 schedulable nodes allow {SYSCTL} (+1); no published node labels to pin to")


@pytest.mark.parametrize("bad", [
    {"metadata": "x", "spec": {}},
    {"metadata": {"labels": ["v4only.io/inject"]}, "spec": {}},
    {"metadata": {"labels": {"v4only.io/inject": "enabled"}}, "spec": {"nodeSelector": ["a"]}},
    {"metadata": {"labels": {"v4only.io/inject": "enabled"}}, "spec": {"os": "linux"}},
])
def test_unreadable_objects_raise_a_clear_error(bad: dict[str, Any]) -> None:
    with pytest.raises(UnhandledObject):
        decide(bad, namespace="t", namespace_labels={}, capability=ALLOWING, settings=SETTINGS)


def _required(*terms: dict[str, Any]) -> dict[str, Any]:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}}


def _gt(value: str, operator: str = "Gt") -> dict[str, Any]:
    return {"matchExpressions": [{"key": "gen", "operator": operator, "values": [value]}]}


# Node labels gen=5 (allows), gen=20 (forbids), gen="1_0" (allows): Go's strconv.ParseInt(v, 10, 64) reads
# the requirement value and each label (apimachinery labels selector.go); a value it refuses matches nothing.
GENERATIONS = cluster(node("g5", labels={"gen": "5"}), node("g20", (), labels={"gen": "20"}),
                      node("g-odd", labels={"gen": "1_0"}))
GT_CASES = [
    ("Gt 10: only gen=20 (the label 1_0 is no integer to Go)", "10", "env", "0 of 1 schedulable"),
    ("Gt 1_0 is no integer to Go: matches no node", "1_0", "env", "no known schedulable node"),
    ("Lt beyond int64: matches no node", f"Lt:{2**63}", "env", "no known schedulable node"),
    ("Lt at the int64 maximum", f"Lt:{2**63 - 1}", "sysctl+affinity", "1 of 2"),
    ("Gt +4: a sign is fine", "+4", "sysctl+affinity", "1 of 2"),
    ("Gt with a space: no integer", " 4", "env", "no known schedulable node"),
    ("Gt with non-ASCII digits: no integer", "\u0664", "env", "no known schedulable node"),
]


@pytest.mark.parametrize(("case", "value", "remedy", "reason"), GT_CASES, ids=[c[0] for c in GT_CASES])
def test_gt_and_lt_values_are_read_as_go_reads_them(case: str, value: str, remedy: str, reason: str) -> None:
    operator, _, bound = value.rpartition(":")
    got_remedy, got_reason = run(pod(affinity=_required(_gt(bound, operator or "Gt"))), capability=GENERATIONS)
    assert (got_remedy, reason in got_reason) == (remedy, True), got_reason


# ---- issue 10 item 7: settings with sysctls other than the default


def _one(name: str) -> Settings:
    return parse_settings({"sysctls": [{"name": name, "value": "1"}]})


def _kubelets(settings: Settings, *versions: tuple[str, str]) -> Capability:
    """Nodes whose kubelets allowlist no unsafe sysctl at all, at (kubelet, kernel) versions, read from Node
    objects as `review --nodes` and the tracker read them."""
    nodes = []
    for i, (kubelet, kernel) in enumerate(versions):
        obj = objects.node(f"n{i}", annotations={"v4only.io/kubelet-allowed-unsafe-sysctls": ""})
        obj["status"]["nodeInfo"].update(kubeletVersion=kubelet, kernelVersion=kernel)
        nodes.append(node_facts_from_object(obj))
    return Capability.build(nodes, sysctl_names=settings.sysctl_names, labels_published=True)


def _allowlisting(settings: Settings) -> Capability:
    """Nodes whose kubelets allowlist the managed sysctls: only the pod and namespace rules can say no."""
    names = tuple(s.name for s in settings.sysctls)
    return Capability.build([node("a", names), node("b", names)], sysctl_names=settings.sysctl_names,
                            labels_published=True)


SAFE_CASES = [
    # pkg/kubelet/sysctl/safe_sysctls.go: tcp_keepalive_time safe from 1.29 on kernels >= 4.5
    ("net.ipv4.tcp_keepalive_time", ("v1.33.1", "6.8.0-60-generic"), "sysctl"),
    ("net.ipv4.tcp_keepalive_time", ("v1.28.9", "6.8.0-60-generic"), "env"),
    ("net.ipv4.tcp_keepalive_time", ("v1.33.1", "4.4.0-210-generic"), "env"),
    ("net.ipv4.tcp_keepalive_time", ("v1.33.1", ""), "env"),  # kernel unknown: the kubelet drops it
    ("net.ipv4.tcp_rmem", ("v1.32.0+k3s1", "5.15.0"), "sysctl"),
    ("net.ipv4.tcp_rmem", ("v1.31.4", "5.15.0"), "env"),
    ("kernel/shm_rmid_forced", ("", ""), "sysctl"),  # safe on every kubelet; slash form normalised
    ("net.ipv6.conf.all.disable_ipv6", ("v1.36.0", "6.8.0"), "env"),  # never safe
]


@pytest.mark.parametrize(("name", "versions", "remedy"), SAFE_CASES, ids=[f"{c[0]}@{c[1]}" for c in SAFE_CASES])
def test_safe_sysctls_need_no_allowlist(name: str, versions: tuple[str, str], remedy: str) -> None:
    settings = _one(name)
    assert run(pod(), capability=_kubelets(settings, versions), settings=settings)[0] == remedy


PSA_CASES = [
    # pod-security-admission check_sysctls.go: tcp_rmem allowed by baseline from v1.32; "latest" or no label
    # means the newest released set; an invalid version is latest (helpers.go ParseVersion).
    ("net.ipv4.tcp_rmem", "v1.31", "env"),
    ("net.ipv4.tcp_rmem", "v1.32", "sysctl"),
    ("net.ipv4.tcp_rmem", "latest", "sysctl"),
    ("net.ipv4.tcp_rmem", None, "sysctl"),
    ("net.ipv4.tcp_rmem", "v1.99", "sysctl"),
    ("net.ipv4.tcp_rmem", "1.31", "sysctl"),
    ("net.ipv4.tcp_keepalive_time", "v1.28", "env"),
    ("net.ipv4.tcp_keepalive_time", "v1.29", "sysctl"),
    ("net.ipv4.ip_local_reserved_ports", "v1.26", "env"),
    ("net.ipv4.ip_local_reserved_ports", "v1.27", "sysctl"),
]


@pytest.mark.parametrize(("name", "version", "remedy"), PSA_CASES, ids=[f"{c[0]}@{c[1]}" for c in PSA_CASES])
def test_pod_security_baseline_list_follows_the_enforce_version(name: str, version: str | None, remedy: str) -> None:
    settings = _one(name)
    labels = {**ENABLED_NS, "pod-security.kubernetes.io/enforce": "baseline"}
    if version is not None:
        labels["pod-security.kubernetes.io/enforce-version"] = version
    got, reason = run(pod(), ns_labels=labels, capability=_allowlisting(settings), settings=settings)
    assert got == remedy, reason
    if remedy == "env":
        assert reason == "env: namespace enforces Pod Security baseline, which forbids unsafe sysctls"


def _versioned(settings: Settings, kubelet: str) -> Capability:
    """Nodes at one kubelet version whose allowlists hold the managed sysctls."""
    names = tuple(s.name for s in settings.sysctls)
    nodes = [NodeFacts(n, labels={"kubernetes.io/hostname": n}, allowlist=names, kubelet_version=kubelet)
             for n in ("a", "b")]
    return Capability.build(nodes, sysctl_names=settings.sysctl_names, labels_published=True)


PSA_SERVER_CASES = [
    # Pod Security evaluates min(label version, its own): registry.go EvaluatePod caps at maxVersion, and "latest"
    # is maxVersion. The API server is at least as new as its newest kubelet (the version skew policy), never known
    # better here: kubelets at v1.31 leave open a 1.31 API server, whose baseline list lacks tcp_rmem.
    ("v1.31.4", None, "env"),
    ("v1.31.4", "latest", "env"),
    ("v1.31.4", "v1.32", "env"),
    ("v1.32.0+k3s1", None, "sysctl"),
    ("v1.33.1", "v1.32", "sysctl"),
    ("v1.33.1", "v1.31", "env"),
]


@pytest.mark.parametrize(("kubelet", "version", "remedy"), PSA_SERVER_CASES,
                         ids=[f"kubelet {c[0]}, enforce-version {c[1]}" for c in PSA_SERVER_CASES])
def test_pod_security_is_judged_at_the_oldest_api_server_the_kubelets_allow(kubelet: str, version: str | None,
                                                                            remedy: str) -> None:
    settings = _one("net.ipv4.tcp_rmem")
    labels = {**ENABLED_NS, "pod-security.kubernetes.io/enforce": "baseline"}
    if version is not None:
        labels["pod-security.kubernetes.io/enforce-version"] = version
    got, reason = run(pod(), ns_labels=labels, capability=_versioned(settings, kubelet), settings=settings)
    assert got == remedy, reason
    if remedy == "env" and version != "v1.31":
        assert reason == ("env: Pod Security baseline allows net.ipv4.tcp_rmem only from v1.32; the API server may be "
                          "older (newest kubelet v1.31)")


HOST_CASES = [
    # core validation ValidateHostSysctl: Net sysctls not with hostNetwork, IPC sysctls not with hostIPC.
    ("kernel.shm_rmid_forced", {"hostIPC": True}, "env: hostIPC pods may not set IPC sysctls (API server validation)"),
    ("kernel.shm_rmid_forced", {"hostNetwork": True}, "sysctl"),
    ("net.ipv4.tcp_syncookies", {"hostIPC": True}, "sysctl"),
    ("net.ipv4.tcp_syncookies", {"hostNetwork": True},
     "env: hostNetwork pods may not set net.* sysctls (API server validation)"),
]


@pytest.mark.parametrize(("name", "spec", "expected"), HOST_CASES, ids=[f"{c[0]}-{c[1]}" for c in HOST_CASES])
def test_host_namespaces_refuse_the_sysctls_of_their_namespace(name: str, spec: dict[str, Any], expected: str) -> None:
    settings = _one(name)
    remedy, reason = run(pod(**spec), capability=_allowlisting(settings), settings=settings)
    assert (remedy if expected == "sysctl" else reason) == expected
