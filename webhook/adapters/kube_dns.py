"""Where the DNS trap finding lives in the cluster: ConfigMap `v4only-dns` in v4only's namespace.

The elected replica writes it (serve); `v4only doctor` and live `v4only review` read it. A ConfigMap and
not a status field: anyone may read it with `kubectl get cm -n v4only-system v4only-dns -o yaml`.
"""

from __future__ import annotations

from webhook.adapters.configmaps import read_data, read_json, write_json
from webhook.adapters.kube import KubeApi
from webhook.core.dns_trap import DnsFinding, FindingError, finding_from_dict

CONFIGMAP = "v4only-dns"
# Where the cluster DNS keeps its configuration: kubeadm, MicroK8s' dns addon and k3s all name the ConfigMap
# kube-system/coredns (key Corefile); k3s reads extra server blocks from kube-system/coredns-custom (keys
# *.server, *.override), where a hand-added template would be.
COREDNS_CONFIGMAPS = ("coredns", "coredns-custom")
KEY = "finding.json"


def read_finding(api: KubeApi, namespace: str) -> DnsFinding | None:
    """The published finding; None when none was published (or this caller may not read it)."""
    document = read_json(api, namespace, CONFIGMAP, KEY)
    if document is None:
        return None
    try:
        return finding_from_dict(document)
    except FindingError:
        return None  # hand-edited or from another version: as good as none


def read_corefiles(api: KubeApi, namespace: str = "kube-system") -> tuple[tuple[str, str], ...]:
    """(where, text) of every key of the CoreDNS ConfigMaps that exist and this caller may read; a cluster
    DNS that is not CoreDNS, or a doctor without `get configmaps` there, gives nothing (the probe still tells)."""
    found: list[tuple[str, str]] = []
    for name in COREDNS_CONFIGMAPS:
        data = read_data(api, namespace, name) or {}
        found += [(f"{namespace}/{name} {key}", text) for key, text in sorted(data.items()) if isinstance(text, str)]
    return tuple(found)


def write_finding(api: KubeApi, namespace: str, finding: DnsFinding) -> None:
    """Create or replace the ConfigMap (a full PUT: this replica is the only writer while it leads)."""
    write_json(api, namespace, CONFIGMAP, KEY, finding.to_dict(), component="dns-probe")
