"""What `doctor`, `review --cluster` and `patch` read from the cluster: nodes with their configz allowlists, namespaces
and SysctlForbidden pods, read once (no watches).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from webhook.adapters.kube import KubeApi, KubeError
from webhook.adapters.kube_configz import read_records
from webhook.adapters.kube_dns import read_corefiles, read_finding
from webhook.adapters.kubelet import KubeletAccess, KubeletConfigz
from webhook.cli.usage import UsageError, connect
from webhook.core import keys
from webhook.core.capability import Capability, NodeFacts, node_facts_from_object
from webhook.core.configz_reads import ConfigzRecord
from webhook.core.diagnosis import cluster_capability
from webhook.core.dns_remedy import KubeletDns
from webhook.core.dns_trap import DnsFinding
from webhook.core.evidence import FAILED_PODS, Rejection, rejection_from_pod
from webhook.core.settings import Settings

CONFIGZ_WORKERS = 8


@dataclass(frozen=True, slots=True)
class ClusterFacts:
    """What `doctor` reads: nodes with their configz allowlists, namespaces, SysctlForbidden pods."""

    nodes: tuple[NodeFacts, ...]
    configz_errors: Mapping[str, str]
    # Per node: which path read its configz (direct, proxy, none) and why not the direct one ("" if it did).
    configz_paths: Mapping[str, tuple[str, str]]
    namespaces: Mapping[str, Mapping[str, str]]
    rejections: tuple[Rejection, ...]
    labels_published: bool
    pods_error: str = ""  # why failed pods could not be listed ("" = they were)
    dns: DnsFinding | None = None  # the DNS probe's finding as serve published it (None: none, or not readable)
    kubelet_dns: tuple[KubeletDns, ...] = ()  # each read kubelet's clusterDNS/clusterDomain (rule 7's cluster DNS)
    # When and how serve last read each kubelet (its elected replica's ConfigMap); None: nothing published.
    serve_reads: Mapping[str, ConfigzRecord] | None = None
    read_at: datetime | None = None  # when this read the kubelets (the ages of serve's reads count from it)
    corefiles: tuple[tuple[str, str], ...] = ()  # (where, text) of the CoreDNS configuration, where readable

    def capability(self, settings: Settings) -> Capability:
        """The snapshot the webhook would decide with, evidence and the DNS facts included."""
        return cluster_capability(self.nodes, self.rejections, settings, self.labels_published, self.dns,
                                  self.kubelet_dns)


def read_cluster(args: argparse.Namespace, *, hint: str = "") -> ClusterFacts:
    """`gather` on the cluster of `--kubeconfig`/`--context`; a cluster that cannot be read is a usage error."""
    api = connect(args, hint=hint)
    try:
        return gather(api)
    except KubeError as error:
        raise UsageError(f"cannot read the cluster: {error}") from None
    finally:
        api.close()


def gather(api: KubeApi, namespace: str = "v4only-system") -> ClusterFacts:
    """Read nodes, namespaces and failed pods, every node's configz (bounded concurrency), and the DNS probe's
    finding that serve published in v4only's `namespace`.

    Each kubelet is asked directly (nodes/configz), with the same trust settings as `serve`
    (V4ONLY_KUBELET_*); where it refuses or cannot be reached, the API server's node proxy, which works
    when the person running this has `get nodes/proxy`.
    """
    try:
        reader = KubeletConfigz(api, replace(KubeletAccess.from_env(), proxy_fallback=True))
    except ValueError as error:
        raise UsageError(str(error)) from None
    objects = api.list("nodes").items
    nodes = [node_facts_from_object(n) for n in objects]
    namespaces = {
        str((n.get("metadata") or {}).get("name")): dict((n.get("metadata") or {}).get("labels") or {})
        for n in api.list("namespaces").items
    }
    rejections, pods_error = _rejections(api)
    with ThreadPoolExecutor(CONFIGZ_WORKERS, thread_name_prefix="v4only-doctor") as pool:
        answers = list(pool.map(reader.read, objects))
    read_at = datetime.now(UTC)
    pairs = list(zip(nodes, answers, strict=True))
    return ClusterFacts(
        nodes=tuple(replace(n, allowlist=a.allowlist) for n, a in pairs),
        configz_errors={n.name: a.error for n, a in pairs if a.config is None},
        configz_paths={n.name: (a.path, a.direct_error) for n, a in pairs},
        namespaces=namespaces,
        rejections=rejections,
        # The only sign that a replica publishes labels, seen from outside: a node that carries one.
        labels_published=any(keys.NODE_CAPABILITY in n.labels for n in nodes),
        pods_error=pods_error,
        dns=read_finding(api, namespace),
        kubelet_dns=tuple(a.config.dns for a in answers if a.config is not None),
        serve_reads=read_records(api, namespace),
        read_at=read_at,
        corefiles=read_corefiles(api),
    )


def _rejections(api: KubeApi) -> tuple[tuple[Rejection, ...], str]:
    """SysctlForbidden pods; a person may lack `list pods` cluster-wide, which only costs the evidence."""
    try:
        pods = api.list("pods", field_selector=FAILED_PODS).items
    except KubeError as error:
        if error.status != 403:
            raise
        return (), "403 Forbidden"
    return tuple(r for r in map(rejection_from_pod, pods) if r), ""

