"""The workload patcher's engine, shared by `v4only patch` and `serve --reconcile`: read, plan, act, record.

Planning is `webhook.core.workload_plan` (the webhook's own decision); this module does the I/O around
it: reading workloads and their pods, sending each patch with its resourceVersion precondition (409 →
read again, plan again, at most `retries` times), following rollouts with a bounded number of them in
flight, re-creating bare pods, and recording an Event on each workload it changes. The rescue of pods
refused with SysctlForbidden is rescue.py.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from webhook.adapters.kube_workloads import KubeError, WorkloadApi
from webhook.adapters.progress import Progress
from webhook.core.capability import Capability
from webhook.core.errors import UnhandledObject
from webhook.core.rollout_status import rollout_status
from webhook.core.settings import Settings
from webhook.core.workload_plan import WorkloadPlan, plan_workload
from webhook.core.workload_pods import PodRef, controller_of, pods_by_workload, recreated_pod
from webhook.core.workload_rollout import Strategy
from webhook.core.workloads import namespace_of

log = logging.getLogger("webhook.patcher")

REPORTING_CONTROLLER = "v4only.io/patcher"
RETRIES = 5  # fresh reads after a 409 before giving up on one workload
POD_KEYS = ("name", "generateName", "namespace", "uid", "labels", "annotations", "ownerReferences",
            "creationTimestamp", "deletionTimestamp")
POD_SPEC_KEYS = ("nodeName", "nodeSelector", "affinity", "tolerations", "hostNetwork", "os")


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def trim_pod(pod: dict[str, Any]) -> dict[str, Any]:
    """What planning reads of a pod a controller owns; a bare pod is kept whole (it may be re-created)."""
    if controller_of(pod) is None:
        return pod
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    return {
        "kind": "Pod",
        "metadata": {k: meta[k] for k in POD_KEYS if k in meta},
        "spec": {k: spec[k] for k in POD_SPEC_KEYS if k in spec},
        "status": {k: status[k] for k in ("phase", "reason", "message") if k in status},
    }


def _trim_owned(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    return {"kind": obj.get("kind"), "metadata": {k: meta[k] for k in ("name", "namespace", "uid",
                                                                         "ownerReferences") if k in meta}}


# ---- planning


@dataclass(frozen=True, slots=True)
class Scope:
    """Which workloads: one namespace (None: all), a label selector, and the kinds (Kind names)."""

    namespace: str | None
    label_selector: str | None
    kinds: tuple[str, ...]


@dataclass
class Planner:
    """`plan_workload` with the cluster's capability, namespace labels and pods at hand."""

    capability: Capability
    namespaces: Mapping[str, Mapping[str, str]]
    settings: Settings
    strategy: Strategy
    restarted_at: str
    recreate_pods: bool = False
    # Pods by the uid of each controller above them; None: not read (restart then follows the template).
    pods_by_owner: Mapping[str, list[Mapping[str, Any]]] | None = None
    bare_pods: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> whole Pod, for re-creation

    def plan(self, obj: Mapping[str, Any], *, pods: Sequence[Mapping[str, Any]] | None = None) -> WorkloadPlan:
        meta = obj.get("metadata") or {}
        if pods is None and self.pods_by_owner is not None:
            pods = self.pods_by_owner.get(str(meta.get("uid")), [])
        namespace = namespace_of(obj)
        try:
            return plan_workload(obj, namespace_labels=self.namespaces.get(namespace), capability=self.capability,
                                 settings=self.settings, strategy=self.strategy, restarted_at=self.restarted_at,
                                 pods=pods, recreate_pods=self.recreate_pods)
        except UnhandledObject as error:
            return WorkloadPlan(kind=str(obj.get("kind")), namespace=namespace, name=str(meta.get("name")),
                                uid=str(meta.get("uid")), resource_version=str(meta.get("resourceVersion")),
                                outcome="skipped", skip="other", reason=f"cannot read it: {error}")


def read_pods(wapi: WorkloadApi, planner: Planner, scope: Scope, progress: Progress) -> None:
    """Read the pods (trimmed) and ReplicaSets in scope, so that plans can look at what runs."""
    progress.update("reading pods...", force=True)
    pods = wapi.list("Pod", namespace=scope.namespace, keep=trim_pod)
    progress.update("reading replica sets...", force=True)
    replicasets = wapi.list("ReplicaSet", namespace=scope.namespace, keep=_trim_owned)
    planner.pods_by_owner = pods_by_workload(pods, replicasets)
    planner.bare_pods = {str(p["metadata"].get("uid")): p for p in pods if controller_of(p) is None}


def plan_scope(
    wapi: WorkloadApi,
    planner: Planner,
    scope: Scope,
    progress: Progress,
    *,
    each: Callable[[Mapping[str, Any], WorkloadPlan], None] | None = None,
) -> list[WorkloadPlan]:
    """Plan every workload in scope, a page at a time; `each(obj, plan)` sees the object before it is dropped."""
    plans: list[WorkloadPlan] = []
    for kind in scope.kinds:
        listed = wapi.iterate(kind, namespace=scope.namespace, label_selector=scope.label_selector)
        for obj in listed:
            plan = planner.plan(obj)
            if each is not None:
                each(obj, plan)
            plans.append(plan)
            progress.update(f"planned {len(plans)} workloads ({kind})")
    progress.clear()
    return plans


