"""Issue 9, item 2: v4only's own answer cures Chronicle, end to end in the remedy lab.

`v4only serve` (production mode: v4only's own certificates, its tracker and DNS probe) runs in the lab's pod
namespace, so its /etc/resolv.conf is the one the kubelet writes there and its trap probe goes through the
lab's DNS server; it reaches the stand-in API server (tests/fakekube, through a real kubeconfig) on
127.0.0.1 in the same namespace. The Chronicle pod, as the ReplicaSet controller creates it from
tests/fixtures/objects/chronicle-deployment.yaml (without the team's later `ndots` fix), goes through
`/mutate` over TLS, verified against the CA serve's certificate was made with. The admitted pod (the
response's JSONPatch applied by `jsonpatch`, not by v4only) is then run as kubelet and runc would: its
`securityContext.sysctls` written in the pod namespace, its container environment built from `envFrom` and
`env` as the kubelet builds it, and the resolv.conf the kubelet writes for its dnsPolicy/dnsConfig. Then the
real musl uv starts Chronicle. A control runs the same pod without the patch where the failure shows.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import re
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.fakekube import FakeKube, objects
from tests.helpers import FIXTURES, apply_ops, decode_patch, validate
from tests.lab import chronicle
from tests.lab.chronicle import Image
from tests.lab.harness import (
    CLUSTER_DOMAIN,
    INDEX_HOST,
    INDEX_PORT,
    POD_IP,
    ROUTER_IP,
    TRAP_DOMAIN,
    DnsBehaviour,
    Lab,
    Ran,
    cluster_search,
    pod_resolv_conf,
)
from tests.server_harness import make_tls
from tests.test_kubelet_configz import Cluster
from webhook.core.dns_trap import finding_from_dict

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]
NODE = "lab-node"
SYSCTL = "net.ipv6.conf.all.disable_ipv6"
SERVE_NAMESPACE = "v4only-system"
NAMESPACE = "chronicle"
PORT = 8443  # the lab's pod namespace is new: nothing else listens there
SERVE_READY_SECONDS = 30.0  # serve started, capability read, first DNS round done (about 2 s measured)
# What the team's chronicle-config and chronicle-secrets carry (names only matter: the kubelet's envFrom).
CONFIG = {"MONGODB_URI": "mongodb://mongo.chronicle.svc:27017/chronicle", "REDIS_URL": "redis://redis:6379/0"}
SECRETS = {"DEEPGRAM_API_KEY": b"lab-not-a-key"}


# ------------------------------------------------------------------------------------------ the cluster


def script_kubelet(kube: FakeKube, node: str, *, allows_sysctl: bool) -> None:
    """The lab node's kubelet as v4only reads it: /configz, whichever path reads it (the fake kubelet that
    `serve_kubelet` starts answers this script live, as does the API server's node proxy). clusterDNS/
    clusterDomain are the lab's, as the kubelet that wrote the pod's resolv.conf has them."""
    allowed = [SYSCTL] if allows_sysctl else []
    kube.set_configz(node, objects.kubelet_config(allowed, clusterDNS=[ROUTER_IP], clusterDomain=CLUSTER_DOMAIN))


def put_cluster(kube: FakeKube) -> None:
    """One worker node, v4only's namespace, Chronicle's opted-in namespace and its ConfigMap and Secret."""
    kube.put_object(objects.node(NODE, labels={"node-role.kubernetes.io/worker": "true"}, internal_ip=POD_IP))
    kube.put_object(objects.namespace(SERVE_NAMESPACE))
    kube.put_object(objects.namespace(NAMESPACE, labels={"v4only.io/inject": "enabled"}))
    kube.put_object(objects.configmap("chronicle-config", NAMESPACE, CONFIG))
    kube.put_object(objects.secret("chronicle-secrets", NAMESPACE, SECRETS))


@dataclass
class Serve:
    """`v4only serve` running in the lab's pod namespace, and the API server it talks to."""

    lab: Lab
    kube: FakeKube
    process: subprocess.Popen[str]
    ca_file: Path
    log_file: Path
    ready_seconds: float = 0.0  # start to ready with the DNS finding

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")[-4000:]

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=f"https://127.0.0.1:{PORT}", timeout=10,
                            verify=ssl.create_default_context(cafile=str(self.ca_file)))

    def get(self, path: str) -> httpx.Response:
        def ask() -> httpx.Response:
            with self.client() as client:
                return client.get(path)
        return self.lab.call_in(ask, timeout=15)

    def metric(self, name: str) -> float | None:
        found = re.search(rf"^{re.escape(name)} (\S+)$", self.get("/metrics").text, re.M)
        return float(found.group(1)) if found else None

    def mutate(self, review: Mapping[str, Any]) -> dict[str, Any]:
        def post() -> dict[str, Any]:
            with self.client() as client:
                answer = client.post("/mutate", json=review)
            assert answer.status_code == 200, answer.text
            body: dict[str, Any] = answer.json()
            return body
        return self.lab.call_in(post, timeout=15)


