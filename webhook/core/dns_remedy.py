"""Rule 7 of the decision and the `dns` remedy (shared/product.md; measured in reference/remedy-lab.md).

F1: a node search domain answers NODATA, and with Kubernetes' ndots:5 a musl client (the static uv,
Alpine images) stops at that answer: "Name has no usable address". The sysctl does not cure it. The
cure is a search list without the node's domains: `dnsPolicy: None` with the cluster DNS and the
cluster's own three search entries (what the kubelet writes for ClusterFirst, minus the node's part,
`generateSearchesForDNSClusterFirst`), which keeps `service.namespace` names working for musl. The
`ndots` form (ndots:1) is simpler but breaks those names for musl, so it is offered, never the default.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from webhook.core import keys
from webhook.core.dns_trap import DnsFinding
from webhook.core.errors import UnhandledObject
from webhook.core.shapes import optional_list, optional_mapping

DnsMode = Literal["auto", "cluster-search", "ndots", "off"]
DNS_MODES: tuple[DnsMode, ...] = ("auto", "cluster-search", "ndots", "off")
MUSL_ERROR = 'musl: "Name has no usable address"'
MAX_NAMESERVERS = 3  # core/v1 validation: at most 3 nameservers in dnsConfig (validateDNSConfig)


@dataclass(frozen=True, slots=True)
class KubeletDns:
    """One kubelet's `clusterDNS` and `clusterDomain` (its /configz): what it gives ClusterFirst pods."""

    nameservers: tuple[str, ...] = ()
    domain: str | None = None


@dataclass(frozen=True, slots=True)
class DnsFacts:
    """What the tracker knows about the cluster's DNS, as the decision needs it."""

    known: bool = False
    traps: tuple[str, ...] = ()  # node search domains that answer NODATA
    nameservers: tuple[str, ...] = ()  # the cluster DNS, as the kubelet gives it to ClusterFirst pods
    cluster_domain: str | None = None
    aaaa_nxdomain: bool = False  # the cluster DNS answers NXDOMAIN to AAAA: every musl client fails

    @classmethod
    def from_finding(cls, finding: DnsFinding | None, kubelets: Iterable[KubeletDns | None] = ()) -> DnsFacts:
        """The probe's finding, with the cluster DNS the kubelets report (product.md: the kubelet's own
        `clusterDNS`/`clusterDomain`, else those of v4only's own resolv.conf, never guessed)."""
        nameservers, domain = cluster_dns(kubelets, finding)
        if finding is None:
            return cls(nameservers=nameservers, cluster_domain=domain)
        # Outside a ClusterFirst pod (no cluster domain in serve's resolv.conf) the probe learns nothing.
        return cls(finding.cluster_domain is not None, finding.traps, nameservers, domain,
                   finding.aaaa_blocking == "nxdomain")


def cluster_dns(
    kubelets: Iterable[KubeletDns | None], finding: DnsFinding | None
) -> tuple[tuple[str, ...], str | None]:
    """The cluster DNS addresses (at most 3, as the kubelet uses them) and domain: what every kubelet that
    reports one says, else the probing replica's resolv.conf, else nothing. Kubelets that disagree (NodeLocal
    DNSCache on some nodes, say) leave it unknown: a pod may land on any of them."""
    seen = {(k.nameservers, k.domain) for k in kubelets if k is not None and k.nameservers and k.domain}
    if len(seen) == 1:
        nameservers, domain = seen.pop()
        return nameservers[:MAX_NAMESERVERS], domain
    if seen or finding is None or not finding.nameservers or finding.cluster_domain is None:
        return (), None
    return finding.nameservers[:MAX_NAMESERVERS], finding.cluster_domain


def kubelet_dns(config: Mapping[str, Any]) -> KubeletDns:
    """`clusterDNS` and `clusterDomain` of a KubeletConfiguration (v1beta1, as /configz serves it). Both are
    optional; a value that is not a list of IP addresses, or not a DNS domain, counts as absent (the pods'
    dnsConfig would be refused by the API server if v4only wrote it)."""
    servers = config.get("clusterDNS")
    if not isinstance(servers, list) or not servers or not all(_is_ip(s) for s in servers):
        servers = []
    return KubeletDns(tuple(servers), _domain(config.get("clusterDomain")))


def _is_ip(value: Any) -> bool:
    if not isinstance(value, str) or "%" in value:  # dnsConfig nameservers take no zone
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})*")  # IsDNS1123Subdomain, as a pod's search entries must be


