"""Where the pod (template) lives in each kind v4only reviews or patches."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from webhook.core.errors import UnhandledObject
from webhook.core.shapes import optional_list, required_mapping

# JSON Pointer of the pod template inside each kind ("" = the object is the pod itself).
TEMPLATE_POINTERS: Mapping[str, str] = {
    "Pod": "",
    "Deployment": "/spec/template",
    "StatefulSet": "/spec/template",
    "DaemonSet": "/spec/template",
    "ReplicaSet": "/spec/template",
    "ReplicationController": "/spec/template",
    "Job": "/spec/template",
    "CronJob": "/spec/jobTemplate/spec/template",
    "PodTemplate": "/template",
}


def pod_template(obj: Mapping[str, Any]) -> tuple[Mapping[str, Any], str]:
    """The pod-like part (metadata + spec) of a Pod or workload, and its JSON Pointer."""
    kind = obj.get("kind")
    if not isinstance(kind, str) or kind not in TEMPLATE_POINTERS:
        raise UnhandledObject(f"kind {kind!r} has no pod template (expected one of {', '.join(TEMPLATE_POINTERS)})")
    pointer = TEMPLATE_POINTERS[kind]
    node: Any = obj
    for part in pointer.split("/")[1:]:
        node = node.get(part) if isinstance(node, Mapping) else None
        if not isinstance(node, Mapping):
            raise UnhandledObject(f"{kind} has no {pointer.replace('/', '.')[1:]}")
    return node, pointer


def namespace_of(obj: Mapping[str, Any], default: str = "default") -> str:
    meta = obj.get("metadata")
    namespace = meta.get("namespace") if isinstance(meta, Mapping) else None
    return namespace if isinstance(namespace, str) and namespace else default


def check_containers(template: Mapping[str, Any]) -> None:
    """Container lists that hold containers. The patch reads them only for some remedies, so without this
    one check a broken pod would pass or fail review depending on the capability assumed."""
    spec = template.get("spec")
    if not isinstance(spec, dict):
        raise UnhandledObject("spec is not a mapping")
    for name in ("initContainers", "containers", "ephemeralContainers"):
        for i, container in enumerate(optional_list(spec.get(name), f"spec.{name}") or ()):
            required_mapping(container, f"spec.{name}[{i}]")
