"""The DNS trap probe inside `v4only serve` (product.md, "DNS trap detection").

One thread: at start and every `interval_seconds` it reads serve's own /etc/resolv.conf (a ClusterFirst
pod's: cluster DNS, cluster search entries, then the node's), asks the cluster DNS for the A and AAAA
records of a random label and of the configured names under each node search domain, and hands the
finding to `sink` (the admission snapshot) and, while this replica leads, to the cluster (ConfigMap
`v4only-dns`). Queries: 2 per name per domain, plus 2 per configured name on its own (the AAAA-blocking
check); with the defaults and one node search domain, 6 queries per round, each with a 2 s timeout.
Never on the admission path, never delaying readiness: until the first round ends the finding is unknown.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from webhook.adapters import dns_query
from webhook.core.dns_trap import (
    AaaaBlocking,
    Answer,
    DnsFinding,
    DomainFinding,
    aaaa_blocking,
    domain_verdict,
    parse_resolv_conf,
    pod_dns,
)

log = logging.getLogger("webhook.dns")


@dataclass(frozen=True, slots=True)
class ProbeConfig:
    names: tuple[str, ...] = ("pypi.org",)
    interval_seconds: float = 300.0
    timeout_seconds: float = 2.0
    resolv_conf: Path = Path("/etc/resolv.conf")
    port: int = 53  # tests run a DNS server on another port; resolv.conf cannot say one
    node: str = field(default_factory=lambda: os.environ.get("NODE_NAME", ""))  # the Deployment's downward API


def probe_once(config: ProbeConfig, ask: Callable[..., Answer] = dns_query.ask) -> DnsFinding:
    """One round: every node search domain through the first cluster nameserver."""
    conf = pod_dns(parse_resolv_conf(config.resolv_conf.read_text()))
    # Only a ClusterFirst pod's resolv.conf names the cluster DNS and the node's domains; anywhere else
    # (serve outside the cluster, a test machine) nothing is asked, and nothing is known.
    server = conf.nameservers[0] if conf.nameservers and conf.cluster_domain else None

    def both(name: str) -> tuple[Answer, Answer]:
        if server is None:
            return Answer("OTHER"), Answer("OTHER")
        a = ask(server, name, "A", port=config.port, timeout=config.timeout_seconds)
        return a, ask(server, name, "AAAA", port=config.port, timeout=config.timeout_seconds)

    checked_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    domains = []
    for domain in conf.node_searches:
        names = (f"v4only-{secrets.token_hex(4)}", *config.names)
        verdict, detail = domain_verdict({f"{n}.{domain}": both(f"{n}.{domain}") for n in names})
        domains.append(DomainFinding(domain, verdict, detail, since=checked_at))
    blocking = [aaaa_blocking(*both(name)) for name in config.names] if server else []
    return DnsFinding(
        checked_at=checked_at,
        node=config.node,
        nameservers=conf.nameservers,
        cluster_domain=conf.cluster_domain,
        domains=tuple(domains),
        aaaa_blocking=_worst(blocking),
        ipv6_default_route=dns_query.has_ipv6_default_route(),
    )


def _worst(found: Sequence[AaaaBlocking]) -> AaaaBlocking:
    order: tuple[AaaaBlocking, ...] = ("nxdomain", "noerror-empty", "none")
    return next((kind for kind in order if kind in found), "unknown")


class DnsProber(threading.Thread):
    def __init__(self, config: ProbeConfig, sink: Callable[[DnsFinding], None],
                 publish: Callable[[DnsFinding], None] | None = None) -> None:
        super().__init__(name="v4only-dns-probe", daemon=True)
        self._config, self._sink, self._publish = config, sink, publish
        self.stopping = threading.Event()
        self.rounds = 0

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                finding = probe_once(self._config)
            except OSError as error:  # no resolv.conf: nothing to say, say why once per round
                log.warning("dns probe: cannot read %s: %s", self._config.resolv_conf, error.strerror or error)
            else:
                self._sink(finding)
                if finding.traps:
                    log.warning("dns probe: search domain(s) %s answer NODATA: a trap for musl clients",
                                ", ".join(finding.traps))
                if self._publish is not None:
                    try:
                        self._publish(finding)
                    except Exception as error:  # publishing is a courtesy to doctor; the webhook has it
                        log.warning("dns probe: could not publish the finding: %s", error)
            self.rounds += 1
            self.stopping.wait(self._config.interval_seconds)

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        self.join(timeout)
