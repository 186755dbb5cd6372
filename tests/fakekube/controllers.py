"""What the workload controllers write to `status` while a rollout proceeds, so rollout followers can be tested.

Only status is modelled: no ReplicaSets or Pods are created. Each tick moves every rollout one step,
observed -> progressing -> done (or failed), through the /status subresource as the controllers write it
(so every step is a write with a new resourceVersion, as in a real cluster). Field meanings and values:
- Deployment (pkg/controller/deployment, deployment/util/deployment_util.go): `observedGeneration`, then
  the new ReplicaSet's pods are updated and available. The Progressing condition reads reason
  `ReplicaSetUpdated` ("ReplicaSet \"N\" is progressing.") while it goes, `NewReplicaSetAvailable`
  ("ReplicaSet \"N\" has successfully progressed.") when done, and for a Deployment told to fail, status
  False with reason `ProgressDeadlineExceeded` ("ReplicaSet \"N\" has timed out progressing.").
- StatefulSet (pkg/controller/statefulset): `updateRevision` moves to a new controller revision, pods are
  updated, then `currentRevision` follows; a failing one never gets its pods ready.
- DaemonSet (pkg/controller/daemon): `updatedNumberScheduled` then `numberAvailable` reach
  `desiredNumberScheduled`; a failing one never gets its updated pods available.
"""

from __future__ import annotations

import copy
import threading
from typing import TYPE_CHECKING, Any

from .registry import now
from .resources import by_kind
from .status import ApiError
from .store import meta

if TYPE_CHECKING:
    from .server import FakeKube

KINDS = ("Deployment", "StatefulSet", "DaemonSet")


class RolloutSimulator:
    """Start with `start()` (or as a context manager); `fail(kind, namespace, name)` makes a rollout fail."""

    def __init__(self, kube: FakeKube, *, interval: float = 0.05) -> None:
        self._kube, self._interval = kube, interval
        self._failing: set[tuple[str, str, str]] = set()
        self._steps: dict[tuple[str, int], int] = {}  # (uid, generation) -> steps taken
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fakekube-rollouts", daemon=True)
        self.completed: list[tuple[str, str, str]] = []  # rollouts finished, in order
        self.in_flight_max = 0  # the most rollouts seen progressing at once

    def fail(self, kind: str, namespace: str, name: str) -> None:
        self._failing.add((kind, namespace, name))

    def start(self) -> RolloutSimulator:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def __enter__(self) -> RolloutSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            in_flight = 0
            for kind in KINDS:
                for obj in self._kube.list_objects(kind):
                    in_flight += self._step(kind, obj)
            self.in_flight_max = max(self.in_flight_max, in_flight)

    def _step(self, kind: str, obj: dict[str, Any]) -> int:
        md = meta(obj)
        generation = int(md.get("generation") or 1)
        status = obj.get("status") or {}
        if int(status.get("observedGeneration") or 0) >= generation and (md["uid"], generation) not in self._steps:
            return 0  # nothing new since the object was put in place
        key = (md["uid"], generation)
        step = self._steps.get(key, 0)
        if step >= 2:
            return 0
        self._steps[key] = step + 1
        failing = (kind, md.get("namespace", ""), md["name"]) in self._failing
        new_status = getattr(self, f"_{kind.lower()}")(obj, copy.deepcopy(status), generation, step + 1, failing)
        try:
            self._kube.registry.update(by_kind(kind), md.get("namespace", ""), md["name"],
                                       {**obj, "status": new_status}, subresource="status")
        except ApiError:
            self._steps[key] = step  # changed meanwhile: try again next tick
            return 1
        if step + 1 == 2 and not failing:
            self.completed.append((kind, md.get("namespace", ""), md["name"]))
        return 1 if step + 1 < 2 else 0

    @staticmethod
    def _deployment(obj: dict[str, Any], status: dict[str, Any], generation: int, step: int,
                    failing: bool) -> dict[str, Any]:
        replicas = int((obj.get("spec") or {}).get("replicas", 1))
        rs_name = f"{meta(obj)['name']}-{generation:x}f7c9d8b6"
        ts = now()
        status.update(observedGeneration=generation)
        if step == 1:
            status.update(replicas=replicas + 1, updatedReplicas=1, readyReplicas=replicas,
                          availableReplicas=replicas, unavailableReplicas=1)
            progressing = {"type": "Progressing", "status": "True", "lastUpdateTime": ts, "lastTransitionTime": ts,
                           "reason": "ReplicaSetUpdated", "message": f'ReplicaSet "{rs_name}" is progressing.'}
        elif failing:
            progressing = {"type": "Progressing", "status": "False", "lastUpdateTime": ts, "lastTransitionTime": ts,
                           "reason": "ProgressDeadlineExceeded",
                           "message": f'ReplicaSet "{rs_name}" has timed out progressing.'}
        else:
            status.update(replicas=replicas, updatedReplicas=replicas, readyReplicas=replicas,
                          availableReplicas=replicas)
            status.pop("unavailableReplicas", None)
            progressing = {"type": "Progressing", "status": "True", "lastUpdateTime": ts, "lastTransitionTime": ts,
                           "reason": "NewReplicaSetAvailable",
                           "message": f'ReplicaSet "{rs_name}" has successfully progressed.'}
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != "Progressing"]
        status["conditions"] = [*conditions, progressing]
        return status

    @staticmethod
    def _statefulset(obj: dict[str, Any], status: dict[str, Any], generation: int, step: int,
                     failing: bool) -> dict[str, Any]:
        replicas = int((obj.get("spec") or {}).get("replicas", 1))
        revision = f"{meta(obj)['name']}-{generation:x}5c8b7d9f"
        status.update(observedGeneration=generation, updateRevision=revision)
        if step == 1 or failing:
            status.update(updatedReplicas=max(0, replicas - 1) if not failing else 0,
                          readyReplicas=max(0, replicas - 1), availableReplicas=max(0, replicas - 1))
        else:
            status.update(updatedReplicas=replicas, readyReplicas=replicas, availableReplicas=replicas,
                          currentReplicas=replicas, currentRevision=revision)
        return status

    @staticmethod
    def _daemonset(obj: dict[str, Any], status: dict[str, Any], generation: int, step: int,
                   failing: bool) -> dict[str, Any]:
        desired = int(status.get("desiredNumberScheduled") or 1)
        status.update(observedGeneration=generation)
        if step == 1:
            status.update(updatedNumberScheduled=0, numberAvailable=max(0, desired - 1),
                          numberUnavailable=1)
        elif failing:
            status.update(updatedNumberScheduled=desired, numberAvailable=max(0, desired - 1),
                          numberUnavailable=1)
        else:
            status.update(updatedNumberScheduled=desired, numberAvailable=desired, numberReady=desired)
            status.pop("numberUnavailable", None)
        return status
