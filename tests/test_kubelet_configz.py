"""Reading /configz directly from kubelets (nodes/configz, KEP-2862), with the proxy only as an opt-in fallback.

The kubelets are tests/fakekube/kubelet.py: real TLS on 127.0.0.1 with certificates from a test cluster CA
(v4only's own cert code), bearer tokens checked against the fake API server's users, 403 without
`nodes/configz` (or `nodes/proxy` where the gate is off). The client is the real `kubernetes` client from a
kubeconfig whose certificate-authority is the test cluster CA, as the ServiceAccount's ca.crt is in a pod.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.fakekube import objects
from tests.fakekube.kubelet import FakeKubelet
from tests.fakekube.server import TOKEN, FakeKube
from webhook.adapters.kube import Credentials, KubeApi, KubeError
from webhook.adapters.kubelet import KubeletAccess, KubeletConfigz
from webhook.core.certs import KeyPair, build_ca, build_serving_cert
from webhook.loops.state import ClusterState

NOW = datetime.now(UTC)
SYSCTL = "net.ipv6.conf.all.disable_ipv6"


def _write(directory: Path, name: str, pair: KeyPair) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    cert.write_bytes(pair.cert_pem)
    key.write_bytes(pair.key_pem)
    return cert, key


class Cluster:
    """A FakeKube, a test cluster CA, and fake kubelets registered as nodes pointing at them."""

    def __init__(self, kube: FakeKube, tmp: Path) -> None:
        self.kube, self.tmp = kube, tmp
        self.ca = build_ca(common_name="test-cluster-ca", now=NOW)
        self.ca_file, _ = _write(tmp, "cluster-ca", self.ca)
        self.kubelets: dict[str, FakeKubelet] = {}

    def kubelet(self, node: str, *, ca: KeyPair | None = None, fine_grained: bool = True, token_auth: bool = True,
                external_ip: str | None = None) -> FakeKubelet:
        serving = build_serving_cert(ca=ca or self.ca, dns_names=[node], ip_addresses=["127.0.0.1"], now=NOW)
        cert, key = _write(self.tmp, node, serving)
        kubelet = FakeKubelet(self.kube, node, cert, key, fine_grained=fine_grained, token_auth=token_auth,
                              allowed_unsafe_sysctls=(SYSCTL,)).start()
        self.kubelets[node] = kubelet
        obj = objects.node(node, internal_ip="127.0.0.1")
        obj["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] = kubelet.port
        if external_ip:
            obj["status"]["addresses"].append({"type": "ExternalIP", "address": external_ip})
        self.kube.registry.put(obj)
        return kubelet

    def serve_existing(self, node: str) -> FakeKubelet:
        """A kubelet for a node already in the fake, answering what `set_configz` scripts for it (live); the
        node's InternalIP and kubelet port now point at it (the node keeps its labels and taints)."""
        serving = build_serving_cert(ca=self.ca, dns_names=[node], ip_addresses=["127.0.0.1"], now=NOW)
        cert, key = _write(self.tmp, node, serving)
        kubelet = FakeKubelet(self.kube, node, cert, key)  # answers set_configz's body, live
        self.kubelets[node] = kubelet.start()
        obj = self.kube.get_object("Node", node)
        assert obj is not None, node
        obj["status"]["addresses"] = [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": node}]
        obj["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] = kubelet.port
        self.kube.put_object(obj)
        return kubelet

    def api(self) -> KubeApi:
        return KubeApi.connect(kubeconfig=str(self.kube.kubeconfig_path(self.tmp)))

    def credentials(self, api: KubeApi) -> Credentials:
        """The API client's credentials with the test cluster CA, as a pod's ServiceAccount ca.crt gives it.
        (The client loads a kubeconfig's certificate-authority for https servers only; the fake is http.)"""
        return replace(api.kubelet_credentials(), ca_file=str(self.ca_file))

    def stop(self) -> None:
        for kubelet in self.kubelets.values():
            kubelet.stop()


@pytest.fixture
def cluster(fake_kube: FakeKube, tmp_path: Path) -> Iterator[Cluster]:
    made = Cluster(fake_kube, tmp_path)
    try:
        yield made
    finally:
        made.stop()


def _reader(cluster: Cluster, **access: object) -> KubeletConfigz:
    api = cluster.api()
    return KubeletConfigz(api, KubeletAccess(**access), cluster.credentials(api))  # type: ignore[arg-type]


def test_direct_read_verifies_the_kubelet_and_sends_the_token(cluster: Cluster) -> None:
    kubelet = cluster.kubelet("node-a")
    result = _reader(cluster).read_by_name("node-a")
    assert (result.allowlist, result.path, result.error) == ((SYSCTL,), "direct", "")
    assert kubelet.requests[-1].authorization == f"Bearer {TOKEN}"
    assert cluster.kube.configz_count("node-a") == 0  # the API server's node proxy was not used


def test_without_nodes_configz_the_kubelet_refuses_and_nothing_else_is_tried_by_default(cluster: Cluster) -> None:
    cluster.kubelet("node-a")
    cluster.kube.deny_node_subresource("configz")
    cluster.kube.deny_node_subresource("proxy")
    result = _reader(cluster).read_by_name("node-a")
    assert result.allowlist is None and result.path == "none"
    assert result.direct_error == "403 Forbidden" and "subresource(s)=[configz proxy]" in result.detail
    assert cluster.kube.configz_count("node-a") == 0


def test_a_kubelet_with_the_gate_off_checks_nodes_proxy_itself(cluster: Cluster) -> None:
    """Without KubeletFineGrainedAuthz the kubelet asks for nodes/proxy. Without that grant (the default
    install) both paths are refused; with it (the opt-in component) the direct read already succeeds."""
    cluster.kubelet("node-a", fine_grained=False)
    granted = _reader(cluster, proxy_fallback=True).read_by_name("node-a")  # the SA has nodes/proxy
    assert (granted.allowlist, granted.path) == ((SYSCTL,), "direct")
    cluster.kube.deny_node_subresource("proxy")  # the default install
    refused = _reader(cluster, proxy_fallback=True).read_by_name("node-a")
    assert (refused.allowlist, refused.path) == (None, "none")
    assert (refused.direct_error, refused.proxy_error) == ("403 Forbidden", "403 Forbidden")
    assert "subresource(s)=[proxy]" in refused.detail


def test_a_kubelet_without_token_authentication_is_read_through_the_opt_in_proxy(cluster: Cluster) -> None:
    """A kubelet with authentication.webhook disabled answers 401 to every token; the API server reaches it
    with its own client certificate, so the proxy path (nodes/proxy) still reads it."""
    cluster.kubelet("node-a", token_auth=False)
    cluster.kube.set_configz("node-a", objects.kubelet_config(["kernel.msg*"]))  # what the proxy path returns
    result = _reader(cluster, proxy_fallback=True).read_by_name("node-a")
    assert (result.allowlist, result.path, result.direct_error) == (("kernel.msg*",), "proxy", "401 Unauthorized")
    assert cluster.kube.configz_count("node-a") == 1
    assert _reader(cluster).read_by_name("node-a").path == "none"  # not without the opt-in


def test_proxy_fallback_refused_too_leaves_the_node_unknown_with_both_reasons(cluster: Cluster) -> None:
    cluster.kubelet("node-a")
    cluster.kube.deny_node_subresource("configz")
    cluster.kube.deny_node_subresource("proxy")
    cluster.kube.set_configz("node-a", status=403)
    result = _reader(cluster, proxy_fallback=True).read_by_name("node-a")
    assert result.allowlist is None and result.path == "none"
    assert (result.direct_error, result.proxy_error) == ("403 Forbidden", "403 Forbidden")
    assert "nodes/proxy" in result.detail and result.error == "direct: 403 Forbidden; proxy: 403 Forbidden"


def test_unreachable_kubelet_falls_back_to_the_proxy_when_allowed(cluster: Cluster) -> None:
    kubelet = cluster.kubelet("node-a")
    kubelet.stop()  # the port now refuses connections, as behind a network policy that rejects
    result = _reader(cluster, proxy_fallback=True).read_by_name("node-a")
    assert result.path == "proxy" and result.direct_error == "unreachable"
    assert _reader(cluster).read_by_name("node-a").path == "none"


def test_a_certificate_that_does_not_chain_gets_no_token_and_no_fallback(cluster: Cluster) -> None:
    other_ca = build_ca(common_name="kubelet-self-signed", now=NOW)
    kubelet = cluster.kubelet("node-a", ca=other_ca)
    result = _reader(cluster, proxy_fallback=True).read_by_name("node-a")
    assert result.allowlist is None and result.path == "none"
    assert result.direct_error == "certificate not trusted" and "unable to get local issuer certificate" in result.detail
    assert kubelet.handshakes >= 1  # it was dialled ...
    assert kubelet.requests == []  # ... but no request (and so no token) reached it
    assert cluster.kube.configz_count("node-a") == 0  # a trust failure is not a reason to use nodes/proxy


def test_an_admin_kubelet_ca_bundle_verifies_kubelets_outside_the_cluster_ca(cluster: Cluster) -> None:
    other_ca = build_ca(common_name="kubelet-ca", now=NOW)
    other_file, _ = _write(cluster.tmp, "kubelet-ca", other_ca)
    kubelet = cluster.kubelet("node-a", ca=other_ca)
    result = _reader(cluster, ca_file=str(other_file)).read_by_name("node-a")
    assert (result.allowlist, result.path) == ((SYSCTL,), "direct")
    assert kubelet.requests[-1].authorization == f"Bearer {TOKEN}"


def test_the_risk_named_setting_sends_the_token_after_a_certificate_fails_to_verify(cluster: Cluster) -> None:
    """In a pod there is always a cluster CA: the setting must still reach self-signed kubelets (kubeadm's)."""
    trusted = cluster.kubelet("node-a")
    self_signed = cluster.kubelet("node-b", ca=build_ca(common_name="kubelet-self-signed", now=NOW))
    reader = _reader(cluster, send_token_to_unverified=True)
    assert reader.read_by_name("node-a").path == "direct" and trusted.handshakes == 1  # verified at once
    result = reader.read_by_name("node-b")
    assert (result.allowlist, result.path) == ((SYSCTL,), "direct")
    assert self_signed.requests[-1].authorization == f"Bearer {TOKEN}"


def test_without_any_ca_only_the_risk_named_setting_reaches_the_kubelet(fake_kube: FakeKube, tmp_path: Path) -> None:
    cluster = Cluster(fake_kube, tmp_path)
    try:
        kubelet = cluster.kubelet("node-a", ca=build_ca(common_name="kubelet-self-signed", now=NOW))
        api = cluster.api()  # the fake's kubeconfig gives the client no CA
        refused = KubeletConfigz(api, KubeletAccess()).read_by_name("node-a")
        assert refused.path == "none" and refused.direct_error == "no CA for kubelets"
        assert kubelet.handshakes == 0 and kubelet.requests == []
        allowed = KubeletConfigz(api, KubeletAccess(send_token_to_unverified=True)).read_by_name("node-a")
        assert (allowed.allowlist, allowed.path) == ((SYSCTL,), "direct")
        assert kubelet.requests[-1].authorization == f"Bearer {TOKEN}"
    finally:
        cluster.stop()


def test_address_types_are_tried_in_the_configured_order(cluster: Cluster) -> None:
    cluster.kubelet("node-a", external_ip="127.0.0.2")  # nothing listens on 127.0.0.2
    assert _reader(cluster).read_by_name("node-a").path == "direct"  # InternalIP first (kubeadm's order)
    external_first = _reader(cluster, address_types=("ExternalIP", "InternalIP")).read_by_name("node-a")
    assert external_first.path == "none" and external_first.direct_error == "unreachable"
    no_such = _reader(cluster, address_types=("InternalDNS",)).read_by_name("node-a")
    assert "no address of type InternalDNS" in no_such.detail


def test_tracker_interface_raises_kube_error_with_the_reason(cluster: Cluster) -> None:
    cluster.kubelet("node-a")
    cluster.kube.deny_node_subresource("configz")
    cluster.kube.deny_node_subresource("proxy")
    reader = _reader(cluster)
    with pytest.raises(KubeError, match="403"):
        reader.config("node-a")
    assert reader.read_by_name("node-b").direct_error == "node gone"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"V4ONLY_KUBELET_ADDRESS_TYPES": "InternalIP,Bogus"}, "Bogus"),
        ({"V4ONLY_CONFIGZ_VIA_PROXY": "yes"}, "V4ONLY_CONFIGZ_VIA_PROXY"),
        ({"V4ONLY_INSECURE_SEND_TOKEN_TO_UNVERIFIED_KUBELETS": "on"}, "INSECURE"),
    ],
)
def test_bad_settings_are_clear_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        KubeletAccess.from_env(env)


