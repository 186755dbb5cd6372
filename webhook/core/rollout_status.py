"""Is a rollout done, still going, or failed: `kubectl rollout status`'s rules, on plain objects.

Source: kubectl pkg/polymorphichelpers/rollout_status.go (`DeploymentStatusViewer`,
`DaemonSetStatusViewer`, `StatefulSetStatusViewer`), messages kept as kubectl prints them. A Deployment
whose Progressing condition has reason `ProgressDeadlineExceeded` (deploymentutil.TimedOutReason) has
failed; DaemonSets and StatefulSets have no such condition, so only the caller's timeout ends them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

TIMED_OUT_REASON = "ProgressDeadlineExceeded"


@dataclass(frozen=True, slots=True)
class RolloutStatus:
    done: bool
    message: str
    failed: bool = False


def rollout_status(obj: Mapping[str, Any]) -> RolloutStatus:
    kind = obj.get("kind")
    if kind == "Deployment":
        return _deployment(obj)
    if kind == "DaemonSet":
        return _daemonset(obj)
    if kind == "StatefulSet":
        return _statefulset(obj)
    return RolloutStatus(True, f"{kind} has no rollout to follow")


def _deployment(obj: Mapping[str, Any]) -> RolloutStatus:
    name, generation, spec, status = _parts(obj)
    if generation > _int(status.get("observedGeneration")):
        return RolloutStatus(False, "Waiting for deployment spec update to be observed...")
    for condition in status.get("conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == "Progressing" and (
            condition.get("reason") == TIMED_OUT_REASON
        ):
            return RolloutStatus(False, f'deployment "{name}" exceeded its progress deadline', failed=True)
    replicas = spec.get("replicas")
    updated, total, available = (_int(status.get(k)) for k in ("updatedReplicas", "replicas", "availableReplicas"))
    if replicas is not None and updated < _int(replicas):
        return RolloutStatus(False, f'Waiting for deployment "{name}" rollout to finish: {updated} out of '
                             f"{_int(replicas)} new replicas have been updated...")
    if total > updated:
        return RolloutStatus(False, f'Waiting for deployment "{name}" rollout to finish: {total - updated} old '
                             "replicas are pending termination...")
    if available < updated:
        return RolloutStatus(False, f'Waiting for deployment "{name}" rollout to finish: {available} of {updated} '
                             "updated replicas are available...")
    return RolloutStatus(True, f'deployment "{name}" successfully rolled out')


def _daemonset(obj: Mapping[str, Any]) -> RolloutStatus:
    name, generation, spec, status = _parts(obj)
    if str((spec.get("updateStrategy") or {}).get("type") or "RollingUpdate") != "RollingUpdate":
        return RolloutStatus(True, "rollout status is only available for RollingUpdate strategy type")
    if generation > _int(status.get("observedGeneration")):
        return RolloutStatus(False, "Waiting for daemon set spec update to be observed...")
    updated, desired, available = (
        _int(status.get(k)) for k in ("updatedNumberScheduled", "desiredNumberScheduled", "numberAvailable")
    )
    if updated < desired:
        return RolloutStatus(False, f'Waiting for daemon set "{name}" rollout to finish: {updated} out of {desired} '
                             "new pods have been updated...")
    if available < desired:
        return RolloutStatus(False, f'Waiting for daemon set "{name}" rollout to finish: {available} of {desired} '
                             "updated pods are available...")
    return RolloutStatus(True, f'daemon set "{name}" successfully rolled out')


def _statefulset(obj: Mapping[str, Any]) -> RolloutStatus:
    _, generation, spec, status = _parts(obj)
    update = spec.get("updateStrategy") or {}
    if str(update.get("type") or "RollingUpdate") != "RollingUpdate":
        return RolloutStatus(True, "rollout status is only available for RollingUpdate strategy type")
    observed = _int(status.get("observedGeneration"))
    if observed == 0 or generation > observed:
        return RolloutStatus(False, "Waiting for statefulset spec update to be observed...")
    replicas = spec.get("replicas")
    ready, updated = _int(status.get("readyReplicas")), _int(status.get("updatedReplicas"))
    if replicas is not None and ready < _int(replicas):
        return RolloutStatus(False, f"Waiting for {_int(replicas) - ready} pods to be ready...")
    rolling = update.get("rollingUpdate")
    if isinstance(rolling, Mapping):
        partition = rolling.get("partition")
        if replicas is not None and partition is not None and updated < _int(replicas) - _int(partition):
            return RolloutStatus(False, "Waiting for partitioned roll out to finish: "
                                 f"{updated} out of {_int(replicas) - _int(partition)} new pods have been updated...")
        return RolloutStatus(True, f"partitioned roll out complete: {updated} new pods have been updated...")
    current, revision = status.get("currentRevision"), status.get("updateRevision")
    if revision != current:
        return RolloutStatus(False, f"waiting for statefulset rolling update to complete {updated} pods at "
                             f"revision {revision}...")
    return RolloutStatus(True, f"statefulset rolling update complete {_int(status.get('currentReplicas'))} pods at "
                         f"revision {current}...")


def _parts(obj: Mapping[str, Any]) -> tuple[str, int, Mapping[str, Any], Mapping[str, Any]]:
    meta = obj.get("metadata") or {}
    return (
        str(meta.get("name") or ""),
        _int(meta.get("generation")),
        obj.get("spec") or {},
        obj.get("status") or {},
    )


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
