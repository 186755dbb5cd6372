"""Prometheus metrics, in a registry of their own (one per app, so tests never collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
        self.capability_ready = Gauge(
            "v4only_capability_ready", "1 once node capability is known (or static).", registry=self.registry
        )
        self.capability_age = Gauge(
            "v4only_capability_age_seconds",
            "Seconds since the capability snapshot was last confirmed (-1 when static).",
            registry=self.registry,
        )
        # The DNS trap probe's finding as the decisions see it (rule 7): set from the snapshot at each scrape.
        self.dns_known = Gauge(
            "v4only_dns_finding_known",
            "1 once the DNS trap probe's finding is in the snapshot decisions use (0: unknown, no DNS remedy).",
            registry=self.registry,
        )
        self.dns_traps = Gauge(
            "v4only_dns_trap_domains",
            "Node search domains the DNS trap probe found answering NODATA (F1), in that snapshot.",
            registry=self.registry,
        )
        self.tls_reloads = Counter(
            "v4only_tls_reloads", "Certificate reloads by result.", ["result"], registry=self.registry
        )
        # The labelled children, made once: `labels()` costs a lock and a dict lookup on every call, and the
        # admission path counts every request (bench/admission.py).
        self.outcomes = {outcome: self.requests.labels(outcome) for outcome in OUTCOMES}
        self.remedies = {remedy: self.decisions.labels(remedy) for remedy in REMEDIES}
