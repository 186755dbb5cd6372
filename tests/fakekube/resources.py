"""The resource types the fake serves, and how a request path maps onto them.

URL layout from the Kubernetes API concepts page ("Resource URIs"): core types live under /api/v1,
group types under /apis/GROUP/VERSION; namespaced collections under .../namespaces/NS/PLURAL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    # Has a /status subresource, so writes to the main resource keep the stored status (and vice versa).
    has_status: bool = False
    # Top-level fields whose change bumps metadata.generation (registry strategies' PrepareForUpdate).
    generation_fields: tuple[str, ...] = ()
    # registry.Store.ReturnDeletedObject: DELETE answers with the object instead of a Status.
    returns_deleted: bool = False
    # fieldSelector labels beyond metadata.name / metadata.namespace (each type's GetAttrs / field
    # label conversion funcs); value is the dotted path read from the object.
    fields: dict[str, str] = field(default_factory=dict)
    # events.k8s.io/v1 Events are the core/v1 Events seen through a conversion; both share one store.
    storage: tuple[str, str] | None = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def store_key(self) -> tuple[str, str]:
        return self.storage or (self.group, self.plural)


def _workload(group: str, plural: str, kind: str, **extra: Any) -> ResourceType:
    """Controllers' objects: namespaced, with a /status subresource and spec-driven generation."""
    return ResourceType(group, "v1", plural, kind, True, has_status=True, generation_fields=("spec",), **extra)


POD_FIELDS = {
    "spec.nodeName": "spec.nodeName",
    "spec.restartPolicy": "spec.restartPolicy",
    "spec.schedulerName": "spec.schedulerName",
    "spec.serviceAccountName": "spec.serviceAccountName",
    "spec.hostNetwork": "spec.hostNetwork",
    "status.phase": "status.phase",
    "status.podIP": "status.podIP",
    "status.nominatedNodeName": "status.nominatedNodeName",
}
CORE_EVENT_FIELDS = {
    **{f"involvedObject.{k}": f"involvedObject.{k}" for k in (
        "kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")},
    "reason": "reason",
    "reportingComponent": "reportingComponent",
    "source": "source.component",
    "type": "type",
}

RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "nodes", "Node", False, has_status=True,
                 fields={"spec.unschedulable": "spec.unschedulable"}),
    ResourceType("", "v1", "namespaces", "Namespace", False, has_status=True, returns_deleted=True,
                 fields={"status.phase": "status.phase"}),
    _workload("", "pods", "Pod", returns_deleted=True, fields=POD_FIELDS),
    ResourceType("", "v1", "events", "Event", True, fields=CORE_EVENT_FIELDS),
    ResourceType("", "v1", "configmaps", "ConfigMap", True),
    ResourceType("", "v1", "secrets", "Secret", True, fields={"type": "type"}),
    ResourceType("", "v1", "services", "Service", True, has_status=True, returns_deleted=True,
                 fields={"spec.clusterIP": "spec.clusterIP", "spec.type": "spec.type"}),
    _workload("apps", "deployments", "Deployment"),
    _workload("apps", "statefulsets", "StatefulSet"),
    _workload("apps", "daemonsets", "DaemonSet"),
    _workload("apps", "replicasets", "ReplicaSet", fields={"status.replicas": "status.replicas"}),
    _workload("batch", "jobs", "Job", fields={"status.successful": "status.succeeded"}),
    _workload("batch", "cronjobs", "CronJob"),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True),
    ResourceType("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations",
                 "MutatingWebhookConfiguration", False, generation_fields=("webhooks",)),
    ResourceType("events.k8s.io", "v1", "events", "Event", True, storage=("", "events"),
                 fields={"reason": "reason", "type": "type", "reportingController": "reportingController",
                         **{f"regarding.{k}": f"regarding.{k}" for k in ("kind", "namespace", "name", "uid")}}),
)


def by_path(group: str, version: str, plural: str) -> ResourceType | None:
    for rt in RESOURCES:
        if (rt.group, rt.version, rt.plural) == (group, version, plural):
            return rt
    return None


def by_kind(kind: str, api_version: str | None = None) -> ResourceType:
    """Look a type up by Kind ("Pod"), plural ("pods") or either with an apiVersion; core wins ties."""
    wanted = kind.lower()
    for rt in RESOURCES:
        if wanted in (rt.kind.lower(), rt.plural) and api_version in (None, rt.api_version):
            return rt
    raise KeyError(f"fakekube serves no resource {kind!r} ({api_version or 'any version'})")


@dataclass
class Route:
    """What a resource URL names."""

    rtype: ResourceType
    namespace: str  # "" for cluster-scoped types and for all-namespaces collections
    name: str  # "" for collections
    subresource: tuple[str, ...] = ()


def parse_path(path: str) -> Route | None:
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = ""
    # ".../namespaces/NS/PLURAL..." names a namespaced collection; ".../namespaces/NS[/status]" the Namespace.
    if len(rest) >= 3 and rest[0] == "namespaces":
        inner = by_path(group, version, rest[2])
        if inner is not None and inner.namespaced:
            namespace, rest = rest[1], rest[2:]
    if not rest:
        return None
    rtype = by_path(group, version, rest[0])
    if rtype is None or (namespace and not rtype.namespaced):
        return None
    name = rest[1] if len(rest) > 1 else ""
    return Route(rtype, namespace, name, tuple(rest[2:]))


# events.k8s.io/v1 <-> core/v1 Event field mapping (pkg/apis/events/v1 conversion.go).
_EVENT_FIELDS = {
    "regarding": "involvedObject",
    "note": "message",
    "reportingController": "reportingComponent",
    "deprecatedSource": "source",
    "deprecatedFirstTimestamp": "firstTimestamp",
    "deprecatedLastTimestamp": "lastTimestamp",
    "deprecatedCount": "count",
}


def to_storage(rtype: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    """Convert a request body of `rtype` to the stored form (only events.k8s.io differs)."""
    if rtype.storage is None:
        return obj
    out = {_EVENT_FIELDS.get(k, k): v for k, v in obj.items()}
    out.update(apiVersion="v1", kind="Event")
    return out


def from_storage(rtype: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    """The stored object as `rtype` shows it, with apiVersion and kind set."""
    if rtype.storage is not None:
        back = {v: k for k, v in _EVENT_FIELDS.items()}
        obj = {back.get(k, k): v for k, v in obj.items()}
    return {"kind": rtype.kind, "apiVersion": rtype.api_version,
            **{k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}}