# ---- events


class EventRecorder:
    """events.k8s.io/v1 Events on the workloads the patcher changes (client-go's tools/events shape)."""

    def __init__(self, wapi: WorkloadApi, *, instance: str = "") -> None:
        self._wapi = wapi
        self._instance = (instance or socket.gethostname())[:128]
        self.recorded = 0

    def record(self, plan: WorkloadPlan, *, reason: str, action: str, note: str, warning: bool = False) -> None:
        now = datetime.now(UTC)
        group = {"Deployment": "apps", "StatefulSet": "apps", "DaemonSet": "apps", "ReplicaSet": "apps",
                 "Job": "batch", "CronJob": "batch"}.get(plan.kind)
        event = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            # tools/events/event_recorder.go: fmt.Sprintf("%v.%x", refRegarding.Name, t.UnixNano())
            "metadata": {"name": f"{plan.name}.{time.time_ns():x}", "namespace": plan.namespace},
            "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "reportingController": REPORTING_CONTROLLER,
            "reportingInstance": self._instance,
            "action": action,
            "reason": reason,
            "regarding": {"apiVersion": f"{group}/v1" if group else "v1", "kind": plan.kind,
                          "namespace": plan.namespace, "name": plan.name, "uid": plan.uid},
            "note": note[:1024],  # validation: note at most 1 kB
            "type": "Warning" if warning else "Normal",
        }
        try:
            self._wapi.create_event(plan.namespace, event)
            self.recorded += 1
        except KubeError as error:  # an Event is a courtesy: never a reason to stop
            log.warning("could not record an event on %s %s/%s: %s", plan.kind, plan.namespace, plan.name, error)


# ---- acting


@dataclass(frozen=True, slots=True)
class ActionResult:
    plan: WorkloadPlan
    ok: bool
    result: str  # restarted | patched | re-created | pods deleted | rolled out | dry run ok | unchanged | failed ...
    detail: str = ""


DONE_WORDS = {"restart": "restarted", "patch": "patched", "recreate": "re-created", "delete-pods": "pods deleted"}
EVENT_REASONS = {"restart": "RemedyRestart", "patch": "RemedyPatch", "recreate": "RemedyRecreate",
                 "delete-pods": "RemedyDeletePods"}


