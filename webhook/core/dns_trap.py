"""DNS trap detection, the pure part: what a ClusterFirst pod's resolv.conf says, and what answers mean.

`v4only serve` runs in a ClusterFirst pod, so its own /etc/resolv.conf is what the kubelet writes for
such pods: `nameserver` = the cluster DNS, `search <ns>.svc.<domain> svc.<domain> <domain>` followed by
the node's own search domains (kubelet `pkg/kubelet/network/dns`, `generateSearchesForDNSClusterFirst`).
A node search domain is a trap for musl clients (F1, shared/reference/remedy-lab.md) when the cluster DNS
answers NOERROR with no record for names under it: musl stops at that answer ("Name has no usable
address") where glibc goes on to the next search entry. NXDOMAIN under it is safe.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

Rcode = Literal["NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED", "TIMEOUT", "OTHER"]
Verdict = Literal["trap", "safe", "unknown"]
AaaaBlocking = Literal["none", "noerror-empty", "nxdomain", "unknown"]


@dataclass(frozen=True, slots=True)
class Answer:
    """One DNS reply: its response code, and how many records of the asked type it carried."""

    rcode: Rcode
    records: int = 0

    @property
    def nodata(self) -> bool:
        return self.rcode == "NOERROR" and self.records == 0


@dataclass(frozen=True, slots=True)
class ResolvConf:
    nameservers: tuple[str, ...]
    searches: tuple[str, ...]
    options: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PodDns:
    """A ClusterFirst pod's resolv.conf, split into the cluster's part and the node's part."""

    nameservers: tuple[str, ...]
    cluster_domain: str | None  # None: the search list is not one the kubelet writes for ClusterFirst
    cluster_searches: tuple[str, ...]
    node_searches: tuple[str, ...]


def parse_resolv_conf(text: str) -> ResolvConf:
    """resolv.conf(5): the last `search` line wins; `domain` is an older one-entry form of it."""
    nameservers: list[str] = []
    searches: tuple[str, ...] = ()
    options: list[str] = []
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split(";", 1)[0].split()
        if not words:
            continue
        key, values = words[0], words[1:]
        if key == "nameserver" and values:
            nameservers.append(values[0])
        elif key in ("search", "domain"):
            searches = tuple(value.rstrip(".") for value in values)
        elif key == "options":
            options += values
    return ResolvConf(tuple(nameservers), searches, tuple(options))


def pod_dns(conf: ResolvConf) -> PodDns:
    """Find `svc.<domain>`; the entries up to `<domain>` are the cluster's, the rest the node's."""
    searches = conf.searches
    for index, entry in enumerate(searches):
        if not entry.startswith("svc."):
            continue
        domain = entry.removeprefix("svc.")
        after = searches[index + 1:]
        if after[:1] == (domain,) and index >= 1 and searches[index - 1].endswith(f".svc.{domain}"):
            return PodDns(conf.nameservers, domain, searches[index - 1:index + 2], after[1:])
    return PodDns(conf.nameservers, None, (), ())


def domain_verdict(answers: dict[str, tuple[Answer, Answer]]) -> tuple[Verdict, str]:
    """A node search domain from the (A, AAAA) answers for names under it.

    Any name with NODATA for both A and AAAA makes a trap (musl stops there); every name NXDOMAIN (or with
    records: a wildcard, which misdirects but is not F1) makes it safe; a timeout or SERVFAIL anywhere,
    without a trap, leaves it unknown: a probe that could not complete never says "trap".
    """
    for name, (a, aaaa) in answers.items():
        if a.nodata and aaaa.nodata:
            return "trap", f"{name} answers NODATA"
    for name, (a, aaaa) in answers.items():
        if a.rcode not in ("NOERROR", "NXDOMAIN") or aaaa.rcode not in ("NOERROR", "NXDOMAIN"):
            return "unknown", f"{name}: A {a.rcode}, AAAA {aaaa.rcode}"
    return "safe", "NXDOMAIN" if all(a.rcode == "NXDOMAIN" for a, _ in answers.values()) else "answers"