def test_settings_from_the_environment() -> None:
    access = KubeletAccess.from_env({
        "V4ONLY_KUBELET_ADDRESS_TYPES": " ExternalIP , InternalIP ",
        "V4ONLY_KUBELET_CA_FILE": "/etc/v4only/kubelet-ca/ca.crt",
        "V4ONLY_CONFIGZ_VIA_PROXY": "true",
    })
    assert access == KubeletAccess(("ExternalIP", "InternalIP"), "/etc/v4only/kubelet-ca/ca.crt", False, True)
    assert KubeletAccess.from_env({}) == KubeletAccess(("InternalIP", "ExternalIP", "Hostname"), None, False, False)


def test_in_cluster_credentials_are_the_service_account_ca_and_token(tmp_path: Path) -> None:
    from kubernetes import client
    from kubernetes.config.incluster_config import InClusterConfigLoader

    token, ca = tmp_path / "token", tmp_path / "ca.crt"
    token.write_text("sa-token")
    ca.write_bytes(build_ca(common_name="cluster-ca", now=NOW).cert_pem)
    configuration = client.Configuration()
    environ = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    InClusterConfigLoader(token_filename=str(token), cert_filename=str(ca), environ=environ).load_and_set(configuration)
    credentials = KubeApi(client.ApiClient(configuration)).kubelet_credentials()
    assert credentials.ca_file == str(ca)
    assert (credentials.authorization() or "").lower() == "bearer sa-token"


