"""The capability tracker against the fake API server: real HTTP, a real kubeconfig, the real client.

Timings are shrunk (watches end after 2 s, backoff starts at 50 ms, a 1 s Lease) so every test runs in
a few seconds; every wait is bounded (`wait_until`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from tests import capability_scenarios as sc
from tests.dns_fake import KUBELET_RESOLV, LabResolver, dns_server
from tests.fakekube import FakeKube, RecordedRequest, objects
from webhook.adapters import rbac_used
from webhook.adapters.kube import KubeApi
from webhook.adapters.kubelet import KubeletAccess, KubeletConfigz
from webhook.core.capability import Capability
from webhook.core.dns_trap import DnsFinding, DomainFinding, finding_from_dict
from webhook.core.settings import parse_settings
from webhook.loops.leader import LeaderElector, LeaseTimings
from webhook.loops.state import ClusterState
from webhook.tracker.config import TrackerConfig
from webhook.tracker.dns_probe import ProbeConfig
from webhook.tracker.start import TrackerHandle, start_tracker

FAST = TrackerConfig(
    watch_timeout_seconds=2,
    watch_grace_seconds=1.0,
    backoff_initial_seconds=0.05,
    backoff_max_seconds=0.3,
    configz_refresh_min_seconds=60.0,
    initial_configz_wait_seconds=3.0,
    publish_interval_seconds=0.02,
    confirm_interval_seconds=0.2,
    lease_namespace="v4only-system",
    lease=LeaseTimings(lease_duration=1.0, renew_deadline=0.7, retry_period=0.1),
    label_resync_seconds=1.0,
    dns_probe=None,  # the machine's own resolv.conf is no cluster's; test_the_dns_probe_* give it one
)
LABEL = "v4only.io/ipv6-sysctl"


@pytest.fixture
def kube(quick_kube: FakeKube) -> FakeKube:
    return quick_kube


def _api(kube: FakeKube, tmp_path: Path, name: str = "a") -> KubeApi:
    directory = tmp_path / name
    directory.mkdir(exist_ok=True)
    return KubeApi.connect(kubeconfig=str(kube.kubeconfig_path(directory)))


@contextmanager
def tracking(
    kube: FakeKube, tmp_path: Path, *, publish_labels: bool = False, name: str = "a", dns_port: int | None = None
) -> Iterator[tuple[ClusterState, TrackerHandle]]:
    api = _api(kube, tmp_path, name)
    state = ClusterState(max_age_seconds=30.0)
    config = FAST if not publish_labels else _with_identity(name)
    settings = sc.SETTINGS
    if dns_port is not None:  # the DNS probe, against a test DNS server, every 0.3 s
        resolv = tmp_path / f"resolv-{name}.conf"
        resolv.write_text(KUBELET_RESOLV)
        config = replace(config, dns_probe=ProbeConfig(resolv_conf=resolv, port=dns_port, timeout_seconds=1.0,
                                                       node="e-2"))
        settings = parse_settings({"dns": {"probeIntervalSeconds": 0.3}})
    # These scenarios script kubelet answers through the fake API server's node proxy: the client has no
    # cluster CA, so no kubelet is dialled and the opt-in proxy path answers (test_kubelet_configz: direct).
    configz = KubeletConfigz(api, KubeletAccess(proxy_fallback=True))
    handle = start_tracker(state, settings, api, publish_labels=publish_labels, config=config, configz=configz)
    try:
        yield state, handle
    finally:
        handle.stop()
        api.close()


def _with_identity(name: str) -> TrackerConfig:
    from dataclasses import replace

    return replace(FAST, identity=f"replica-{name}")


def _capability(state: ClusterState) -> Capability:
    return state.view().capability


def _verdicts(state: ClusterState) -> dict[str, str]:
    capability = _capability(state)
    return {n.name: v.verdict for n, v in zip(capability.nodes, capability.verdicts, strict=True)}


def _settled(state: ClusterState, expected: dict[str, str]) -> None:
    sc.wait_until(lambda: state.ready and _verdicts(state) == expected, what=f"verdicts {expected}")


# ---- what each kind of cluster gets


def test_a_cluster_that_allows(kube: FakeKube, tmp_path: Path) -> None:
    sc.allowing(kube)
    with tracking(kube, tmp_path) as (state, _):
        _settled(state, {"cp-1": "allowed", "w-1": "allowed", "w-2": "allowed"})
        capability = _capability(state)
        assert (sc.decision(capability).remedy, sc.decision(capability).reason) == (
            "sysctl",
            f"sysctl: 2 of 2 schedulable nodes allow {sc.IPV6}",
        )
        assert dict(state.view().namespaces["team"])["v4only.io/inject"] == "enabled"


def test_a_cluster_that_forbids(kube: FakeKube, tmp_path: Path) -> None:
    sc.forbidding(kube)
    with tracking(kube, tmp_path) as (state, _):
        _settled(state, {"mk-1": "forbidden", "mk-2": "forbidden"})
        assert sc.decision(_capability(state)).reason == (
            f"env: 0 of 2 schedulable nodes allow {sc.IPV6} (kubelet allowedUnsafeSysctls)"
        )


MIXED = {"gpu-1": "forbidden", "k-1": "allowed", "k-2": "forbidden", "k-3": "allowed"}
TOLERATE_GPU = [{"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]


def test_a_mixed_cluster_with_taints_and_a_node_selector(kube: FakeKube, tmp_path: Path) -> None:
    sc.mixed(kube)
    with tracking(kube, tmp_path) as (state, _):
        _settled(state, MIXED)
        capability = _capability(state)
        cases = {
            "plain pod: k-1 and k-2 (gpu-1 tainted, k-3 cordoned)": (
                sc.decision(capability),
                "env",
                f"env: 1 of 2 schedulable nodes allow {sc.IPV6}; no published node labels to pin to",
            ),
            "nodeSelector pool=a: k-1 (k-3 cordoned)": (
                sc.decision(capability, nodeSelector={"pool": "a"}),
                "sysctl",
                f"sysctl: 1 of 1 schedulable node allows {sc.IPV6}",
            ),
            "nodeSelector pool=b": (
                sc.decision(capability, nodeSelector={"pool": "b"}),
                "env",
                f"env: 0 of 1 schedulable node allows {sc.IPV6} (kubelet allowedUnsafeSysctls)",
            ),
            "nodeSelector pool=gpu without the toleration": (
                sc.decision(capability, nodeSelector={"pool": "gpu"}),
                "env",
                "env: no known schedulable node matches this pod's node constraints",
            ),
            "nodeSelector pool=gpu with the toleration": (
                sc.decision(capability, nodeSelector={"pool": "gpu"}, tolerations=TOLERATE_GPU),
                "env",
                f"env: 0 of 1 schedulable node allows {sc.IPV6} (kubelet allowedUnsafeSysctls)",
            ),
        }
        for case, (got, remedy, reason) in cases.items():
            assert (got.remedy, got.reason) == (remedy, reason), case


def test_with_published_labels_a_mixed_cluster_pins_pods(kube: FakeKube, tmp_path: Path) -> None:
    sc.mixed(kube)
    with tracking(kube, tmp_path, publish_labels=True) as (state, handle):
        _settled(state, MIXED)
        sc.wait_until(
            lambda: {n: (kube.get_object("Node", n) or {})["metadata"]["labels"].get(LABEL) for n in MIXED} == MIXED,
            what="labels on every node",
        )
        got = sc.decision(_capability(state))
        assert (got.remedy, got.reason) == (
            "sysctl+affinity",
            f"sysctl+affinity: 1 of 2 schedulable nodes allow {sc.IPV6}; pinned to {LABEL}=allowed",
        )
        assert handle.leading


def test_a_node_whose_configz_answers_403_is_unknown(kube: FakeKube, tmp_path: Path) -> None:
    sc.unreadable(kube)
    with tracking(kube, tmp_path) as (state, _):
        _settled(state, {"n-1": "unknown", "n-2": "unknown"})
        assert sc.decision(_capability(state)).reason == "env: capability of the 2 schedulable nodes not known yet"
        assert all(n.allowlist is None for n in _capability(state).nodes)


# ---- staying live


def test_a_broken_watch_reconnects_and_an_expired_version_relists(kube: FakeKube, tmp_path: Path) -> None:
    sc.allowing(kube)
    with tracking(kube, tmp_path) as (state, handle):
        _settled(state, {"cp-1": "allowed", "w-1": "allowed", "w-2": "allowed"})
        assert kube.wait_for_watches(3)
        assert kube.break_watches() == 3
        sc.add_node(kube, "w-3", (sc.IPV6,))
        _settled(state, {"cp-1": "allowed", "w-1": "allowed", "w-2": "allowed", "w-3": "allowed"})
        assert handle.stats["error_nodes"] >= 1
        assert handle.stats["list_nodes"] == 1  # resumed from its resourceVersion: no relist

        sc.wait_until(lambda: kube.watch_count >= 3, what="watches again")
        kube.compact()  # every resourceVersion the tracker holds is now too old
        kube.break_watches()
        sc.add_node(kube, "w-4", ())
        _settled(state, {"cp-1": "allowed", "w-1": "allowed", "w-2": "allowed", "w-3": "allowed", "w-4": "forbidden"})
        # A list is counted after its items are handed over, so the snapshot can settle a moment before.
        sc.wait_until(lambda: handle.stats["relist_nodes"] >= 1 and handle.stats["list_nodes"] >= 2,
                      what="a relist after 410 Gone")


def test_a_hung_watch_is_dropped_by_the_watchdog(kube: FakeKube, tmp_path: Path) -> None:
    sc.allowing(kube)
    with tracking(kube, tmp_path) as (state, handle):
        _settled(state, {"cp-1": "allowed", "w-1": "allowed", "w-2": "allowed"})
        kube.hang_watches()
        sc.add_node(kube, "w-3", (sc.IPV6,))
        # read timeout = timeoutSeconds (2) + grace (1): the stalled watch fails and is retried
        sc.wait_until(lambda: handle.stats["error_nodes"] >= 1, timeout=8, what="the watchdog")
        kube.hang_watches(False)
        _settled(state, {"cp-1": "allowed", "w-1": "allowed", "w-2": "allowed", "w-3": "allowed"})


def test_a_node_added_and_removed_while_serving(kube: FakeKube, tmp_path: Path) -> None:
    sc.allowing(kube)
    with tracking(kube, tmp_path) as (state, _):
        _settled(state, {"cp-1": "allowed", "w-1": "allowed", "w-2": "allowed"})
        sc.add_node(kube, "w-3", ())
        _settled(state, {"cp-1": "allowed", "w-1": "allowed", "w-2": "allowed", "w-3": "forbidden"})
        assert sc.decision(_capability(state)).reason == (
            f"env: 2 of 3 schedulable nodes allow {sc.IPV6}; no published node labels to pin to"
        )
        kube.delete_object("Node", "w-3")
        _settled(state, {"cp-1": "allowed", "w-1": "allowed", "w-2": "allowed"})
        assert sc.decision(_capability(state)).remedy == "sysctl"


def test_a_sysctl_forbidden_pod_is_evidence_until_the_kubelet_changes(kube: FakeKube, tmp_path: Path) -> None:
    sc.with_evidence(kube)
    with tracking(kube, tmp_path) as (state, _):
        _settled(state, {"e-1": "forbidden", "e-2": "allowed"})  # the hostNetwork refusal is not evidence
        capability = _capability(state)
        assert capability.verdicts[0].source == "evidence"
        assert capability.verdicts[0].detail == f"a pod was refused {sc.IPV6} (SysctlForbidden)"
        # The kubelet restarts (new bootID): its configuration may have changed, the evidence is void.
        sc.update_node(kube, "e-1", lambda n: n["status"]["nodeInfo"].update(bootID="rebooted"))
        _settled(state, {"e-1": "allowed", "e-2": "allowed"})
        # A new refusal after the restart counts again.
        kube.put_object(objects.sysctl_forbidden_pod("e-1", "team", name="app-5d8f9c7b6d-zzzzz", sysctls=(sc.IPV6,)))
        _settled(state, {"e-1": "forbidden", "e-2": "allowed"})


def test_the_override_label_wins(kube: FakeKube, tmp_path: Path) -> None:
    sc.forbidding(kube)
    with tracking(kube, tmp_path) as (state, _):
        _settled(state, {"mk-1": "forbidden", "mk-2": "forbidden"})
        sc.update_node(
            kube, "mk-1", lambda n: n["metadata"]["labels"].update({"v4only.io/ipv6-sysctl-override": "allowed"})
        )
        _settled(state, {"mk-1": "allowed", "mk-2": "forbidden"})


def test_ready_only_after_the_first_list_and_confirmed_while_alive(kube: FakeKube, tmp_path: Path) -> None:
    sc.allowing(kube)
    kube.forbid("list", r"^/api/v1/namespaces$")
    with tracking(kube, tmp_path) as (state, _):
        sc.wait_until(lambda: kube.configz_count("w-1") >= 1, what="node reads")
        assert not state.ready
        assert _capability(state).state == "unknown"
        kube.clear_forbidden()
        sc.wait_until(lambda: state.ready, what="ready")
        first = state.age_seconds()
        assert first is not None
        sc.wait_until(lambda: (state.age_seconds() or 99) < 0.3 and state.view().confirmed_at != 0, what="confirm")


def test_without_permission_to_watch_pods_the_tracker_still_serves(kube: FakeKube, tmp_path: Path) -> None:
    sc.allowing(kube)
    kube.forbid("list", r"^/api/v1/pods$")
    with tracking(kube, tmp_path) as (state, handle):
        _settled(state, {"cp-1": "allowed", "w-1": "allowed", "w-2": "allowed"})
        confirmed = state.view().confirmed_at
        assert confirmed is not None
        sc.wait_until(lambda: (state.view().confirmed_at or 0) > confirmed, what="a confirmation")
        assert handle.stats["error_pods"] >= 1


def test_an_api_server_that_goes_away_and_comes_back(kube: FakeKube, tmp_path: Path) -> None:
    sc.allowing(kube)
    with tracking(kube, tmp_path) as (state, handle):
        _settled(state, {"cp-1": "allowed", "w-1": "allowed", "w-2": "allowed"})
        kube.stop()
        sc.wait_until(lambda: handle.stats["error_nodes"] >= 2, what="failed reconnects")
        kube.start()
        sc.add_node(kube, "w-3", (sc.IPV6,))
        _settled(state, {"cp-1": "allowed", "w-1": "allowed", "w-2": "allowed", "w-3": "allowed"})


# ---- two replicas, one Lease


def _label(kube: FakeKube, node: str) -> str | None:
    value = (kube.get_object("Node", node) or {})["metadata"]["labels"].get(LABEL)
    return None if value is None else str(value)


def test_two_replicas_compete_for_the_lease(kube: FakeKube, tmp_path: Path) -> None:
    sc.allowing(kube)
    with (
        tracking(kube, tmp_path, publish_labels=True, name="a") as (_, first),
        tracking(kube, tmp_path, publish_labels=True, name="b") as (_, second),
    ):
        sc.wait_until(lambda: first.leading or second.leading, what="a leader")
        sc.wait_until(lambda: all(_label(kube, n) == "allowed" for n in ("cp-1", "w-1", "w-2")), what="labels")
        leader, follower = (first, second) if first.leading else (second, first)
        for _ in range(15):  # for longer than the lease duration, the follower never takes over
            assert leader.leading and not follower.leading
            time.sleep(0.1)
        assert follower.stats["label_patches"] == 0
        lease = kube.get_object("Lease", "v4only-node-labels", "v4only-system")
        assert lease is not None and lease["spec"]["holderIdentity"].startswith("replica-")
        holder = lease["spec"]["holderIdentity"]

        leader.stop()  # releases the Lease
        sc.wait_until(lambda: follower.leading, timeout=5, what="the follower to take over")
        lease = kube.get_object("Lease", "v4only-node-labels", "v4only-system")
        assert lease is not None and lease["spec"]["holderIdentity"] not in ("", holder)
        assert lease["spec"]["leaseTransitions"] >= 1
        # The new leader keeps the labels: one removed by hand comes back, an unknown node loses its label.
        sc.update_node(kube, "w-1", lambda n: n["metadata"]["labels"].pop(LABEL))
        sc.add_node(kube, "w-3", None, status=403)
        sc.wait_until(lambda: _label(kube, "w-1") == "allowed", what="w-1 relabelled")
        sc.update_node(kube, "w-3", lambda n: n["metadata"]["labels"].update({LABEL: "allowed"}))
        sc.wait_until(lambda: _label(kube, "w-3") is None, what="label removed from an unknown node")
        sc.wait_until(lambda: follower.stats["label_patches"] >= 2, what="the new leader's patches")


# ---- the calls made are exactly the declared permissions


def _permission(request: RecordedRequest) -> tuple[str, str, str]:
    parts = request.path.strip("/").split("/")
    group = "" if parts[0] == "api" else parts[1]
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) > 2:
        rest = rest[2:]
    resource, name = rest[0], rest[1] if len(rest) > 1 else ""
    if len(rest) > 2:
        resource = f"{resource}/{rest[2]}"
    verbs = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
    if request.method == "GET":
        verb = "get" if name else ("watch" if request.query.get("watch") == "true" else "list")
    else:
        verb = verbs[request.method]
    return group, resource, verb


def test_the_tracker_uses_only_the_declared_permissions(kube: FakeKube, tmp_path: Path) -> None:
    sc.with_evidence(kube)
    kube.put_object(objects.namespace("v4only-system"))
    kube.clear_requests()
    with dns_server(LabResolver()) as port, tracking(kube, tmp_path, publish_labels=True, dns_port=port) as (
            state, handle):
        _settled(state, {"e-1": "forbidden", "e-2": "allowed"})
        sc.wait_until(lambda: _label(kube, "e-1") == "forbidden", what="labels")
        sc.wait_until(lambda: kube.get_object("ConfigMap", "v4only-dns", "v4only-system"), what="DNS finding")
        assert handle.leading
    used = {_permission(r) for r in kube.requests}
    # nodes/configz is checked by kubelets, not by the API server; these scenarios opt in to the proxy path.
    assert used == (rbac_used.SERVE - rbac_used.KUBELET) | rbac_used.PROXY_FALLBACK


def test_the_dns_probe_finding_reaches_decisions_and_the_cluster(kube: FakeKube, tmp_path: Path) -> None:
    """Issue 9: the trap found by serve's probe makes the webhook add the DNS remedy, and the elected
    replica publishes the finding where doctor and live review read it."""
    sc.allowing(kube)
    kube.put_object(objects.namespace("v4only-system"))
    with dns_server(LabResolver()) as port, tracking(kube, tmp_path, publish_labels=True, dns_port=port) as (
            state, handle):
        sc.wait_until(lambda: _capability(state).dns.traps == ("corp.example",), what="the trap in the snapshot")
        decision = sc.decision(_capability(state))
        assert decision.applied == "sysctl+dns" and decision.dns is not None
        # The cluster DNS is the kubelets' own (their /configz clusterDNS, the fake's 10.96.0.10), before the
        # probing replica's resolv.conf (127.0.0.1 here): product.md, the dns remedy.
        assert decision.dns.nameservers == ("10.96.0.10",)
        published = sc.wait_until(lambda: kube.get_object("ConfigMap", "v4only-dns", "v4only-system"),
                                  what="the published finding")
        assert handle.dns_finding is not None and handle.dns_finding.node == "e-2"
    finding = finding_from_dict(json.loads(published["data"]["finding.json"]))
    assert finding.traps == ("corp.example",) and finding.node == "e-2"
    assert {d.domain: d.verdict for d in finding.domains} == {
        "corp.example": "trap", "home.example": "safe", "broken.example": "unknown"}


def test_a_new_leader_keeps_since_when_each_domain_has_had_its_verdict(kube: FakeKube, tmp_path: Path) -> None:
    """Doctor shows each domain's verdict "and since when" (issue 9 item 5): a restart or a new leader goes on
    from the finding already in the cluster where a domain's verdict is unchanged, and restarts the clock
    where it changed."""
    sc.allowing(kube)
    kube.put_object(objects.namespace("v4only-system"))
    earlier = DnsFinding("2026-11-01T00:00:00Z", "e-1", ("10.96.0.10",), "cluster.local",
                         (DomainFinding("corp.example", "trap", "NODATA", "2026-10-30T12:00:00Z"),
                          DomainFinding("home.example", "trap", "NODATA", "2026-10-30T12:00:00Z")), "none", False)
    kube.put_object({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": "v4only-dns", "namespace": "v4only-system"},
                     "data": {"finding.json": json.dumps(earlier.to_dict())}})

    def republished() -> DnsFinding | None:
        stored = kube.get_object("ConfigMap", "v4only-dns", "v4only-system")
        finding = finding_from_dict(json.loads(stored["data"]["finding.json"])) if stored else None
        return finding if finding is not None and finding.checked_at != earlier.checked_at else None

    with dns_server(LabResolver()) as port, tracking(kube, tmp_path, publish_labels=True, dns_port=port):
        finding = sc.wait_until(republished, what="the finding republished")
    since = {d.domain: d.since for d in finding.domains}
    assert since["corp.example"] == "2026-10-30T12:00:00Z"  # still a trap: since then
    assert since["home.example"] == finding.checked_at  # was a trap, now safe: since this round


def test_a_crashed_leader_is_replaced_after_the_lease_expires(kube: FakeKube, tmp_path: Path) -> None:
    kube.put_object(objects.namespace("v4only-system"))
    # leaseDurationSeconds is whole seconds in the API: 1 s is the shortest lease.
    timings = LeaseTimings(lease_duration=1.0, renew_deadline=0.3, retry_period=0.05)

    def elector(name: str) -> LeaderElector:
        api = _api(kube, tmp_path, name)
        return LeaderElector(api, namespace="v4only-system", name="lock", identity=name, timings=timings)

    crashed, survivor = elector("crashed"), elector("survivor")
    assert crashed.try_acquire_or_renew()
    assert not survivor.try_acquire_or_renew()  # held, and just seen: not expired
    time.sleep(0.5)
    assert not crashed.leading  # past its renew deadline, the holder itself stops acting
    assert not survivor.try_acquire_or_renew()  # only 0.5 s since the survivor saw the record change
    time.sleep(0.6)
    assert survivor.try_acquire_or_renew()
    lease = kube.get_object("Lease", "lock", "v4only-system")
    assert lease is not None
    assert (lease["spec"]["holderIdentity"], lease["spec"]["leaseTransitions"]) == ("survivor", 1)


def test_a_write_conflict_means_someone_else_won(kube: FakeKube, tmp_path: Path) -> None:
    kube.put_object(objects.namespace("v4only-system"))
    kube.put_object(objects.lease("lock", "v4only-system", holder="", duration_seconds=1))
    kube.conflict_next("Lease", "lock", namespace="v4only-system")
    api = _api(kube, tmp_path, "x")
    elector = LeaderElector(api, namespace="v4only-system", name="lock", identity="x")
    assert not elector.try_acquire_or_renew()
    assert elector.try_acquire_or_renew()


def _restart_kubelet_in_place(node: dict) -> None:
    """`microk8s stop; microk8s start`: same bootID and version, the Ready condition changes (a short
    NotReady, then Ready with a new lastTransitionTime)."""
    for condition in node["status"]["conditions"]:
        if condition["type"] == "Ready":
            condition.update(lastTransitionTime="2099-01-01T00:00:00Z", status="True", reason="KubeletReady")


def test_a_kubelet_allowlisted_and_restarted_in_place_is_picked_up_at_once(kube: FakeKube, tmp_path: Path) -> None:
    """Issue 11: the admin allowlists the sysctl on mk-1 and restarts its kubelet; bootID and version stay."""
    sc.forbidding(kube)
    with tracking(kube, tmp_path) as (state, _):
        _settled(state, {"mk-1": "forbidden", "mk-2": "forbidden"})
        reads = kube.configz_count("mk-1")
        kube.set_configz("mk-1", objects.kubelet_config((sc.IPV6,)))
        time.sleep(0.3)
        assert _verdicts(state)["mk-1"] == "forbidden"  # nothing has told the tracker yet (refresh: 60 s here)
        sc.update_node(kube, "mk-1", _restart_kubelet_in_place)
        _settled(state, {"mk-1": "allowed", "mk-2": "forbidden"})
        assert kube.configz_count("mk-1") == reads + 1


def test_a_kubelet_that_stops_allowing_is_not_chosen_without_a_failed_pod(kube: FakeKube, tmp_path: Path) -> None:
    sc.allowing(kube)
    with tracking(kube, tmp_path) as (state, _):
        _settled(state, {"cp-1": "allowed", "w-1": "allowed", "w-2": "allowed"})
        kube.set_configz("w-1", objects.kubelet_config(()))
        sc.update_node(kube, "w-1", _restart_kubelet_in_place)
        _settled(state, {"cp-1": "allowed", "w-1": "forbidden", "w-2": "allowed"})
        assert sc.decision(_capability(state)).remedy != "sysctl"


def test_the_configz_refresh_follows_the_cluster_size() -> None:
    from webhook.tracker.config import configz_refresh_seconds

    config = TrackerConfig()
    # A handful of nodes: every 30 s, so a reconfigured kubelet shows within about a minute without any signal.
    assert configz_refresh_seconds(3, config) == 30.0
    # Thousands: no more than 5 configz reads per second towards the API server.
    for nodes in (1_000, 5_000, 20_000):
        assert nodes / configz_refresh_seconds(nodes, config) <= 5.0
