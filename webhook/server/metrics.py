"""Prometheus metrics, in a registry of their own (one per app, so tests never collide)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from webhook.core.dns_remedy import DnsFacts

OUTCOMES = ("mutated", "unchanged", "unmanaged", "skipped", "unhandled", "error", "invalid", "too_large")
REMEDIES = ("sysctl", "sysctl+affinity", "env", "none")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "v4only_admission_requests",
            "AdmissionReview requests by outcome: mutated, unchanged, unmanaged, skipped, unhandled, "
            "error (internal error, admitted unchanged), invalid (HTTP 400), too_large (HTTP 413).",
            ["outcome"],
            registry=self.registry,
        )
        self.replayed = Counter(
            "v4only_admission_replayed",
            "Requests answered from the replica cache: the same bytes as an answered request but for its uid "
            "(pods of one ReplicaSet or Job created in a burst). Also counted in v4only_admission_requests.",
            registry=self.registry,
        )
        self.decisions = Counter(
            "v4only_decisions", "Managed pods by remedy applied.", ["remedy"], registry=self.registry
        )
        self.latency = Histogram(
            "v4only_admission_duration_seconds",
            "Time from the request body's arrival to the response, in seconds.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        self.dns_remedies = Counter(
            "v4only_dns_remedies", "Managed pods given the DNS remedy (rule 7), also counted in v4only_decisions.",
            registry=self.registry,
        )
        self.capability_ready = Gauge(
            "v4only_capability_ready", "1 once node capability is known (or static).", registry=self.registry
        )
        self.capability_age = Gauge(
            "v4only_capability_age_seconds",
            "Seconds since the capability snapshot was last confirmed (-1 when static).",
            registry=self.registry,
        )
        self.tls_reloads = Counter(
            "v4only_tls_reloads", "Certificate reloads by result.", ["result"], registry=self.registry
        )
        self._dns: DnsCollector | None = None
        # The labelled children, made once: `labels()` costs a lock and a dict lookup on every call, and the
        # admission path counts every request (bench/admission.py).
        self.outcomes = {outcome: self.requests.labels(outcome) for outcome in OUTCOMES}
        self.remedies = {remedy: self.decisions.labels(remedy) for remedy in REMEDIES}

    def watch_dns(self, facts: Callable[[], DnsFacts]) -> None:
        """Export the DNS finding that `facts` returns at each scrape (the latest call wins)."""
        if self._dns is None:
            self._dns = DnsCollector(facts)
            self.registry.register(self._dns)
        self._dns.facts = facts


class DnsCollector(Collector):
    """The DNS trap probe's finding as the decision sees it, read at each scrape (never stale, nothing to reset
    when a trap goes away): which node search domains are traps, whether the finding and the cluster DNS are
    known at all, and a cluster DNS that answers NXDOMAIN to AAAA (no pod remedy cures that)."""

    def __init__(self, facts: Callable[[], DnsFacts]) -> None:
        self.facts = facts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        facts = self.facts()
        yield GaugeMetricFamily("v4only_dns_finding_known",
                                "1 once serve's DNS trap probe has a finding (it needs a ClusterFirst resolv.conf).",
                                value=1 if facts.known else 0)
        traps = GaugeMetricFamily("v4only_dns_trap",
                                  "1 for each node search domain that answers NODATA: a trap for musl clients.",
                                  labels=["domain"])
        for domain in facts.traps:
            traps.add_metric([domain], 1)
        yield traps
        yield GaugeMetricFamily("v4only_dns_cluster_dns_known",
                                "1 when the cluster DNS addresses and domain are known (rule 7 can write a "
                                "cluster-only search list).",
                                value=1 if facts.nameservers and facts.cluster_domain else 0)
        yield GaugeMetricFamily("v4only_dns_aaaa_nxdomain",
                                "1 when the cluster DNS answers NXDOMAIN to AAAA queries: every musl client fails "
                                "and no pod setting cures it (remove the CoreDNS template).",
                                value=1 if facts.aaaa_nxdomain else 0)
