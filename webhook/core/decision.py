"""The one decision: is this pod managed, and which remedy does it get, and why.

The webhook, `v4only review`, `v4only patch` and `v4only doctor` all call `decide`; nothing else
decides. The order of the rules is the contract's (shared/product.md, "The decision").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from webhook.core import keys, placement
from webhook.core.capability import Capability, positions
from webhook.core.dns_remedy import DnsChoice, DnsFacts, DnsOutcome, choose_dns
from webhook.core.settings import Settings
from webhook.core.shapes import optional_mapping
from webhook.core.sysctls import namespace_of, psa_baseline_allowed, psa_baseline_since

Remedy = Literal["sysctl", "sysctl+affinity", "env", "none"]
REMEDIES: tuple[Remedy, ...] = ("sysctl", "sysctl+affinity", "env", "none")
_OVERRIDES = ("auto", "sysctl", "env", "none")
_ALLOWLIST_HINT = "(kubelet allowedUnsafeSysctls)"


@dataclass(frozen=True, slots=True)
class Decision:
    """`remedy` is None when the pod is not managed: then nothing about it changes.

    `reason` is what `v4only.io/reason` says: each remedy's own line (`lines`, each a warning of its own),
    joined with "; " (product.md).
    """

    remedy: Remedy | None
    reason: str
    dns: DnsChoice | None = None
    # Further warnings for the user that are not part of the reason (e.g. a mistyped annotation).
    notes: tuple[str, ...] = ()
    lines: tuple[str, ...] = ()  # () = just `reason`
    uv_offline: bool = False  # add UV_NO_SYNC / UV_PYTHON_DOWNLOADS (settings.uv_offline_env)

    @property
    def managed(self) -> bool:
        return self.remedy is not None

    @property
    def applied(self) -> str | None:
        """`v4only.io/applied`: the remedy, `+dns` when the DNS remedy was added."""
        return None if self.remedy is None else self.remedy + ("+dns" if self.dns is not None else "")

    @property
    def warnings(self) -> tuple[str, ...]:
        """The lines the webhook returns as AdmissionReview warnings (each under 120 characters)."""
        return (*(self.lines or (self.reason,)), *self.notes)


def decide(
    pod: Mapping[str, Any],
    *,
    namespace: str,
    namespace_labels: Mapping[str, str] | None,
    capability: Capability,
    settings: Settings,
    daemonset: bool = False,
) -> Decision:
    """Decide for a Pod (or a pod template: metadata + spec). `namespace_labels` None = not known.

    `daemonset`: the pod template of a DaemonSet, judged on the nodes its controller runs a pod on.
    """
    meta, spec = optional_mapping(pod.get("metadata"), "metadata"), optional_mapping(pod.get("spec"), "spec")
    unmanaged = _unmanaged_reason(meta, namespace, namespace_labels, settings)
    if unmanaged is not None:
        return Decision(None, unmanaged)
    override, notes = _override(meta)
    remedy, reason = _choose(override, spec, namespace_labels, capability, settings, daemonset)
    floor = capability.kubelet_minor
    if daemonset and override == "auto" and _sysctl_blocker(spec, namespace_labels, settings, floor) is None:
        notes = (*notes, *_daemon_pods_note(spec, capability))
    facts = capability.dns
    dns = _NO_DNS
    # Rule 7 has nothing to do without a trap, a non-auto mode or the pod's own v4only.io/dns: the common case
    # on the admission path skips it (choose_dns would answer the same, at ~0.8 us).
    asked = facts.traps or settings.dns.mode != "auto" or keys.DNS in _annotations(meta)
    if asked and not _no_cluster_dns(spec):
        dns = choose_dns(meta, spec, namespace=namespace, facts=facts, mode=settings.dns.mode)
    lines = (_clip(reason),) if dns.line is None else (_clip(reason), _clip(dns.line))
    uv_offline, uv_note = _uv_offline(meta, namespace_labels, remedy, facts, dns)
    notes = (*notes, *dns.notes, *uv_note)
    return Decision(remedy, "; ".join(lines), dns=dns.choice, notes=tuple(_clip(n) for n in notes) if notes else (),
                    lines=lines, uv_offline=uv_offline)


_NO_DNS = DnsOutcome()


def _annotations(meta: Mapping[str, Any]) -> Mapping[str, Any]:
    return optional_mapping(meta.get("annotations"), "metadata.annotations")


def _no_cluster_dns(spec: Mapping[str, Any]) -> bool:
    """Windows and hostNetwork pods take no DNS remedy (rule 7): not the cluster's resolver path."""
    return optional_mapping(spec.get("os"), "spec.os").get("name") == "windows" or spec.get("hostNetwork") is True


