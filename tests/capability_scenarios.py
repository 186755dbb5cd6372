"""Clusters for the capability tracker and `doctor` tests, built in a FakeKube, plus small helpers.

Each scenario puts Nodes (with their kubelet's /configz answer), Namespaces and Pods into the fake
API server. Nodes keep their bootID when changed through `update_node` (a new bootID means the
kubelet restarted, which voids evidence).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

from tests.fakekube import FakeKube, objects
from webhook.core.capability import Capability
from webhook.core.decision import Decision, decide
from webhook.core.settings import Settings

IPV6 = "net.ipv6.conf.all.disable_ipv6"
K3S_DEFAULTS = ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding")
CONTROL_PLANE = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
GPU = {"key": "gpu", "value": "true", "effect": "NoSchedule"}
ENABLED = {"v4only.io/inject": "enabled"}
SETTINGS = Settings()


def add_node(kube: FakeKube, name: str, allowlist: tuple[str, ...] | None, *, status: int = 200, **node: Any) -> None:
    """A node and its kubelet's configz: `allowlist` None with status 200 = configz without the field."""
    if status == 200:
        kube.set_configz(name, objects.kubelet_config(allowlist or ()))
    else:
        kube.set_configz(name, status=status)
    kube.put_object(objects.node(name, **node))


def update_node(kube: FakeKube, name: str, change: Callable[[dict[str, Any]], None]) -> None:
    node = copy.deepcopy(kube.get_object("Node", name))
    assert node is not None
    change(node)
    kube.put_object(node)


def add_namespaces(kube: FakeKube) -> None:
    kube.put_object(objects.namespace("team", labels=ENABLED))
    kube.put_object(objects.namespace("secure", labels={**ENABLED, "pod-security.kubernetes.io/enforce": "baseline"}))
    kube.put_object(objects.namespace("plain"))
    kube.put_object(objects.namespace("v4only-system"))


def allowing(kube: FakeKube) -> None:
    """kubeadm: every kubelet allows the sysctl; a tainted control-plane node."""
    add_node(kube, "cp-1", (IPV6,), taints=[CONTROL_PLANE], labels={"node-role.kubernetes.io/control-plane": ""})
    add_node(kube, "w-1", (IPV6,))
    add_node(kube, "w-2", ("net.ipv6.*",))
    add_namespaces(kube)


def forbidding(kube: FakeKube) -> None:
    """MicroK8s: no kubelet allows it; one carries an entry with literal quotes."""
    microk8s = {"microk8s.io/cluster": "true"}
    add_node(
        kube, "mk-1", None, labels={**microk8s, "node.kubernetes.io/microk8s-controlplane": "microk8s-controlplane"}
    )
    add_node(
        kube, "mk-2", ("'net.ipv6.*'",), labels={**microk8s, "node.kubernetes.io/microk8s-worker": "microk8s-worker"}
    )
    add_namespaces(kube)


def mixed(kube: FakeKube) -> None:
    """k3s: one worker allows, one forbids, a tainted GPU node forbids, a cordoned node allows."""
    version = "v1.33.1+k3s1"
    add_node(kube, "k-1", (*K3S_DEFAULTS, IPV6), kubelet_version=version, labels={"pool": "a"})
    add_node(kube, "k-2", K3S_DEFAULTS, kubelet_version=version, labels={"pool": "b"})
    add_node(kube, "gpu-1", K3S_DEFAULTS, kubelet_version=version, labels={"pool": "gpu"}, taints=[GPU])
    add_node(kube, "k-3", (*K3S_DEFAULTS, IPV6), kubelet_version=version, labels={"pool": "a"}, unschedulable=True)
    add_namespaces(kube)


def unreadable(kube: FakeKube) -> None:
    """No nodes/proxy permission on one kubelet's configz, another kubelet unreachable."""
    add_node(kube, "n-1", None, status=403)
    add_node(kube, "n-2", None, status=503)
    add_namespaces(kube)


def with_evidence(kube: FakeKube) -> None:
    """The kubelets' configz allow it, but one refused a pod (evidence wins); a hostNetwork refusal too."""
    add_node(kube, "e-1", (IPV6,))
    add_node(kube, "e-2", (IPV6,))
    add_namespaces(kube)
    kube.put_object(objects.sysctl_forbidden_pod("e-1", "team", name="app-5d8f9c7b6d-abcde", sysctls=(IPV6,)))
    host = objects.sysctl_forbidden_pod("e-2", "team", name="hostnet-7c9d-fghij", sysctls=(IPV6,))
    host["spec"]["hostNetwork"] = True
    host["status"]["message"] = f'Pod was rejected: forbidden sysctl: "{IPV6}" not allowed with host Net enabled'
    kube.put_object(host)


def plain_pod(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"v4only.io/inject": "enabled"}},
        "spec": {"containers": [{"name": "c", "image": "x"}], **spec},
    }


def decision(capability: Capability, namespace_labels: dict[str, str] | None = None, **spec: Any) -> Decision:
    return decide(
        plain_pod(**spec),
        namespace="team",
        namespace_labels=namespace_labels or {},
        capability=capability,
        settings=SETTINGS,
    )


def wait_until(predicate: Callable[[], Any], *, timeout: float = 10.0, what: str = "condition",
               interval: float = 0.02) -> Any:
    """Poll (every `interval` seconds, at most `timeout` seconds) until `predicate()` is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
