"""Doctor's DNS section: what serve's probe found, what a musl client sees, and the fix for each finding.

Grounded in shared/reference/remedy-lab.md: a NODATA search domain is F1 (musl: "Name has no usable
address"), cured per pod by the cluster-only search list and at its source by removing the domain from
the node's DHCP/VPN/systemd-resolved configuration; a cluster DNS that answers NXDOMAIN to AAAA breaks
every musl client for every name, and no pod setting cures it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from webhook.core.coredns import AaaaTemplate, aaaa_templates
from webhook.core.dns_trap import DnsFinding

MUSL_SEES = {
    "trap": 'fails: "Name has no usable address" (F1)',
    "safe": "resolves (NXDOMAIN, next search entry)",
    "unknown": "not known (the probe did not complete)",
}


@dataclass(frozen=True, slots=True)
class DnsReport:
    finding: DnsFinding | None
    rows: tuple[tuple[str, str, str, str, str], ...]  # domain, verdict, since, what a musl client sees, detail
    hints: tuple[str, ...]
    problems: tuple[str, ...]


def dns_report(finding: DnsFinding | None, corefiles: Iterable[tuple[str, str]] = ()) -> DnsReport:
    """`corefiles`: (where, text) of each CoreDNS configuration doctor could read, e.g.
    ("kube-system/coredns Corefile", "..."): a template that hides AAAA is named by its line."""
    templates = [(where, t) for where, text in corefiles for t in aaaa_templates(text)]
    problems = [_template_problem(where, t) for where, t in templates if t.nxdomain]
    hints = [_template_hint(where, t) for where, t in templates if not t.nxdomain]
    if finding is None:
        hint = ("dns: no DNS probe finding published yet (serve's elected replica writes ConfigMap "
                "v4only-system/v4only-dns): rule 7 adds no DNS remedy until it does")
        return DnsReport(None, (), (hint, *hints), tuple(problems))
    rows = tuple((d.domain, d.verdict, finding.since(d), MUSL_SEES[d.verdict], d.detail) for d in finding.domains)
    for domain in finding.traps:
        hints.append(f"dns: {domain} answers NODATA: opted-in pods get the cluster-only search list (rule 7); "
                     f"at the source, remove {domain} from the nodes' search list (DHCP option 119, the VPN, "
                     f"systemd-resolved Domains=), then restart the kubelets")
    if finding.aaaa_blocking == "nxdomain" and not problems:  # seen by the probe, not found in a Corefile
        problems.append("the cluster DNS answers NXDOMAIN to AAAA: every musl client fails for every name and no "
                        "pod setting cures it; remove `template ANY AAAA { rcode NXDOMAIN }` from the coredns "
                        "ConfigMap (kubectl -n kube-system edit cm coredns)")
    elif finding.aaaa_blocking == "noerror-empty" and not templates:
        hints.append("dns: the cluster DNS answers AAAA with no records (a CoreDNS `template IN AAAA` hack): harmless "
                     "alone, but it turns any search domain with an empty A answer into a trap; consider removing it")
    if finding.ipv6_default_route:
        hints.append("dns: serve's pod has a global IPv6 address and an IPv6 default route: a route that goes "
                     "nowhere makes clients hang on IPv6 first (F2); the sysctl cures it")
    return DnsReport(finding, rows, tuple(hints), tuple(problems))


def _template_problem(where: str, template: AaaaTemplate) -> str:
    names = "the names it matches" if template.matches_some else "every name"
    return (f"the cluster DNS answers NXDOMAIN to AAAA ({where}, line {template.line}: `{template.text}`): every "
            f"musl client fails for {names} and no pod setting cures it; remove that template block "
            f"(kubectl -n kube-system edit cm {_configmap(where)})")


def _template_hint(where: str, template: AaaaTemplate) -> str:
    return (f"dns: {where}, line {template.line}: `{template.text}` answers AAAA with no records: harmless alone, "
            f"but it turns any search domain with an empty A answer into a trap; consider removing it")


def _configmap(where: str) -> str:
    """"kube-system/coredns Corefile" -> "coredns"."""
    return where.split(" ", 1)[0].rsplit("/", 1)[-1]
