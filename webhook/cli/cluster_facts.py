"""What `doctor`, `review --cluster` and `patch` read from the cluster: nodes with their configz allowlists, namespaces
and SysctlForbidden pods, read once (no watches).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from webhook.adapters.kube import KubeApi, KubeError, KubeletConfig
from webhook.adapters.kube_dns import read_corefiles, read_finding
from webhook.cli.usage import UsageError, connect
from webhook.core import keys
from webhook.core.capability import Capability, NodeFacts, node_facts_from_object
from webhook.core.diagnosis import with_evidence
from webhook.core.dns_remedy import DnsFacts, KubeletDns
from webhook.core.dns_trap import DnsFinding
from webhook.core.evidence import FAILED_PODS, Rejection, rejection_from_pod
from webhook.core.settings import Settings

CONFIGZ_WORKERS = 8


@dataclass(frozen=True, slots=True)
class ClusterFacts:
    """What `doctor` reads: nodes with their configz allowlists, namespaces, SysctlForbidden pods."""

    nodes: tuple[NodeFacts, ...]
    configz_errors: Mapping[str, str]
    namespaces: Mapping[str, Mapping[str, str]]
    rejections: tuple[Rejection, ...]
    labels_published: bool
    pods_error: str = ""  # why failed pods could not be listed ("" = they were)
    dns: DnsFinding | None = None  # the DNS probe's finding as serve published it (None: none, or not readable)
    kubelet_dns: tuple[KubeletDns, ...] = ()  # each read kubelet's clusterDNS/clusterDomain (rule 7's cluster DNS)
    corefiles: tuple[tuple[str, str], ...] = ()  # (where, text) of the CoreDNS configuration, where readable

    def capability(self, settings: Settings) -> Capability:
        """The snapshot the webhook would decide with, evidence and the DNS facts included."""
        nodes = with_evidence(self.nodes, self.rejections, settings.sysctl_names)
        built = Capability.build(nodes, sysctl_names=settings.sysctl_names, labels_published=self.labels_published)
        return replace(built, dns=DnsFacts.from_finding(self.dns, self.kubelet_dns))


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
    finding that serve published in v4only's `namespace`."""
    nodes = [node_facts_from_object(n) for n in api.list("nodes").items]
    namespaces = {
        str((n.get("metadata") or {}).get("name")): dict((n.get("metadata") or {}).get("labels") or {})
        for n in api.list("namespaces").items
    }
    rejections, pods_error = _rejections(api)
    with ThreadPoolExecutor(CONFIGZ_WORKERS, thread_name_prefix="v4only-doctor") as pool:
        answers = list(pool.map(lambda n: _configz(api, n.name), nodes))
    return ClusterFacts(
        nodes=tuple(
            replace(n, allowlist=config.allowed_unsafe_sysctls if config is not None else None)
            for n, (config, _) in zip(nodes, answers, strict=True)
        ),
        configz_errors={n.name: error for n, (_, error) in zip(nodes, answers, strict=True) if error},
        namespaces=namespaces,
        rejections=rejections,
        # The only sign that a replica publishes labels, seen from outside: a node that carries one.
        labels_published=any(keys.NODE_CAPABILITY in n.labels for n in nodes),
        pods_error=pods_error,
        dns=read_finding(api, namespace),
        kubelet_dns=tuple(config.dns for config, _ in answers if config is not None),
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


def _configz(api: KubeApi, node: str) -> tuple[KubeletConfig | None, str]:
    try:
        return api.kubelet_config(node), ""
    except KubeError as error:
        return None, configz_error(error)


def configz_error(error: KubeError) -> str:
    """A short reason a node's configz could not be read, for the table."""
    if error.status == 403:
        return "403 Forbidden"
    if error.status == 503:
        return "503 kubelet unreachable"
    if error.status == 0:
        return "unreachable"
    return f"HTTP {error.status}"
