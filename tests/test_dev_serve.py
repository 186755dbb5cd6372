"""`v4only serve --dev` as a newcomer runs it: its flags change its answers, and it leaves nothing behind."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.process_harness import ROOT, ServerProcess
from tests.server_harness import make_tls


def _dev_directory(server: ServerProcess) -> Path:
    return next(Path(line.split("certificates in ")[1].strip()) for line in server.log().splitlines()
                if "certificates in " in line)


def _ask(server: ServerProcess) -> dict[str, Any]:
    """The demo's own review.json, posted as the README's curl line does, trusting only the printed CA."""
    directory = _dev_directory(server)
    context = ssl.create_default_context(cafile=str(directory / "ca.crt"))
    with httpx.Client(base_url=f"https://localhost:{server.port}", verify=context, timeout=10) as client:
        answer = client.post("/mutate", content=(directory / "review.json").read_bytes(),
                             headers={"Content-Type": "application/json"})
    assert answer.status_code == 200
    response: dict[str, Any] = answer.json()["response"]
    return response


def _patch(response: dict[str, Any]) -> list[dict[str, Any]]:
    return json.loads(base64.b64decode(response["patch"])) if "patch" in response else []


def _applied(response: dict[str, Any]) -> str | None:
    for op in _patch(response):
        if op["path"] == "/metadata/annotations":
            return op["value"].get("v4only.io/applied")
        if op["path"] == "/metadata/annotations/v4only.io~1applied":
            return op["value"]
    return None


@pytest.mark.parametrize(("flags", "applied", "sysctl"), [
    (["--namespace-labels", "v4only.io/inject=enabled", "--assume", "allowed"], "sysctl", True),
    (["--namespace-labels", "v4only.io/inject=enabled", "--assume", "forbidden"], "env", False),
    (["--namespace-labels", "v4only.io/inject=disabled", "--assume", "allowed"], None, False),
])
def test_dev_answers_follow_its_flags(tmp_path: Path, flags: list[str], applied: str | None, sysctl: bool) -> None:
    with ServerProcess.cli(make_tls(tmp_path), "serve", "--dev", *flags) as server:
        response = _ask(server)
    assert response["allowed"] is True
    assert _applied(response) == applied
    warnings = " ".join(response.get("warnings", []))
    assert "namespace labels not known" not in warnings
    paths = [op["path"] for op in _patch(response)]
    assert any(path.startswith("/spec/securityContext") for path in paths) is sysctl
    if applied is None:
        assert paths == []  # inject=disabled on the namespace wins over the demo pod's own label


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_dev_removes_its_private_key_on_exit(tmp_path: Path, sig: signal.Signals) -> None:
    server = ServerProcess.cli(make_tls(tmp_path), "serve", "--dev")
    with server:
        directory = _dev_directory(server)
        assert (directory / "tls.key").exists()
        assert server.process is not None
        server.process.send_signal(sig)
        assert server.process.wait(15) == 0
    assert not directory.exists()


def test_dev_with_its_port_taken_says_so_and_exits_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "webhook", "serve", "--dev", "--port", str(port)],
                              cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "try it" not in done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0] and "--port" in lines[0], done.stderr


@pytest.mark.parametrize("command", [
    ["doctor"], ["doctor", "--webhook"], ["patch", "-A"], ["certs", "--secret", "v4only-tls"],
    ["serve", "--cert-file", "tls.crt", "--key-file", "tls.key"], ["review", "POD"],
])
def test_no_cluster_configuration_says_what_was_tried(tmp_path: Path, command: list[str]) -> None:
    pod = tmp_path / "pod.yaml"
    pod.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, image: i}]}\n")
    env = {key: value for key, value in os.environ.items()
           if key not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")}
    env["HOME"] = str(tmp_path)  # no ~/.kube/config
    argv = [str(pod) if part == "POD" else part for part in command]
    done = subprocess.run([sys.executable, "-m", "webhook", *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for tried in ("--kubeconfig", "$KUBECONFIG", f"{tmp_path}/.kube/config", "in-cluster",
                  "microk8s config > ~/.kube/config"):
        assert tried in lines[0], lines[0]