def _uv_offline(
    meta: Mapping[str, Any],
    namespace_labels: Mapping[str, str] | None,
    remedy: Remedy,
    facts: DnsFacts,
    dns: DnsOutcome,
) -> tuple[bool, tuple[str, ...]]:
    """UV_NO_SYNC only where it cures and cannot harm (product.md, the env remedy; remedy-lab.md): an image
    that relies on `uv run` to install at start fails under it even with a working network."""
    asked = optional_mapping(meta.get("annotations"), "metadata.annotations").get(keys.UV_OFFLINE) == "true"
    if asked or (namespace_labels or {}).get(keys.UV_OFFLINE) == "true":
        return True, ()
    if remedy == "none":
        return False, ()
    if facts.aaaa_nxdomain:
        return True, ("env: UV_NO_SYNC added: the cluster DNS answers NXDOMAIN to AAAA, no pod DNS setting cures it",)
    if dns.uncured_trap:
        return True, ("env: UV_NO_SYNC added: a search domain is a trap and this pod keeps its own DNS settings",)
    return False, ()


def _unmanaged_reason(
    meta: Mapping[str, Any],
    namespace: str,
    namespace_labels: Mapping[str, str] | None,
    settings: Settings,
) -> str | None:
    if namespace in settings.excluded_namespaces:
        return f"namespace {namespace} is excluded"
    ns_opt = (namespace_labels or {}).get(keys.INJECT)
    pod_opt = optional_mapping(meta.get("labels"), "metadata.labels").get(keys.INJECT)
    if ns_opt == keys.DISABLED:
        return f"namespace {namespace} has {keys.INJECT}=disabled"
    if pod_opt == keys.DISABLED:
        return f"pod has {keys.INJECT}=disabled"
    if ns_opt == keys.ENABLED or pod_opt == keys.ENABLED:
        return None
    if namespace_labels is None:
        return f"namespace {namespace} is not known yet and the pod has no {keys.INJECT}=enabled label"
    return f"neither the pod nor namespace {namespace} has {keys.INJECT}=enabled"