@contextlib.contextmanager
def serving(lab: Lab, *, allows_sysctl: bool) -> Iterator[Serve]:
    """The fake API server and `v4only serve` as the shipped Deployment runs it (--publish-node-labels), both
    in the pod namespace; serve is ready and its DNS probe has reported when this yields. Both are stopped on
    the way out (serve first: it gives its Lease back to the API server)."""
    # The fake's listening socket is made in a thread moved into the pod namespace: it lives there, and so
    # does every connection it accepts; the test keeps the fake's state in hand (objects, configz).
    kube = lab.call_in(lambda: FakeKube(default_watch_timeout=30).start())
    process: subprocess.Popen[str] | None = None
    kubelets: Cluster | None = None
    try:
        put_cluster(kube)
        script_kubelet(kube, NODE, allows_sysctl=allows_sysctl)
        # The default install reads the kubelet directly (nodes/configz, issue 13): a real TLS kubelet on the
        # pod namespace's 127.0.0.1, its certificate from a test cluster CA that serve is given, as the
        # ServiceAccount's ca.crt would be in a pod.
        kubelets = Cluster(kube, lab.dir)
        lab.call_in(lambda: kubelets.serve_existing(NODE))
        # serve's own pod file: what the kubelet writes for a ClusterFirst pod in v4only-system on this node
        lab.write_resolv_conf(pod_resolv_conf({}, namespace=SERVE_NAMESPACE))
        (lab.dir / "tls").mkdir()
        tls = make_tls(lab.dir / "tls")
        kubeconfig = kube.kubeconfig_path(lab.dir)
        log_file = lab.dir / "serve.log"
        started = time.monotonic()
        with log_file.open("w") as log:
            process = lab.popen(
                [sys.executable, "-m", "webhook", "serve", "--host", "127.0.0.1", "--port", str(PORT),
                 "--cert-file", str(tls.cert_file), "--key-file", str(tls.key_file), "--kubeconfig",
                 str(kubeconfig), "--publish-node-labels", "--drain-seconds", "0"],
                env=lab.env({"NODE_NAME": NODE, "POD_NAMESPACE": SERVE_NAMESPACE, "PYTHONUNBUFFERED": "1",
                             "V4ONLY_KUBELET_CA_FILE": str(kubelets.ca_file)}),
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        serve = Serve(lab, kube, process, tls.ca_file, log_file)
        wait_until_probed(serve)
        serve.ready_seconds = time.monotonic() - started
        yield serve
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)  # else the lab kills it when it closes
        if kubelets is not None:
            kubelets.stop()
        kube.stop()


def wait_until_probed(serve: Serve) -> None:
    """Ready (capability read) and the DNS finding in the snapshot the webhook decides with (its metric), bounded."""
    deadline = time.monotonic() + SERVE_READY_SECONDS
    while True:
        if serve.process.poll() is not None:
            raise AssertionError(f"serve exited with {serve.process.returncode}:\n{serve.log()}")
        with contextlib.suppress(httpx.HTTPError):
            if serve.get("/readyz").status_code == 200 and serve.metric("v4only_dns_finding_known") == 1.0:
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"serve not ready with a DNS finding in {SERVE_READY_SECONDS} s:\n{serve.log()}")
        time.sleep(0.1)


# ------------------------------------------------------------------------------------------ the pod