# ---- the tracker reads through each path


def _node_allowlists(state: ClusterState) -> dict[str, tuple[str, ...] | None]:
    return {n.name: n.allowlist for n in state.view().capability.nodes}


def test_tracker_reads_direct_falls_back_to_the_proxy_and_leaves_untrusted_nodes_unknown(
    quick_kube: FakeKube, tmp_path: Path
) -> None:
    from tests import capability_scenarios as sc
    from tests.test_tracker import FAST
    from webhook.tracker.start import start_tracker

    cluster = Cluster(quick_kube, tmp_path)
    try:
        direct = cluster.kubelet("direct-1")
        no_authn = cluster.kubelet("no-authn-1", token_auth=False)  # 401: only the API server's cert works
        untrusted = cluster.kubelet("untrusted-1", ca=build_ca(common_name="self-signed", now=NOW))
        quick_kube.set_configz("no-authn-1", objects.kubelet_config(["kernel.msg*"]))
        quick_kube.set_configz("untrusted-1", objects.kubelet_config([SYSCTL]))  # must never be used
        api = cluster.api()
        configz = KubeletConfigz(api, KubeletAccess(proxy_fallback=True), cluster.credentials(api))
        state = ClusterState(max_age_seconds=30.0)
        handle = start_tracker(state, sc.SETTINGS, api, publish_labels=False, config=FAST, configz=configz)
        try:
            expected = {"direct-1": (SYSCTL,), "no-authn-1": ("kernel.msg*",), "untrusted-1": None}
            sc.wait_until(lambda: state.ready and _node_allowlists(state) == expected, what=f"allowlists {expected}")
        finally:
            handle.stop()
            api.close()
        assert direct.requests and all(r.authorization == f"Bearer {TOKEN}" for r in direct.requests)
        assert no_authn.requests  # asked first, refused, then the proxy answered
        assert untrusted.requests == []  # no token to a kubelet that did not verify
        calls = quick_kube.configz_calls
        assert calls.get("direct-1", 0) == 0 and calls.get("untrusted-1", 0) == 0 and calls["no-authn-1"] >= 1
        # Each kubelet's address and port come from the tracker's node watch: a read asks the API server
        # nothing (no node looked up by name), so a refresh loads only the kubelets.
        lookups = [r for r in quick_kube.requests if r.query.get("fieldSelector", "").startswith("metadata.name=")]
        assert lookups == []
    finally:
        cluster.stop()


def test_set_configz_scripts_a_served_kubelet_whichever_path_reads_it(cluster: Cluster) -> None:
    """The way tests script a node's kubelet: `set_configz` once; `serve_existing` kubelets answer it live."""
    cluster.kube.put_object(objects.node("node-a"))
    kubelet = cluster.serve_existing("node-a")
    cluster.kube.set_configz("node-a", objects.kubelet_config(["kernel.msg*"]))
    direct = _reader(cluster).read_by_name("node-a")
    assert (direct.allowlist, direct.path) == (("kernel.msg*",), "direct")
    cluster.kube.set_configz("node-a", objects.kubelet_config([SYSCTL]))  # a reconfigured kubelet
    assert _reader(cluster).read_by_name("node-a").allowlist == (SYSCTL,)
    assert len(kubelet.requests) == 2 and cluster.kube.configz_count("node-a") == 0
    kubelet.stop()  # unreachable from here: the same script, through the opt-in proxy
    proxied = _reader(cluster, proxy_fallback=True).read_by_name("node-a")
    assert (proxied.allowlist, proxied.path) == ((SYSCTL,), "proxy")