def _override(meta: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
    value = optional_mapping(meta.get("annotations"), "metadata.annotations").get(keys.REMEDY, "auto")
    if value in _OVERRIDES:
        return str(value), ()
    return "auto", (_clip(f"v4only: {keys.REMEDY}={str(value)[:30]!r} is not auto|sysctl|env|none; using auto"),)


def _choose(
    override: str,
    spec: Mapping[str, Any],
    namespace_labels: Mapping[str, str] | None,
    capability: Capability,
    settings: Settings,
    daemonset: bool = False,
) -> tuple[Remedy, str]:
    if override == "none":
        return "none", f"none: {keys.REMEDY}=none"
    if override == "env":
        return "env", f"env: {keys.REMEDY}=env"
    blocked = _sysctl_blocker(spec, namespace_labels, settings, capability.kubelet_minor)
    if blocked is not None:
        remedy, why = blocked
        suffix = f"; {keys.REMEDY}=sysctl not applied" if override == "sysctl" else ""
        return remedy, f"{remedy}: {why}{suffix}"
    if override == "sysctl":
        return "sysctl", f"sysctl: {keys.REMEDY}=sysctl (node capability not checked)"
    remedy, why = _by_capability(spec, capability, settings, daemonset)
    return remedy, f"{remedy}: {why}"


def _sysctl_blocker(
    spec: Mapping[str, Any],
    namespace_labels: Mapping[str, str] | None,
    settings: Settings,
    server_floor: int | None = None,
) -> tuple[Remedy, str] | None:
    """Rules 2-4: cases where the sysctl can never work, whatever the nodes say. `server_floor`: the minor the
    API server is at least (its newest kubelet's), for Pod Security's version."""
    os_name = optional_mapping(spec.get("os"), "spec.os").get("name")
    if os_name == "windows":
        return "none", "sysctls cannot be set on Windows pods"
    # core validation ValidateHostSysctl: a Net sysctl with hostNetwork, an IPC one with hostIPC.
    namespaces = {namespace_of(s.name) for s in settings.sysctls}
    if spec.get("hostNetwork") is True and "Net" in namespaces:
        return "env", "hostNetwork pods may not set net.* sysctls (API server validation)"
    if spec.get("hostIPC") is True and "IPC" in namespaces:
        return "env", "hostIPC pods may not set IPC sysctls (API server validation)"
    level = enforced_level(namespace_labels, settings)
    if level is None:
        return "env", "namespace labels not known yet, so Pod Security enforcement cannot be checked"
    version = (namespace_labels or {}).get(keys.PSA_ENFORCE_VERSION)
    if pod_security_forbids(level, settings, version):
        return "env", f"namespace enforces Pod Security {level}, which forbids unsafe sysctls"
    if pod_security_forbids(level, settings, version, server_floor):
        allowed = psa_baseline_allowed(version, server_floor)
        name = next(s.name for s in settings.sysctls if s.name not in allowed)
        return "env", (f"Pod Security {level} allows {name} only from v1.{psa_baseline_since(name)}; the API server "
                       f"may be older (newest kubelet v1.{server_floor})")
    return None


def pod_security_forbids(
    level: str, settings: Settings, version: str | None = None, server_floor: int | None = None
) -> bool:
    """Whether Pod Security at this enforce level and version (`enforce-version`; None: latest) rejects a pod
    carrying the managed sysctls, on an API server at `server_floor` or newer (None: the newest)."""
    allowed = psa_baseline_allowed(version, server_floor)
    return level in ("baseline", "restricted") and not all(s.name in allowed for s in settings.sysctls)


def enforced_level(namespace_labels: Mapping[str, str] | None, settings: Settings) -> str | None:
    """The Pod Security level the namespace enforces (None: labels not known); `doctor` shows it too."""
    # pod-security-admission api/helpers.go: an invalid enforce level is treated as restricted.
    if namespace_labels is None:
        return None
    level = namespace_labels.get(keys.PSA_ENFORCE)
    if level is None:
        return settings.pod_security_default
    return level if level in ("privileged", "baseline", "restricted") else "restricted"


def _by_capability(
    spec: Mapping[str, Any], capability: Capability, settings: Settings, daemonset: bool = False
) -> tuple[Remedy, str]:
    """Rule 5: the verdicts of the nodes the pod can land on."""
    names = _names(settings)
    if capability.state == "unknown":
        return "env", f"node capability not known yet ({capability.note})"
    if capability.state == "assumed":
        remedy: Remedy = "sysctl" if capability.assumed == "allowed" else "env"
        return remedy, f"assumed {capability.assumed} for {names} ({capability.note})"
    if daemonset:
        return _by_daemon_nodes(spec, capability, names)
    candidates = placement.candidate_nodes(spec, capability)
    total = candidates.bit_count()
    if total == 0:
        return "env", "no known schedulable node matches this pod's node constraints"
    allowed = (candidates & capability.allowed).bit_count()
    forbidden = (candidates & capability.forbidden).bit_count()
    nodes = "node allows" if total == 1 else "nodes allow"  # "1 of 1 schedulable node allows ..."
    counts = f"{allowed} of {total} schedulable {nodes} {names}"
    if allowed == total:
        return "sysctl", counts
    if allowed == 0:
        if forbidden == 0:
            which = "the schedulable node" if total == 1 else f"the {total} schedulable nodes"
            return "env", f"capability of {which} not known yet"
        return "env", f"{counts} {_ALLOWLIST_HINT}"
    if settings.mixed_clusters == "env":
        return "env", f"{counts}; mixedClusters is env"
    if not capability.labels_published:
        return "env", f"{counts}; no published node labels to pin to"
    return "sysctl+affinity", f"{counts}; pinned to {keys.NODE_CAPABILITY}=allowed"


def _by_daemon_nodes(spec: Mapping[str, Any], capability: Capability, names: str) -> tuple[Remedy, str]:
    """A DaemonSet's template is never pinned: its controller checks the template's node affinity per node
    and would delete the daemon from every node without the label (daemon_controller.go
    NodeShouldRunDaemonPod). Its pods reach the webhook bound to one node each and get that node's remedy,
    so the template carries the sysctl only when every node that runs its pods accepts it."""
    nodes = placement.daemon_nodes(spec, capability)
    total = nodes.bit_count()
    if total == 0:
        return "env", "no known node runs this DaemonSet's pods"
    allowed = (nodes & capability.allowed).bit_count()
    counts = f"{allowed} of {total} nodes running its pods allow {names}"
    if allowed == total:
        return "sysctl", counts
    return "env", f"{counts}; each pod gets its node's remedy"


def _daemon_pods_note(spec: Mapping[str, Any], capability: Capability) -> tuple[str, ...]:
    """What the webhook gives the daemon pod on each node: sysctl where the node allows it, else env."""
    if capability.state != "known":
        return ()
    nodes = placement.daemon_nodes(spec, capability)
    if not nodes:
        return ()
    allowed = [capability.nodes[i].name for i in positions(nodes & capability.allowed)]
    other = [capability.nodes[i].name for i in positions(nodes & ~capability.allowed)]
    parts = [f"{remedy} on {_listed(found)}" for remedy, found in (("sysctl", allowed), ("env", other)) if found]
    return (_clip(f"daemon pods: {'; '.join(parts)}"),)


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:3])
    return shown if len(names) <= 3 else f"{shown} (+{len(names) - 3})"


def _names(settings: Settings) -> str:
    first = settings.sysctls[0].name
    more = len(settings.sysctls) - 1
    return first if more == 0 else f"{first} (+{more})"


def _clip(reason: str) -> str:
    # AdmissionReview warnings: "limit to 120 characters if possible" (admission/v1 types.go).
    return reason if len(reason) <= 120 else reason[:117] + "..."
