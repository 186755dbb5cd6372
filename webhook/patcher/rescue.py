"""`v4only patch --rescue` and the reconciler's rescue: the owners of pods refused with SysctlForbidden are
fixed (restart or patch), then the failed pods are deleted so their controllers create them again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from webhook.adapters.kube_workloads import KubeError, WorkloadApi
from webhook.core import keys
from webhook.core.evidence import rejection_from_pod
from webhook.core.settings import Settings
from webhook.core.workload_plan import WorkloadPlan
from webhook.core.workload_pods import controller_of, deletion_order, pod_ref, refused_by_sysctl
from webhook.core.workloads import namespace_of
from webhook.patcher.workloads import Executor, Planner

log = logging.getLogger("webhook.patcher")  # the engine's logger: rescue lines read as before


@dataclass(frozen=True, slots=True)
class RescueEntry:
    kind: str
    namespace: str
    name: str
    failed: int  # SysctlForbidden pods found for it
    result: str
    deleted: int
    detail: str
    plan: WorkloadPlan | None = None


@dataclass(frozen=True, slots=True)
class RescueReport:
    entries: tuple[RescueEntry, ...]
    nodes: tuple[tuple[str, str], ...]  # (node, what was done about its label)
    found: int  # SysctlForbidden pods naming a managed sysctl
    deleted: int
    kept_as_evidence: int
    held_back: int  # over --max-deletions
    held_back_uids: frozenset[str] = frozenset()
    kept_uids: frozenset[str] = frozenset()  # of fixed workloads, kept as the tracker's evidence


@dataclass
class Rescuer:
    """Find the owners of SysctlForbidden pods, fix them (restart or patch), delete the failed pods."""

    wapi: WorkloadApi
    planner: Planner
    executor: Executor
    settings: Settings
    mode: str  # client | server | none
    max_deletions: int
    labels_published: bool
    # Consulted before each patch (the reconciler's rate limit and cooldown): None to go ahead, or
    # (counts as fixed, why) to hold it back; a held-back workload's pods are deleted only if fixed.
    gate: Callable[[WorkloadPlan], tuple[bool, str] | None] | None = None
    _cache: dict[tuple[str, str, str], dict[str, Any] | None] = field(default_factory=dict)

    def rescue(self, failed_pods: Iterable[Mapping[str, Any]], node_labels: Mapping[str, Mapping[str, str]], *,
               others: Iterable[Mapping[str, Any]] = ()) -> RescueReport:
        """Rescue `failed_pods`; `others` are failed pods handled before that still exist (evidence kept)."""
        targets = [p for p in failed_pods if refused_by_sysctl(p, self.settings)]
        groups: dict[tuple[str, str, str], tuple[Mapping[str, Any] | None, list[Mapping[str, Any]]]] = {}
        for pod in targets:
            key, owner = self._owner(pod)
            groups.setdefault(key, (owner, []))[1].append(pod)
        entries: list[RescueEntry] = []
        deletable: list[Mapping[str, Any]] = []
        for (kind, namespace, name), (owner, pods) in sorted(groups.items()):
            self.executor.progress.update(f"{kind} {namespace}/{name}: {len(pods)} failed pods")
            entry, may_delete = self._fix(kind, namespace, name, owner, pods)
            entries.append(entry)
            if may_delete:
                deletable += pods
        to_delete, held_back = deletion_order(deletable, self.max_deletions, others=others)
        deleted = self._delete(to_delete)
        per_workload: dict[tuple[str, str, str], int] = {}
        for pod in to_delete:
            key = self.owner_key(pod)
            per_workload[key] = per_workload.get(key, 0) + 1
        entries = [replace(e, deleted=per_workload.get((e.kind, e.namespace, e.name), 0)) for e in entries]
        for entry in entries:
            if entry.deleted and entry.plan is not None and self.mode == "none":
                self.executor.record(entry.plan, "deleted failed pods of", f"{entry.deleted} SysctlForbidden pods",
                                     reason="FailedPodsDeleted", action="Delete")
        gone = {pod_ref(p).uid for p in [*to_delete, *held_back]}
        kept = frozenset(uid for uid in (pod_ref(p).uid for p in deletable) if uid not in gone)
        return RescueReport(tuple(entries), tuple(self._label_nodes(targets, node_labels)), len(targets), deleted,
                            len(kept), len(held_back), frozenset(pod_ref(p).uid for p in held_back), kept)

    def owner_key(self, pod: Mapping[str, Any]) -> tuple[str, str, str]:
        """(kind, namespace, name) of the workload a failed pod is reported under."""
        return self._owner(pod)[0]

    def _owner(self, pod: Mapping[str, Any]) -> tuple[tuple[str, str, str], Mapping[str, Any] | None]:
        namespace = namespace_of(pod)
        ref = controller_of(pod)
        if ref is None:
            meta = pod.get("metadata") or {}
            return ("Pod", namespace, str(meta.get("name"))), pod
        kind, name = str(ref.get("kind")), str(ref.get("name"))
        if kind == "ReplicaSet":
            replicaset = self._get(kind, namespace, name)
            parent = controller_of(replicaset) if replicaset is not None else None
            if parent is not None and parent.get("kind") == "Deployment":
                kind, name = "Deployment", str(parent.get("name"))
        if kind not in ("ReplicaSet", "Deployment", "StatefulSet", "DaemonSet", "Job"):
            return (kind, namespace, name), None
        return (kind, namespace, name), self._get(kind, namespace, name)

    def _get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        key = (kind, namespace, name)
        if key not in self._cache:
            try:
                self._cache[key] = self.wapi.get(kind, namespace, name)
            except KubeError as error:
                log.warning("cannot read %s %s/%s: %s", kind, namespace, name, error)
                self._cache[key] = None
        return self._cache[key]

    def _fix(self, kind: str, namespace: str, name: str, owner: Mapping[str, Any] | None,
             pods: list[Mapping[str, Any]]) -> tuple[RescueEntry, bool]:
        if owner is None:
            why = f"its owner {kind}/{name} is not something v4only patches" if kind not in (
                "ReplicaSet", "Deployment", "StatefulSet", "DaemonSet", "Job") else "its owner could not be read"
            return RescueEntry(kind, namespace, name, len(pods), "skipped", 0, why), False
        bare = kind == "Pod"
        if bare:
            self.planner.bare_pods[str((owner.get("metadata") or {}).get("uid"))] = dict(owner)
        plan = self.planner.plan(owner, pods=None if bare else pods)
        if plan.outcome == "skipped" and plan.skip == "immutable":  # a Job: its next pods pass through the webhook
            return RescueEntry(kind, namespace, name, len(pods), "not patched", 0, plan.reason, plan), True
        if plan.outcome != "changed":
            fixed = plan.outcome == "unchanged"
            return RescueEntry(kind, namespace, name, len(pods), plan.outcome, 0, plan.reason, plan), fixed
        if self.mode == "client":
            return RescueEntry(kind, namespace, name, len(pods), f"would {plan.action}", 0, plan.reason,
                               plan), not bare
        held = self.gate(plan) if self.gate is not None else None
        if held is not None:
            fixed, why = held
            result = "rolling out" if fixed else "held back"
            return RescueEntry(kind, namespace, name, len(pods), result, 0, why, plan), fixed and not bare
        sent = self.executor.send(plan)
        detail = sent.detail or plan.reason
        return RescueEntry(kind, namespace, name, len(pods), sent.result, 0, detail, sent.plan), sent.ok and not bare

    def _delete(self, pods: Sequence[Mapping[str, Any]]) -> int:
        if self.mode == "client":
            return len(pods)
        deleted = 0
        for done, pod in enumerate(pods):
            self.executor.progress.update(f"deleting failed pods: {done}/{len(pods)}")
            ref = pod_ref(pod)
            try:
                deleted += self.wapi.delete_pod(namespace_of(pod), ref.name, uid=ref.uid, dry_run=self.mode != "none")
            except KubeError as error:
                if error.status != 409:  # 409: the uid precondition (a new pod took the name)
                    log.warning("cannot delete pod %s/%s: %s", namespace_of(pod), ref.name, error)
        return deleted

    def _label_nodes(self, targets: Sequence[Mapping[str, Any]], node_labels: Mapping[str, Mapping[str, str]]
                     ) -> list[tuple[str, str]]:
        nodes = sorted({r.node for r in map(rejection_from_pod, targets)
                        if r is not None and r.node and r.refuses(self.settings.sysctl_names)})
        done: list[tuple[str, str]] = []
        for node in nodes:
            labels = node_labels.get(node, {})
            label = f"{keys.NODE_CAPABILITY}={keys.FORBIDDEN}"
            if keys.NODE_OVERRIDE in labels:
                done.append((node, f"left alone: the admin override {keys.NODE_OVERRIDE}={labels[keys.NODE_OVERRIDE]}"
                                   " wins"))
            elif not self.labels_published:
                done.append((node, "forbidden (evidence); not labelled: node labels are not published "
                                   "(serve --publish-node-labels)"))
            elif labels.get(keys.NODE_CAPABILITY) == keys.FORBIDDEN:
                done.append((node, f"already {label}"))
            elif self.mode != "none":
                done.append((node, f"would be labelled {label}"))
            else:
                try:
                    self.wapi.label_node(node, {keys.NODE_CAPABILITY: keys.FORBIDDEN})
                    done.append((node, f"labelled {label}"))
                except KubeError as error:
                    done.append((node, f"could not be labelled {label}: {error}"))
        return done
