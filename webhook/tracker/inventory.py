"""What the tracker keeps (node facts, kubelet identities, evidence, namespace labels) and the trimming of
objects as they arrive. No I/O: the coordinator is its only writer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from webhook.adapters.kube import Resource
from webhook.core.capability import NodeFacts, node_facts_from_object
from webhook.core.evidence import rejection_from_pod


class Inventory:
    """What the tracker keeps: node facts, kubelet identities, evidence and namespace labels. No I/O."""

    def __init__(self, managed: Iterable[str]) -> None:
        self._managed = tuple(managed)
        self._nodes: dict[str, NodeFacts] = {}
        self._kubelets: dict[str, tuple[str, str]] = {}  # node -> (bootID, kubeletVersion)
        self._endpoints: dict[str, Mapping[str, Any]] = {}  # node -> its addresses and kubelet port, as a Node
        self._ready_since: dict[str, str] = {}  # node -> its Ready condition's lastTransitionTime
        self._last_allowlist: dict[str, tuple[str, ...]] = {}  # node -> last allowlist actually read
        self._unread: set[str] = set()  # nodes whose configz has not answered since they (re)appeared
        self._evidence: dict[str, tuple[str, frozenset[str]]] = {}  # pod uid -> (node, refused names)
        self._dismissed: set[str] = set()  # pod uids whose evidence a later kubelet change voided
        self._namespaces: dict[str, Mapping[str, str]] = {}

    # ---- nodes

    def replace_nodes(self, objects: Iterable[Mapping[str, Any]]) -> tuple[bool, set[str]]:
        """A full node list: (anything changed, nodes whose configz must be read)."""
        seen: set[str] = set()
        changed, refetch = False, set()
        for obj in objects:
            name, node_changed, node_refetch = self.upsert_node(obj)
            seen.add(name)
            changed |= node_changed
            if node_refetch:
                refetch.add(name)
        for name in set(self._nodes) - seen:
            changed |= self.remove_node(name)
        return changed, refetch

    def upsert_node(self, obj: Mapping[str, Any]) -> tuple[str, bool, bool]:
        """(name, facts changed, configz must be read): new node, or its kubelet restarted or changed."""
        facts = node_facts_from_object(obj)
        status = obj.get("status") or {}
        info = status.get("nodeInfo") or {}
        kubelet = (str(info.get("bootID") or ""), facts.kubelet_version)
        ready_since = _ready_transition(status)
        old, old_kubelet = self._nodes.get(facts.name), self._kubelets.get(facts.name)
        restarted = old_kubelet is not None and old_kubelet != kubelet
        if restarted:
            self._dismiss(facts.name)
            self._last_allowlist.pop(facts.name, None)
        # A kubelet restarted in place (MicroK8s `microk8s stop; start` keeps bootID and version) shows as a
        # change of its Ready condition (a short NotReady): its configuration may be new in either direction,
        # so it counts as unknown until configz answers again. Evidence stays until that answer differs.
        reconfigured = old is not None and self._ready_since.get(facts.name, ready_since) != ready_since
        self._ready_since[facts.name] = ready_since
        # The allowlist comes from configz only (the annotation is for offline review); unknown after a restart.
        allowlist = old.allowlist if old is not None and not (restarted or reconfigured) else None
        facts = replace(facts, allowlist=allowlist)
        self._nodes[facts.name], self._kubelets[facts.name] = facts, kubelet
        self._endpoints[facts.name] = {"metadata": {"name": facts.name}, "status": {
            k: status[k] for k in ("addresses", "daemonEndpoints") if k in status}}
        refetch = old is None or restarted or reconfigured
        if refetch:
            self._unread.add(facts.name)
        return facts.name, facts != old or restarted, refetch

    def remove_node(self, name: str) -> bool:
        self._kubelets.pop(name, None)
        self._endpoints.pop(name, None)
        self._ready_since.pop(name, None)
        self._unread.discard(name)
        self._last_allowlist.pop(name, None)
        return self._nodes.pop(name, None) is not None

    def set_allowlist(self, name: str, allowlist: tuple[str, ...] | None) -> bool:
        """A configz answer (None: could not be read). A different allowlist voids the node's evidence."""
        node = self._nodes.get(name)
        if node is None:
            return False
        dismissed = False
        self._unread.discard(name)
        if allowlist is not None:
            last = self._last_allowlist.get(name)
            if last is not None and last != allowlist:
                dismissed = self._dismiss(name)
            self._last_allowlist[name] = allowlist
        self._nodes[name] = replace(node, allowlist=allowlist)
        return dismissed or node.allowlist != allowlist

    def has_node(self, name: str) -> bool:
        return name in self._nodes

    def kubelet_endpoint(self, name: str) -> Mapping[str, Any] | None:
        """The node as the kubelet reader needs it (name, `status.addresses`, `status.daemonEndpoints`), from
        the watch: a direct configz read then costs the API server nothing."""
        return self._endpoints.get(name)

    def node_count(self) -> int:
        return len(self._nodes)

    def unread(self) -> frozenset[str]:
        """Nodes still waiting for their first configz answer: unknown for now, not known to be unknown."""
        return frozenset(self._unread)

    def node_facts(self) -> list[NodeFacts]:
        """Every node, with `refused` from the evidence that still stands."""
        refused: dict[str, set[str]] = {}
        for node, names in self._evidence.values():
            refused.setdefault(node, set()).update(names)
        return [
            replace(facts, refused=frozenset(refused[name])) if name in refused else facts
            for name, facts in self._nodes.items()
        ]

    # ---- failed pods (evidence)

    def replace_pods(self, objects: Iterable[Mapping[str, Any]]) -> bool:
        before = dict(self._evidence)
        present: set[str] = set()
        self._evidence = {}
        for obj in objects:
            present.add(_uid(obj))
            self.upsert_pod(obj)
        self._dismissed &= present
        return before != self._evidence

    def upsert_pod(self, obj: Mapping[str, Any]) -> bool:
        uid = _uid(obj)
        rejection = rejection_from_pod(obj)
        names = rejection.refuses(self._managed) if rejection is not None else frozenset()
        if rejection is None or not names or not rejection.node:
            return self._evidence.pop(uid, None) is not None
        if uid in self._dismissed:
            return False
        entry = (rejection.node, names)
        changed = self._evidence.get(uid) != entry
        self._evidence[uid] = entry
        return changed

    def remove_pod(self, obj: Mapping[str, Any]) -> bool:
        uid = _uid(obj)
        self._dismissed.discard(uid)
        return self._evidence.pop(uid, None) is not None

    def _dismiss(self, node: str) -> bool:
        voided = [uid for uid, (on, _) in self._evidence.items() if on == node]
        for uid in voided:
            del self._evidence[uid]
            self._dismissed.add(uid)
        return bool(voided)

    # ---- namespaces

    def replace_namespaces(self, objects: Iterable[Mapping[str, Any]]) -> bool:
        fresh = dict(_namespace_entry(obj) for obj in objects)
        changed = fresh != self._namespaces
        self._namespaces = fresh
        return changed

    def upsert_namespace(self, obj: Mapping[str, Any]) -> bool:
        name, labels = _namespace_entry(obj)
        changed = self._namespaces.get(name) != labels
        self._namespaces[name] = labels
        return changed

    def remove_namespace(self, obj: Mapping[str, Any]) -> bool:
        return self._namespaces.pop(_namespace_entry(obj)[0], None) is not None

    def namespace_labels(self) -> Mapping[str, Mapping[str, str]]:
        return MappingProxyType(dict(self._namespaces))


