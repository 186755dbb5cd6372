"""REST semantics on top of the store: what k8s.io/apiserver's generic registry.Store and the built-in
types' strategies do on get, list, create, update, patch and delete.

Modelled: system metadata (uid, creationTimestamp, resourceVersion, generation), generateName,
optimistic concurrency (409 Conflict), AlreadyExists, status-subresource separation, no-op updates that
keep the resourceVersion, DeleteOptions preconditions, dryRun=All, the NamespaceLifecycle 404 for a
missing namespace, list paging with continue tokens, and the default status a created Pod gets.
Not modelled (APPROXIMATIONS): validation and defaulting of specs, admission, garbage collection by
ownerReferences, graceful deletion (objects go at once; a deleted Namespace takes its contents with it
immediately instead of passing through Terminating), managedFields, and historical list snapshots
(a list at an old resourceVersion, or a continued list, shows current objects).
"""

from __future__ import annotations

import base64
import copy
import json
import random
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from . import patching
from .resources import ResourceType, by_kind, from_storage, to_storage
from .selectors import field_matcher, label_matcher
from .status import (
    CONTINUE_TOO_OLD,
    LIST_TOO_OLD,
    already_exists,
    bad_request,
    conflict,
    delete_success,
    invalid,
    not_found,
)
from .store import Key, Obj, Store, meta

NAMESPACES = by_kind("Namespace")
# k8s.io/apimachinery/pkg/util/rand: the alphabet generateName suffixes are drawn from
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
# k8s.io/api/core/v1 LabelMetadataName, set on every Namespace by the apiserver since 1.21
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pod_qos(pod: Obj) -> str:
    """v1qos.GetPodQOS, reduced to cpu and memory."""
    spec = pod.get("spec") or {}
    containers = (spec.get("containers") or []) + (spec.get("initContainers") or [])
    resources = [c.get("resources") or {} for c in containers]
    requests = [r.get("requests") or {} for r in resources]
    limits = [r.get("limits") or {} for r in resources]
    if not any(any(k in d for k in ("cpu", "memory")) for d in requests + limits):
        return "BestEffort"
    guaranteed = all(
        all(k in lim and req.get(k, lim[k]) == lim[k] for k in ("cpu", "memory"))
        for req, lim in zip(requests, limits, strict=True)
    )
    return "Guaranteed" if guaranteed else "Burstable"


def _without_rv(obj: Obj) -> Obj:
    out = copy.deepcopy(obj)
    meta(out).pop("resourceVersion", None)
    return out


