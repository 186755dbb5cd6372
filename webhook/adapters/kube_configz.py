"""Where serve's configz read records live: ConfigMap `v4only-configz` in v4only's namespace.

Written by the elected replica (the node-label Lease holder, like the DNS finding in `kube_dns.py`), at a
bounded rate; read by `v4only doctor`. Anyone may look: `kubectl get cm -n v4only-system v4only-configz -o yaml`.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

import orjson

from webhook.adapters.kube import KubeApi, KubeError
from webhook.core.configz_reads import ConfigzRecord, RecordsError, records_from_dict, records_to_dict

CONFIGMAP = "v4only-configz"
KEY = "reads.json"
_PATH = "/api/v1/namespaces/{namespace}/configmaps"


def read_records(api: KubeApi, namespace: str) -> dict[str, ConfigzRecord] | None:
    """The published records; None when none were published, this caller may not read them, or they are
    unreadable (as good as none)."""
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
        return records_from_dict(orjson.loads(raw))
    except (orjson.JSONDecodeError, RecordsError):
        return None


def write_records(api: KubeApi, namespace: str, reads: Mapping[str, ConfigzRecord]) -> None:
    """Create or replace the ConfigMap (a full PUT: this replica is the only writer while it leads)."""
    body = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": CONFIGMAP, "namespace": namespace,
                     "labels": {"app.kubernetes.io/name": "v4only", "app.kubernetes.io/component": "tracker"}},
        "data": {KEY: orjson.dumps(records_to_dict(reads)).decode()},
    }
    path = _PATH.format(namespace=quote(namespace))
    try:
        api.request("PUT", f"{path}/{CONFIGMAP}", body=body)
    except KubeError as error:
        if error.status != 404:
            raise
        api.request("POST", path, body=body)
