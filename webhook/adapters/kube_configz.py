"""Where serve's configz read records live: ConfigMap `v4only-configz` in v4only's namespace.

Written by the elected replica (the node-label Lease holder, like the DNS finding in `kube_dns.py`), at a
bounded rate; read by `v4only doctor`. Anyone may look: `kubectl get cm -n v4only-system v4only-configz -o yaml`.
"""

from __future__ import annotations

from collections.abc import Mapping

from webhook.adapters.configmaps import read_json, write_json
from webhook.adapters.kube import KubeApi
from webhook.core.configz_reads import ConfigzRecord, RecordsError, records_from_dict, records_to_dict

CONFIGMAP = "v4only-configz"
KEY = "reads.json"


def read_records(api: KubeApi, namespace: str) -> dict[str, ConfigzRecord] | None:
    """The published records; None when none were published, this caller may not read them, or they are
    unreadable (as good as none)."""
    document = read_json(api, namespace, CONFIGMAP, KEY)
    if document is None:
        return None
    try:
        return records_from_dict(document)
    except RecordsError:
        return None


def write_records(api: KubeApi, namespace: str, reads: Mapping[str, ConfigzRecord]) -> None:
    """Create or replace the ConfigMap (a full PUT: this replica is the only writer while it leads)."""
    write_json(api, namespace, CONFIGMAP, KEY, records_to_dict(reads), component="tracker", indent=False)