def replicaset_pod() -> dict[str, Any]:
    """The pod the ReplicaSet controller creates from Chronicle's Deployment, as the webhook receives it: the
    template with the API server's defaults, without the team's later dnsConfig (`ndots`) fix."""
    deployment = yaml.safe_load((FIXTURES / "objects" / "chronicle-deployment.yaml").read_text())
    template = copy.deepcopy(deployment["spec"]["template"])
    spec = template["spec"]
    spec.pop("dnsConfig")  # the fix came later: this is the pod that failed
    name, template_hash = deployment["metadata"]["name"], "6c9f8d7b5d"
    for container in spec["containers"]:
        container.update({"terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                          "imagePullPolicy": "IfNotPresent"})
        for port in container.get("ports", []):
            port.setdefault("protocol", "TCP")
    spec.update({"dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
                 "serviceAccountName": "default", "securityContext": {}, "schedulerName": "default-scheduler",
                 "enableServiceLinks": True, "preemptionPolicy": "PreemptLowerPriority", "priority": 0})
    owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{name}-{template_hash}",
             "uid": "0f7c5a8e-3b3e-4a36-9d6b-2f3c1e8d4a10", "controller": True, "blockOwnerDeletion": True}
    metadata = {"generateName": f"{name}-{template_hash}-", "namespace": NAMESPACE,
                "labels": {**template["metadata"]["labels"], "pod-template-hash": template_hash},
                "ownerReferences": [owner]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def review(pod: Mapping[str, Any]) -> dict[str, Any]:
    controller = "system:serviceaccount:kube-system:replicaset-controller"
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "e2e-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"}, "namespace": NAMESPACE,
        "operation": "CREATE", "userInfo": {"username": controller}, "object": pod, "dryRun": False,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}}}


@dataclass
class Admitted:
    pod: dict[str, Any]
    response: dict[str, Any]

    @property
    def annotations(self) -> dict[str, str]:
        return dict(self.pod["metadata"].get("annotations") or {})

    @property
    def applied(self) -> str | None:
        return self.annotations.get("v4only.io/applied")

    @property
    def sysctls(self) -> list[dict[str, str]]:
        return list((self.pod["spec"].get("securityContext") or {}).get("sysctls") or [])


def admit(serve: Serve, pod: dict[str, Any]) -> Admitted:
    answer = serve.mutate(review(pod))
    response = answer["response"]
    assert response["uid"] == "e2e-1" and response["allowed"] is True
    ops = decode_patch(response) or []
    assert response.get("patchType", "JSONPatch") == "JSONPatch"
    admitted = apply_ops(pod, ops)
    validate(admitted)  # what the API server would store (1.33, strict)
    return Admitted(admitted, response)


# ------------------------------------------------------------------------------------------ kubelet and runc


_REFERENCE = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")


