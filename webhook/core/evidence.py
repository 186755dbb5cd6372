"""Evidence: pods the kubelet refused with `SysctlForbidden`, read from their status.

The kubelet's admit handler (pkg/kubelet/sysctl/allowlist.go `Admit`/`validateSysctl`) rejects a pod
with reason `SysctlForbidden` and message `forbidden sysctl: <err>`, where `<err>` is one of
`"<name>" not allowlisted` (`not whitelisted` before the rename), `"<name>" not allowed with host Net
enabled` or `... host IPC enabled`; `rejectPod` prefixes `Pod was rejected: ` (older kubelets `Pod `).
Only the allowlist failure says something about the node: the host-namespace failures are the pod's
own fault (shared/reference/kubernetes.md §1, "What the kubelet does with a pod it refuses").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from webhook.core.shapes import mapping_or_empty as _mapping
from webhook.core.sysctls import normalize_name

FORBIDDEN_REASON = "SysctlForbidden"
# Where evidence lives: the field selector the tracker, the reconciler, `doctor` and `patch --rescue` list pods with.
FAILED_PODS = "status.phase=Failed"
_NOT_ALLOWLISTED = re.compile(r'forbidden sysctl: "([^"]+)" not (?:allowlisted|whitelisted)')
_HOST_NAMESPACE = re.compile(r'forbidden sysctl: "([^"]+)" not allowed with host (?:net|Net|IPC|ipc) enabled')


@dataclass(frozen=True, slots=True)
class Rejection:
    """A pod whose status says the kubelet refused it with `SysctlForbidden`."""

    namespace: str
    name: str
    node: str
    message: str
    # Normalised sysctl names the node's allowlist refused (node evidence).
    not_allowlisted: frozenset[str]
    # Names refused only because the pod shares a host namespace (not node evidence).
    host_namespace: frozenset[str]

    def refuses(self, managed: Iterable[str]) -> frozenset[str]:
        """The managed sysctls (any spelling) this rejection proves the node's kubelet refuses."""
        return self.not_allowlisted & {normalize_name(n) for n in managed}


def rejection_from_pod(pod: Mapping[str, Any]) -> Rejection | None:
    """The rejection a Pod (plain dict) records, or None when it was not refused with SysctlForbidden."""
    status = _mapping(pod.get("status"))
    if status.get("reason") != FORBIDDEN_REASON:
        return None
    meta, spec = _mapping(pod.get("metadata")), _mapping(pod.get("spec"))
    message = str(status.get("message") or "")
    return Rejection(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        node=str(spec.get("nodeName") or ""),
        message=message,
        not_allowlisted=frozenset(normalize_name(n) for n in _NOT_ALLOWLISTED.findall(message)),
        host_namespace=frozenset(normalize_name(n) for n in _HOST_NAMESPACE.findall(message)),
    )

