"""What `v4only patch` does to one existing workload, from the webhook's own decision on its pod template.

Pure: an object (plain dict) in, a `WorkloadPlan` out; no I/O, no clock (the caller passes the restart
time). The decision is `decide` and the operations are `plan_patch`, exactly as the webhook computes
them for a pod, so the webhook, `review`, `patch` and `doctor` cannot disagree.

Two strategies:
- `restart` (default) sets `kubectl.kubernetes.io/restartedAt` on the pod template, as `kubectl rollout
  restart` does: the workload's own spec stays as its owners wrote it, and each new pod passes through
  the webhook. It restarts only when some live pod is not what the webhook would make of it now (a pod
  created before the namespace opted in, or with another remedy); so running it twice restarts nothing.
- `template` writes the webhook's operations into the pod template itself.

Every patch starts with `replace /metadata/resourceVersion` (the value read): the API server then
answers 409 Conflict when the object changed since it was read (registry store.go `Update`:
`newResourceVersion != existingResourceVersion`). A JSON patch `test` operation would not do: its
failure is a 422 (handlers/patch.go `applyJSPatch`), indistinguishable from a bad patch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from webhook.core import keys
from webhook.core.capability import Capability
from webhook.core.decision import Decision, decide
from webhook.core.evidence import FORBIDDEN_REASON
from webhook.core.patch import Op, escape, plan_patch
from webhook.core.placement import carries_pin
from webhook.core.settings import Settings
from webhook.core.shapes import mapping_or_empty as _mapping
from webhook.core.workload_pods import (
    PodRef,
    controller_of,
    counts_for_restart,
    pod_ref,
)
from webhook.core.workload_rollout import (
    RESTARTED_AT,
    Strategy,
    gitops_owner,
    kept_by_partition,
    owner_notes,
    partition_note,
    rollout_notes,
    rollout_waitable,
)
from webhook.core.workloads import namespace_of, pod_template

ROLLING_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
PATCHABLE_KINDS = (*ROLLING_KINDS, "ReplicaSet", "CronJob")

Outcome = Literal["changed", "unchanged", "skipped"]
# Why a workload is skipped, for the summary: the first two are counted, not listed one by one.
Skip = Literal["not-managed", "owned", "immutable", "other"]


@dataclass(frozen=True, slots=True)
class WorkloadPlan:
    """One workload: what the webhook would do to its pods, and what `v4only patch` sends for it."""

    kind: str
    namespace: str
    name: str
    uid: str
    resource_version: str
    outcome: Outcome
    reason: str  # the decision's reason, or why it is skipped or unchanged
    decision: Decision | None = None
    # What the webhook changes in the pod template (JSON Pointers into the workload): the diff.
    template_ops: tuple[Op, ...] = ()
    # The JSON patch to send (resourceVersion precondition first); empty when nothing is patched.
    patch: tuple[Op, ...] = ()
    strategy: Strategy = "restart"
    recreate: bool = False  # a bare Pod: delete it and create it again
    delete_pods: tuple[PodRef, ...] = ()  # pods whose controller re-creates them through the webhook
    skip: Skip | None = None
    gitops: str | None = None
    notes: tuple[str, ...] = ()
    waitable: bool = False  # the patch starts a rollout whose progress can be followed

    @property
    def remedy(self) -> str | None:
        return self.decision.remedy if self.decision is not None else None

    @property
    def action(self) -> str:
        """restart | patch | recreate | delete-pods | "" (nothing to send)."""
        if self.recreate:
            return "recreate"
        if self.patch:
            return "restart" if self.strategy == "restart" else "patch"
        return "delete-pods" if self.delete_pods else ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.namespace, self.kind, self.name)


def plan_workload(
    obj: Mapping[str, Any],
    *,
    namespace_labels: Mapping[str, str] | None,
    capability: Capability,
    settings: Settings,
    strategy: Strategy,
    restarted_at: str,
    pods: Sequence[Mapping[str, Any]] | None = None,
    recreate_pods: bool = False,
) -> WorkloadPlan:
    """The plan for one Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob or Pod.

    `pods`: the workload's pods (any phase; only live ones and SysctlForbidden ones count), or None
    when not known: then the restart strategy restarts whenever the webhook would change the template.
    `restarted_at`: the value for `kubectl.kubernetes.io/restartedAt` (RFC 3339).
    """
    kind = str(obj.get("kind") or "")
    meta = _mapping(obj.get("metadata"))
    namespace = namespace_of(obj)
    base = WorkloadPlan(
        kind=kind,
        namespace=namespace,
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
        resource_version=str(meta.get("resourceVersion") or ""),
        outcome="skipped",
        reason="",
        strategy=strategy,
    )
    owner = controller_of(obj)
    if owner is not None and kind in ("ReplicaSet", "Job", "Pod"):
        return _skip(base, "owned", f"owned by {owner.get('kind')}/{owner.get('name')}, which is planned instead")
    template, pointer = pod_template(obj)
    if kind == "Pod":  # decided as the webhook will see it when re-created: not yet scheduled
        template = {"metadata": meta, "spec": _without_node(template.get("spec"))}
    decision = decide(template, namespace=namespace, namespace_labels=namespace_labels, capability=capability,
                      settings=settings, daemonset=kind == "DaemonSet")
    if not decision.managed:
        return _skip(base, "not-managed", decision.reason)
    planned = plan_patch(template, decision, settings, base=pointer)
    gitops = gitops_owner(obj)
    plan = _with(
        base,
        decision=decision,
        reason=decision.reason,
        template_ops=planned.ops,
        gitops=gitops,
        notes=(*decision.notes, *planned.warnings, *owner_notes(kind, owner, gitops, strategy)),
    )
    if decision.remedy == "none":  # only the two annotations would change: nothing worth a restart
        return _with(plan, outcome="unchanged", reason=f"the webhook changes nothing in its pods ({plan.reason})")
    if kind == "Job":
        return _skip(plan, "immutable", "a Job's pod template cannot change: its new pods pass through the webhook; "
                     "re-create the Job to change the pods it has")
    if kind == "Pod":
        in_line = pod_in_line(obj, namespace_labels=namespace_labels, capability=capability, settings=settings)
        return _plan_pod(plan, obj, in_line=in_line, recreate_pods=recreate_pods)
    if kind == "CronJob" and strategy == "restart":
        return _skip(plan, "other", "nothing to restart: each run's pods pass through the webhook "
                     "(--strategy template writes the change into the job template)")
    restarted = _mapping(_mapping(template.get("metadata")).get("annotations")).get(RESTARTED_AT)
    live = None if pods is None else [p for p in pods if counts_for_restart(p)]
    kept = kept_by_partition(obj, live or [])
    if kept:
        live = [p for p in live or [] if p not in kept]
        lacking = sum(not pod_in_line(p, namespace_labels=namespace_labels, capability=capability,
                                      settings=settings) for p in kept)
        plan = _with(plan, notes=(*plan.notes, partition_note(obj, len(kept), lacking, str(decision.remedy))))
    considered = None if live is None else [p for p in live if not _created_before(p, _time(restarted))]
    if live and considered is not None and len(considered) < len(live):
        plan = _with(plan, notes=(*plan.notes, f"{len(live) - len(considered)} pods predate its restart at "
                                  f"{restarted}: the rollout under way replaces them"))
    stale = None if considered is None else [
        p for p in considered
        if not pod_in_line(p, namespace_labels=namespace_labels, capability=capability, settings=settings)
    ]
    if strategy == "template":
        return _plan_template(plan, obj, pointer, stale, recreate_pods)
    return _plan_restart(plan, obj, pointer, considered, stale, restarted_at, recreate_pods)


def _plan_template(
    plan: WorkloadPlan,
    obj: Mapping[str, Any],
    pointer: str,
    stale: list[Mapping[str, Any]] | None,
    recreate_pods: bool,
) -> WorkloadPlan:
    ops = substantive(plan.template_ops, pointer)
    deletions = _deletions(plan.kind, stale, recreate_pods)
    if not ops and not deletions:
        return _with(plan, outcome="unchanged", reason=f"the pod template already has it ({plan.reason})")
    notes = plan.notes
    if plan.kind == "ReplicaSet" and not recreate_pods and stale:
        notes += (f"a ReplicaSet does not roll out: its {len(stale)} existing pods stay as they are until deleted "
                  "(--recreate-pods deletes them)",)
    return _with(
        plan,
        outcome="changed",
        patch=(_precondition(plan.resource_version), *plan.template_ops) if ops else (),
        delete_pods=deletions,
        notes=notes + rollout_notes(obj),
        waitable=bool(ops) and rollout_waitable(obj),
    )


def _plan_restart(
    plan: WorkloadPlan,
    obj: Mapping[str, Any],
    pointer: str,
    considered: list[Mapping[str, Any]] | None,
    stale: list[Mapping[str, Any]] | None,
    restarted_at: str,
    recreate_pods: bool,
) -> WorkloadPlan:
    remedy = plan.remedy
    if stale is None:
        if not substantive(plan.template_ops, pointer):
            return _with(plan, outcome="unchanged", reason=f"the pod template already has it ({plan.reason})")
    elif not stale:
        count = len(considered or [])
        pods_have = f"{count} pods already have" if count != 1 else "1 pod already has"
        why = f"its {pods_have} {remedy}" if count else "no pod to restart"
        return _with(plan, outcome="unchanged", reason=f"{why}; new pods pass through the webhook")
    notes = plan.notes
    if stale is not None:
        notes += (f"{len(stale)} of {len(considered or [])} pods do not have {remedy} yet",)
    if plan.kind == "ReplicaSet":
        if not recreate_pods:
            return _skip(_with(plan, notes=notes), "other", "a ReplicaSet does not roll out: --recreate-pods deletes "
                         "its pods so that it re-creates them through the webhook")
        if stale is None:
            return _skip(_with(plan, notes=notes), "other", "its pods are not known")
        return _with(plan, outcome="changed", notes=notes, delete_pods=_deletions(plan.kind, stale, True))
    spec = _mapping(obj.get("spec"))
    if plan.kind == "Deployment" and spec.get("paused") is True:
        return _skip(_with(plan, notes=notes), "other", "the Deployment is paused: `kubectl rollout resume` it first")
    ops = (_precondition(plan.resource_version), *restart_ops(obj, pointer, restarted_at))
    return _with(plan, outcome="changed", patch=ops, notes=notes + rollout_notes(obj), waitable=rollout_waitable(obj))


def _plan_pod(plan: WorkloadPlan, pod: Mapping[str, Any], *, in_line: bool, recreate_pods: bool) -> WorkloadPlan:
    remedy = plan.remedy
    if not counts_for_restart(pod):
        return _skip(plan, "other", "the pod has ended")
    if in_line:
        return _with(plan, outcome="unchanged", reason=f"the pod already has {remedy}")
    if not recreate_pods:
        return _skip(plan, "other", "a Pod's spec cannot change: --recreate-pods deletes it and creates it again")
    return _with(plan, outcome="changed", recreate=True,
                 notes=(*plan.notes, "re-created without spec.nodeName: the scheduler places it again"))


def restart_ops(obj: Mapping[str, Any], pointer: str, restarted_at: str) -> list[Op]:
    """Set `kubectl.kubernetes.io/restartedAt` on the pod template at `pointer`, creating parents."""
    template = _mapping(_at(obj, pointer))
    meta = template.get("metadata")
    path = f"{pointer}/metadata"
    if not isinstance(meta, Mapping):
        return [{"op": "add", "path": path, "value": {"annotations": {RESTARTED_AT: restarted_at}}}]
    if not isinstance(meta.get("annotations"), Mapping):
        return [{"op": "add", "path": f"{path}/annotations", "value": {RESTARTED_AT: restarted_at}}]
    return [{"op": "add", "path": f"{path}/annotations/{escape(RESTARTED_AT)}", "value": restarted_at}]


def substantive(ops: Sequence[Op], pointer: str) -> tuple[Op, ...]:
    """The operations that change more than the wording of `v4only.io/reason` (its node counts move)."""
    reason_path = f"{pointer}/metadata/annotations/{escape(keys.REASON)}"
    return tuple(op for op in ops if op.get("path") != reason_path)


def pod_in_line(
    pod: Mapping[str, Any],
    *,
    namespace_labels: Mapping[str, str] | None,
    capability: Capability,
    settings: Settings,
) -> bool:
    """Whether a live pod already is what the webhook would make of it now.

    The pod is decided as the webhook saw it at CREATE, that is without `spec.nodeName` (a DaemonSet
    pod keeps its node affinity, so it is decided for its own node). `sysctl` and `sysctl+affinity`
    count as the same remedy: a running pod that carries the sysctl is not restarted to add a pin.
    A pod refused with SysctlForbidden is never in line.
    """
    if _mapping(pod.get("status")).get("reason") == FORBIDDEN_REASON:
        return False
    spec = _without_node(pod.get("spec"))
    decision = decide({"metadata": _mapping(pod.get("metadata")), "spec": spec}, namespace=namespace_of(pod),
                      namespace_labels=namespace_labels, capability=capability, settings=settings)
    if not decision.managed:
        return True  # the webhook would leave it alone (e.g. the pod opts out itself)
    if decision.remedy != "sysctl+affinity" and not _mapping(pod.get("spec")).get("nodeName") and carries_pin(spec):
        return False  # not scheduled, and held by a pin the webhook now removes: only a new pod gets past it
    applied = _mapping(_mapping(pod.get("metadata")).get("annotations")).get(keys.APPLIED)
    if not isinstance(applied, str):
        return False
    # `v4only.io/applied` may end in `+dns` (rule 7): the remedy must match, and a pod that lacks a DNS remedy
    # the decision adds is not in line. One that has a DNS remedy the decision no longer adds (the finding went
    # unknown) is left alone: its DNS works, and a restart would change nothing that matters.
    has_dns = applied.endswith("+dns")
    return _family(applied.removesuffix("+dns")) == _family(decision.remedy) and (has_dns or decision.dns is None)


def _created_before(pod: Mapping[str, Any], moment: datetime | None) -> bool:
    """A pod older than the template's last restart belongs to a rollout already under way: it does not call
    for another restart (and, refused, it is rescued by deletion alone)."""
    created = _time(_mapping(pod.get("metadata")).get("creationTimestamp"))
    return moment is not None and created is not None and created < moment


def _time(value: Any) -> datetime | None:
    # RFC 3339 as the API server writes it ("Z") or as kubectl writes restartedAt (a local offset).
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _deletions(kind: str, stale: list[Mapping[str, Any]] | None, recreate_pods: bool) -> tuple[PodRef, ...]:
    if kind != "ReplicaSet" or not recreate_pods or not stale:
        return ()
    return tuple(pod_ref(p) for p in stale)


def _precondition(resource_version: str) -> Op:
    return {"op": "replace", "path": "/metadata/resourceVersion", "value": resource_version}


def _family(remedy: str | None) -> str | None:
    return "sysctl" if remedy in ("sysctl", "sysctl+affinity") else remedy


def _skip(plan: WorkloadPlan, skip: Skip, reason: str) -> WorkloadPlan:
    return _with(plan, outcome="skipped", skip=skip, reason=reason, patch=(), delete_pods=(), recreate=False,
                 waitable=False)


def _with(plan: WorkloadPlan, **changes: Any) -> WorkloadPlan:
    return replace(plan, **changes)




def _without_node(spec: Any) -> dict[str, Any]:
    return {k: v for k, v in _mapping(spec).items() if k != "nodeName"}


def _at(obj: Mapping[str, Any], pointer: str) -> Any:
    node: Any = obj
    for part in pointer.split("/")[1:]:
        node = node.get(part) if isinstance(node, Mapping) else None
    return node

