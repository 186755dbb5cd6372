"""`v4only doctor` against the fake API server, output compared exactly with tests/fixtures/doctor/.

To accept a deliberate change of the output: `V4ONLY_UPDATE_GOLDEN=1 pytest tests/test_doctor.py`, then
read the diff of the fixture files before committing them.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests import capability_scenarios as sc
from tests.fakekube import FakeKube, objects
from tests.test_tracker import _permission
from webhook.adapters import rbac_used
from webhook.cli import doctor
from webhook.cli.usage import UsageError
from webhook.core.capability import NodeFacts, Taint
from webhook.core.certs import build_ca
from webhook.core.configz_reads import ConfigzRecord
from webhook.core.diagnosis import diagnose
from webhook.core.diagnosis_render import render_table
from webhook.core.settings import parse_settings

GOLDEN = Path(__file__).parent / "fixtures" / "doctor"
SERVE_READ = datetime(2026, 11, 29, 2, 0, 0, tzinfo=UTC)


@pytest.fixture
def kube(fake_kube: FakeKube) -> FakeKube:
    """The shared fake API server (tests/fakekube/fixtures.py), under the short name these tests use."""
    return fake_kube


def _doctor(kube: FakeKube, tmp_path: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="v4only")
    doctor.register(parser.add_subparsers())
    return parser.parse_args(["doctor", "--kubeconfig", str(kube.kubeconfig_path(tmp_path)), *extra])


def _check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("V4ONLY_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text()


def _published(kube: FakeKube) -> None:
    sc.mixed(kube)
    for node, verdict in (("k-1", "allowed"), ("k-2", "forbidden"), ("gpu-1", "forbidden"), ("k-3", "allowed")):
        sc.update_node(kube, node, partial(_set_label, verdict=verdict))


def _set_label(node: dict[str, Any], *, verdict: str) -> None:
    node["metadata"]["labels"]["v4only.io/ipv6-sysctl"] = verdict


SCENARIOS: list[tuple[str, Callable[[FakeKube], None], int]] = [
    ("allowing", sc.allowing, 0),
    ("forbidding", sc.forbidding, 1),
    ("mixed", sc.mixed, 1),
    ("mixed-labels-published", _published, 0),
    ("unreadable", sc.unreadable, 1),
    ("evidence", sc.with_evidence, 1),
]


@pytest.mark.parametrize(("name", "build", "status"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_doctor_table(
    name: str, build: Callable[[FakeKube], None], status: int, kube: FakeKube, tmp_path: Path, capsys
) -> None:
    build(kube)
    args = _doctor(kube, tmp_path)
    assert args.func(args) == status
    _check_golden(f"{name}.txt", capsys.readouterr().out)


def test_doctor_json(kube: FakeKube, tmp_path: Path, capsys) -> None:
    sc.with_evidence(kube)
    args = _doctor(kube, tmp_path, "-o", "json")
    assert args.func(args) == 1
    _check_golden("evidence.json", capsys.readouterr().out)


def test_doctor_reads_only_what_it_declares(kube: FakeKube, tmp_path: Path, capsys) -> None:
    sc.with_evidence(kube)
    kube.clear_requests()
    args = _doctor(kube, tmp_path)
    args.func(args)
    # nodes/configz is checked by the kubelets themselves (tests/test_kubelet_configz.py), not by the API server.
    assert {_permission(r) for r in kube.requests} == rbac_used.DOCTOR - rbac_used.KUBELET


def test_without_permission_to_list_pods_doctor_says_what_it_could_not_check(
    kube: FakeKube, tmp_path: Path, capsys
) -> None:
    sc.with_evidence(kube)
    kube.forbid("list", r"^/api/v1/pods$")
    args = _doctor(kube, tmp_path)
    assert args.func(args) == 0  # without the evidence both kubelets' configz allow it
    out = capsys.readouterr().out
    assert "- failed pods not readable (403 Forbidden): SysctlForbidden evidence was not checked\n" in out
    assert "PODS FAILED" not in out


def test_an_unreachable_cluster_is_a_usage_error(kube: FakeKube, tmp_path: Path) -> None:
    args = _doctor(kube, tmp_path)
    kube.stop()
    with pytest.raises(UsageError, match=r"cannot read the cluster: .*cannot reach the API server"):
        args.func(args)


def test_a_bad_settings_file_is_a_usage_error(kube: FakeKube, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("mixedClusters: sometimes\n")
    args = _doctor(kube, tmp_path, "--config", str(config))
    with pytest.raises(UsageError, match="mixedClusters"):
        args.func(args)


def test_a_big_cluster_fits_one_screen() -> None:
    """30 nodes in three kinds: rows alike but for their name share a line (serve's read ages, different on
    every node, are left out of grouped rows)."""
    nodes = [NodeFacts(f"w-{i:02}", kubelet_version="v1.33.1", allowlist=(sc.IPV6,)) for i in range(20)]
    nodes += [NodeFacts(f"old-{i}", kubelet_version="v1.32.4", allowlist=()) for i in range(8)]
    gpu = (Taint("gpu", "true", "NoSchedule"),)
    nodes += [NodeFacts(f"gpu-{i}", kubelet_version="v1.33.1", allowlist=None, taints=gpu) for i in range(2)]
    namespaces = {f"team-{i:02}": {"v4only.io/inject": "enabled"} for i in range(14)}
    diagnosis = diagnose(
        nodes,
        configz_errors={"gpu-0": "direct: 403 Forbidden", "gpu-1": "direct: 403 Forbidden"},
        configz_paths={
            **{n.name: ("direct", "") for n in nodes},
            "gpu-0": ("none", "403 Forbidden"),
            "gpu-1": ("none", "403 Forbidden"),
        },
        namespaces=namespaces,
        rejections=(),
        settings=sc.SETTINGS,
        labels_published=True,
        serve_reads={n.name: ConfigzRecord("direct", SERVE_READ - timedelta(seconds=i)) for i, n in enumerate(nodes)},
        read_at=SERVE_READ,
    )
    text = render_table(diagnosis)
    assert len(text.splitlines()) <= 40
    assert text.splitlines()[3:8] == [
        "NODE              KUBELET  CONFIGZ READ                  SERVE READ  ALLOWLIST (running kubelet)     "
        "net.ipv6.conf.all.disable_ipv6  SOURCE",
        "gpu-0 (+1 alike)  v1.33.1  none (direct: 403 Forbidden)  direct      unknown                         "
        "unknown                         none",
        "old-0 (+7 alike)  v1.32.4  direct                        direct      (empty)                         "
        "forbidden                       kubelet-config",
        "w-00 (+19 alike)  v1.33.1  direct                        direct      net.ipv6.conf.all.disable_ipv6  "
        "allowed                         kubelet-config",
        "",
    ]
    assert "team-00 (+13 alike)" in text
    assert diagnosis.exit_status == 0


def test_the_dns_section_shows_the_probes_finding_and_the_fix(kube: FakeKube, tmp_path: Path, capsys) -> None:
    """Issue 9: doctor reads the finding serve published and says what musl clients see and what to change."""
    import json as _json

    from tests.fakekube import objects as fake_objects
    from webhook.core.dns_trap import DnsFinding, DomainFinding

    sc.allowing(kube)
    finding = DnsFinding("2026-11-28T10:00:00Z", "w-1", ("10.152.183.10",), "cluster.local",
                         (DomainFinding("communityfibre.co.uk", "trap", "pypi.org.communityfibre.co.uk answers NODATA"),
                          DomainFinding("lan", "safe", "NXDOMAIN")), "nxdomain", False)
    kube.put_object(fake_objects.namespace("v4only-system"))
    kube.put_object({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": "v4only-dns", "namespace": "v4only-system"},
                     "data": {"finding.json": _json.dumps(finding.to_dict())}})
    args = _doctor(kube, tmp_path)
    status = args.func(args)
    out = capsys.readouterr().out
    assert status == 1  # the NXDOMAIN-to-AAAA hack breaks every musl client: a problem
    assert ("DNS (probed from node w-1 at 2026-11-28T10:00:00Z; cluster DNS 10.152.183.10, domain cluster.local; "
            "AAAA hidden: nxdomain)") in out
    assert 'communityfibre.co.uk  trap' in out and 'fails: "Name has no usable address" (F1)' in out
    assert "remove communityfibre.co.uk from the nodes' search list" in out
    assert "remove `template ANY AAAA { rcode NXDOMAIN }` from the coredns ConfigMap" in out
    assert "sysctl+dns" in out  # the namespaces' decisions include rule 7, as the webhook's do


def test_a_namespace_whose_pod_security_may_predate_the_sysctl_is_no_node_problem() -> None:
    # Issue 10 item 7: kubelets at v1.31 leave open a 1.31 API server, whose Pod Security baseline lacks tcp_rmem
    # (check_sysctls.go, from v1.32). The decision says env for that; doctor must not send the admin to the kubelets.
    settings = parse_settings({"sysctls": [{"name": "net.ipv4.tcp_rmem", "value": "4096 87380 6291456"}]})
    nodes = [NodeFacts(f"w-{i}", kubelet_version="v1.31.4", allowlist=("net.ipv4.tcp_rmem",)) for i in range(2)]
    namespaces = {"team": {"v4only.io/inject": "enabled", "pod-security.kubernetes.io/enforce": "baseline"}}
    diagnosis = diagnose(nodes, configz_errors={}, namespaces=namespaces, rejections=(), settings=settings,
                         labels_published=True)
    [team] = [n for n in diagnosis.namespaces if n.name == "team"]
    assert (team.remedy, team.problem) == ("env", False), team


def test_doctor_shows_which_path_read_each_kubelet(
    kube: FakeKube, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real TLS kubelets (tests/fakekube/kubelet.py): one answers directly, one refuses tokens (401) so the
    API server's proxy answers (the person has nodes/proxy), one's certificate does not chain."""
    from tests.test_kubelet_configz import Cluster

    cluster = Cluster(kube, tmp_path)
    try:
        cluster.kubelet("direct-1")
        cluster.kubelet("no-authn-1", token_auth=False)  # 401 to tokens: the API server's proxy reaches it
        untrusted = cluster.kubelet("untrusted-1", ca=build_ca(common_name="self-signed", now=datetime.now(UTC)))
        kube.set_configz("no-authn-1", objects.kubelet_config([]))
        # The cluster CA as the admin's kubelet CA bundle (the fake's kubeconfig carries no CA for the client).
        monkeypatch.setenv("V4ONLY_KUBELET_CA_FILE", str(cluster.ca_file))
        args = _doctor(kube, tmp_path)
        assert args.func(args) == 0
        _check_golden("paths.txt", capsys.readouterr().out)
        assert untrusted.requests == []
    finally:
        cluster.stop()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("V4ONLY_KUBELET_CA_FILE", "/nonexistent/kubelet-ca.crt", "/nonexistent/kubelet-ca.crt"),
        ("V4ONLY_KUBELET_ADDRESS_TYPES", "InternalIP,Bogus", "Bogus"),
    ],
)
def test_a_bad_kubelet_setting_is_a_usage_error(
    kube: FakeKube, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    sc.allowing(kube)
    monkeypatch.setenv(variable, value)
    args = _doctor(kube, tmp_path)
    with pytest.raises(UsageError, match=message):
        args.func(args)


def test_doctor_shows_when_and_how_serve_last_read_each_kubelet(
    kube: FakeKube, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 11: the elected replica publishes each node's last configz read (ConfigMap v4only-configz); doctor
    shows its path and age next to its own read, and the record moves on with every re-read."""
    import json as _json
    import re
    from dataclasses import replace as _replace

    from tests.test_kubelet_configz import Cluster
    from tests.test_tracker import FAST
    from webhook.adapters.kube_configz import read_records
    from webhook.adapters.kubelet import KubeletAccess, KubeletConfigz
    from webhook.loops.state import ClusterState
    from webhook.tracker.start import start_tracker

    kube.put_object(objects.namespace("v4only-system"))
    cluster = Cluster(kube, tmp_path)
    started = datetime.now(UTC)
    api = cluster.api()
    try:
        cluster.kubelet("direct-1")
        cluster.kubelet("untrusted-1", ca=build_ca(common_name="self-signed", now=started))
        config = _replace(FAST, identity="replica-doctor", configz_record_interval_seconds=0.2,
                          configz_refresh_min_seconds=0.5)
        handle = start_tracker(ClusterState(max_age_seconds=30.0), sc.SETTINGS, api, publish_labels=True,
                               config=config, configz=KubeletConfigz(api, KubeletAccess(), cluster.credentials(api)))
        try:
            sc.wait_until(lambda: set(read_records(api, "v4only-system") or {}) == {"direct-1", "untrusted-1"},
                          what="serve's configz records")
            first = (read_records(api, "v4only-system") or {})["direct-1"]
            sc.wait_until(lambda: (read_records(api, "v4only-system") or {})["direct-1"].read_at > first.read_at,
                          what="a later read recorded")
        finally:
            handle.stop()
        records = read_records(api, "v4only-system") or {}
        assert records["direct-1"].path == "direct" and records["direct-1"].error == ""
        assert records["untrusted-1"].path == "none" and "certificate not trusted" in records["untrusted-1"].error
        assert all(started <= r.read_at <= datetime.now(UTC) for r in records.values())

        monkeypatch.setenv("V4ONLY_KUBELET_CA_FILE", str(cluster.ca_file))
        args = _doctor(kube, tmp_path)
        args.func(args)
        rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.endswith(("-config", "none"))}
        assert re.search(r"^direct-1 +v1\.33\.1 +direct +direct \d+s ago ", rows["direct-1"]), rows
        assert re.search(r" none \(direct: certificate not trusted\) +none \d+s ago ", rows["untrusted-1"]), rows
        args = _doctor(kube, tmp_path, "-o", "json")
        args.func(args)
        nodes = {n["name"]: n for n in _json.loads(capsys.readouterr().out)["nodes"]}
        shown = nodes["direct-1"]["serveConfigzRead"]
        assert datetime.fromisoformat(shown["readAt"].replace("Z", "+00:00")) == records["direct-1"].read_at
        assert shown["path"] == "direct" and 0 <= shown["ageSeconds"] < 60
    finally:
        api.close()
        cluster.stop()


def test_serves_configz_records_fit_a_configmap_and_keep_the_failures() -> None:
    """A ConfigMap holds at most 1 MiB: on a very big cluster the records of nodes read directly give way
    first, and the published form says how many were left out."""
    from datetime import UTC, datetime

    import orjson

    from webhook.core.configz_reads import MAX_BYTES, records_from_dict, records_to_dict

    now = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
    reads = {f"node-{i:05}": ConfigzRecord("direct", now) for i in range(20_000)}
    reads["zz-untrusted"] = ConfigzRecord("none", now, "certificate not trusted")
    reads["zz-old"] = ConfigzRecord("proxy", now, "403 Forbidden")
    published = records_to_dict(reads)
    assert len(orjson.dumps(published)) <= MAX_BYTES + 100 < 1024 * 1024
    back = records_from_dict(published)
    assert back["zz-untrusted"] == reads["zz-untrusted"] and back["zz-old"] == reads["zz-old"]
    assert published["omitted"] == len(reads) - len(back) > 0 and "node-00000" in back
    small = {name: reads[name] for name in ("node-00000", "zz-untrusted")}
    assert records_from_dict(records_to_dict(small)) == small and records_to_dict(small)["omitted"] == 0