class Registry:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._conflicts: dict[tuple[str, str, str | None], int] = {}
        self._conflicts_lock = threading.Lock()

    # ---------------------------------------------------------------- helpers

    @staticmethod
    def key(rt: ResourceType, namespace: str, name: str) -> Key:
        return (*rt.store_key, namespace if rt.namespaced else "", name)

    def _existing(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        obj = self.store.get(self.key(rt, namespace, name))
        if obj is None:
            raise not_found(rt.group, rt.plural, name)
        return obj

    def conflict_next(self, rt: ResourceType, name: str, namespace: str | None, times: int) -> None:
        with self._conflicts_lock:
            self._conflicts[(rt.plural, name, namespace)] = times

    def _take_injected_conflict(self, rt: ResourceType, namespace: str, name: str) -> bool:
        with self._conflicts_lock:
            for slot in ((rt.plural, name, namespace), (rt.plural, name, None)):
                if self._conflicts.get(slot, 0) > 0:
                    self._conflicts[slot] -= 1
                    return True
        return False

    # ---------------------------------------------------------------- reads

    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        return from_storage(rt, self._existing(rt, namespace, name))

    def list(self, rt: ResourceType, namespace: str, query: dict[str, str]) -> Obj:
        labels = label_matcher(query.get("labelSelector"))
        fields = field_matcher(rt, query.get("fieldSelector"))
        match = query.get("resourceVersionMatch", "")
        if match and not query.get("resourceVersion"):
            raise bad_request("resourceVersionMatch is forbidden unless resourceVersion is provided")
        start, continued_rv = "", None
        if query.get("continue"):
            token = _decode_continue(query["continue"])
            self.store.check_not_expired(token["rv"], CONTINUE_TOO_OLD)
            start, continued_rv = token["start"], token["rv"]
        limit = _int(query.get("limit") or "0")
        with self.store.lock:
            rv = self.store.resource_version if continued_rv is None else continued_rv
            if match == "Exact":
                self.store.check_not_expired(_int(query["resourceVersion"]), LIST_TOO_OLD)
            # Selected from the stored objects without copying them; only the page sent is copied.
            views = (from_storage(rt, o) for o in self.store.scan(rt.store_key, namespace))
            matched = [o for o in views if _item_key(o) >= start and labels(meta(o).get("labels") or {}) and fields(o)]
            remaining = len(matched) - limit if 0 < limit < len(matched) else 0
            items = copy.deepcopy(matched[:limit] if remaining else matched)
        list_meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if remaining:
            list_meta["continue"] = _encode_continue(rv, _item_key(items[-1]) + "\x00")
            if not query.get("labelSelector") and not query.get("fieldSelector"):
                list_meta["remainingItemCount"] = remaining  # only set for unfiltered lists
        # items in a typed list carry no kind/apiVersion on the wire; only the list itself does
        bare = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in items]
        return {"kind": f"{rt.kind}List", "apiVersion": rt.api_version, "metadata": list_meta, "items": bare}

    # ---------------------------------------------------------------- writes

    def create(self, rt: ResourceType, namespace: str, body: Obj, *, dry_run: bool = False) -> Obj:
        obj = to_storage(rt, copy.deepcopy(body))
        md = meta(obj)
        if md.get("resourceVersion"):
            raise bad_request("resourceVersion should not be set on objects to be created")
        self._check_namespace(rt, namespace, md)
        with self.store.lock:
            if not md.get("name"):
                if not md.get("generateName"):
                    raise invalid(rt.group, rt.kind, "", "metadata.name", "Required value",
                                  "name or generateName is required")
                md["name"] = md["generateName"] + "".join(random.choices(_NAME_ALPHABET, k=5))
            key = self.key(rt, namespace, md["name"])
            if self.store.get(key) is not None:
                raise already_exists(rt.group, rt.plural, md["name"])
            if rt.namespaced and self.store.get(self.key(NAMESPACES, "", namespace)) is None:
                # NamespaceLifecycle admission
                raise not_found("", "namespaces", namespace)
            self._prepare_create(rt, obj)
            if dry_run:  # the dry-run storage copies the object back without a resourceVersion
                return from_storage(rt, obj)
            self.store.commit(key, obj)
            return from_storage(rt, self._existing(rt, namespace, md["name"]))

    @staticmethod
    def _check_namespace(rt: ResourceType, namespace: str, md: dict[str, Any]) -> None:
        if not rt.namespaced:
            md.pop("namespace", None)
            return
        if md.get("namespace") and md["namespace"] != namespace:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        md["namespace"] = namespace

    @staticmethod
    def _prepare_create(rt: ResourceType, obj: Obj) -> None:
        md = meta(obj)
        md["uid"] = str(uuid.uuid4())
        md["creationTimestamp"] = now()
        for system_field in ("deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
            md.pop(system_field, None)
        if rt.generation_fields:
            md["generation"] = 1
        if rt.plural == "pods":  # podStrategy.PrepareForCreate
            obj["status"] = {"phase": "Pending", "qosClass": _pod_qos(obj)}
        elif rt.plural == "namespaces":  # namespaceStrategy.PrepareForCreate
            obj["status"] = {"phase": "Active"}
            obj.setdefault("spec", {})["finalizers"] = ["kubernetes"]
        elif rt.has_status and rt.plural != "nodes":  # nodes are the one type created with status
            obj["status"] = {}
        if rt.plural == "namespaces":
            md.setdefault("labels", {})[NAMESPACE_NAME_LABEL] = md["name"]

    def update(self, rt: ResourceType, namespace: str, name: str, body: Obj, *,
               subresource: str = "", dry_run: bool = False) -> Obj:
        new = to_storage(rt, copy.deepcopy(body))
        md = meta(new)
        if md.get("name") != name:
            raise bad_request(f"the name of the object ({md.get('name', '')}) does not match the name on the URL ({name})")
        self._check_namespace(rt, namespace, md)
        with self.store.lock:
            old = self._existing(rt, namespace, name)
            return self._write_update(rt, namespace, name, old, new, subresource, dry_run)

    def patch(self, rt: ResourceType, namespace: str, name: str, content_type: str, body: Any, *,
              subresource: str = "", dry_run: bool = False) -> Obj:
        with self.store.lock:
            old = self._existing(rt, namespace, name)
            patched = to_storage(rt, patching.apply(content_type, from_storage(rt, old), body))
            return self._write_update(rt, namespace, name, old, patched, subresource, dry_run)

    def _write_update(self, rt: ResourceType, namespace: str, name: str, old: Obj, new: Obj,
                      subresource: str, dry_run: bool) -> Obj:
        if self._take_injected_conflict(rt, namespace, name):
            raise conflict(rt.group, rt.plural, name)
        sent_rv = meta(new).get("resourceVersion")
        if sent_rv and sent_rv != meta(old)["resourceVersion"]:
            raise conflict(rt.group, rt.plural, name)
        merged = self._prepare_update(rt, old, new, subresource)
        if _without_rv(merged) == _without_rv(old):
            return from_storage(rt, old)  # no-op: etcd is not written, resourceVersion stays
        if dry_run:
            meta(merged)["resourceVersion"] = meta(old)["resourceVersion"]
            return from_storage(rt, merged)
        self.store.commit(self.key(rt, namespace, name), merged)
        return from_storage(rt, self._existing(rt, namespace, name))

    @staticmethod
    def _prepare_update(rt: ResourceType, old: Obj, new: Obj, subresource: str) -> Obj:
        if subresource == "status":  # status strategies keep everything but status
            merged = copy.deepcopy(old)
            merged["status"] = new.get("status")
            return merged
        merged = copy.deepcopy(new)
        if rt.has_status:  # the main resource cannot change status (and /status cannot change the rest)
            merged.pop("status", None)
            if "status" in old:
                merged["status"] = copy.deepcopy(old["status"])
        md, old_md = meta(merged), meta(old)
        for system_field in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp", "generation"):
            if system_field in old_md:
                md[system_field] = old_md[system_field]
            else:
                md.pop(system_field, None)
        if rt.generation_fields and any(old.get(f) != merged.get(f) for f in rt.generation_fields):
            md["generation"] = int(old_md.get("generation", 0)) + 1
        if rt.plural == "namespaces":
            md.setdefault("labels", {})[NAMESPACE_NAME_LABEL] = md["name"]
        return merged

    def delete(self, rt: ResourceType, namespace: str, name: str, options: Obj | None, *,
               dry_run: bool = False) -> Obj:
        with self.store.lock:
            old = self._existing(rt, namespace, name)
            old_md = meta(old)
            preconditions = (options or {}).get("preconditions") or {}
            # storage.Preconditions.Check; the apiserver reports the failure as a Conflict
            for field_name, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
                wanted = preconditions.get(field_name)
                if wanted and wanted != old_md.get(field_name):
                    raise conflict(rt.group, rt.plural, name,
                                   f"Precondition failed: {label} in precondition: {wanted}, "
                                   f"{label} in object meta: {old_md.get(field_name)}")
            if not dry_run:
                if rt.plural == "namespaces":
                    for key in self.store.keys_in_namespace(name):
                        self.store.commit(key, None)
                self.store.commit(self.key(rt, namespace, name), None)
        if rt.returns_deleted:
            return from_storage(rt, old)
        return delete_success(rt.group, rt.plural, name, old_md.get("uid", ""))

    # ---------------------------------------------------------------- direct access for tests

    def put(self, obj: Obj) -> Obj:
        """Store `obj` as given (no validation, status kept), filling only missing system metadata."""
        rt = by_kind(obj["kind"], obj.get("apiVersion"))
        new = to_storage(rt, copy.deepcopy(obj))
        md = meta(new)
        namespace = md.setdefault("namespace", "default") if rt.namespaced else ""
        if rt.plural == "namespaces":
            md.setdefault("labels", {})[NAMESPACE_NAME_LABEL] = md["name"]
        with self.store.lock:
            old = self.store.get(self.key(rt, namespace, md["name"]))
            old_md = meta(old) if old else {}
            md.setdefault("uid", old_md.get("uid") or str(uuid.uuid4()))
            md.setdefault("creationTimestamp", old_md.get("creationTimestamp") or now())
            if rt.generation_fields and "generation" not in md:
                changed = old is None or any(old.get(f) != new.get(f) for f in rt.generation_fields)
                md["generation"] = int(old_md.get("generation", 0)) + (1 if changed else 0)
            md.pop("resourceVersion", None)
            self.store.commit(self.key(rt, namespace, md["name"]), new)
            return from_storage(rt, self._existing(rt, namespace, md["name"]))

    def remove(self, rt: ResourceType, namespace: str, name: str) -> bool:
        return self.store.commit(self.key(rt, namespace, name), None) is not None


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise bad_request(f"invalid resource version or limit: {value!r}") from None


def _item_key(obj: Obj) -> str:
    md = meta(obj)
    return f"{md.get('namespace', '')}/{md['name']}"


# Continue tokens: k8s.io/apiserver/pkg/storage/continue.go encodes {"v","rv","start"} as RawURL base64.
def _encode_continue(rv: int, start: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_continue(token: str) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        int(data["rv"])
        str(data["start"])
    except (ValueError, KeyError, TypeError):
        raise bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)") from None
    return data