def _domain(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    domain = value.lower().removesuffix(".")
    return domain if len(domain) <= 253 and _SUBDOMAIN.fullmatch(domain) else None


@dataclass(frozen=True, slots=True)
class DnsChoice:
    """The DNS settings the pod gets: the cluster-only search list, or ndots:1."""

    form: Literal["cluster-search", "ndots"]
    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DnsOutcome:
    choice: DnsChoice | None = None
    line: str | None = None  # the remedy's own reason line (a warning, joined into v4only.io/reason)
    notes: tuple[str, ...] = ()
    # A trap exists but the pod keeps its own DNS settings: no DNS remedy cures uv's network start.
    uncured_trap: bool = False


def choose_dns(
    meta: Mapping[str, Any], spec: Mapping[str, Any], *, namespace: str, facts: DnsFacts, mode: DnsMode
) -> DnsOutcome:
    """Rule 7, for a managed pod that is not Windows and not hostNetwork (the caller checks those)."""
    asked, notes = _annotation(meta)
    effective = asked if asked != "auto" else mode
    if effective == "off" or (effective == "auto" and not facts.traps):
        return DnsOutcome(notes=notes)
    why = f"search domain {facts.traps[0]} answers NODATA ({MUSL_ERROR})" if facts.traps else f"{keys.DNS}={effective}"
    if effective == "ndots":
        choice = DnsChoice("ndots")
    elif facts.nameservers and facts.cluster_domain:
        domain = facts.cluster_domain
        choice = DnsChoice("cluster-search", facts.nameservers, (f"{namespace}.svc.{domain}", f"svc.{domain}", domain))
    else:  # product.md: "without them the remedy is not applied and the reason says so"
        return DnsOutcome(line="dns: the cluster DNS address and domain are not known: not applied", notes=notes,
                          uncured_trap=bool(facts.traps))
    line = f"dns: {why}" if choice.form == "cluster-search" else f"dns: {why}; ndots:1"
    if _is_applied(spec, meta, choice):
        return DnsOutcome(choice, line, notes)
    own = _own_dns(spec)
    if own is not None:
        cured = own == "ndots:1"
        note = f"dns: the pod sets {own}: left as it is" + (" (it avoids the trap)" if cured else "")
        return DnsOutcome(notes=(*notes, note), uncured_trap=bool(facts.traps) and not cured)
    return DnsOutcome(choice, line, notes)


def _annotation(meta: Mapping[str, Any]) -> tuple[DnsMode, tuple[str, ...]]:
    value = optional_mapping(meta.get("annotations"), "metadata.annotations").get(keys.DNS, "auto")
    for mode in DNS_MODES:
        if value == mode:
            return mode, ()
    return "auto", (f"v4only: {keys.DNS}={str(value)[:30]!r} is not auto|cluster-search|ndots|off; using auto",)


def _is_applied(spec: Mapping[str, Any], meta: Mapping[str, Any], choice: DnsChoice) -> bool:
    """A pod v4only already gave this remedy (the webhook may be called twice: reinvocation)."""
    config = optional_mapping(spec.get("dnsConfig"), "spec.dnsConfig")
    if choice.form == "cluster-search":
        servers = tuple(config.get("nameservers") or ())
        return (spec.get("dnsPolicy") == "None" and servers[:len(choice.nameservers)] == choice.nameservers
                and tuple(config.get("searches") or ()) == choice.searches)
    applied = optional_mapping(meta.get("annotations"), "metadata.annotations").get(keys.APPLIED)
    return _ndots(config) == "1" and isinstance(applied, str) and applied.endswith("+dns")


def _own_dns(spec: Mapping[str, Any]) -> str | None:
    """The pod's own DNS settings that v4only leaves alone, or None."""
    policy = spec.get("dnsPolicy")
    if policy in ("None", "Default"):
        return f"dnsPolicy {policy}"
    config = optional_mapping(spec.get("dnsConfig"), "spec.dnsConfig")
    if config.get("searches"):
        return "its own dnsConfig.searches"
    if _ndots(config) == "1":
        return "ndots:1"
    return None


def _ndots(config: Mapping[str, Any]) -> str | None:
    for option in optional_list(config.get("options"), "spec.dnsConfig.options") or ():
        if isinstance(option, dict) and option.get("name") == "ndots":
            return str(option.get("value"))
    return None


def dns_ops(spec: Mapping[str, Any], choice: DnsChoice, path: str) -> list[dict[str, Any]]:
    """The operations for `choice` at `path` (the pod spec); none when the pod already has it."""
    config = optional_mapping(spec.get("dnsConfig"), "spec.dnsConfig")
    options = list(optional_list(config.get("options"), "spec.dnsConfig.options") or ())
    if choice.form == "ndots":
        if _ndots(config) == "1":
            return []
        others = [o for o in options if not (isinstance(o, dict) and o.get("name") == "ndots")]
        return [_add(f"{path}/dnsConfig", {**config, "options": [*others, {"name": "ndots", "value": "1"}]})]
    ops = []
    if spec.get("dnsPolicy") != "None":
        ops.append(_add(f"{path}/dnsPolicy", "None"))
    # ndots:5 as the kubelet writes for ClusterFirst, unless the pod chose its own (the node's domains,
    # the trap, are gone from the list, so its choice no longer matters for F1); other options kept.
    if _ndots(config) is None:
        options = [{"name": "ndots", "value": "5"}, *options]
    # The pod's own nameservers follow the cluster DNS, the first 3 kept: what the kubelet gives a ClusterFirst
    # pod with dnsConfig.nameservers (dns.go appendDNSConfig, then formDNSNameserversFitsLimits).
    own = optional_list(config.get("nameservers"), "spec.dnsConfig.nameservers") or ()
    if not all(isinstance(server, str) for server in own):
        raise UnhandledObject("spec.dnsConfig.nameservers is not a list of strings")
    servers = list(dict.fromkeys([*choice.nameservers, *own]))[:MAX_NAMESERVERS]
    wanted = {**config, "nameservers": servers, "searches": list(choice.searches), "options": options}
    if dict(config) != wanted:
        ops.append(_add(f"{path}/dnsConfig", wanted))
    return ops


def _add(path: str, value: Any) -> dict[str, Any]:
    return {"op": "add", "path": path, "value": value}
