"""The Kubernetes API permissions of the workload patcher, as (apiGroup, resource, verb) triples.

Kept next to the code that makes the calls (`webhook/adapters/kube_workloads.py`, used by webhook/patcher
and `webhook/cli/patch.py`). The tests against the fake API server check that each command
makes no call outside its set, and the optional ClusterRole in manifests/patcher/ must grant exactly
`PATCHER`: what the patcher uses beyond what `v4only serve` already has (webhook/adapters/rbac_used.py).
"""

from __future__ import annotations

from webhook.adapters.rbac_used import DOCTOR, LABEL_PUBLISHER, PROXY_FALLBACK, SERVE, Permission

_APPS = ("deployments", "statefulsets", "daemonsets", "replicasets")
_EVENTS: Permission = ("events.k8s.io", "events", "create")  # an Event on each workload changed


def _each(group: str, resources: tuple[str, ...], verbs: tuple[str, ...]) -> frozenset[Permission]:
    return frozenset((group, resource, verb) for resource in resources for verb in verbs)


# `v4only patch` (all dry-run modes): capability as `doctor` reads it; list the workloads and the pods
# and ReplicaSets under them; patch (get again after a 409, and to follow a rollout); Jobs are only
# listed (with --kind jobs); --recreate-pods deletes a pod, waits for it to go, and creates it again.
PATCH_CMD: frozenset[Permission] = (
    DOCTOR
    | _each("apps", _APPS, ("list", "get", "patch"))
    | _each("batch", ("cronjobs",), ("list", "get", "patch"))
    | {("batch", "jobs", "list"), ("", "pods", "get"), ("", "pods", "create"), ("", "pods", "delete"), _EVENTS}
)

# `v4only patch --rescue`: failed pods, their owners (pod -> ReplicaSet -> Deployment, StatefulSet,
# DaemonSet, Job), a patch of each owner, the node label, the deletion of failed pods.
RESCUE_CMD: frozenset[Permission] = (
    DOCTOR
    | _each("apps", _APPS, ("get", "patch"))
    | {("batch", "jobs", "get"), ("", "pods", "get"), ("", "pods", "create"), ("", "pods", "delete"),
       ("", "nodes", "patch"), _EVENTS}
)

# `v4only serve --reconcile`, on top of the tracker: its own Lease, a watch of failed pods, owners,
# restarts (a namespace's Deployments, StatefulSets and DaemonSets, with their pods and ReplicaSets).
RECONCILER: frozenset[Permission] = (
    (LABEL_PUBLISHER - {("", "nodes", "patch")})
    | _each("apps", ("deployments", "statefulsets", "daemonsets"), ("list", "get", "patch"))
    | _each("apps", ("replicasets",), ("list", "get"))
    | {("", "pods", "list"), ("", "pods", "watch"), ("", "pods", "delete"), ("batch", "jobs", "get"), _EVENTS}
)

# What manifests/patcher/clusterrole.yaml grants: all of the above that `serve` does not have already. The
# node proxy (doctor's configz fallback) stays with manifests/configz-via-proxy: never granted on the way.
PATCHER: frozenset[Permission] = (PATCH_CMD | RESCUE_CMD | RECONCILER) - SERVE - PROXY_FALLBACK
