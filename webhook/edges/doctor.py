"""`v4only doctor`: read the cluster once, then explain per node and per namespace what v4only does.

The reading is here (`gather`); the explaining is pure (`webhook.core.diagnosis`), so the output can
be compared exactly in tests. Exit status: 0 no problems, 1 problems (defined in diagnosis.py), 2 bad
usage or a cluster that cannot be read (one line on stderr). `--webhook` checks the installation instead
(`webhook/edges/doctor_webhook.py`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from webhook.adapters.kube import KubeApi, KubeError
from webhook.core import keys
from webhook.core.capability import Capability, NodeFacts, node_facts_from_object
from webhook.core.diagnosis import diagnose, render_json, render_table, with_evidence
from webhook.core.evidence import Rejection, rejection_from_pod
from webhook.core.settings import Settings
from webhook.edges import doctor_webhook
from webhook.edges.tracker import FAILED_PODS
from webhook.edges.usage import KUBECONFIG_HELP, UsageError, connect, load_settings

CONFIGZ_WORKERS = 8


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "doctor", help="explain, per node and per namespace, what v4only does and what to fix"
    )
    parser.add_argument("--kubeconfig", metavar="FILE", help=KUBECONFIG_HELP)
    parser.add_argument("--context", help="kubeconfig context")
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")
    parser.add_argument("--config", help="settings YAML (as in the v4only-config ConfigMap)")
    webhook = parser.add_argument_group(
        "installation checks (--webhook)",
        "check the installed MutatingWebhookConfiguration, its caBundle and serving certificate, and the timeouts "
        "of every mutating webhook called for a pod CREATE, instead of nodes and namespaces",
    )
    webhook.add_argument("--webhook", action="store_true", help="check the installation (see above)")
    webhook.add_argument(
        "--webhook-configuration", default="v4only", metavar="NAME", help="MutatingWebhookConfiguration (v4only)"
    )
    webhook.add_argument("--namespace", default="v4only-system", help="v4only's namespace (v4only-system)")
    webhook.add_argument("--secret", default="v4only-tls", help="serving certificate Secret, key tls.crt (v4only-tls)")
    webhook.add_argument(
        "--served-by",
        metavar="HOST:PORT",
        help="also check the certificate served there (e.g. `kubectl port-forward -n v4only-system svc/v4only "
        "8443:443`, then 127.0.0.1:8443)",
    )
    parser.set_defaults(func=run)


@dataclass(frozen=True, slots=True)
class ClusterFacts:
    """What `doctor` reads: nodes with their configz allowlists, namespaces, SysctlForbidden pods."""

    nodes: tuple[NodeFacts, ...]
    configz_errors: Mapping[str, str]
    namespaces: Mapping[str, Mapping[str, str]]
    rejections: tuple[Rejection, ...]
    labels_published: bool
    pods_error: str = ""  # why failed pods could not be listed ("" = they were)

    def capability(self, settings: Settings) -> Capability:
        """The snapshot the webhook would decide with, evidence included."""
        nodes = with_evidence(self.nodes, self.rejections, settings.sysctl_names)
        return Capability.build(nodes, sysctl_names=settings.sysctl_names, labels_published=self.labels_published)


def run(args: argparse.Namespace) -> int:
    if args.webhook:
        return doctor_webhook.run(args)
    settings = load_settings(args.config)
    api = connect(args)
    try:
        facts = gather(api)
    except KubeError as error:
        raise UsageError(f"cannot read the cluster: {error}") from None
    finally:
        api.close()
    diagnosis = diagnose(
        facts.nodes,
        configz_errors=facts.configz_errors,
        namespaces=facts.namespaces,
        rejections=facts.rejections,
        settings=settings,
        labels_published=facts.labels_published,
        pods_error=facts.pods_error,
    )
    sys.stdout.write(render_json(diagnosis) if args.output == "json" else render_table(diagnosis))
    return diagnosis.exit_status


def gather(api: KubeApi) -> ClusterFacts:
    """Read nodes, namespaces and failed pods, and every node's configz (bounded concurrency)."""
    nodes = [node_facts_from_object(n) for n in api.list("nodes").items]
    namespaces = {
        str((n.get("metadata") or {}).get("name")): dict((n.get("metadata") or {}).get("labels") or {})
        for n in api.list("namespaces").items
    }
    rejections, pods_error = _rejections(api)
    with ThreadPoolExecutor(CONFIGZ_WORKERS, thread_name_prefix="v4only-doctor") as pool:
        answers = list(pool.map(lambda n: _configz(api, n.name), nodes))
    return ClusterFacts(
        nodes=tuple(replace(n, allowlist=allowlist) for n, (allowlist, _) in zip(nodes, answers, strict=True)),
        configz_errors={n.name: error for n, (_, error) in zip(nodes, answers, strict=True) if error},
        namespaces=namespaces,
        rejections=rejections,
        # The only sign that a replica publishes labels, seen from outside: a node that carries one.
        labels_published=any(keys.NODE_CAPABILITY in n.labels for n in nodes),
        pods_error=pods_error,
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


def _configz(api: KubeApi, node: str) -> tuple[tuple[str, ...] | None, str]:
    try:
        return api.kubelet_allowlist(node), ""
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
