"""Which nodes a pod can land on, computed the way the scheduler filters (for what v4only can know).

Covered: `nodeName` (bypasses the scheduler, so taints and cordons do not apply), `nodeSelector`,
required node affinity (matchExpressions In/NotIn/Exists/DoesNotExist/Gt/Lt; matchFields on
`metadata.name`), blocking taints (NoSchedule/NoExecute) against tolerations, and cordoned nodes
(unless the pod tolerates `node.kubernetes.io/unschedulable`, as DaemonSet pods do). Semantics follow
k8s.io/component-helpers scheduling/corev1 (nodeaffinity, `ToleratesTaint`) and the scheduler's
NodeUnschedulable plugin. Everything is set algebra over the snapshot's indexes, which are int
bitmasks (bit i = `capability.nodes[i]`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from webhook.core import keys
from webhook.core.capability import Capability, Taint, bitmask, positions
from webhook.core.errors import UnhandledObject

UNSCHEDULABLE_TAINT = Taint("node.kubernetes.io/unschedulable", "", "NoSchedule")
# The requirement the sysctl+affinity remedy adds. Placement ignores it, so a pod v4only already pinned
# is judged on the nodes it could reach before the pin, and a second review decides the same way. A term
# that holds only the pin is v4only's too (the whole selector, when the pod had none; or an empty term an
# older version pinned): any other remedy removes it (patch.py), so placement counts the pod's other terms,
# or no selector when there are none.
OWN_PIN = {"key": keys.NODE_CAPABILITY, "operator": "In", "values": [keys.ALLOWED]}


def candidate_nodes(spec: Mapping[str, Any], capability: Capability) -> int:
    """The nodes where the pod could run, as a bitmask over `capability.nodes` (count: `.bit_count()`)."""
    node_name = spec.get("nodeName")
    if node_name:
        index = capability.by_name.get(str(node_name))
        return 0 if index is None else 1 << index
    nodes = _select(spec, capability)
    tolerations = _tolerations(spec)
    nodes = _tolerable(nodes, tolerations, capability)
    if capability.cordoned and not _tolerated(UNSCHEDULABLE_TAINT, tolerations):
        nodes &= ~capability.cordoned
    return nodes


# pkg/controller/daemon/util/daemonset_util.go AddOrUpdateDaemonPodTolerations: what the DaemonSet controller
# adds to every daemon pod (NewPod) before it judges a node, and to the pods it creates.
def _exists(key: str, effect: str) -> Mapping[str, str]:
    return {"key": f"node.kubernetes.io/{key}", "operator": "Exists", "effect": effect}


DAEMON_TOLERATIONS = (
    _exists("not-ready", "NoExecute"),
    _exists("unreachable", "NoExecute"),
    _exists("disk-pressure", "NoSchedule"),
    _exists("memory-pressure", "NoSchedule"),
    _exists("pid-pressure", "NoSchedule"),
    _exists("unschedulable", "NoSchedule"),
)
_NETWORK_UNAVAILABLE = _exists("network-unavailable", "NoSchedule")  # hostNetwork daemon pods only


def daemon_nodes(spec: Mapping[str, Any], capability: Capability) -> int:
    """The nodes a DaemonSet with this pod template runs a pod on (daemon_controller.go NodeShouldRunDaemonPod:
    the template's nodeName, its required node affinity and node selector, and NoSchedule/NoExecute taints
    against its tolerations plus the controller's own; a cordoned node carries the unschedulable taint)."""
    nodes = _select(spec, capability)
    node_name = spec.get("nodeName")
    if node_name:
        index = capability.by_name.get(str(node_name))
        nodes &= 0 if index is None else 1 << index
    tolerations = [*_tolerations(spec), *DAEMON_TOLERATIONS]
    if spec.get("hostNetwork") is True:
        tolerations.append(_NETWORK_UNAVAILABLE)
    return _tolerable(nodes, tolerations, capability)


def _tolerable(nodes: int, tolerations: Sequence[Mapping[str, Any]], capability: Capability) -> int:
    """`nodes` minus those with a blocking taint the tolerations do not tolerate."""
    for taints, members in capability.taint_groups:
        if nodes & members and not all(_tolerated(t, tolerations) for t in taints):
            nodes &= ~members
    return nodes


def carries_pin(spec: Mapping[str, Any]) -> bool:
    """Whether a required node-affinity term holds v4only's own pin."""
    terms = _required_terms(spec) or ()
    return any(isinstance(t, dict) and OWN_PIN in (t.get("matchExpressions") or ()) for t in terms)


def _select(spec: Mapping[str, Any], capability: Capability) -> int:
    nodes = capability.everyone
    selector = spec.get("nodeSelector")
    if selector:
        if not isinstance(selector, dict):
            raise UnhandledObject("spec.nodeSelector is not a mapping")
        for key, value in selector.items():
            nodes &= capability.label_mask(str(key), str(value))
    terms = _required_terms(spec)
    own = [t for t in terms or () if _pin_only(t)]
    if terms is not None and (len(own) < len(terms) or not terms):  # an empty list of terms matches no node
        matched = 0
        for term in terms:
            matched |= 0 if _pin_only(term) else _term_nodes(term, capability)
        nodes &= matched
    return nodes


def _pin_only(term: Any) -> bool:
    if not isinstance(term, dict) or term.get("matchFields"):
        return False
    expressions = term.get("matchExpressions")
    return isinstance(expressions, list) and bool(expressions) and all(r == OWN_PIN for r in expressions)


def _required_terms(spec: Mapping[str, Any]) -> Sequence[Any] | None:
    affinity = spec.get("affinity") or {}
    node_affinity = affinity.get("nodeAffinity") if isinstance(affinity, dict) else None
    if not isinstance(node_affinity, dict):
        return None
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    if not isinstance(required, dict):
        return None
    terms = required.get("nodeSelectorTerms")
    if not isinstance(terms, list):
        raise UnhandledObject("nodeAffinity nodeSelectorTerms is not a list")
    return terms


def _term_nodes(term: Any, capability: Capability) -> int:
    # An empty term matches no nodes (core/v1 NodeSelectorTerm: "nil or empty term matches no objects").
    if not isinstance(term, dict):
        raise UnhandledObject("a nodeSelectorTerm is not a mapping")
    expressions = [r for r in _requirements(term.get("matchExpressions")) if r != OWN_PIN]
    fields = _requirements(term.get("matchFields"))
    if not expressions and not fields:
        return 0
    nodes = capability.everyone
    for req in expressions:
        nodes &= _label_requirement(req, capability)
    for req in fields:
        nodes &= _field_requirement(req, capability)
    return nodes


def _requirements(raw: Any) -> list[Mapping[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
        raise UnhandledObject("a node selector requirement list is malformed")
    return raw


def _label_requirement(req: Mapping[str, Any], capability: Capability) -> int:
    key, operator, values = str(req.get("key", "")), req.get("operator"), _values(req)
    with_key = capability.by_key.get(key, 0)
    if operator == "In":
        return _union(capability.label_mask(key, v) for v in values)
    if operator == "NotIn":
        return capability.everyone & ~_union(capability.label_mask(key, v) for v in values)
    if operator == "Exists":
        return with_key
    if operator == "DoesNotExist":
        return capability.everyone & ~with_key
    bound = parse_int64(values[0]) if operator in ("Gt", "Lt") and len(values) == 1 else None
    if bound is not None:
        nodes = capability.nodes
        return bitmask(i for i in positions(with_key) if _compares(nodes[i].labels[key], str(operator), bound))
    return 0  # an operator the API server would have rejected matches nothing


def _field_requirement(req: Mapping[str, Any], capability: Capability) -> int:
    # The API server allows only metadata.name with In / NotIn in matchFields.
    if req.get("key") != "metadata.name":
        return 0
    named = bitmask(capability.by_name[v] for v in _values(req) if v in capability.by_name)
    if req.get("operator") == "In":
        return named
    if req.get("operator") == "NotIn":
        return capability.everyone & ~named
    return 0


def _values(req: Mapping[str, Any]) -> list[str]:
    values = req.get("values") or []
    if not isinstance(values, list):
        raise UnhandledObject("a node selector requirement's values is not a list")
    return [str(v) for v in values]


def _union(masks: Iterable[int]) -> int:
    result = 0
    for members in masks:
        result |= members
    return result


_INT64_RE = re.compile(r"[+-]?[0-9]+")


def parse_int64(text: str) -> int | None:
    """Go's `strconv.ParseInt(text, 10, 64)`, which apimachinery labels uses for Gt/Lt (selector.go
    NewRequirement and Requirement.Matches): ASCII digits with an optional sign, within int64. Python's
    `int()` also takes `1_0`, spaces and non-ASCII digits. None where Go fails: the term then matches no node."""
    if _INT64_RE.fullmatch(text) is None:
        return None
    value = int(text)
    return value if -(2**63) <= value < 2**63 else None


def _compares(label: str, operator: str, bound: int) -> bool:
    value = parse_int64(label)
    if value is None:
        return False
    return value > bound if operator == "Gt" else value < bound


def _tolerations(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    tolerations = spec.get("tolerations") or []
    if not isinstance(tolerations, list):
        raise UnhandledObject("spec.tolerations is not a list")
    return [t for t in tolerations if isinstance(t, dict)]


def _tolerated(taint: Taint, tolerations: Sequence[Mapping[str, Any]]) -> bool:
    return any(_tolerates(t, taint) for t in tolerations)


def _tolerates(toleration: Mapping[str, Any], taint: Taint) -> bool:
    """core/v1 Toleration.ToleratesTaint."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.effect:
        return False
    key = toleration.get("key") or ""
    operator = toleration.get("operator") or "Equal"
    if key and key != taint.key:
        return False
    if operator == "Exists":
        return True
    return operator == "Equal" and bool(key) and (toleration.get("value") or "") == taint.value

