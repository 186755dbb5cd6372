"""The Kubernetes calls of the workload patcher (`v4only patch`, `serve --reconcile`): plain dicts in and out.

It rides on `KubeApi`'s connection (the same ApiClient, kubeconfig and `KubeError`); the paths are here,
next to the permissions they need (`webhook/adapters/rbac_patcher.py`). Lists are paginated, and objects
come back with `kind` and `apiVersion` set (a typed list's items carry neither on the wire).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from webhook.adapters.kube import PAGE_SIZE, KubeApi, KubeError

__all__ = ["KINDS", "KubeError", "WorkloadApi", "WorkloadKind"]

JSON_PATCH = "application/json-patch+json"
EVENTS = "/apis/events.k8s.io/v1/namespaces/{namespace}/events"


@dataclass(frozen=True, slots=True)
class WorkloadKind:
    kind: str
    group: str
    plural: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/v1" if self.group else "v1"

    def collection(self, namespace: str | None) -> str:
        prefix = f"/apis/{self.group}/v1" if self.group else "/api/v1"
        if namespace:
            return f"{prefix}/namespaces/{quote(namespace, safe='')}/{self.plural}"
        return f"{prefix}/{self.plural}"


KINDS: Mapping[str, WorkloadKind] = {
    k.kind: k
    for k in (
        WorkloadKind("Deployment", "apps", "deployments"),
        WorkloadKind("StatefulSet", "apps", "statefulsets"),
        WorkloadKind("DaemonSet", "apps", "daemonsets"),
        WorkloadKind("ReplicaSet", "apps", "replicasets"),
        WorkloadKind("Job", "batch", "jobs"),
        WorkloadKind("CronJob", "batch", "cronjobs"),
        WorkloadKind("Pod", "", "pods"),
    )
}
BY_PLURAL: Mapping[str, WorkloadKind] = {k.plural: k for k in KINDS.values()}


class WorkloadApi:
    """Lists, reads, JSON patches, pod deletion and creation, and Events, over one `KubeApi`."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api

    def iterate(
        self,
        kind: str,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every object of `kind` in `namespace` (None: all namespaces), read a page at a time, so the
        caller can reduce each one as it comes and never hold the whole list."""
        workload = KINDS[kind]
        query = {"limit": str(PAGE_SIZE)}
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        while True:
            page = self.api.request("GET", workload.collection(namespace), query=query)
            items, token = page.get("items") or [], (page.get("metadata") or {}).get("continue")
            del page
            for item in items:
                if isinstance(item, dict):
                    item["kind"], item["apiVersion"] = workload.kind, workload.api_version
                    yield item
            if not token:
                return
            query["continue"] = str(token)

    def list(
        self,
        kind: str,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        keep: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """`iterate` into a list; `keep` trims each object as its page arrives."""
        items = self.iterate(kind, namespace=namespace, label_selector=label_selector, field_selector=field_selector)
        return [keep(item) for item in items] if keep else list(items)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist (any more)."""
        workload = KINDS[kind]
        try:
            obj = self.api.request("GET", f"{workload.collection(namespace)}/{quote(name, safe='')}")
        except KubeError as error:
            if error.status == 404:
                return None
            raise
        obj["kind"], obj["apiVersion"] = workload.kind, workload.api_version
        return obj

    def json_patch(
        self, kind: str, namespace: str, name: str, ops: Sequence[Mapping[str, Any]], *, dry_run: bool
    ) -> dict[str, Any]:
        """RFC 6902 PATCH; `dry_run` sends `dryRun=All` (admission and validation run, nothing is stored)."""
        workload = KINDS[kind]
        return self.api.request(
            "PATCH",
            f"{workload.collection(namespace)}/{quote(name, safe='')}",
            query=_dry_run(dry_run),
            body=list(ops),
            content_type=JSON_PATCH,
        )

    def delete_pod(self, namespace: str, name: str, *, uid: str, dry_run: bool) -> bool:
        """Delete the pod with this uid (a precondition: never a new pod that reuses the name); False if gone."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid}}
        try:
            self.api.request("DELETE", f"{KINDS['Pod'].collection(namespace)}/{quote(name, safe='')}",
                             query=_dry_run(dry_run), body=body)
        except KubeError as error:
            if error.status == 404:
                return False
            raise
        return True

    def create_pod(self, namespace: str, pod: Mapping[str, Any], *, dry_run: bool) -> dict[str, Any]:
        return self.api.request("POST", KINDS["Pod"].collection(namespace), query=_dry_run(dry_run), body=pod)

    def create_event(self, namespace: str, event: Mapping[str, Any]) -> None:
        """An events.k8s.io/v1 Event in `namespace` (the namespace of the object it is about)."""
        self.api.request("POST", EVENTS.format(namespace=quote(namespace, safe="")), body=event)

    def label_node(self, node: str, labels: Mapping[str, str | None]) -> None:
        """The capability tracker's own label writer (a merge patch of metadata.labels)."""
        self.api.patch_node_labels(node, labels)


def _dry_run(dry_run: bool) -> dict[str, str] | None:
    return {"dryRun": "All"} if dry_run else None
