"""The DNS trap probe against a real DNS server (dnslib) on 127.0.0.1, reading a real resolv.conf file.

The server answers as remedy-lab.md measured real resolvers answer: a search domain whose names get
NOERROR with no records (NODATA: the trap), one that answers NXDOMAIN (safe), one that fails (SERVFAIL),
and a cluster DNS that hides AAAA records (CoreDNS `template` hacks) in either form.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from tests.dns_fake import KUBELET_RESOLV, LabResolver, dns_server
from webhook.core.dns_trap import DnsFinding, DomainFinding, carry_since, finding_from_dict, parse_resolv_conf, pod_dns
from webhook.tracker.dns_probe import DnsProber, ProbeConfig, probe_once


def _config(tmp_path: Path, port: int, text: str = KUBELET_RESOLV, **kwargs) -> ProbeConfig:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(text)
    return ProbeConfig(resolv_conf=resolv, port=port, timeout_seconds=1.0, node="mk-1", **kwargs)


def test_the_kubelets_cluster_first_search_list_is_split_into_cluster_and_node_parts() -> None:
    dns = pod_dns(parse_resolv_conf(KUBELET_RESOLV))
    assert dns.cluster_domain == "cluster.local"
    assert dns.cluster_searches == ("team.svc.cluster.local", "svc.cluster.local", "cluster.local")
    assert dns.node_searches == ("corp.example", "home.example", "broken.example")
    assert dns.nameservers == ("127.0.0.1",)


def test_a_search_list_the_kubelet_did_not_write_has_no_cluster_part() -> None:
    dns = pod_dns(parse_resolv_conf("search corp.example\nnameserver 10.0.0.1\n"))
    assert dns.cluster_domain is None and dns.node_searches == ()


def test_nodata_is_a_trap_nxdomain_is_safe_and_a_failure_is_unknown(tmp_path: Path) -> None:
    resolver = LabResolver()
    with dns_server(resolver) as port:
        finding = probe_once(_config(tmp_path, port))
    verdicts = {d.domain: d.verdict for d in finding.domains}
    assert verdicts == {"corp.example": "trap", "home.example": "safe", "broken.example": "unknown"}
    assert finding.traps == ("corp.example",)
    assert finding.aaaa_blocking == "none"
    assert (finding.node, finding.cluster_domain, finding.nameservers) == ("mk-1", "cluster.local", ("127.0.0.1",))
    # A random label and the configured name under each node domain, A and AAAA, absolute names only.
    asked = set(resolver.questions)
    assert {"pypi.org.corp.example A", "pypi.org.corp.example AAAA", "pypi.org A", "pypi.org AAAA"} <= asked
    assert any(q.startswith("v4only-") and q.endswith(".home.example AAAA") for q in asked)
    assert not any(q.endswith("cluster.local A") for q in asked)  # the cluster's own domains are not probed


@pytest.mark.parametrize("aaaa", ["noerror-empty", "nxdomain"])
def test_a_cluster_dns_that_hides_aaaa_is_named(tmp_path: Path, aaaa: str) -> None:
    with dns_server(LabResolver(aaaa=aaaa)) as port:
        finding = probe_once(_config(tmp_path, port, "search a.svc.cluster.local svc.cluster.local "
                                                    "cluster.local\nnameserver 127.0.0.1\n"))
    assert finding.aaaa_blocking == aaaa
    assert finding.domains == ()


def test_a_dns_server_that_never_answers_leaves_everything_unknown(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # bound, never read: no reply
        silent.bind(("127.0.0.1", 0))
        config = _config(tmp_path, silent.getsockname()[1], names=())
        finding = probe_once(config)
    assert [d.verdict for d in finding.domains] == ["unknown", "unknown", "unknown"]
    assert finding.traps == () and finding.aaaa_blocking == "unknown"


def test_the_finding_round_trips_through_its_published_form(tmp_path: Path) -> None:
    with dns_server(LabResolver()) as port:
        finding = probe_once(_config(tmp_path, port))
    assert finding_from_dict(finding.to_dict()) == finding


def test_the_prober_thread_probes_at_start_and_stops(tmp_path: Path) -> None:
    found: list[DnsFinding] = []
    arrived = threading.Event()

    def sink(finding: DnsFinding) -> None:
        found.append(finding)
        arrived.set()

    with dns_server(LabResolver()) as port:
        prober = DnsProber(_config(tmp_path, port, interval_seconds=3600), sink)
        prober.start()
        assert arrived.wait(10)
        prober.stop()
    assert not prober.is_alive()
    assert found[0].traps == ("corp.example",)


def test_since_is_carried_while_a_verdict_holds() -> None:
    def finding(at: str, **verdicts: str) -> DnsFinding:
        domains = tuple(DomainFinding(d.replace("_", "."), v, "", at) for d, v in verdicts.items())  # type: ignore[arg-type]
        return DnsFinding(at, "n", ("10.0.0.10",), "cluster.local", domains, "none", None)

    first = finding("T1", corp_example="trap", lan="unknown")
    second = carry_since(first, finding("T2", corp_example="trap", lan="safe", home_example="safe"))
    assert {d.domain: d.since for d in second.domains} == {"corp.example": "T1", "lan": "T2", "home.example": "T2"}
    third = carry_since(second, finding("T3", corp_example="safe", lan="safe"))
    assert {d.domain: d.since for d in third.domains} == {"corp.example": "T3", "lan": "T2"}
    assert carry_since(None, third) == third