class Executor:
    """Sends plans: conflict retries, rollouts followed `max_in_flight` at a time, stop at the first failure."""

    def __init__(
        self,
        wapi: WorkloadApi,
        planner: Planner,
        *,
        dry_run: bool,
        events: EventRecorder | None = None,
        progress: Progress | None = None,
        timeout: float = 600.0,
        poll_initial: float = 0.1,
        poll_max: float = 2.0,
        retries: int = RETRIES,
    ) -> None:
        self._wapi, self._planner, self.dry_run = wapi, planner, dry_run
        self._events, self.progress = events, progress or Progress(enabled=False)
        self._timeout, self._poll_initial, self._poll_max, self._retries = timeout, poll_initial, poll_max, retries
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._done = 0

    # -- many

    def run(self, plans: Sequence[WorkloadPlan], *, max_in_flight: int, wait: bool) -> list[ActionResult]:
        """Act on every changed plan; with `wait`, each rollout must finish before its slot takes the next.
        After a failure no new action starts (those are reported `not started`)."""
        todo = [p for p in plans if p.outcome == "changed"]
        total = len(todo)

        def one(plan: WorkloadPlan) -> ActionResult:
            if self.stopping.is_set():
                return ActionResult(plan, False, "not started", "stopped after a failure")
            result = self.send(plan)
            if result.ok and wait and not self.dry_run and result.plan.waitable:
                result = self.wait_rollout(result)
            if not result.ok and not self.dry_run:
                self.stopping.set()
            with self._lock:
                self._done += 1
                self.progress.update(f"{self._done}/{total} done, {result.plan.kind} {result.plan.name}: "
                                      f"{result.result}")
            return result

        with ThreadPoolExecutor(max(1, max_in_flight), thread_name_prefix="v4only-patch") as pool:
            results = list(pool.map(one, todo))
        self.progress.clear()
        return results

    # -- one

    def send(self, plan: WorkloadPlan) -> ActionResult:
        """One action, with conflict retries; no waiting."""
        try:
            if plan.recreate:
                return self._recreate(plan)
            for attempt in range(self._retries + 1):
                try:
                    if plan.patch:
                        self._wapi.json_patch(plan.kind, plan.namespace, plan.name, plan.patch, dry_run=self.dry_run)
                    break
                except KubeError as error:
                    if error.status != 409:
                        raise
                    if attempt == self._retries:
                        return ActionResult(plan, False, "failed", f"409 Conflict {attempt + 1} times: it kept "
                                            "changing while being patched; run again")
                    fresh = self._wapi.get(plan.kind, plan.namespace, plan.name)
                    if fresh is None:
                        return ActionResult(plan, True, "gone", "deleted meanwhile")
                    replanned = self._planner.plan(fresh)
                    if replanned.outcome != "changed" or replanned.action != plan.action:
                        return ActionResult(replanned, True, "unchanged", f"changed meanwhile: {replanned.reason}")
                    plan = replanned
            deleted = self._delete_pods(plan.namespace, plan.delete_pods)
        except KubeError as error:
            return ActionResult(plan, False, "failed", str(error))
        detail = f"{deleted} pods deleted" if plan.delete_pods else ""
        if self.dry_run:
            return ActionResult(plan, True, "dry run ok", detail)
        self.record(plan, DONE_WORDS[plan.action], detail)
        return ActionResult(plan, True, DONE_WORDS[plan.action], detail)

    def wait_rollout(self, sent: ActionResult) -> ActionResult:
        """Follow the rollout `sent` started until it is done, fails, or `timeout` passes."""
        plan = sent.plan
        deadline = time.monotonic() + self._timeout
        delay = self._poll_initial
        message = "rollout not observed yet"
        while not self.stopping.is_set():
            try:
                obj = self._wapi.get(plan.kind, plan.namespace, plan.name)
            except KubeError as error:
                message = f"cannot read it: {error}"
                obj = None
            if obj is not None:
                status = rollout_status(obj)
                message = status.message
                if status.failed:
                    self.record(plan, "rollout failed", message, warning=True)
                    return replace(sent, ok=False, result="rollout failed", detail=message)
                if status.done:
                    return replace(sent, result="rolled out", detail=message)
            if time.monotonic() + delay > deadline:
                detail = f"timed out after {self._timeout:.0f}s: {message}"
                self.record(plan, "rollout failed", detail, warning=True)
                return replace(sent, ok=False, result="rollout timed out", detail=detail)
            self.progress.update(f"{plan.kind} {plan.namespace}/{plan.name}: {message}")
            self.stopping.wait(delay)
            delay = min(self._poll_max, delay * 1.5)
        return replace(sent, result=f"{sent.result}, not awaited", detail="stopped after another failure")

    def _recreate(self, plan: WorkloadPlan) -> ActionResult:
        pod = self._planner.bare_pods.get(plan.uid)
        if pod is None:
            return ActionResult(plan, False, "failed", "the pod was not read")
        ops = plan.template_ops if plan.strategy == "template" else ()
        body = recreated_pod(pod, ops)
        if self.dry_run:  # the name is still taken (the deletion is a dry run too): let the server pick one
            body["metadata"]["generateName"] = f"{body['metadata'].pop('name', plan.name)}-"
            self._wapi.delete_pod(plan.namespace, plan.name, uid=plan.uid, dry_run=True)
            self._wapi.create_pod(plan.namespace, body, dry_run=True)
            return ActionResult(plan, True, "dry run ok")
        self._wapi.delete_pod(plan.namespace, plan.name, uid=plan.uid, dry_run=False)
        self._wait_gone(plan)
        try:
            self._wapi.create_pod(plan.namespace, body, dry_run=False)
        except KubeError as error:
            log.error("pod %s/%s was deleted but not created again: %s; its manifest: %s", plan.namespace, plan.name,
                      error, body)
            return ActionResult(plan, False, "failed", f"deleted, but creating it again failed: {error} "
                                "(the manifest is in the log)")
        self.record(plan, "re-created", "")
        return ActionResult(plan, True, "re-created")

    def _wait_gone(self, plan: WorkloadPlan) -> None:
        deadline = time.monotonic() + self._timeout
        delay = self._poll_initial
        while time.monotonic() < deadline:
            current = self._wapi.get("Pod", plan.namespace, plan.name)
            if current is None or (current.get("metadata") or {}).get("uid") != plan.uid:
                return
            self.progress.update(f"waiting for pod {plan.namespace}/{plan.name} to terminate")
            time.sleep(delay)
            delay = min(self._poll_max, delay * 1.5)
        raise KubeError(0, f"pod {plan.namespace}/{plan.name} still terminating after {self._timeout:.0f}s")

    def _delete_pods(self, namespace: str, pods: Iterable[PodRef]) -> int:
        return sum(self._wapi.delete_pod(namespace, p.name, uid=p.uid, dry_run=self.dry_run) for p in pods)

    def record(self, plan: WorkloadPlan, what: str, detail: str, *, warning: bool = False,
               reason: str = "", action: str = "") -> None:
        """An Event on the workload (not in a dry run): `v4only <what> it for the <remedy> remedy: <reason>`."""
        if self._events is None or self.dry_run:
            return
        remedy = plan.decision.remedy if plan.decision is not None else "?"
        note = f"v4only {what} it for the {remedy} remedy: {plan.reason}" + (f" ({detail})" if detail else "")
        self._events.record(
            plan,
            reason=reason or ("RolloutFailed" if warning else EVENT_REASONS.get(plan.action, "Remedy")),
            action=action or plan.action.title().replace("-", "") or "Patch",
            note=note,
            warning=warning,
        )


