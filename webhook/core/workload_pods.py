"""The pods of a workload: which controller owns them, which live ones count, which failed ones to delete
(keeping the tracker's evidence), and the Pod to create in place of a bare one.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from webhook.core.evidence import FORBIDDEN_REASON, rejection_from_pod
from webhook.core.patch import Op, apply_patch
from webhook.core.settings import Settings
from webhook.core.shapes import mapping_or_empty as _mapping


@dataclass(frozen=True, slots=True)
class PodRef:
    name: str
    uid: str


def counts_for_restart(pod: Mapping[str, Any]) -> bool:
    """Live pods (Pending, Running, Unknown), and pods the kubelet refused with SysctlForbidden."""
    status = _mapping(pod.get("status"))
    if status.get("reason") == FORBIDDEN_REASON:
        return True
    return status.get("phase") not in ("Succeeded", "Failed") and not _mapping(pod.get("metadata")).get(
        "deletionTimestamp"
    )


def controller_of(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ownerReference with `controller: true` (at most one exists), or None."""
    refs = _mapping(obj.get("metadata")).get("ownerReferences")
    if not isinstance(refs, list):
        return None
    return next((r for r in refs if isinstance(r, Mapping) and r.get("controller") is True), None)


def pod_ref(pod: Mapping[str, Any]) -> PodRef:
    meta = _mapping(pod.get("metadata"))
    return PodRef(str(meta.get("name") or ""), str(meta.get("uid") or ""))


def pods_by_workload(
    pods: Iterable[Mapping[str, Any]], intermediates: Iterable[Mapping[str, Any]]
) -> dict[str, list[Mapping[str, Any]]]:
    """Pods grouped by the uid of each controller above them: a Deployment's pods under the Deployment's
    uid (through their ReplicaSet, one of `intermediates`) and under the ReplicaSet's."""
    parent = {
        str(_mapping(o.get("metadata")).get("uid")): str(ref.get("uid"))
        for o in intermediates
        if (ref := controller_of(o)) is not None
    }
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for pod in pods:
        ref = controller_of(pod)
        if ref is None:
            continue
        uid = str(ref.get("uid"))
        grouped.setdefault(uid, []).append(pod)
        if uid in parent:
            grouped.setdefault(parent[uid], []).append(pod)
    return grouped


def refused_by_sysctl(pod: Mapping[str, Any], settings: Settings) -> bool:
    """A pod the kubelet refused with SysctlForbidden naming a managed sysctl (node or host-namespace cause)."""
    rejection = rejection_from_pod(pod)
    if rejection is None:
        return False
    return bool((rejection.not_allowlisted | rejection.host_namespace) & settings.sysctl_names)


def deletion_order(
    pods: Iterable[Mapping[str, Any]], limit: int, *, others: Iterable[Mapping[str, Any]] = ()
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """Failed pods to delete, oldest first, at most `limit`; the newest on each node is kept as evidence.

    The capability tracker marks a node forbidden while a SysctlForbidden pod on it exists, so one stays
    per node: the newest of `pods` and `others` (failed pods that stay anyway, e.g. kept earlier).
    Returns (to delete, held back by the limit).
    """
    ordered = sorted(pods, key=_age_key)
    newest: dict[str, Mapping[str, Any]] = {}
    for pod in sorted([*ordered, *others], key=_age_key):
        newest[str(_mapping(pod.get("spec")).get("nodeName") or "")] = pod
    kept = {pod_ref(p).uid for p in newest.values()}
    candidates = [p for p in ordered if pod_ref(p).uid not in kept]
    return candidates[: max(0, limit)], candidates[max(0, limit):]


def _age_key(pod: Mapping[str, Any]) -> tuple[str, str]:
    meta = _mapping(pod.get("metadata"))
    return (str(meta.get("creationTimestamp") or ""), str(meta.get("name") or ""))


def recreated_pod(pod: Mapping[str, Any], ops: Sequence[Op] = ()) -> dict[str, Any]:
    """The Pod to create in place of `pod`: its metadata and spec (with `ops` applied), minus what the
    API server sets or refuses on create (system metadata, status, nodeName, ephemeral containers)."""
    patched = apply_patch(copy.deepcopy(dict(pod)), ops)
    meta = _mapping(patched.get("metadata"))
    kept_meta = {k: meta[k] for k in ("name", "generateName", "namespace", "labels", "annotations", "finalizers")
                 if k in meta}
    spec = {k: v for k, v in _mapping(patched.get("spec")).items() if k not in ("nodeName", "ephemeralContainers")}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": kept_meta, "spec": spec}
