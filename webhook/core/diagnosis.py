"""`v4only doctor`, the pure part: what each node and opted-in namespace gets and why, and hints.

The command (`webhook/cli/doctor.py`) gathers plain facts from the cluster; `diagnose` turns them into a
`Diagnosis` using the same `evaluate_node` and `decide` as the webhook, and `render_table` /
`render_json` (diagnosis_render.py) print it. Nothing here decides anything `decide` does not.

What counts as a problem (exit status 1), precisely:
- an opted-in namespace (label `v4only.io/inject=enabled`, not excluded) where a new plain pod gets
  `env` although the namespace's Pod Security level would accept the sysctl: the nodes stand in the
  way (they forbid it, are not known, or only some allow it and labels are not published);
- a pod that already failed with `SysctlForbidden` naming a managed sysctl: it will never start.
Not a problem, shown with a note: `env` because the namespace enforces Pod Security baseline or
restricted (the fallback is the designed outcome there), and an opted-in namespace that the settings
exclude.

Hints: MicroK8s and k3s commands follow shared/reference/kubernetes.md §7; MicroK8s is recognised by
the node labels its kubelet args set (`microk8s.io/cluster=true`, `node.kubernetes.io/microk8s-
controlplane` or `-worker`: canonical/microk8s microk8s-resources/default-args/kubelet and
scripts/cluster/join.py), k3s by `+k3s` in the kubelet version.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from webhook.core import keys
from webhook.core.capability import Capability, NodeFacts, Source, Verdict, evaluate_node
from webhook.core.configz_reads import ConfigzRecord
from webhook.core.decision import decide, enforced_level, pod_security_forbids
from webhook.core.dns_remedy import DnsFacts, KubeletDns
from webhook.core.dns_report import DnsReport, dns_report
from webhook.core.dns_trap import DnsFinding
from webhook.core.evidence import Rejection
from webhook.core.settings import Settings
from webhook.core.sysctls import Allowlist, pattern_error

Distro = Literal["microk8s", "k3s", "other"]
MICROK8S_LABELS = (
    "microk8s.io/cluster",
    "node.kubernetes.io/microk8s-controlplane",
    "node.kubernetes.io/microk8s-worker",
)
# A new pod with no constraints of its own: what "a new pod in this namespace" means.
PLAIN_POD: Mapping[str, Any] = {"metadata": {"labels": {}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
K3S_SERVICELB_DEFAULTS = "net.ipv4.ip_forward,net.ipv6.conf.all.forwarding"


@dataclass(frozen=True, slots=True)
class NodeReport:
    name: str
    kubelet_version: str
    distro: Distro
    cordoned: bool
    ready: bool
    # The running kubelet's allowedUnsafeSysctls; None when not read (then `configz_error` says why).
    allowlist: tuple[str, ...] | None
    configz_error: str
    # Per managed sysctl (settings order), then the node's verdict for all of them together.
    verdicts: tuple[tuple[str, Verdict], ...]
    verdict: Verdict
    source: Source
    detail: str
    invalid_patterns: tuple[tuple[str, str], ...]
    # Which path read the configz (direct to the kubelet, the API server's proxy, none; "" = not said) and
    # why not the direct one ("" when it answered).
    configz_path: str = ""
    configz_direct_error: str = ""
    # serve's last read of this kubelet (None: serve published none for it) and its age when doctor read.
    serve_read: ConfigzRecord | None = None
    serve_read_age_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class NamespaceReport:
    name: str
    pod_security: str
    remedy: str  # the remedy a new pod gets, or "unmanaged"
    reason: str
    problem: bool


@dataclass(frozen=True, slots=True)
class PodReport:
    namespace: str
    name: str
    node: str
    message: str
    managed: bool  # names a managed sysctl
    cause: Literal["allowlist", "host-namespace", "other"]


@dataclass(frozen=True, slots=True)
class Diagnosis:
    sysctls: tuple[str, ...]
    labels_published: bool
    nodes: tuple[NodeReport, ...]
    namespaces: tuple[NamespaceReport, ...]
    pods: tuple[PodReport, ...]
    hints: tuple[str, ...]
    problems: tuple[str, ...]
    dns: DnsReport = field(default_factory=lambda: dns_report(None))

    @property
    def exit_status(self) -> int:
        return 1 if self.problems else 0


def distro_of(node: NodeFacts) -> Distro:
    if any(label in node.labels for label in MICROK8S_LABELS):
        return "microk8s"
    if "+k3s" in node.kubelet_version:
        return "k3s"
    return "other"


def with_evidence(
    nodes: Iterable[NodeFacts], rejections: Iterable[Rejection], managed: Iterable[str]
) -> list[NodeFacts]:
    """Nodes with `refused` set from every rejection on them that names a managed sysctl."""
    names = tuple(managed)
    refused: dict[str, set[str]] = {}
    for rejection in rejections:
        refused.setdefault(rejection.node, set()).update(rejection.refuses(names))
    return [replace(n, refused=n.refused | frozenset(refused.get(n.name, ()))) for n in nodes]


def cluster_capability(
    nodes: Iterable[NodeFacts],
    rejections: Iterable[Rejection],
    settings: Settings,
    labels_published: bool,
    dns: DnsFinding | None,
    kubelet_dns: Iterable[KubeletDns],
) -> Capability:
    """The snapshot the webhook would decide with, from what a one-off read of the cluster found: the nodes
    (configz allowlists set), the evidence of SysctlForbidden pods, and the DNS facts. Doctor, live review
    and patch all decide with this one."""
    facts = with_evidence(nodes, rejections, settings.sysctl_names)
    built = Capability.build(facts, sysctl_names=settings.sysctl_names, labels_published=labels_published)
    return replace(built, dns=DnsFacts.from_finding(dns, kubelet_dns))


def diagnose(
    nodes: Iterable[NodeFacts],
    *,
    configz_errors: Mapping[str, str],
    namespaces: Mapping[str, Mapping[str, str]],
    rejections: Iterable[Rejection],
    settings: Settings,
    labels_published: bool,
    pods_error: str = "",
    dns: DnsFinding | None = None,
    kubelet_dns: Iterable[KubeletDns] = (),
    configz_paths: Mapping[str, tuple[str, str]] | None = None,
    serve_reads: Mapping[str, ConfigzRecord] | None = None,
    read_at: datetime | None = None,
    corefiles: Iterable[tuple[str, str]] = (),
) -> Diagnosis:
    """Everything `doctor` shows, from plain facts; `nodes` carry the configz allowlists already.

    `pods_error` says why failed pods could not be listed (then there is no evidence to show). `dns` and
    `kubelet_dns` (each kubelet's clusterDNS/clusterDomain) give rule 7 what the webhook has; `corefiles`
    ((where, text) of the CoreDNS configuration) let the DNS section name a template that hides AAAA.
    """
    rejected = sorted(rejections, key=lambda r: (r.namespace, r.name))
    # The namespaces' decisions see what the webhook sees, rule 7 included.
    capability = cluster_capability(nodes, rejected, settings, labels_published, dns, kubelet_dns)
    dns_section = dns_report(dns, corefiles)
    paths = configz_paths or {}
    node_reports = tuple(
        replace(
            _node_report(n, v.verdict, v.source, v.detail, configz_errors.get(n.name, ""), settings),
            configz_path=paths.get(n.name, ("", ""))[0],
            configz_direct_error=paths.get(n.name, ("", ""))[1],
            **_serve_read((serve_reads or {}).get(n.name), read_at),
        )
        for n, v in zip(capability.nodes, capability.verdicts, strict=True)
    )
    ns_reports = tuple(
        _namespace_report(name, labels, capability, settings)
        for name, labels in sorted(namespaces.items())
        if labels.get(keys.INJECT) == keys.ENABLED
    )
    pods = tuple(_pod_report(r, settings) for r in rejected)
    problems = [
        f"namespace {n.name}: new pods get {n.remedy}: {strip_remedy(n.reason)}" for n in ns_reports if n.problem
    ]
    failed = [p for p in pods if p.managed]
    if failed:
        problems.append(f"{len(failed)} pod(s) already failed with SysctlForbidden and will never start")
    return Diagnosis(
        sysctls=tuple(s.name for s in settings.sysctls),
        labels_published=labels_published,
        nodes=node_reports,
        namespaces=ns_reports,
        pods=pods,
        hints=(*_hints(node_reports, ns_reports, pods, settings, labels_published, pods_error), *dns_section.hints),
        problems=(*problems, *dns_section.problems),
        dns=dns_section,
    )


def _pod_report(rejection: Rejection, settings: Settings) -> PodReport:
    managed = settings.sysctl_names
    cause: Literal["allowlist", "host-namespace", "other"] = (
        "allowlist" if rejection.not_allowlisted else "host-namespace" if rejection.host_namespace else "other"
    )
    named = (rejection.not_allowlisted | rejection.host_namespace) & managed
    return PodReport(rejection.namespace, rejection.name, rejection.node, rejection.message, bool(named), cause)


def _serve_read(record: ConfigzRecord | None, read_at: datetime | None) -> dict[str, Any]:
    age = None if record is None or read_at is None else (read_at - record.read_at).total_seconds()
    return {"serve_read": record, "serve_read_age_seconds": age}


def _node_report(
    node: NodeFacts, verdict: Verdict, source: Source, detail: str, configz_error: str, settings: Settings
) -> NodeReport:
    invalid: tuple[tuple[str, str], ...] = ()
    if node.allowlist is not None:
        invalid = tuple((p, pattern_error(p) or "") for p in Allowlist.parse(node.allowlist).invalid)
    return NodeReport(
        name=node.name,
        kubelet_version=node.kubelet_version,
        distro=distro_of(node),
        cordoned=node.unschedulable,
        ready=node.ready,
        allowlist=node.allowlist,
        configz_error=configz_error if node.allowlist is None else "",
        verdicts=tuple((s.name, evaluate_node(node, (s.name,)).verdict) for s in settings.sysctls),
        verdict=verdict,
        source=source,
        detail=detail,
        invalid_patterns=invalid,
    )


def _namespace_report(
    name: str, labels: Mapping[str, str], capability: Capability, settings: Settings
) -> NamespaceReport:
    decision = decide(PLAIN_POD, namespace=name, namespace_labels=labels, capability=capability, settings=settings)
    level = enforced_level(labels, settings) or "unknown"
    raw = labels.get(keys.PSA_ENFORCE)
    shown = f"{level} (default)" if raw is None else level if raw == level else f"{level} (invalid {raw[:20]!r})"
    if decision.remedy is None:
        return NamespaceReport(name, shown, "unmanaged", decision.reason, problem=False)
    version = labels.get(keys.PSA_ENFORCE_VERSION)
    problem = decision.remedy == "env" and not pod_security_forbids(level, settings, version, capability.kubelet_minor)
    return NamespaceReport(name, shown, decision.applied or decision.remedy, decision.reason, problem)


# ---- hints ---------------------------------------------------------------------------------------


def _hints(
    nodes: Sequence[NodeReport],
    namespaces: Sequence[NamespaceReport],
    pods: Sequence[PodReport],
    settings: Settings,
    labels_published: bool,
    pods_error: str,
) -> list[str]:
    hints: list[str] = []
    if pods_error:
        hints.append(f"failed pods not readable ({pods_error}): SysctlForbidden evidence was not checked")
    forbidden = [n for n in nodes if n.verdict == "forbidden" and n.source != "override"]
    hints += _fix_hints([n for n in forbidden if not _allows_all(n, settings)], settings)
    hints += _invalid_pattern_hints(nodes)
    hints += _unknown_hints([n for n in nodes if n.verdict == "unknown"])
    hints += _evidence_hints([n for n in nodes if n.source == "evidence"], settings)
    node_problem = any(n.problem for n in namespaces)
    if node_problem and not labels_published and _mixed(nodes):
        hints.append(
            "only some nodes allow the sysctl and node labels are not published, so pods get env: run "
            f"`v4only serve --publish-node-labels` (one replica keeps {keys.NODE_CAPABILITY} on nodes) "
            "or fix the other nodes"
        )
    for ns in namespaces:
        if ns.remedy == "env" and not ns.problem:
            hints.append(
                f"namespace {ns.name} enforces Pod Security {ns.pod_security.split()[0]}: its pods get the env "
                "fallback by design (the sysctl needs enforce=privileged)"
            )
    refused = [p for p in pods if p.managed and p.cause == "allowlist"]
    if refused:
        hints.append(
            f"{len(refused)} pod(s) were refused by their node's kubelet and their controllers keep making new "
            "ones: once the nodes are fixed, run `v4only patch` or delete them (`kubectl delete pod -n NS NAME`)"
        )
    host = [f"{p.namespace}/{p.name}" for p in pods if p.managed and p.cause == "host-namespace"]
    if host:
        hints.append(
            f"{_name_list(host)}: pods on the host network may not set net.* sysctls: remove the sysctl from "
            "the workload (v4only gives hostNetwork pods the env fallback)"
        )
    return hints


def _fix_hints(nodes: Sequence[NodeReport], settings: Settings) -> list[str]:
    """One hint per distribution and flag value, naming the nodes it is for."""
    groups: dict[tuple[Distro, tuple[str, ...]], list[str]] = {}
    for node in nodes:
        valid = [p for p in node.allowlist or () if pattern_error(p) is None]
        parsed = Allowlist.parse(valid)
        missing = [s.name for s in settings.sysctls if not parsed.allows(s.name)] or [s.name for s in settings.sysctls]
        # MicroK8s has no default list: the flag must carry the entries to keep as well.
        value = (*valid, *missing) if node.distro == "microk8s" else tuple(missing)
        groups.setdefault((node.distro, value), []).append(node.name)
    return [_fix_hint(distro, ",".join(value), _name_list(names)) for (distro, value), names in groups.items()]


def _fix_hint(distro: Distro, value: str, where: str) -> str:
    if distro == "microk8s":
        return (
            f"{where} (MicroK8s): put --allowed-unsafe-sysctls={value} in /var/snap/microk8s/current/args/kubelet "
            "(no spaces after commas), then run `microk8s stop; microk8s start`; kubelite reads that file itself, "
            "so `ps` never shows the flag"
        )
    if distro == "k3s":
        return (
            f"{where} (k3s): start k3s with --kubelet-arg=allowed-unsafe-sysctls+={value} (or kubelet-arg in "
            "/etc/rancher/k3s/config.yaml) and restart it; use +=, because a plain = drops k3s's ServiceLB "
            f"defaults ({K3S_SERVICELB_DEFAULTS})"
        )
    return (
        f"{where}: add {value} to KubeletConfiguration.allowedUnsafeSysctls and restart the kubelet (kubeadm: "
        "`kubectl edit cm -n kube-system kubelet-config`, then `kubeadm upgrade node phase kubelet-config` on "
        "each node)"
    )


def _invalid_pattern_hints(nodes: Sequence[NodeReport]) -> list[str]:
    groups: dict[tuple[str, str], list[str]] = {}
    for node in nodes:
        for pattern, error in node.invalid_patterns:
            groups.setdefault((pattern, error), []).append(node.name)
    return [
        f"{_name_list(names)}: allowlist entry {pattern!r} can never match ({error}); a kubelet 1.29+ refuses to "
        "start with it (on MicroK8s that stops all of kubelite): write it without quotes or spaces"
        for (pattern, error), names in groups.items()
    ]


def _unknown_hints(nodes: Sequence[NodeReport]) -> list[str]:
    groups: dict[str, list[str]] = {}
    for node in nodes:
        groups.setdefault(node.configz_error or "not read", []).append(node.name)
    hints = []
    for error, names in groups.items():
        fix = "; ".join(dict.fromkeys(_configz_fix(part) for part in error.split("; ")))
        hints.append(
            f"{_name_list(names)}: kubelet configuration not readable ({error}): {fix}, "
            f"or label the node {keys.NODE_OVERRIDE}=allowed|forbidden"
        )
    return hints


def _configz_fix(error: str) -> str:
    """What to do about one path's failure (`direct: ...` or `proxy: ...`)."""
    if "403" in error:
        return (
            "grant `get` on `nodes/configz` to the caller (manifests/ does for the webhook); a kubelet before "
            "1.33 or with KubeletFineGrainedAuthz off needs `nodes/proxy` (manifests/configz-via-proxy/: read its "
            "warning)"
        )
    if "not trusted" in error or "no CA" in error:
        return (
            "the kubelet's serving certificate must chain to the cluster CA, or set V4ONLY_KUBELET_CA_FILE to the "
            "kubelets' CA bundle (README, Permissions)"
        )
    return "check that the node is up and its kubelet port is reachable (from here, or from the API server)"


def _evidence_hints(nodes: Sequence[NodeReport], settings: Settings) -> list[str]:
    allowing = [n.name for n in nodes if _allows_all(n, settings)]
    if not allowing:
        return []
    return [
        f"{_name_list(allowing)}: the running kubelet now allows the sysctl but pods failed there with "
        "SysctlForbidden; if the kubelet was fixed since, delete those pods (they count until the kubelet restarts)"
    ]


def _allows_all(node: NodeReport, settings: Settings) -> bool:
    """The running kubelet's allowlist accepts every managed sysctl (whatever other sources say)."""
    if node.allowlist is None:
        return False
    allowlist = Allowlist.parse(node.allowlist)
    return all(allowlist.allows(s.name) for s in settings.sysctls)


def _mixed(nodes: Sequence[NodeReport]) -> bool:
    verdicts = {n.verdict for n in nodes if not n.cordoned}
    return "allowed" in verdicts and len(verdicts) > 1


def _name_list(names: Sequence[str], shown: int = 3) -> str:
    head = ", ".join(names[:shown])
    return head if len(names) <= shown else f"{head} (+{len(names) - shown} more)"


def strip_remedy(reason: str) -> str:
    head, sep, tail = reason.partition(": ")
    return tail if sep and head in ("sysctl", "sysctl+affinity", "env", "none") else reason


