"""Clusters for the workload patcher tests (`v4only patch`, `--rescue`, `serve --reconcile`), in a FakeKube.

Nodes refuse or allow the sysctl through their kubelet's /configz (tests/capability_scenarios.py), so
`v4only patch` reads capability exactly as `doctor` does. Workloads are the objects.py builders: each
Deployment has the ReplicaSet and the running pods its controller would have made, created before the
namespace opted in (no `v4only.io/applied`), unless told otherwise.
"""

from __future__ import annotations

import argparse
import io
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import yaml

from tests import capability_scenarios as sc
from tests.fakekube import FakeKube, objects
from tests.test_tracker import _permission
from webhook.cli import patch as patch_cmd

FIXTURES = Path(__file__).parent / "fixtures"
ENABLED = {"v4only.io/inject": "enabled"}
WORKER = {"node-role.kubernetes.io/worker": "true"}


def forbidding_nodes(kube: FakeKube, count: int = 2) -> None:
    """Kubelets that do not allow the sysctl: the webhook's remedy is env."""
    for i in range(1, count + 1):
        sc.add_node(kube, f"w-{i}", ("net.ipv4.ip_forward",), labels=WORKER)


def allowing_nodes(kube: FakeKube, count: int = 2) -> None:
    for i in range(1, count + 1):
        sc.add_node(kube, f"w-{i}", (sc.IPV6,), labels=WORKER)


def namespace(kube: FakeKube, name: str, *, enabled: bool = True) -> None:
    kube.put_object(objects.namespace(name, labels=ENABLED if enabled else None))


def deployment_with_pods(kube: FakeKube, name: str, ns: str, *, replicas: int = 1, applied: str | None = None,
                         labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
                         **pod_options: Any) -> dict[str, Any]:
    """A Deployment, its ReplicaSet and its running pods (annotated `v4only.io/applied` if `applied`)."""
    dep = kube.put_object(objects.deployment(name, ns, replicas=replicas, labels=labels, annotations=annotations,
                                             **pod_options))
    pod_options["pod_labels"] = dep["spec"]["template"]["metadata"]["labels"]
    rs = kube.put_object(objects.replicaset(f"{name}-5d8f9c7b6d", ns, owner=dep, replicas=replicas, **pod_options))
    for i in range(replicas):
        add_pods_of(kube, rs, f"{name}-5d8f9c7b6d-p{i}", applied=applied)
    return dep


def add_pods_of(kube: FakeKube, owner: dict[str, Any], name: str, *, applied: str | None = None,
                node: str = "w-1") -> dict[str, Any]:
    ns = owner["metadata"]["namespace"]
    labels = owner["spec"]["template"]["metadata"]["labels"]
    annotations = {"v4only.io/applied": applied, "v4only.io/reason": f"{applied}: test"} if applied else None
    return kube.put_object(objects.pod(name, ns, labels=labels, annotations=annotations, owner=owner, node_name=node))


def chronicle(kube: FakeKube) -> dict[str, Any]:
    """The Chronicle backend as its team deploys it (tests/fixtures/objects), on nodes that refuse the sysctl."""
    forbidding_nodes(kube)
    namespace(kube, "chronicle")
    dep = yaml.safe_load((FIXTURES / "objects" / "chronicle-deployment.yaml").read_text())
    dep["metadata"].update(uid="0b7e4a52-5a38-4d43-a2a5-6d0c1f6e9c01", creationTimestamp="2025-06-02T09:14:00Z")
    dep["status"] = {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1,
                     "availableReplicas": 1}
    dep = kube.put_object(dep)
    rs = objects.replicaset("chronicle-backend-6b9f7c8d5", "chronicle", owner=dep, template_hash="6b9f7c8d5",
                            pod_labels=dep["spec"]["template"]["metadata"]["labels"])
    rs = kube.put_object(rs)
    add_pods_of(kube, rs, "chronicle-backend-6b9f7c8d5-x7k2p")
    return dep


def parse(kube: FakeKube, tmp_path: Path, *argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="v4only")
    patch_cmd.register(parser.add_subparsers())
    return parser.parse_args(["patch", "--kubeconfig", str(kube.kubeconfig_path(tmp_path)), *argv])


def patch(kube: FakeKube, tmp_path: Path, *argv: str) -> tuple[int, str]:
    """Run `v4only patch ARGV` against the fake; (exit status, standard output)."""
    args = parse(kube, tmp_path, *argv)
    out = io.StringIO()
    with redirect_stdout(out):
        status = patch_cmd.run(args)
    return status, out.getvalue()


def writes(kube: FakeKube) -> list[tuple[str, str, bool]]:
    """(method, path, dryRun) of every request that is not a read."""
    return [(r.method, r.path, r.dry_run) for r in kube.requests if r.method != "GET"]


def permissions(kube: FakeKube) -> set[tuple[str, str, str]]:
    return {_permission(r) for r in kube.requests}
