"""How a workload rolls out, for `v4only patch`'s plan: who else manages it (GitOps), what a restart leaves
alone (a StatefulSet's partition, OnDelete, a paused Deployment), and whether its progress can be followed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from webhook.core.shapes import mapping_or_empty as _mapping

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"  # what `kubectl rollout restart` sets

Strategy = Literal["restart", "template"]

# GitOps tools, from the labels and annotations they put on what they apply.
ARGO_INSTANCE = "argocd.argoproj.io/instance"  # Argo CD, a custom tracking label


ARGO_TRACKING_ID = "argocd.argoproj.io/tracking-id"  # Argo CD, annotation tracking (the v3 default)


ARGO_PREFIX = "argocd.argoproj.io/"


APP_INSTANCE = "app.kubernetes.io/instance"  # Argo CD's default tracking label, but Helm sets it too


FLUX_LABELS = ("kustomize.toolkit.fluxcd.io/name", "helm.toolkit.fluxcd.io/name")


def gitops_owner(obj: Mapping[str, Any]) -> str | None:
    """The GitOps tool that manages this object, as a phrase for the user; None when none shows."""
    meta = _mapping(obj.get("metadata"))
    labels, annotations = _mapping(meta.get("labels")), _mapping(meta.get("annotations"))
    if ARGO_INSTANCE in labels:
        return f"Argo CD (label {ARGO_INSTANCE}={labels[ARGO_INSTANCE]})"
    if ARGO_TRACKING_ID in annotations:
        return f"Argo CD (annotation {ARGO_TRACKING_ID})"
    for key in FLUX_LABELS:
        if key in labels:
            return f"Flux (label {key}={labels[key]})"
    if APP_INSTANCE in labels and any(str(k).startswith(ARGO_PREFIX) for k in (*labels, *annotations)):
        return f"Argo CD (label {APP_INSTANCE}={labels[APP_INSTANCE]})"
    return None


def owner_notes(kind: str, owner: Mapping[str, Any] | None, gitops: str | None, strategy: Strategy) -> list[str]:
    notes = []
    if gitops is not None:
        if strategy == "template":
            notes.append(f"GitOps: {gitops} manages this {kind} and WILL REVERT a pod template change at its next "
                         "sync; make the change in Git, or use --strategy restart")
        else:
            notes.append(f"GitOps: {gitops} manages this {kind}; the restart only adds {RESTARTED_AT} (as kubectl "
                         "rollout restart does), the webhook changes the new pods, and Git stays as it is")
    if owner is not None and strategy == "template":
        notes.append(f"controlled by {owner.get('kind')}/{owner.get('name')}, which may revert a pod template change")
    return notes


def _partition(obj: Mapping[str, Any]) -> int:
    """A StatefulSet's rolling-update partition (0 for anything else, or OnDelete)."""
    if obj.get("kind") != "StatefulSet" or _update_strategy(obj) != "RollingUpdate":
        return 0
    value = _mapping(_mapping(_mapping(obj.get("spec")).get("updateStrategy")).get("rollingUpdate")).get("partition")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


_ORDINAL = re.compile(r"(.*)-([0-9]+)")  # stateful_set_utils.go statefulPodRegex


def kept_by_partition(obj: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The pods a rollout leaves alone: stateful_set_control.go replaces only replicas[target] for
    target >= partition, where target is the pod's ordinal minus `spec.ordinals.start`."""
    boundary = partition_boundary(obj)
    if boundary is None:
        return []
    name = str(_mapping(obj.get("metadata")).get("name") or "")
    kept = []
    for pod in pods:
        match = _ORDINAL.fullmatch(str(_mapping(pod.get("metadata")).get("name") or ""))
        if match and match[1] == name and int(match[2]) < boundary:
            kept.append(pod)
    return kept


def partition_boundary(obj: Mapping[str, Any]) -> int | None:
    """The lowest ordinal a rollout replaces, or None without a partition."""
    partition = _partition(obj)
    start = _mapping(_mapping(obj.get("spec")).get("ordinals")).get("start")
    first = start if isinstance(start, int) and not isinstance(start, bool) else 0
    return first + partition if partition else None


def partition_note(obj: Mapping[str, Any], kept: int, lacking: int, remedy: str) -> str:
    partition, boundary = _partition(obj), partition_boundary(obj)
    lack = f" ({lacking} without {remedy})" if lacking else ""
    return (f"partition {partition} keeps the {kept} pods below ordinal {boundary} as they are{lack}: a rollout "
            f"replaces only ordinals >= {boundary} (spec.updateStrategy.rollingUpdate.partition)")


def rollout_notes(obj: Mapping[str, Any]) -> tuple[str, ...]:
    kind = obj.get("kind")
    strategy_type = _update_strategy(obj)
    if kind in ("StatefulSet", "DaemonSet") and strategy_type == "OnDelete":
        return (f"updateStrategy OnDelete: the {kind}'s pods change only as they are deleted",)
    if kind == "Deployment" and _mapping(obj.get("spec")).get("paused") is True:
        return ("the Deployment is paused: it rolls out once resumed",)
    return ()


def rollout_waitable(obj: Mapping[str, Any]) -> bool:
    kind = obj.get("kind")
    if kind == "Deployment":
        return _mapping(obj.get("spec")).get("paused") is not True
    return kind in ("StatefulSet", "DaemonSet") and _update_strategy(obj) == "RollingUpdate"


def _update_strategy(obj: Mapping[str, Any]) -> str:
    return str(_mapping(_mapping(obj.get("spec")).get("updateStrategy")).get("type") or "RollingUpdate")
