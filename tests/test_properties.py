"""Properties over generated pods: the patch applies, the result validates, a second review is empty,
and an unmanaged pod is never touched."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import apply_ops, decode_patch, validate
from webhook.core.admission import review_request
from webhook.core.capability import Capability, NodeFacts, Taint
from webhook.core.dns_remedy import DnsFacts
from webhook.core.settings import Settings, parse_settings

NAMES = st.sampled_from(["UV_NO_SYNC", "UV_PYTHON_DOWNLOADS", "NODE_OPTIONS", "JAVA_TOOL_OPTIONS", "HOME", "A"])
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
KEYS = st.sampled_from(["app", "example.com/team", "a~b", "x/y~1z", "v4only.io/remedy", "v4only.io/applied"])
SYSCTLS = st.sampled_from([
    {"name": "net.ipv6.conf.all.disable_ipv6", "value": "1"},
    {"name": "net/ipv6/conf/all/disable_ipv6", "value": "1"},
    {"name": "net.ipv4.tcp_keepalive_time", "value": "600"},
    {"name": "kernel.shm_rmid_forced", "value": "1"},
])


def env_var() -> st.SearchStrategy[dict[str, Any]]:
    literal = st.builds(lambda n, v: {"name": n, "value": v}, NAMES, TEXT)
    from_ref = st.builds(lambda n: {"name": n, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}, NAMES)
    return st.one_of(literal, from_ref)


@st.composite
def containers(draw: st.DrawFn, prefix: str) -> list[dict[str, Any]]:
    count = draw(st.integers(1, 3))
    result = []
    for i in range(count):
        container: dict[str, Any] = {"name": f"{prefix}{i}", "image": "img"}
        env = draw(st.none() | st.lists(env_var(), max_size=4, unique_by=lambda e: e["name"]))
        if env is not None:
            container["env"] = env
        result.append(container)
    return result


@st.composite
def pods(draw: st.DrawFn) -> dict[str, Any]:
    labels = draw(st.dictionaries(st.sampled_from(["app", "v4only.io/inject"]),
                                  st.sampled_from(["enabled", "disabled", "x"]), max_size=2))
    annotations = draw(st.none() | st.dictionaries(KEYS, st.sampled_from(["auto", "sysctl", "env", "none", "x"]),
                                                   max_size=3))
    meta: dict[str, Any] = {"generateName": "p-", "labels": labels}
    if annotations is not None:
        meta["annotations"] = annotations
    spec: dict[str, Any] = {"containers": draw(containers("c"))}
    if draw(st.booleans()):
        spec["initContainers"] = draw(containers("i"))
    sysctls = draw(st.none() | st.lists(SYSCTLS, max_size=3, unique_by=lambda s: s["name"]))
    if sysctls is not None:
        spec["securityContext"] = {"sysctls": sysctls}
    if draw(st.booleans()):
        spec["hostNetwork"] = True
    if draw(st.integers(0, 9)) == 0:
        spec["os"] = {"name": "windows"}
    if draw(st.booleans()):
        spec["nodeSelector"] = {"zone": draw(st.sampled_from(["a", "b"]))}
    if draw(st.booleans()):
        spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": draw(st.sampled_from(["In", "NotIn"])),
                                   "values": ["a"]}]}]}}}
    if draw(st.booleans()):
        spec["tolerations"] = [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}]
    if draw(st.booleans()):
        spec["dnsConfig"] = draw(st.sampled_from([{}, {"options": [{"name": "ndots", "value": "5"}]},
                                                  {"options": [{"name": "ndots", "value": "1"}, {"name": "edns0"}]},
                                                  {"searches": ["corp.example"]}]))
    if draw(st.integers(0, 4)) == 0:
        spec["dnsPolicy"] = draw(st.sampled_from(["ClusterFirst", "Default", "None"]))
        if spec["dnsPolicy"] == "None":
            spec["dnsConfig"] = {"nameservers": ["1.1.1.1"]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def _node(name: str, zone: str, allowlist: tuple[str, ...] | None, tainted: bool = False) -> NodeFacts:
    taints = (Taint("dedicated", "x", "NoSchedule"),) if tainted else ()
    return NodeFacts(name=name, labels={"zone": zone}, allowlist=allowlist, taints=taints)


SETTINGS_CHOICES = [Settings(), parse_settings({"dns": {"mode": "ndots"}, "mixedClusters": "affinity"}),
                    parse_settings({"dns": {"mode": "cluster-search"}})]
TRAP = DnsFacts(known=True, traps=("corp.example",), nameservers=("10.152.183.10",), cluster_domain="cluster.local")
NODES = [_node("a1", "a", ("net.ipv6.*",)), _node("a2", "a", ()), _node("b1", "b", ("net.ipv6.*",), tainted=True),
         _node("b2", "b", None)]
CAPABILITIES = [
    Capability.build(NODES, sysctl_names=Settings().sysctl_names, labels_published=True),
    Capability.build(NODES[:1], sysctl_names=Settings().sysctl_names, labels_published=False),
    Capability.assume("allowed", "test"),
    Capability.unknown("test"),
    replace(Capability.build(NODES, sysctl_names=Settings().sysctl_names, labels_published=True), dns=TRAP),
    replace(Capability.assume("forbidden", "test"), dns=replace(TRAP, aaaa_nxdomain=True)),
]
NAMESPACES = st.sampled_from([{}, {"v4only.io/inject": "enabled"}, {"v4only.io/inject": "disabled"},
                              {"v4only.io/inject": "enabled", "pod-security.kubernetes.io/enforce": "baseline"}])


def _review(pod: dict[str, Any], ns_labels: dict[str, str], capability: Capability, conf: Settings) -> dict[str, Any]:
    request = {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "operation": "CREATE",
               "namespace": "team", "object": pod}
    return review_request(request, namespaces={"team": ns_labels}, capability=capability, settings=conf).response


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pod=pods(), ns_labels=NAMESPACES, capability=st.sampled_from(CAPABILITIES),
       conf=st.sampled_from(SETTINGS_CHOICES))
def test_patch_applies_validates_and_is_idempotent(pod, ns_labels, capability, conf) -> None:
    response = _review(pod, ns_labels, capability, conf)["response"]
    ops = decode_patch(response) or []
    patched = apply_ops(pod, ops)
    validate(patched)
    again = _review(patched, ns_labels, capability, conf)["response"]
    assert "patch" not in again
    if not _opted_in(pod["metadata"]["labels"], ns_labels):
        assert ops == [] and "warnings" not in response
    else:
        annotations = patched["metadata"]["annotations"]
        assert annotations["v4only.io/applied"].removesuffix("+dns") in ("sysctl", "sysctl+affinity", "env", "none")
        # Each remedy's line is its own warning; the reason joins them with "; " (product.md).
        warnings = response["warnings"]
        assert all(len(w) <= 120 for w in warnings)
        # The dns line: the remedy's, or that it was not applied for want of the cluster DNS (the reason says
        # so, product.md); a pod's own settings left as they are are a note, not a line.
        dns_lines = [w for w in warnings if w.startswith("dns: ") and "left as it is" not in w]
        cured = [w for w in dns_lines if "not known" not in w]
        assert annotations["v4only.io/applied"].endswith("+dns") == bool(cured)
        assert annotations["v4only.io/reason"] == "; ".join([warnings[0], *dns_lines])
        sysctl_names = {s["name"].replace("/", ".") for s in (patched["spec"].get("securityContext") or {}).get(
            "sysctls") or []}
        if annotations["v4only.io/applied"] == "env":  # a sysctl that could never run is gone
            assert "net.ipv6.conf.all.disable_ipv6" not in sysctl_names
        if annotations["v4only.io/applied"].startswith("sysctl"):
            assert "net.ipv6.conf.all.disable_ipv6" in sysctl_names


def _opted_in(pod_labels: dict[str, str], ns_labels: dict[str, str]) -> bool:
    """The contract's opt-in table, restated independently of webhook/core."""
    values = {pod_labels.get("v4only.io/inject"), ns_labels.get("v4only.io/inject")}
    return "disabled" not in values and "enabled" in values


@settings(max_examples=200, deadline=None)
@given(pod=pods(), capability=st.sampled_from(CAPABILITIES))
def test_unmanaged_pods_never_get_a_patch(pod, capability) -> None:
    pod["metadata"]["labels"].pop("v4only.io/inject", None)
    response = _review(pod, {}, capability, Settings())["response"]
    assert response == {"uid": "u", "allowed": True}