def _uid(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}")


def _namespace_entry(obj: Mapping[str, Any]) -> tuple[str, Mapping[str, str]]:
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    return str(meta.get("name") or ""), MappingProxyType({str(k): str(v) for k, v in labels.items()})


def trim(resource: Resource, obj: Mapping[str, Any]) -> dict[str, Any]:
    """Only the fields `Inventory` reads, taken as an object arrives: the rest is never held.

    Nodes: name, labels, taints, unschedulable, Ready, kubelet version and bootID (the allowlist comes
    from configz, not from an annotation), and where its kubelet listens (addresses, kubelet port). Pods:
    identity, node, reason and message. Namespaces: name and labels.
    """
    meta = obj.get("metadata") or {}
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if resource == "nodes":
        info = status.get("nodeInfo") or {}
        return {
            "metadata": {k: meta[k] for k in ("name", "labels") if k in meta},
            "spec": {k: spec[k] for k in ("taints", "unschedulable") if k in spec},
            "status": {
                "conditions": [c for c in status.get("conditions") or [] if c.get("type") == "Ready"],
                "nodeInfo": {k: info[k] for k in ("kubeletVersion", "kernelVersion", "bootID") if k in info},
                **{k: status[k] for k in ("addresses", "daemonEndpoints") if k in status},
            },
        }
    if resource == "pods":
        return {
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid") if k in meta},
            "spec": {"nodeName": spec.get("nodeName")},
            "status": {k: status[k] for k in ("reason", "message") if k in status},
        }
    return {"metadata": {k: meta[k] for k in ("name", "labels") if k in meta}}


def _ready_transition(status: Mapping[str, Any]) -> str:
    """When the node's Ready condition last changed ("" when it has none)."""
    for condition in status.get("conditions") or ():
        if isinstance(condition, Mapping) and condition.get("type") == "Ready":
            return str(condition.get("lastTransitionTime") or "")
    return ""
