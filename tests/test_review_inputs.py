"""`v4only review` on every valid shape of input a person really has (issues 11 and 15):

objects `kubectl create --dry-run=client` writes, hand-written minimal ones with no, empty or null
metadata, a kustomize-built stream that mixes workloads with ConfigMaps and Services, JSON with
surrogate-pair escapes, YAML anchors; and, for bad input, one line naming the problem and exit 2.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import ensure_kubectl, validate
from tests.process_harness import ROOT

ENABLED = "--namespace-labels=v4only.io/inject=enabled"
SYSCTL = {"name": "net.ipv6.conf.all.disable_ipv6", "value": "1"}


def run_review(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "webhook", "review", *args], cwd=ROOT, input=stdin.decode()
                          if stdin is not None else None, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def kubectl() -> str:
    return ensure_kubectl()


KUBECTL_OBJECTS = {
    "deployment": ["create", "deployment", "web", "--image=nginx:1.27"],
    "job": ["create", "job", "once", "--image=busybox:1.36"],
    "cronjob": ["create", "cronjob", "nightly", "--image=busybox:1.36", "--schedule=0 3 * * *"],
}


def _template(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return obj if obj["kind"] == "Pod" else spec["template"]


@pytest.mark.parametrize("kind", sorted(KUBECTL_OBJECTS))
def test_objects_kubectl_writes_are_reviewed(tmp_path: Path, kubectl: str, kind: str) -> None:
    made = subprocess.run([kubectl, *KUBECTL_OBJECTS[kind], "--dry-run=client", "-o", "yaml"],
                          capture_output=True, text=True, check=True, timeout=60)
    source = tmp_path / f"{kind}.yaml"
    source.write_text(made.stdout)
    done = run_review(str(source), "--assume", "allowed", ENABLED, "-o", "json")
    assert done.returncode == 0, done.stderr
    admitted = json.loads(done.stdout)
    template = _template(admitted)
    assert template["metadata"]["annotations"]["v4only.io/applied"] == "sysctl"
    assert template["spec"]["securityContext"]["sysctls"] == [SYSCTL]
    # kubectl writes `creationTimestamp: null`; it comes back as it was, and the object stays valid.
    assert admitted["metadata"]["creationTimestamp"] is None
    validate(admitted)


CONTAINERS = {"containers": [{"name": "app", "image": "busybox:1.36"}], "restartPolicy": "Never"}
SELECTOR = {"matchLabels": {"app": "x"}}


def _minimal(kind: str, template: dict[str, Any]) -> dict[str, Any]:
    """The smallest valid object of each kind around `template` (a pod template, maybe without metadata)."""
    api = {"Deployment": "apps/v1", "StatefulSet": "apps/v1", "DaemonSet": "apps/v1", "ReplicaSet": "apps/v1",
           "Job": "batch/v1", "CronJob": "batch/v1", "ReplicationController": "v1"}[kind]
    spec: dict[str, Any]
    if kind == "Job":
        spec = {"template": template}
    elif kind == "CronJob":
        spec = {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": template}}}
    elif kind == "ReplicationController":
        spec = {"template": template}
    else:
        spec = {"selector": SELECTOR, "template": template}
        if kind == "StatefulSet":
            spec["serviceName"] = "x"
    return {"apiVersion": api, "kind": kind, "metadata": {"name": "x"}, "spec": spec}


# Jobs need no template labels (the controller adds its own), so their template may lack metadata
# altogether; the other kinds' selectors must match template labels, so only annotations may be null.
TEMPLATE_SHAPES = [
    ("Job", None), ("Job", {}), ("Job", {"labels": None, "annotations": None}),
    ("CronJob", None), ("CronJob", {}), ("CronJob", {"annotations": None}),
    *[(kind, {"labels": {"app": "x"}, "annotations": None})
      for kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController")],
]


@pytest.mark.parametrize(("kind", "metadata"), TEMPLATE_SHAPES)
def test_every_kind_with_a_bare_template_is_reviewed(tmp_path: Path, kind: str, metadata: Any) -> None:
    spec = {**CONTAINERS, "restartPolicy": "Never" if kind in ("Job", "CronJob") else "Always"}
    template: dict[str, Any] = {"spec": spec} if metadata is None else {"metadata": metadata, "spec": spec}
    obj = _minimal(kind, template)
    validate(obj)  # the input itself is valid Kubernetes
    source = tmp_path / "in.yaml"
    source.write_text(yaml.safe_dump(obj))
    for assumption, applied in (("allowed", "sysctl"), ("forbidden", "env")):
        done = run_review(str(source), "--assume", assumption, ENABLED, "-o", "json")
        assert done.returncode == 0, done.stderr
        admitted = json.loads(done.stdout)
        assert _template(admitted)["metadata"]["annotations"]["v4only.io/applied"] == applied
        validate(admitted)


def test_a_cronjob_whose_job_template_has_no_metadata_and_a_null_pod_metadata(tmp_path: Path) -> None:
    source = tmp_path / "cron.yaml"
    source.write_text("apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: c}\nspec:\n  schedule: '@daily'\n"
                      "  jobTemplate:\n    spec:\n      template:\n        metadata:\n        spec:\n"
                      "          restartPolicy: OnFailure\n          containers: [{name: a, image: busybox}]\n")
    done = run_review(str(source), "--assume", "allowed", ENABLED, "-o", "json")
    assert done.returncode == 0, done.stderr
    admitted = json.loads(done.stdout)
    assert _template(admitted)["metadata"] == {"annotations": {
        "v4only.io/applied": "sysctl",
        "v4only.io/reason": "sysctl: assumed allowed for net.ipv6.conf.all.disable_ipv6 (--assume)"}}
    validate(admitted)


KUSTOMIZATION = """\
resources: [config.yaml, service.yaml, ingress.yaml, certificate.yaml, deployment.yaml]
"""
MIXED = {
    "config.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app-env}\ndata: {NODE_OPTIONS: --max-old-space-size=4096}\n",
    "service.yaml": "apiVersion: v1\nkind: Service\nmetadata: {name: app}\nspec: {selector: {app: x}, ports: [{port: 80}]}\n",
    "ingress.yaml": ("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: app}\nspec:\n  rules:\n"
                     "  - host: app.example\n    http: {paths: [{path: /, pathType: Prefix, backend: "
                     "{service: {name: app, port: {number: 80}}}}]}\n"),
    "certificate.yaml": ("apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: app}\n"
                         "spec: {secretName: app-tls, dnsNames: [app.example], issuerRef: {name: le}}\n"),
    "deployment.yaml": ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\nspec:\n  selector: "
                        "{matchLabels: {app: x}}\n  template:\n    metadata: {labels: {app: x}}\n    spec:\n"
                        "      containers: [{name: app, image: busybox, envFrom: [{configMapRef: {name: app-env}}]}]\n"),
}


def test_a_kustomize_build_is_reviewed_in_one_go(tmp_path: Path, kubectl: str) -> None:
    for name, text in {**MIXED, "kustomization.yaml": KUSTOMIZATION}.items():
        (tmp_path / name).write_text(text)
    built = subprocess.run([kubectl, "kustomize", str(tmp_path)], capture_output=True, check=True, timeout=60).stdout
    given = [d for d in yaml.safe_load_all(built) if d]
    kinds = [d["kind"] for d in given]
    assert sorted(kinds) == ["Certificate", "ConfigMap", "Deployment", "Ingress", "Service"]

    as_yaml = run_review("-", "--assume", "allowed", ENABLED, "-o", "yaml", stdin=built)
    assert as_yaml.returncode == 0, as_yaml.stderr
    admitted = [d for d in yaml.safe_load_all(as_yaml.stdout) if d]
    assert [d["kind"] for d in admitted] == kinds  # in place, in order
    for before, after in zip(given, admitted, strict=True):
        if before["kind"] != "Deployment":
            assert after == before
    passed = [line for line in as_yaml.stderr.splitlines() if "passed through" in line]
    assert len(passed) == 1 and "ConfigMap/app-env" in passed[0] and "Deployment" not in passed[0]

    as_json = run_review("-", "--assume", "allowed", ENABLED, "-o", "json", stdin=built)
    assert [d["kind"] for d in json.loads(as_json.stdout)["items"]] == kinds

    as_diff = run_review("-", "--assume", "allowed", ENABLED, stdin=built)
    assert as_diff.returncode == 0 and "Deployment/app (as admitted)" in as_diff.stdout
    assert "ConfigMap" not in as_diff.stdout


def _pod_with_emoji() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "chronicle"},
            "spec": {"containers": [{"name": "app", "image": "busybox", "command": ["echo", "\U0001f680 starting"]}]}}


@pytest.mark.parametrize("output", ["diff", "json", "yaml", "review"])
def test_json_with_surrogate_pair_escapes_is_read_as_json(tmp_path: Path, output: str) -> None:
    source = tmp_path / "pod.json"
    source.write_text(json.dumps(_pod_with_emoji()))  # ensure_ascii: the emoji as \\ud83d\\ude80
    assert "\\ud83d\\ude80" in source.read_text()
    done = run_review(str(source), "--assume", "forbidden", ENABLED, "-o", output)
    assert done.returncode == 0, done.stderr
    if output in ("json", "yaml"):
        admitted = yaml.safe_load(done.stdout)
        assert admitted["spec"]["containers"][0]["command"] == ["echo", "\U0001f680 starting"]


@pytest.mark.parametrize("output", ["diff", "json", "yaml"])
def test_a_lone_surrogate_is_bad_input_not_a_crash(tmp_path: Path, output: str) -> None:
    source = tmp_path / "pod.json"
    source.write_text(json.dumps(_pod_with_emoji()).replace("\\ude80", ""))
    done = run_review(str(source), "--assume", "forbidden", ENABLED, "-o", output)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "pod.json" in done.stderr and "Traceback" not in done.stderr


def test_containers_sharing_one_env_list_through_an_anchor_get_each_variable_once(tmp_path: Path) -> None:
    source = tmp_path / "pod.yaml"
    source.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n"
                      "  - name: a\n    image: busybox\n    env: &shared\n    - {name: LOG_LEVEL, value: info}\n"
                      "  - name: b\n    image: busybox\n    env: *shared\n")
    done = run_review(str(source), "--assume", "forbidden", ENABLED, "-o", "json")
    assert done.returncode == 0, done.stderr
    for container in json.loads(done.stdout)["spec"]["containers"]:
        names = [entry["name"] for entry in container["env"]]
        assert len(names) == len(set(names)), names
        assert "NODE_OPTIONS" in names


def test_an_unquoted_timestamp_comes_back_as_written(tmp_path: Path) -> None:
    source = tmp_path / "pod.yaml"
    source.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: p, creationTimestamp: 2026-01-17T10:00:00Z}\n"
                      "spec: {containers: [{name: a, image: busybox}]}\n")
    done = run_review(str(source), "--assume", "allowed", ENABLED, "-o", "json")
    assert json.loads(done.stdout)["metadata"]["creationTimestamp"] == "2026-01-17T10:00:00Z"


def test_a_typed_list_from_the_api_lends_its_items_their_kind(tmp_path: Path) -> None:
    """`GET /api/v1/nodes` returns a NodeList whose items carry no `kind`."""
    nodes = tmp_path / "nodes.json"
    nodes.write_text(json.dumps({"apiVersion": "v1", "kind": "NodeList", "items": [{"metadata": {
        "name": "n1", "annotations": {"v4only.io/kubelet-allowed-unsafe-sysctls": SYSCTL["name"]}}}]}))
    pod = tmp_path / "pod.yaml"
    pod.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, image: b}]}\n")
    done = run_review(str(pod), "--nodes", str(nodes), ENABLED)
    assert done.returncode == 0, done.stderr
    assert "reason: sysctl: 1 of 1 schedulable node allows net.ipv6.conf.all.disable_ipv6" in done.stdout


BAD_INPUTS = {
    "yaml syntax": (b"kind: Pod\nmetadata: {name: p\nspec: x\n", "line 3, column 5"),
    "not an object": (b"- 1\n- 2\n", "document 1 is not an object"),
    "no kind": (b"apiVersion: v1\nmetadata: {name: p}\n", "document 1 has no kind"),
    "binary": (bytes(range(256)) * 4, "binary"),
    "not utf-8": (b"kind: Pod\nmetadata: {name: \xff}\n", "not UTF-8"),
    "json syntax": (b'{"kind": "Pod",\n "spec": }', "line 2, column 10"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_and_exit_2_from_a_file_and_from_stdin_alike(tmp_path: Path, case: str) -> None:
    data, expected = BAD_INPUTS[case]
    source = tmp_path / "input"
    source.write_bytes(data)
    from_file = run_review(str(source), "--assume", "allowed", ENABLED)
    from_stdin = subprocess.run([sys.executable, "-m", "webhook", "review", "-", "--assume", "allowed", ENABLED],
                                cwd=ROOT, input=data, capture_output=True, timeout=60)
    assert from_file.returncode == 2 and from_stdin.returncode == 2
    file_line, stdin_line = from_file.stderr.strip(), from_stdin.stderr.decode().strip()
    assert len(file_line.splitlines()) == 1 and expected in file_line, file_line
    assert file_line.replace(str(source), "standard input") == stdin_line
    assert "None" not in file_line


@pytest.mark.parametrize("assumption", ["allowed", "forbidden"])
def test_a_broken_container_list_fails_whatever_the_assumption(tmp_path: Path, assumption: str) -> None:
    source = tmp_path / "pod.yaml"
    source.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: x}\n")
    done = run_review(str(source), "--assume", assumption, ENABLED)
    assert done.returncode == 2
    assert done.stderr.strip() == "v4only review: document 1 (Pod/p): spec.containers is not a list"


def test_an_oversized_input_is_refused_at_once(tmp_path: Path) -> None:
    source = tmp_path / "big.yaml"
    with source.open("w") as out:
        out.write("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\ndata:\n")
        line = "  k%07d: " + "x" * 100 + "\n"
        for i in range(100_000):  # ~11 MB
            out.write(line % i)
    done = run_review(str(source), "--assume", "allowed", ENABLED)
    assert done.returncode == 2
    assert "over 8 MiB" in done.stderr and len(done.stderr.strip().splitlines()) == 1