def aaaa_blocking(a: Answer, aaaa: Answer) -> AaaaBlocking:
    """For a name that has an A record: does the cluster DNS hide its AAAA (a CoreDNS `template` hack)?

    Only meaningful for names that really have AAAA records (the default probe name, pypi.org, does).
    The NXDOMAIN form breaks every musl client for every name (remedy-lab.md); no pod remedy cures it.
    """
    if a.rcode != "NOERROR" or a.records == 0:
        return "unknown"
    if aaaa.rcode == "NXDOMAIN":
        return "nxdomain"
    if aaaa.nodata:
        return "noerror-empty"
    return "none" if aaaa.rcode == "NOERROR" else "unknown"


@dataclass(frozen=True, slots=True)
class DomainFinding:
    domain: str
    verdict: Verdict
    detail: str
    since: str = ""  # RFC 3339: the first round in a row with this verdict ("" = this finding's checkedAt)


@dataclass(frozen=True, slots=True)
class DnsFinding:
    """What serve's probe found, as published in the cluster (a ConfigMap) and read by doctor and review."""

    checked_at: str  # RFC 3339, UTC
    node: str  # the node serve's pod ran on ("" when not known)
    nameservers: tuple[str, ...]
    cluster_domain: str | None
    domains: tuple[DomainFinding, ...]  # the node's search domains, in search order
    aaaa_blocking: AaaaBlocking
    ipv6_default_route: bool | None  # serve's own pod has a global IPv6 address and route (F2 possible)

    @property
    def traps(self) -> tuple[str, ...]:
        return tuple(d.domain for d in self.domains if d.verdict == "trap")

    def to_dict(self) -> dict[str, object]:
        return {
            "checkedAt": self.checked_at, "node": self.node, "nameservers": list(self.nameservers),
            "clusterDomain": self.cluster_domain, "aaaaBlocking": self.aaaa_blocking,
            "ipv6DefaultRoute": self.ipv6_default_route,
            "domains": [{"domain": d.domain, "verdict": d.verdict, "detail": d.detail,
                         "since": d.since or self.checked_at} for d in self.domains],
        }

    def since(self, domain: DomainFinding) -> str:
        return domain.since or self.checked_at


def carry_since(previous: DnsFinding | None, current: DnsFinding) -> DnsFinding:
    """`current` with each domain's `since` kept from `previous` where its verdict did not change."""
    before = {d.domain: (d.verdict, previous.since(d)) for d in previous.domains} if previous is not None else {}

    def since(domain: DomainFinding) -> str:
        verdict, at = before.get(domain.domain, (None, ""))
        return at if verdict == domain.verdict else current.since(domain)

    return replace(current, domains=tuple(replace(d, since=since(d)) for d in current.domains))


class FindingError(ValueError):
    """A published finding that is not in the form `to_dict` writes."""


def finding_from_dict(data: object) -> DnsFinding:
    """The inverse of `DnsFinding.to_dict`, checked: the ConfigMap may have been edited by hand."""
    if not isinstance(data, dict):
        raise FindingError("not a mapping")
    try:
        domains = tuple(
            DomainFinding(str(d["domain"]), _choice(d["verdict"], ("trap", "safe", "unknown")), str(d["detail"]),
                          str(d.get("since") or ""))
            for d in data["domains"]
        )
        route = data.get("ipv6DefaultRoute")
        return DnsFinding(
            checked_at=str(data["checkedAt"]), node=str(data.get("node") or ""),
            nameservers=tuple(str(n) for n in data["nameservers"]),
            cluster_domain=None if data.get("clusterDomain") is None else str(data["clusterDomain"]),
            domains=domains,
            aaaa_blocking=_choice(data["aaaaBlocking"], ("none", "noerror-empty", "nxdomain", "unknown")),
            ipv6_default_route=route if isinstance(route, bool) else None,
        )
    except (KeyError, TypeError) as error:
        raise FindingError(f"missing or malformed field: {error}") from None


def _choice(value: object, allowed: tuple[str, ...]) -> Any:  # one of the Literal's values, checked
    if value not in allowed:
        raise FindingError(f"{value!r} is not one of {', '.join(allowed)}")
    return value
