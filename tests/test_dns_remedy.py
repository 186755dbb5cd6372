"""Rule 7 and the `dns` remedy (product.md), against shared/reference/remedy-lab.md's measurements:
the cluster-only search list cures F1 and keeps `service.namespace` names for musl; ndots:1 is offered,
never the default; a pod with its own DNS settings is left alone, and then UV_NO_SYNC is what remains.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import FIXTURES, admission_review, apply_ops, decode_patch, validate
from tests.process_harness import ROOT
from tests.server_harness import ServerThread, make_tls
from webhook.core.admission import review_request
from webhook.core.capability import Capability, NodeFacts
from webhook.core.decision import decide
from webhook.core.dns_remedy import DnsFacts, KubeletDns, kubelet_dns
from webhook.core.dns_trap import DnsFinding, DomainFinding
from webhook.core.settings import Settings, parse_settings
from webhook.loops.state import ClusterState

SETTINGS = Settings()
ENABLED = {"v4only.io/inject": "enabled"}
TRAP = DnsFacts(known=True, traps=("communityfibre.co.uk",), nameservers=("10.152.183.10",),
                cluster_domain="cluster.local")
SAFE = replace(TRAP, traps=())
ALLOWING = Capability.build([NodeFacts(name="n1", allowlist=("net.ipv6.conf.all.disable_ipv6",))],
                            sysctl_names=SETTINGS.sysctl_names, labels_published=False)
CLUSTER_LIST = ["chronicle.svc.cluster.local", "svc.cluster.local", "cluster.local"]
DNS_LINE = 'dns: search domain communityfibre.co.uk answers NODATA (musl: "Name has no usable address")'


def _pod(annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "p", "namespace": "chronicle"}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [{"name": "app", "image": "ghcr.io/astral-sh/uv:0.13.9-alpine"}], **spec}}


def _review(pod: dict[str, Any], dns: DnsFacts, settings: Settings = SETTINGS,
            capability: Capability = ALLOWING, labels: dict[str, str] | None = None) -> tuple[dict[str, Any], dict]:
    request = {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "operation": "CREATE",
               "namespace": "chronicle", "object": pod}
    response = review_request(request, namespaces={"chronicle": labels or ENABLED},
                              capability=replace(capability, dns=dns), settings=settings).response["response"]
    admitted = apply_ops(pod, decode_patch(response) or [])
    validate(admitted)
    again = review_request({**request, "object": admitted}, namespaces={"chronicle": labels or ENABLED},
                           capability=replace(capability, dns=dns), settings=settings).response["response"]
    assert "patch" not in again  # reinvocation: a second review changes nothing
    assert again.get("warnings") == response.get("warnings")
    return admitted, response


def _annotations(pod: dict[str, Any]) -> dict[str, str]:
    return pod["metadata"].get("annotations", {})


def test_a_trap_gets_the_cluster_only_search_list_on_top_of_the_sysctl() -> None:
    admitted, response = _review(_pod(), TRAP)
    spec = admitted["spec"]
    assert spec["dnsPolicy"] == "None"
    assert spec["dnsConfig"] == {"nameservers": ["10.152.183.10"], "searches": CLUSTER_LIST,
                                 "options": [{"name": "ndots", "value": "5"}]}
    assert _annotations(admitted)["v4only.io/applied"] == "sysctl+dns"
    sysctl_line = "sysctl: 1 of 1 schedulable node allows net.ipv6.conf.all.disable_ipv6"
    assert response["warnings"] == [sysctl_line, DNS_LINE]
    assert _annotations(admitted)["v4only.io/reason"] == f"{sysctl_line}; {DNS_LINE}"
    env = spec["containers"][0].get("env", [])
    assert not [e for e in env if e["name"].startswith("UV_")]  # the DNS remedy cures uv: no UV_NO_SYNC


def test_no_trap_no_dns_remedy_and_unknown_is_not_a_trap() -> None:
    for facts in (SAFE, DnsFacts()):
        admitted, _ = _review(_pod(), facts)
        assert "dnsPolicy" not in admitted["spec"] and "dnsConfig" not in admitted["spec"]
        assert _annotations(admitted)["v4only.io/applied"] == "sysctl"


def test_the_pods_own_options_are_kept_and_its_own_ndots_too() -> None:
    own = {"options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}
    admitted, _ = _review(_pod(dnsConfig=own), TRAP)
    assert admitted["spec"]["dnsConfig"]["options"] == own["options"]
    assert admitted["spec"]["dnsConfig"]["searches"] == CLUSTER_LIST


@pytest.mark.parametrize(("spec", "kept"), [
    ({"dnsPolicy": "Default"}, "dnsPolicy Default"),
    ({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.1.1.1"]}}, "dnsPolicy None"),
    ({"dnsConfig": {"searches": ["corp.example"]}}, "its own dnsConfig.searches"),
])
def test_a_pod_with_its_own_dns_is_left_alone_and_uv_is_kept_off_the_network(spec: dict, kept: str) -> None:
    admitted, response = _review(_pod(**spec), TRAP)
    assert admitted["spec"].get("dnsPolicy") == spec.get("dnsPolicy")
    assert admitted["spec"].get("dnsConfig") == spec.get("dnsConfig")
    assert _annotations(admitted)["v4only.io/applied"] == "sysctl"
    assert f"dns: the pod sets {kept}: left as it is" in response["warnings"]
    env = {e["name"]: e["value"] for e in admitted["spec"]["containers"][0]["env"]}
    assert env == {"UV_NO_SYNC": "1", "UV_PYTHON_DOWNLOADS": "never"}  # no DNS remedy cures uv's start here


def test_a_pod_with_ndots_1_is_already_cured() -> None:
    admitted, response = _review(_pod(dnsConfig={"options": [{"name": "ndots", "value": "1"}]}), TRAP)
    assert "dns: the pod sets ndots:1: left as it is (it avoids the trap)" in response["warnings"]
    assert "env" not in admitted["spec"]["containers"][0]


@pytest.mark.parametrize(("spec", "applied"), [({"hostNetwork": True}, "env"), ({"os": {"name": "windows"}}, "none")])
def test_host_network_and_windows_pods_get_no_dns_remedy(spec: dict, applied: str) -> None:
    admitted, _ = _review(_pod(**spec), TRAP)
    assert _annotations(admitted)["v4only.io/applied"] == applied and "dnsConfig" not in admitted["spec"]


def test_the_annotation_chooses_the_form_or_turns_it_off() -> None:
    ndots, response = _review(_pod({"v4only.io/dns": "ndots"}), TRAP)
    assert ndots["spec"]["dnsConfig"] == {"options": [{"name": "ndots", "value": "1"}]}
    assert "dnsPolicy" not in ndots["spec"] and _annotations(ndots)["v4only.io/applied"] == "sysctl+dns"
    off, _ = _review(_pod({"v4only.io/dns": "off"}), TRAP)
    assert "dnsConfig" not in off["spec"]
    forced, response = _review(_pod({"v4only.io/dns": "cluster-search"}), SAFE)
    assert forced["spec"]["dnsConfig"]["searches"] == CLUSTER_LIST
    assert "dns: v4only.io/dns=cluster-search" in response["warnings"]
    typo, response = _review(_pod({"v4only.io/dns": "yes"}), TRAP)
    assert typo["spec"]["dnsPolicy"] == "None"
    assert any("v4only.io/dns='yes' is not auto|cluster-search|ndots|off" in w for w in response["warnings"])


def test_the_settings_mode_applies_to_every_pod() -> None:
    off = parse_settings({"dns": {"mode": "off"}})
    admitted, _ = _review(_pod(), TRAP, settings=off)
    assert "dnsConfig" not in admitted["spec"]


def test_without_the_cluster_dns_address_nothing_is_guessed() -> None:
    admitted, response = _review(_pod(), replace(TRAP, nameservers=()))
    assert "dnsConfig" not in admitted["spec"]
    assert "dns: the cluster DNS address and domain are not known: not applied" in response["warnings"]
    assert {e["name"] for e in admitted["spec"]["containers"][0]["env"]} == {"UV_NO_SYNC", "UV_PYTHON_DOWNLOADS"}


def test_a_cluster_dns_that_answers_nxdomain_to_aaaa_gets_uv_offline() -> None:
    admitted, response = _review(_pod(), replace(SAFE, aaaa_nxdomain=True))
    assert {e["name"] for e in admitted["spec"]["containers"][0]["env"]} == {"UV_NO_SYNC", "UV_PYTHON_DOWNLOADS"}
    assert any("NXDOMAIN to AAAA" in w for w in response["warnings"])


def test_uv_offline_is_added_where_asked_whatever_the_decision() -> None:
    asked, _ = _review(_pod({"v4only.io/uv-offline": "true"}), SAFE)
    assert {e["name"] for e in asked["spec"]["containers"][0]["env"]} == {"UV_NO_SYNC", "UV_PYTHON_DOWNLOADS"}
    by_namespace, _ = _review(_pod(), SAFE, labels={**ENABLED, "v4only.io/uv-offline": "true"})
    assert "env" in by_namespace["spec"]["containers"][0]
    plain, _ = _review(_pod(), SAFE)  # a `uv run` that installs at start would break under it
    assert "env" not in plain["spec"]["containers"][0]


def test_an_unmanaged_pod_gets_nothing_even_with_a_trap() -> None:
    decision = decide(_pod(), namespace="chronicle", namespace_labels={}, capability=replace(ALLOWING, dns=TRAP),
                      settings=SETTINGS)
    assert decision.remedy is None and decision.dns is None and not decision.uv_offline


CHRONICLE = FIXTURES / "objects" / "chronicle-deployment.yaml"


def test_the_chronicle_deployment_gets_sysctl_and_dns_in_offline_review() -> None:
    done = subprocess.run([sys.executable, "-m", "webhook", "review", str(CHRONICLE), "--assume", "allowed",
                           "--namespace-labels", "v4only.io/inject=enabled", "--dns-trap", "communityfibre.co.uk",
                           "--cluster-dns", "10.152.183.10", "--cluster-domain", "cluster.local", "-o", "json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    admitted = json.loads(done.stdout)
    validate(admitted)
    template = admitted["spec"]["template"]
    assert template["metadata"]["annotations"]["v4only.io/applied"] == "sysctl+dns"
    assert template["spec"]["dnsPolicy"] == "None"
    assert template["spec"]["dnsConfig"]["searches"][0] == f"{admitted['metadata']['namespace']}.svc.cluster.local"


def test_the_webhook_answers_sysctl_and_dns_over_tls(tmp_path: Path) -> None:
    pod = yaml.safe_load(CHRONICLE.read_text())["spec"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod", **pod}
    worker = NodeFacts(name="w1", labels={"node-role.kubernetes.io/worker": "true"},
                       allowlist=("net.ipv6.conf.all.disable_ipv6",))
    allowing = Capability.build([worker], sysctl_names=SETTINGS.sysctl_names, labels_published=False)
    state = ClusterState.static(replace(allowing, dns=TRAP), {"chronicle": ENABLED})
    with ServerThread(make_tls(tmp_path), state=state) as server, server.client() as client:
        body = json.dumps(admission_review(pod, namespace="chronicle")).encode()
        reply = client.post("/mutate", content=body, headers={"Content-Type": "application/json"})
        client.post("/mutate", content=body.replace(b'"uid": "', b'"uid": "x'),  # a replica: replayed
                    headers={"Content-Type": "application/json"})
        trapped = client.get("/metrics").text
        state.publish(allowing, {"chronicle": ENABLED})  # the probe's finding gone: nothing known
        unknown = client.get("/metrics").text
    response = reply.json()["response"]
    admitted = apply_ops(pod, decode_patch(response) or [])
    assert admitted["metadata"]["annotations"]["v4only.io/applied"] == "sysctl+dns"
    assert admitted["spec"]["dnsConfig"]["searches"] == CLUSTER_LIST and DNS_LINE in response["warnings"]
    # What the decision saw, and what it did, counted for an operator (the replayed replica too).
    assert 'v4only_dns_trap{domain="communityfibre.co.uk"} 1.0' in trapped
    assert "v4only_dns_finding_known 1.0" in trapped and "v4only_dns_cluster_dns_known 1.0" in trapped
    assert "v4only_dns_remedies_total 2.0" in trapped and 'v4only_decisions_total{remedy="sysctl"} 2.0' in trapped
    assert "v4only_dns_trap{" not in unknown and "v4only_dns_finding_known 0.0" in unknown


# ---- the cluster DNS: the kubelet's own (/configz clusterDNS, clusterDomain), else serve's resolv.conf


def test_the_pods_own_nameservers_follow_the_cluster_dns() -> None:
    """As the kubelet does for ClusterFirst with dnsConfig.nameservers: the cluster DNS first, then the pod's own,
    3 at most (dns.go appendDNSConfig, formDNSNameserversFitsLimits); none is dropped without need."""
    admitted, _ = _review(_pod(dnsConfig={"nameservers": ["1.1.1.1"]}), TRAP)
    assert admitted["spec"]["dnsConfig"]["nameservers"] == ["10.152.183.10", "1.1.1.1"]
    many, _ = _review(_pod(dnsConfig={"nameservers": ["1.1.1.1", "9.9.9.9", "8.8.8.8"]}), TRAP)
    assert many["spec"]["dnsConfig"]["nameservers"] == ["10.152.183.10", "1.1.1.1", "9.9.9.9"]


def test_without_the_cluster_dns_the_reason_says_so() -> None:
    admitted, _ = _review(_pod(), replace(TRAP, nameservers=()))
    assert _annotations(admitted)["v4only.io/reason"].endswith(
        "; dns: the cluster DNS address and domain are not known: not applied")


FINDING = DnsFinding("2026-11-29T01:00:00Z", "w-1", ("10.152.183.10",), "cluster.local",
                     (DomainFinding("corp.example", "trap", "NODATA"),), "none", False)


@pytest.mark.parametrize(("kubelets", "nameservers", "domain"), [
    ([KubeletDns(("10.96.0.10",), "cluster.local")] * 2 + [None], ("10.96.0.10",), "cluster.local"),
    ([KubeletDns(("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"), "k8s.example")],
     ("10.0.0.1", "10.0.0.2", "10.0.0.3"), "k8s.example"),
    ([KubeletDns(), None], ("10.152.183.10",), "cluster.local"),  # no kubelet says: serve's own resolv.conf
    ([], ("10.152.183.10",), "cluster.local"),
    ([KubeletDns(("10.96.0.10",), "cluster.local"), KubeletDns(("169.254.20.10",), "cluster.local")], (), None),
])
def test_the_kubelets_cluster_dns_comes_first(kubelets: list[KubeletDns | None], nameservers: tuple[str, ...],
                                              domain: str | None) -> None:
    facts = DnsFacts.from_finding(FINDING, kubelets)
    assert (facts.nameservers, facts.cluster_domain, facts.traps) == (nameservers, domain, ("corp.example",))


def test_kubelets_that_disagree_leave_the_remedy_out_and_the_reason_says_so() -> None:
    facts = DnsFacts.from_finding(FINDING, [KubeletDns(("10.96.0.10",), "cluster.local"),
                                            KubeletDns(("169.254.20.10",), "cluster.local")])
    admitted, _ = _review(_pod(), facts)
    assert "dnsConfig" not in admitted["spec"]
    assert "cluster DNS address and domain are not known" in _annotations(admitted)["v4only.io/reason"]


def test_the_kubelets_cluster_dns_alone_serves_a_forced_cluster_search() -> None:
    facts = DnsFacts.from_finding(None, [KubeletDns(("10.96.0.10",), "cluster.local")])
    admitted, _ = _review(_pod({"v4only.io/dns": "cluster-search"}), facts)
    assert admitted["spec"]["dnsConfig"]["nameservers"] == ["10.96.0.10"]


@pytest.mark.parametrize(("config", "expected"), [
    ({"clusterDNS": ["10.96.0.10"], "clusterDomain": "cluster.local"}, KubeletDns(("10.96.0.10",), "cluster.local")),
    ({"clusterDNS": ["fd00::a"], "clusterDomain": "Cluster.Local."}, KubeletDns(("fd00::a",), "cluster.local")),
    ({}, KubeletDns((), None)),
    ({"clusterDNS": ["10.96.0.10", "kube-dns"], "clusterDomain": "a_b"}, KubeletDns((), None)),
    ({"clusterDNS": "10.96.0.10", "clusterDomain": 5}, KubeletDns((), None)),
    ({"clusterDNS": ["fe80::1%eth0"]}, KubeletDns((), None)),
])
def test_kubelet_dns_takes_only_what_a_pods_dnsconfig_may_carry(config: dict, expected: KubeletDns) -> None:
    assert kubelet_dns(config) == expected


def test_a_stale_capability_keeps_its_dns_facts() -> None:
    """Old node capability falls back to unknown (env); the DNS facts are not node capability and stay."""
    now = [0.0]
    state = ClusterState(max_age_seconds=60, clock=lambda: now[0])
    state.publish(replace(ALLOWING, dns=TRAP), {})
    now[0] = 61.0
    view = state.view()
    assert view.capability.state == "unknown" and view.capability.dns == TRAP


def test_configz_gives_the_allowlist_and_the_cluster_dns_through_the_node_proxy(fake_kube, tmp_path: Path) -> None:
    """The real client against the fake API server: one /configz answer, both facts."""
    from tests.fakekube import objects
    from webhook.adapters.kube import KubeApi, KubeError, KubeletConfig

    fake_kube.set_configz("n1", objects.kubelet_config(["net.ipv6.*"]))
    fake_kube.set_configz("n2", objects.kubelet_config(clusterDNS=["10.152.183.10"], clusterDomain="k8s.example"))
    fake_kube.set_configz("n3", {"kubeletconfig": {"allowedUnsafeSysctls": "net.*"}})
    for name in ("n1", "n2", "n3"):
        fake_kube.put_object(objects.node(name))
    api = KubeApi.connect(kubeconfig=str(fake_kube.kubeconfig_path(tmp_path)))
    try:
        assert api.kubelet_config("n1") == KubeletConfig(("net.ipv6.*",), KubeletDns(("10.96.0.10",), "cluster.local"))
        assert api.kubelet_config("n2").dns == KubeletDns(("10.152.183.10",), "k8s.example")
        with pytest.raises(KubeError, match="allowedUnsafeSysctls is not a list of strings"):
            api.kubelet_config("n3")
    finally:
        api.close()
