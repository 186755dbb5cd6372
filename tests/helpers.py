"""Shared test helpers: schema validation, an independent JSON Patch applier, object builders."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import jsonpatch
import kubernetes_validate

FIXTURES = Path(__file__).parent / "fixtures"
K8S_VERSION = "1.33.0"


def validate(obj: dict[str, Any]) -> None:
    """Strict Kubernetes 1.33 OpenAPI validation; the assertion names the first problem."""
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        raise AssertionError(str(error).splitlines()[0]) from None


def apply_ops(obj: Any, ops: list[dict[str, Any]]) -> Any:
    """RFC 6902 through the `jsonpatch` package, not v4only's own code."""
    return jsonpatch.JsonPatch(ops).apply(copy.deepcopy(obj))


def decode_patch(response: dict[str, Any]) -> list[dict[str, Any]] | None:
    patch = response.get("patch")
    return None if patch is None else json.loads(base64.b64decode(patch))


def admission_review(obj: dict[str, Any], *, uid: str = "u-1", namespace: str = "team-a",
                     operation: str = "CREATE", dry_run: bool = False) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": operation,
            "object": obj,
            "dryRun": dry_run,
        },
    }


def pod(*, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
        **spec: Any) -> dict[str, Any]:
    """A minimal valid Pod; `spec` keys override or extend its spec."""
    meta: dict[str, Any] = {"name": "p", "namespace": "team-a", "labels": {"v4only.io/inject": "enabled"}}
    if labels is not None:
        meta["labels"] = labels
    if annotations is not None:
        meta["annotations"] = annotations
    body = {"containers": [{"name": "app", "image": "registry.example/app:1"}]}
    body.update(spec)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": body}


def ensure_kubectl() -> str:
    """The real kubectl; Debian's `kubernetes-client` package where the machine has none (CI runs as root)."""
    import shutil
    import subprocess

    found = shutil.which("kubectl")
    if found is None:
        subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-q", "kubernetes-client"], check=True, capture_output=True,
                       timeout=600)
        found = shutil.which("kubectl")
    assert found, "kubectl is needed: objects made the way users make them, kustomizations built for real"
    return found
