"""The tracker's timings, in one place: the defaults suit a cluster, tests shrink them."""

from __future__ import annotations

from dataclasses import dataclass, field

from webhook.loops.leader import LeaseTimings
from webhook.tracker.dns_probe import ProbeConfig


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    """Timings; the defaults suit a cluster, tests shrink them."""

    # Server-side end of each watch. Shorter than client-go's 5-10 min on purpose: a watch that hangs without
    # closing keeps the snapshot "confirmed", so the watchdog below must fire well inside the freshness limit.
    watch_timeout_seconds: int = 60
    watch_grace_seconds: float = 15.0  # read timeout = timeout + grace: the hung-watch watchdog (75 s)
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    # Every kubelet's configz is re-read on a timer that follows the cluster's size: every
    # `configz_refresh_min_seconds` while that stays under `configz_reads_per_second` in all (a handful of
    # nodes: 30 s), else as often as that rate allows (1,000 nodes: every 200 s; 5,000: every 1,000 s).
    # A kubelet restart shows sooner, as a new bootID or version or a change of its Ready condition.
    configz_refresh_min_seconds: float = 30.0
    configz_reads_per_second: float = 5.0
    configz_workers: int = 4
    initial_configz_wait_seconds: float = 10.0  # first publish waits this long for the first configz round
    publish_interval_seconds: float = 0.25
    confirm_interval_seconds: float = 5.0
    # The DNS trap probe (names and interval come from the settings); None: not run.
    dns_probe: ProbeConfig | None = field(default_factory=ProbeConfig)
    lease_namespace: str = ""  # "" = this pod's namespace (POD_NAMESPACE, service account), else v4only-system
    lease_name: str = "v4only-node-labels"
    lease: LeaseTimings = field(default_factory=LeaseTimings)
    label_resync_seconds: float = 60.0
    # The elected replica writes each node's last configz read (ConfigMap v4only-configz, for doctor) at most
    # this often: one PUT a minute whatever the cluster's size (~90 bytes a node: 5,000 nodes fit in 450 KiB).
    configz_record_interval_seconds: float = 60.0
    identity: str = ""  # "" = hostname + random suffix


def configz_refresh_seconds(nodes: int, config: TrackerConfig) -> float:
    """How often each kubelet's configz is re-read: as often as the minimum allows while all reads together
    stay under the rate limit towards the API server, else just under that limit."""
    return max(config.configz_refresh_min_seconds, nodes / config.configz_reads_per_second)