def container_env(kube: FakeKube, namespace: str, container: Mapping[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet builds it (kubelet_pods.go makeEnvironmentVariables): every
    `envFrom` source in order (a later one wins), then each `env` entry, its `$(NAME)` references expanded
    against what is set so far (`$$` is a literal `$`, an unknown reference stays as written). Service links
    are left out: no Service exists in the lab's namespace."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        env.update({prefix + key: value for key, value in _source(kube, namespace, source).items()})
    for entry in container.get("env", []):
        if "valueFrom" in entry:
            ref = entry["valueFrom"].get("configMapKeyRef") or entry["valueFrom"]["secretKeyRef"]
            kind = "configMapRef" if "configMapKeyRef" in entry["valueFrom"] else "secretRef"
            env[entry["name"]] = _source(kube, namespace, {kind: ref})[ref["key"]]
        else:
            env[entry["name"]] = _REFERENCE.sub(
                lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), entry.get("value", ""))
    return env


def _source(kube: FakeKube, namespace: str, source: Mapping[str, Any]) -> dict[str, str]:
    if "configMapRef" in source:
        configmap = kube.get_object("ConfigMap", source["configMapRef"]["name"], namespace)
        assert configmap is not None, f"the kubelet would not start the container: no {source}"
        return dict(configmap.get("data") or {})
    secret = kube.get_object("Secret", source["secretRef"]["name"], namespace)
    assert secret is not None, f"the kubelet would not start the container: no {source}"
    return {key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()}


def apply_sysctls(lab: Lab, pod: Mapping[str, Any]) -> dict[str, str]:
    """runc writes each securityContext.sysctls entry in the pod's namespace; the values before, to restore."""
    before = {}
    for entry in (pod["spec"].get("securityContext") or {}).get("sysctls") or []:
        name = entry["name"].replace("/", ".")
        before[name] = lab.sysctl(name, entry["value"])
    return before


def start_chronicle(lab: Lab, serve: Serve, pod: Mapping[str, Any], label: str) -> Ran:
    """The pod's container as the kubelet runs it (sysctls already applied): its environment and resolv.conf,
    a fresh image and an empty uv cache; `uv run` as Chronicle's Deployment starts it."""
    image = chronicle.build(lab, Image.SYNCED_NO_DEV, lab.dir / f"image-{label}")
    [container] = pod["spec"]["containers"]
    env = container_env(serve.kube, NAMESPACE, container)
    return lab.run([str(lab.tools.uv), *chronicle.start_command(Image.SYNCED_NO_DEV)], cwd=image,
                   env=lab.env({"UV_CACHE_DIR": str(lab.dir / f"cache-{label}"), **env}),
                   resolv_conf=pod_resolv_conf(pod["spec"], namespace=NAMESPACE), timeout=30)


def started(ran: Ran) -> bool:
    return ran.returncode == 0 and "chronicle started" in ran.stdout


def probe_queries(lab: Lab) -> list[str]:
    """The DNS trap probe's questions under the node's search domain, as the lab's DNS server saw them."""
    return [f"{q.qtype} {q.name}" for q in lab.dns_queries() if q.name.endswith(f".{TRAP_DOMAIN}")]


# ------------------------------------------------------------------------------------------ scenarios


F1_ERROR = "Name has no usable address"
CLUSTER_ONLY = {"nameservers": [ROUTER_IP], "searches": cluster_search(NAMESPACE), "options": [
    {"name": "ndots", "value": "5"}]}


def test_f1_on_kubelets_that_allow_the_sysctl_gets_sysctl_and_dns_and_starts(lab: Lab) -> None:
    with serving(lab, allows_sysctl=True) as serve:
        assert serve.metric(f'v4only_dns_trap{{domain="{TRAP_DOMAIN}"}}') == 1.0
        queried = probe_queries(lab)  # through the lab's DNS server: serve's resolv.conf is the pod's
        assert f"A pypi.org.{TRAP_DOMAIN}" in queried and f"AAAA pypi.org.{TRAP_DOMAIN}" in queried, queried
        assert len(queried) == 4  # one round: A and AAAA of a random label and of pypi.org under the domain
        pod = replicaset_pod()
        control = start_chronicle(lab, serve, pod, "control")
        admitted = admit(serve, pod)
        published = finding_from_dict(json.loads(_published_finding(serve)["data"]["finding.json"]))
        apply_sysctls(lab, admitted.pod)
        cured = start_chronicle(lab, serve, admitted.pod, "cured")
    assert F1_ERROR in control.output and not started(control)
    assert admitted.applied == "sysctl+dns", admitted.annotations
    assert admitted.sysctls == [{"name": SYSCTL, "value": "1"}]
    assert admitted.pod["spec"]["dnsPolicy"] == "None" and admitted.pod["spec"]["dnsConfig"] == CLUSTER_ONLY
    assert f"dns: search domain {TRAP_DOMAIN} answers NODATA" in admitted.annotations["v4only.io/reason"]
    assert published.traps == (TRAP_DOMAIN,) and published.node == NODE
    assert published.nameservers == (ROUTER_IP,) and published.cluster_domain == CLUSTER_DOMAIN
    assert started(cured), cured.output


def test_f1_on_kubelets_that_refuse_the_sysctl_gets_env_and_dns_and_starts(lab: Lab) -> None:
    with serving(lab, allows_sysctl=False) as serve:
        pod = replicaset_pod()
        control = start_chronicle(lab, serve, pod, "control")
        admitted = admit(serve, pod)
        apply_sysctls(lab, admitted.pod)
        cured = start_chronicle(lab, serve, admitted.pod, "cured")
        env = container_env(serve.kube, NAMESPACE, admitted.pod["spec"]["containers"][0])
    assert F1_ERROR in control.output and not started(control)
    assert admitted.applied == "env+dns", admitted.annotations
    assert admitted.annotations["v4only.io/reason"].startswith(f"env: 0 of 1 schedulable node allows {SYSCTL}")
    # the container's envFrom may define NODE_OPTIONS/JAVA_TOOL_OPTIONS: v4only leaves them and says so
    assert any("left to envFrom in backend" in w for w in admitted.response["warnings"]), admitted.response
    assert admitted.sysctls == []  # a pod the kubelet would refuse (SysctlForbidden) is never made
    assert admitted.pod["spec"]["dnsPolicy"] == "None" and admitted.pod["spec"]["dnsConfig"] == CLUSTER_ONLY
    # The DNS remedy cures uv's network start, so UV_NO_SYNC is not added (it would break an unsynced image);
    # the team's envFrom values and LOG_LEVEL reach the container as before.
    assert "UV_NO_SYNC" not in env and env["LOG_LEVEL"] == "info"
    assert {**CONFIG, "DEEPGRAM_API_KEY": "lab-not-a-key"}.items() <= env.items()
    assert started(cured), cured.output


def test_no_trap_adds_no_dns_remedy(lab: Lab) -> None:
    lab.set_dns(DnsBehaviour(trap=False))  # corp.example answers NXDOMAIN: a safe search domain
    with serving(lab, allows_sysctl=True) as serve:
        assert serve.metric(f'v4only_dns_trap{{domain="{TRAP_DOMAIN}"}}') is None  # no trap: no series
        assert probe_queries(lab), "serve's probe never asked the lab's DNS server"
        pod = replicaset_pod()
        admitted = admit(serve, pod)
        apply_sysctls(lab, admitted.pod)
        cured = start_chronicle(lab, serve, admitted.pod, "admitted")
    assert admitted.applied == "sysctl", admitted.annotations
    assert "dns" not in admitted.annotations["v4only.io/reason"]
    assert admitted.pod["spec"]["dnsPolicy"] == "ClusterFirst" and "dnsConfig" not in admitted.pod["spec"]
    assert pod_resolv_conf(admitted.pod["spec"], namespace=NAMESPACE) == pod_resolv_conf(pod["spec"],
                                                                                          namespace=NAMESPACE)
    assert started(cured), cured.output


def test_f2_on_kubelets_that_allow_the_sysctl_is_cured_by_it(lab: Lab) -> None:
    lab.set_dns(DnsBehaviour(trap=False))
    lab.add_blackholed_ipv6_route()  # before serve starts: its pod has the global address and route too
    probe = [str(lab.tools.musl_probe), INDEX_HOST, str(INDEX_PORT)]
    with serving(lab, allows_sysctl=True) as serve:
        published = finding_from_dict(json.loads(_published_finding(serve)["data"]["finding.json"]))
        pod = replicaset_pod()
        resolv = pod_resolv_conf(pod["spec"], namespace=NAMESPACE)
        # a client that connects to the addresses in order: the IPv6 one first, whose SYN the router drops
        control = lab.run(probe, resolv_conf=resolv, timeout=3)
        control_uv = start_chronicle(lab, serve, pod, "control")
        admitted = admit(serve, pod)
        apply_sysctls(lab, admitted.pod)
        cured_resolv = pod_resolv_conf(admitted.pod["spec"], namespace=NAMESPACE)
        cured = lab.run(probe, resolv_conf=cured_resolv, timeout=3)
        cured_uv = start_chronicle(lab, serve, admitted.pod, "cured")
    assert published.ipv6_default_route is True and published.traps == ()
    assert control.timed_out, control.output
    assert admitted.applied == "sysctl", admitted.annotations
    assert admitted.sysctls == [{"name": SYSCTL, "value": "1"}]
    assert cured.returncode == 0 and f"connected {ROUTER_IP}" in cured.stdout, cured.output
    # uv races IPv6 and IPv4, so it starts either way, only later without the sysctl (times not asserted)
    assert started(control_uv) and started(cured_uv), (control_uv.output, cured_uv.output)


def _published_finding(serve: Serve) -> dict[str, Any]:
    """The elected replica's ConfigMap v4only-dns (what doctor and live review read), bounded wait."""
    deadline = time.monotonic() + 15
    while True:
        found = serve.kube.get_object("ConfigMap", "v4only-dns", SERVE_NAMESPACE)
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"no v4only-dns ConfigMap within 15 s:\n{serve.log()}")
        time.sleep(0.1)
