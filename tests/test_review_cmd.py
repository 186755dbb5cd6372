"""`v4only review`: every input kind, every output, multi-document files, and clear errors (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import FIXTURES, validate
from webhook.cli.main import main

CHRONICLE = FIXTURES / "objects" / "chronicle-deployment.yaml"
NODES = FIXTURES / "admission" / "nodes-forbidden.yaml"
NS = "--namespace-labels=v4only.io/inject=enabled"


def review(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["review", *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_diff_is_the_default_and_ends_with_the_decision(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = review(capsys, str(CHRONICLE), "--nodes", str(NODES), NS)
    assert status == 0
    assert out.startswith("--- Deployment/chronicle-backend (as given)\n+++ Deployment/chronicle-backend (as admitted)\n")
    assert "+        v4only.io/applied: env\n" in out
    reason = "env: 0 of 3 schedulable nodes allow net.ipv6.conf.all.disable_ipv6 (kubelet allowedUnsafeSysctls)"
    # The Chronicle container reads its environment through envFrom: kept, and said.
    kept = "warning: env: NODE_OPTIONS, JAVA_TOOL_OPTIONS left to envFrom in backend (an env entry would override it)\n"
    assert out.endswith(f"decision: env\nreason: {reason}\n{kept}")


def test_yaml_and_json_give_the_admitted_object_which_validates(capsys: pytest.CaptureFixture[str]) -> None:
    _, as_yaml, _ = review(capsys, str(CHRONICLE), "--assume", "allowed", NS, "-o", "yaml")
    _, as_json, _ = review(capsys, str(CHRONICLE), "--assume", "allowed", NS, "-o", "json")
    admitted = yaml.safe_load(as_yaml)
    assert admitted == json.loads(as_json)
    validate(admitted)
    template = admitted["spec"]["template"]
    assert template["spec"]["securityContext"]["sysctls"] == [{"name": "net.ipv6.conf.all.disable_ipv6", "value": "1"}]
    assert template["metadata"]["annotations"]["v4only.io/applied"] == "sysctl"


@pytest.mark.parametrize(("kind", "pointer"), [
    ("StatefulSet", ["spec", "template"]),
    ("DaemonSet", ["spec", "template"]),
    ("ReplicaSet", ["spec", "template"]),
    ("Job", ["spec", "template"]),
    ("CronJob", ["spec", "jobTemplate", "spec", "template"]),
])
def test_every_workload_kind_is_reviewed_through_its_template(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, kind: str, pointer: list[str]) -> None:
    template = {"metadata": {"labels": {"app": "x"}},
                "spec": {"restartPolicy": "OnFailure" if "Job" in kind else "Always",
                         "containers": [{"name": "c", "image": "i"}]}}
    body: dict = template
    for part in reversed(pointer):
        body = {part: body}
    api = {"Job": "batch/v1", "CronJob": "batch/v1"}.get(kind, "apps/v1")
    obj = {"apiVersion": api, "kind": kind, "metadata": {"name": "w", "namespace": "team"}, **body}
    obj["spec"].update({"selector": {"matchLabels": {"app": "x"}}} if api == "apps/v1" else {})
    if kind == "StatefulSet":
        obj["spec"]["serviceName"] = "w"
    if kind == "CronJob":
        obj["spec"]["schedule"] = "@daily"
    path = tmp_path / "w.json"
    path.write_text(json.dumps(obj))
    status, out, _ = review(capsys, str(path), "--assume", "forbidden", NS, "-o", "json")
    assert status == 0
    admitted = json.loads(out)
    validate(admitted)
    node = admitted
    for part in pointer:
        node = node[part]
    assert node["spec"]["containers"][0]["env"][0]["name"] == "NODE_OPTIONS"


def test_multi_document_yaml_reviews_each_and_json_lists_them(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pods = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p{i}", "namespace": "team"},
             "spec": {"containers": [{"name": "c", "image": "i"}]}} for i in range(2)]
    pods[1]["metadata"]["labels"] = {"v4only.io/inject": "disabled"}
    path = tmp_path / "pods.yaml"
    path.write_text(yaml.safe_dump_all(pods))
    status, out, _ = review(capsys, str(path), "--assume", "allowed", NS, "-o", "json")
    listed = json.loads(out)
    assert status == 0 and listed["kind"] == "List"
    assert "securityContext" in listed["items"][0]["spec"]
    assert listed["items"][1] == pods[1]
    _, diff, _ = review(capsys, str(path), "--assume", "allowed", NS)
    assert "decision: sysctl\n" in diff
    assert "Pod/p1: no change\ndecision: not managed\nreason: pod has v4only.io/inject=disabled\n" in diff


def test_an_admission_review_from_stdin_gives_the_review_response() -> None:
    request = (FIXTURES / "admission" / "chronicle-forbidden.request.json").read_text()
    done = subprocess.run(
        [sys.executable, "-m", "webhook", "review", "-", "-o", "review", "--nodes", str(NODES), NS],
        input=request, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    response = json.loads(done.stdout)["response"]
    assert response["uid"] == "8d3c6a4e-1f0b-4c1e-9a7d-000000000002" and response["patchType"] == "JSONPatch"


BAD = [
    ("missing file", ["nope.yaml", "--assume", "allowed"], "cannot read nope.yaml"),
    ("not yaml", ["{{bad", "--assume", "allowed"], "is not valid YAML or JSON"),
    ("no capability source and no cluster", ["POD", "--kubeconfig", "/nonexistent/kubeconfig"],
     "or give --nodes FILE or --assume allowed|forbidden"),
    ("bad labels", ["POD", "--assume", "allowed", "--namespace-labels", "novalue"], "'novalue' is not key=value"),
    ("empty", ["EMPTY", "--assume", "allowed"], "holds no documents"),
    ("nodes file without nodes", ["POD", "--nodes", "POD"], "holds no Node objects"),
    ("bad review", ["BADREVIEW", "--assume", "allowed"], "request.uid is missing"),
]


@pytest.mark.parametrize(("case", "args", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_exits_2_with_one_line(capsys, tmp_path: Path, case: str, args: list[str], message: str) -> None:
    files = {
        "POD": '{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": []}}',
        "EMPTY": "---\n",
        "BADREVIEW": '{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}',
    }
    resolved = []
    for arg in args:
        if arg in files:
            (tmp_path / arg).write_text(files[arg])
            arg = str(tmp_path / arg)
        elif arg == "{{bad":
            (tmp_path / "bad.yaml").write_text("a: [\n")
            arg = str(tmp_path / "bad.yaml")
        resolved.append(arg)
    status, out, err = review(capsys, *resolved)
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("v4only review: ") and message in err


def test_without_nodes_or_assume_the_live_cluster_decides(capsys, fake_kube, tmp_path: Path) -> None:
    from tests import capability_scenarios as scenarios

    scenarios.mixed(fake_kube)
    kubeconfig = fake_kube.kubeconfig_path(tmp_path)
    pinned = tmp_path / "pinned.yaml"
    pinned.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "p", "namespace": "team"},
        "spec": {"nodeSelector": {"pool": "a"}, "containers": [{"name": "c", "image": "i"}]}}))
    status, out, err = review(capsys, str(pinned), "--kubeconfig", str(kubeconfig))
    assert status == 0, err
    # k-1 (pool a) allows; k-3 (pool a) allows too but is cordoned: 1 of 1.
    assert out.endswith("decision: sysctl\nreason: sysctl: 1 of 1 schedulable node allows net.ipv6.conf.all.disable_ipv6\n")


@pytest.mark.parametrize("kind", ["Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job"])
def test_a_template_with_null_metadata_is_reviewed(kind: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # `spec.template.metadata: null` is valid (ObjectMeta is optional); the remedy's annotations create it.
    api = "batch/v1" if kind == "Job" else "apps/v1"
    spec: dict = {"template": {"metadata": None, "spec": {"restartPolicy": "Never" if kind == "Job" else "Always",
                                                          "containers": [{"name": "app", "image": "x"}]}}}
    if kind != "Job":
        spec["selector"] = {"matchLabels": {"app": "web"}}
    path = tmp_path / "null.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": api, "kind": kind, "metadata": {"name": "web"}, "spec": spec}))
    status, out, _ = review(capsys, str(path), "--assume", "allowed", NS, "-o", "json")
    assert status == 0
    admitted = json.loads(out)
    validate(admitted)
    template = admitted["spec"]["template"]
    assert template["metadata"]["annotations"]["v4only.io/applied"] == "sysctl"
    assert template["spec"]["securityContext"]["sysctls"] == [{"name": "net.ipv6.conf.all.disable_ipv6", "value": "1"}]
