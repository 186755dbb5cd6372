"""Where the DNS trap finding lives in the cluster: ConfigMap `v4only-dns` in v4only's namespace.

The elected replica writes it (serve); `v4only doctor` and live `v4only review` read it. A ConfigMap and
not a status field: anyone may read it with `kubectl get cm -n v4only-system v4only-dns -o yaml`.
"""

from __future__ import annotations

from urllib.parse import quote

import orjson

from webhook.adapters.kube import KubeApi, KubeError
from webhook.core.dns_trap import DnsFinding, FindingError, finding_from_dict

CONFIGMAP = "v4only-dns"
# Where the cluster DNS keeps its configuration: kubeadm, MicroK8s' dns addon and k3s all name the ConfigMap
# kube-system/coredns (key Corefile); k3s reads extra server blocks from kube-system/coredns-custom (keys
# *.server, *.override), where a hand-added template would be.
COREDNS_CONFIGMAPS = ("coredns", "coredns-custom")
KEY = "finding.json"
_PATH = "/api/v1/namespaces/{namespace}/configmaps"


def read_finding(api: KubeApi, namespace: str) -> DnsFinding | None:
    """The published finding; None when none was published (or this caller may not read it)."""
    try:
        configmap = api.request("GET", f"{_PATH.format(namespace=quote(namespace))}/{CONFIGMAP}")
    except KubeError as error:
        if error.status in (403, 404):
            return None
        raise
    raw = (configmap.get("data") or {}).get(KEY)
    if not isinstance(raw, str):
        return None
    try:
        return finding_from_dict(orjson.loads(raw))
    except (orjson.JSONDecodeError, FindingError):
        return None  # hand-edited or from another version: as good as none


def read_corefiles(api: KubeApi, namespace: str = "kube-system") -> tuple[tuple[str, str], ...]:
    """(where, text) of every key of the CoreDNS ConfigMaps that exist and this caller may read; a cluster
    DNS that is not CoreDNS, or a doctor without `get configmaps` there, gives nothing (the probe still tells)."""
    found: list[tuple[str, str]] = []
    for name in COREDNS_CONFIGMAPS:
        try:
            configmap = api.request("GET", f"{_PATH.format(namespace=quote(namespace))}/{quote(name)}")
        except KubeError as error:
            if error.status in (403, 404):
                continue
            raise
        data = configmap.get("data") or {}
        found += [(f"{namespace}/{name} {key}", text) for key, text in sorted(data.items()) if isinstance(text, str)]
    return tuple(found)


def write_finding(api: KubeApi, namespace: str, finding: DnsFinding) -> None:
    """Create or replace the ConfigMap (a full PUT: this replica is the only writer while it leads)."""
    body = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": CONFIGMAP, "namespace": namespace,
                     "labels": {"app.kubernetes.io/name": "v4only", "app.kubernetes.io/component": "dns-probe"}},
        "data": {KEY: orjson.dumps(finding.to_dict(), option=orjson.OPT_INDENT_2).decode()},
    }
    path = _PATH.format(namespace=quote(namespace))
    try:
        api.request("PUT", f"{path}/{CONFIGMAP}", body=body)
    except KubeError as error:
        if error.status != 404:
            raise
        api.request("POST", path, body=body)
