"""The RFC 6902 operations a decision implies, built directly against the object as received.

Why not diff a mutated copy (`jsonpatch.make_patch`)? Measured in reference/performance-notes.md:
diffing whole pods cost about two thirds of the throughput. The operations here are few and
idempotent: each one is emitted only when its effect is missing, so reviewing a patched pod again
yields no operations. The tests check them against the independent `jsonpatch` applier.

Rules (shared/product.md, "Remedies"): create missing parents, never duplicate, never replace a list
that is not ours (append with `/-`), touch `containers` and `initContainers` but never
`ephemeralContainers`, and escape JSON Pointer keys (`~0`, `~1`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from webhook.core import keys
from webhook.core.decision import Decision
from webhook.core.dns_remedy import dns_ops
from webhook.core.placement import OWN_PIN
from webhook.core.settings import FallbackVar, Settings
from webhook.core.shapes import optional_list, optional_mapping, required_mapping
from webhook.core.sysctls import normalize_name

Op = dict[str, Any]
CONTAINER_LISTS = ("initContainers", "containers")  # never ephemeralContainers
AFFINITY_REQUIREMENT = OWN_PIN


@dataclass(frozen=True, slots=True)
class Plan:
    ops: tuple[Op, ...]
    warnings: tuple[str, ...] = ()


def escape(key: str) -> str:
    """RFC 6901: `~` becomes `~0` and `/` becomes `~1` (annotation keys contain `/`)."""
    return key.replace("~", "~0").replace("/", "~1")


def plan_patch(pod: Mapping[str, Any], decision: Decision, settings: Settings, *, base: str = "") -> Plan:
    """Operations for a Pod, or for the pod template found at JSON Pointer `base` of a workload."""
    if decision.remedy is None:
        return Plan(())
    # Every other operation adds under /spec: without it none could apply, and a patch that does not apply
    # fails the pod's creation (found by tests/test_fuzz.py). A template may well have no metadata (valid,
    # and common in hand-written Jobs): `add` on a missing or null member creates it (RFC 6902 4.1).
    spec = required_mapping(pod.get("spec"), "spec")
    meta = pod.get("metadata")
    ops: list[Op] = []
    warnings: list[str] = []
    remedy = decision.remedy
    if remedy in ("sysctl", "sysctl+affinity"):
        ops += _ensure_sysctls(spec, settings, f"{base}/spec")
    if remedy == "sysctl+affinity":
        ops += _ensure_affinity(spec, f"{base}/spec")
    else:  # a pin left from an earlier decision would strand the pod once no node is labelled allowed
        ops += _remove_affinity(spec, f"{base}/spec")
    variables: tuple[FallbackVar, ...] = ()
    if remedy == "env":
        removal, removed = _remove_sysctls(spec, settings, f"{base}/spec")
        ops += removal
        if removed:
            warnings.append(f"v4only removed {', '.join(removed)} from the pod: it could not run here")
        variables += settings.fallback_env
    if decision.uv_offline:
        variables += settings.uv_offline_env
    if variables:
        env_ops, env_warnings = _ensure_env(spec, variables, f"{base}/spec")
        ops += env_ops
        warnings += env_warnings
    if decision.dns is not None:
        ops += dns_ops(spec, decision.dns, f"{base}/spec")
    applied = decision.applied or remedy
    ops += _ensure_annotations(meta, {keys.APPLIED: applied, keys.REASON: decision.reason}, f"{base}/metadata")
    return Plan(tuple(ops), tuple(warnings))


def _ensure_annotations(meta: Any, wanted: Mapping[str, str], path: str) -> list[Op]:
    if meta is None:
        return [_add(path, {"annotations": dict(wanted)})]
    current = optional_mapping(required_mapping(meta, "metadata").get("annotations"), "metadata.annotations")
    if meta.get("annotations") is None:
        return [_add(f"{path}/annotations", dict(wanted))]
    return [
        _add(f"{path}/annotations/{escape(key)}", value) for key, value in wanted.items() if current.get(key) != value
    ]


def _sysctl_list(spec: Mapping[str, Any]) -> Sequence[Any] | None:
    context = optional_mapping(spec.get("securityContext"), "spec.securityContext")
    return optional_list(context.get("sysctls"), "spec.securityContext.sysctls")


def _ensure_sysctls(spec: Mapping[str, Any], settings: Settings, path: str) -> list[Op]:
    existing = _sysctl_list(spec)
    present = {normalize_name(str(optional_mapping(s, "a sysctl").get("name", ""))) for s in existing or []}
    missing = [{"name": s.name, "value": s.value} for s in settings.sysctls if normalize_name(s.name) not in present]
    if not missing:
        return []
    if spec.get("securityContext") is None:
        return [_add(f"{path}/securityContext", {"sysctls": missing})]
    if existing is None:
        return [_add(f"{path}/securityContext/sysctls", missing)]
    return [_add(f"{path}/securityContext/sysctls/-", entry) for entry in missing]


def _remove_sysctls(spec: Mapping[str, Any], settings: Settings, path: str) -> tuple[list[Op], list[str]]:
    managed = settings.sysctl_names
    positions = [
        (i, str(entry.get("name")))
        for i, entry in enumerate(_sysctl_list(spec) or [])
        if isinstance(entry, dict) and normalize_name(str(entry.get("name", ""))) in managed
    ]
    # Highest index first, so earlier removals do not shift the later ones.
    ops = [{"op": "remove", "path": f"{path}/securityContext/sysctls/{i}"} for i, _ in reversed(positions)]
    return ops, [name for _, name in positions]


def _ensure_affinity(spec: Mapping[str, Any], path: str) -> list[Op]:
    term = {"matchExpressions": [dict(AFFINITY_REQUIREMENT)]}
    required_path = f"{path}/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution"
    affinity = optional_mapping(spec.get("affinity"), "spec.affinity")
    node_affinity = optional_mapping(affinity.get("nodeAffinity"), "spec.affinity.nodeAffinity")
    required = optional_mapping(node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution"), "node affinity")
    if spec.get("affinity") is None:
        return [_add(f"{path}/affinity", {"nodeAffinity": {_REQUIRED: {"nodeSelectorTerms": [term]}}})]
    if affinity.get("nodeAffinity") is None:
        return [_add(f"{path}/affinity/nodeAffinity", {_REQUIRED: {"nodeSelectorTerms": [term]}})]
    terms = optional_list(required.get("nodeSelectorTerms"), "nodeSelectorTerms")
    if not terms:
        return [_add(required_path, {"nodeSelectorTerms": [term]})]
    ops: list[Op] = []
    for i, raw in enumerate(terms):
        existing = required_mapping(raw, "a nodeSelectorTerm")
        expressions = optional_list(existing.get("matchExpressions"), "matchExpressions")
        if _is_empty_term(existing):
            continue  # it selects no node (nodeaffinity isEmptyNodeSelectorTerm); pinned, it would select some
        if expressions is None:
            ops.append(_add(f"{required_path}/nodeSelectorTerms/{i}/matchExpressions", [dict(AFFINITY_REQUIREMENT)]))
        elif AFFINITY_REQUIREMENT not in expressions:
            ops.append(_add(f"{required_path}/nodeSelectorTerms/{i}/matchExpressions/-", dict(AFFINITY_REQUIREMENT)))
    return ops


_REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"


def _is_empty_term(term: Mapping[str, Any]) -> bool:
    return not term.get("matchExpressions") and not term.get("matchFields")


def _remove_affinity(spec: Mapping[str, Any], path: str) -> list[Op]:
    """Undo `_ensure_affinity`: v4only's own requirement goes from every term, a term that held only it goes,
    and when no term is left, the parents v4only would have created go too (a required node selector needs
    at least one term: core validation `validateNodeSelector`)."""
    affinity = optional_mapping(spec.get("affinity"), "spec.affinity")
    node_affinity = optional_mapping(affinity.get("nodeAffinity"), "spec.affinity.nodeAffinity")
    required = optional_mapping(node_affinity.get(_REQUIRED), "node affinity")
    terms = optional_list(required.get("nodeSelectorTerms"), "nodeSelectorTerms") or []
    required_path = f"{path}/affinity/nodeAffinity/{_REQUIRED}"
    ops: list[Op] = []
    kept = len(terms)
    for i in reversed(range(len(terms))):  # highest index first: a removal never shifts one still to come
        term = optional_mapping(terms[i], "a nodeSelectorTerm")
        expressions = optional_list(term.get("matchExpressions"), "matchExpressions") or []
        pins = [j for j, e in enumerate(expressions) if e == AFFINITY_REQUIREMENT]
        term_path = f"{required_path}/nodeSelectorTerms/{i}"
        if not pins:
            continue
        if len(pins) < len(expressions):
            ops += [{"op": "remove", "path": f"{term_path}/matchExpressions/{j}"} for j in reversed(pins)]
        elif term.get("matchFields"):
            ops.append({"op": "remove", "path": f"{term_path}/matchExpressions"})
        else:
            ops.append({"op": "remove", "path": term_path})
            kept -= 1
    if not ops or kept:
        return ops
    if len(node_affinity) > 1:
        return [{"op": "remove", "path": required_path}]
    if len(affinity) > 1:
        return [{"op": "remove", "path": f"{path}/affinity/nodeAffinity"}]
    return [{"op": "remove", "path": f"{path}/affinity"}]


def _ensure_env(spec: Mapping[str, Any], variables: Sequence[FallbackVar], path: str) -> tuple[list[Op], list[str]]:
    """The fallback's operations, and a warning naming what `envFrom` may already set (left to the user)."""
    ops: list[Op] = []
    kept: dict[str, list[str]] = {}  # variable -> containers whose envFrom may set it
    for list_name in CONTAINER_LISTS:
        containers = optional_list(spec.get(list_name), f"spec.{list_name}") or []
        for i, raw in enumerate(containers):
            where = f"spec.{list_name}[{i}]"
            container = required_mapping(raw, where)
            shadowed = _from_env_from(container, variables, where)
            wanted = [v for v in variables if v.name not in shadowed]
            ops += _container_env(container, wanted, f"{path}/{list_name}/{i}", where)
            for var in variables:  # in the settings' order: the warning reads the same every time
                if var.name in shadowed:
                    kept.setdefault(var.name, []).append(str(container.get("name") or where))
    by_containers: dict[tuple[str, ...], list[str]] = {}
    for name, containers in kept.items():
        by_containers.setdefault(tuple(containers), []).append(name)
    return ops, [_kept_warning(names, containers) for containers, names in by_containers.items()]


def _from_env_from(container: Mapping[str, Any], variables: Sequence[FallbackVar], where: str) -> set[str]:
    """The fallback's names that the container's `envFrom` may define, unless its own `env` already does.

    An `env` entry wins over `envFrom` (core/v1 Container.envFrom), so an added entry would silently replace
    the user's value. Appending through `$(NAME)` is not sound either: the kubelet expands it from what
    envFrom gave (kubelet_pods.go makeEnvironmentVariables), but leaves the literal text `$(NAME)` when the
    ConfigMap or Secret lacks the key, which Node.js and the JVM refuse at start. We cannot see the source
    at admission, so the name is left alone and a warning says so.
    """
    sources = optional_list(container.get("envFrom"), f"{where}.envFrom") or []
    prefixes = [str(optional_mapping(s, f"{where}.envFrom[]").get("prefix") or "") for s in sources]
    own = {str(optional_mapping(e, f"{where}.env[]").get("name"))
           for e in optional_list(container.get("env"), f"{where}.env") or []}
    return {v.name for v in variables if v.name not in own and any(v.name.startswith(p) for p in prefixes)}


def _kept_warning(names: Sequence[str], containers: Sequence[str]) -> str:
    """One line under 120 characters (product.md), shortened where the lists are long."""
    listed = ", ".join(containers) if len(", ".join(containers)) <= 30 else f"{len(containers)} containers"
    tail = f" left to envFrom in {listed} (an env entry would override it)"
    joined = ", ".join(names)
    return f"env: {joined if len(joined) + len(tail) <= 114 else f'{len(names)} fallback variables'}{tail}"


def _container_env(
    container: Mapping[str, Any], variables: Sequence[FallbackVar], path: str, where: str
) -> list[Op]:
    env = optional_list(container.get("env"), f"{where}.env")
    if env is None:
        entries = [{"name": v.name, "value": v.value} for v in variables]
        return [_add(f"{path}/env", entries)] if entries else []
    entries_by_name: dict[str, tuple[int, Mapping[str, Any]]] = {}
    for j, raw in enumerate(env):
        entry = optional_mapping(raw, f"{where}.env[{j}]")
        entries_by_name[str(entry.get("name"))] = (j, entry)  # the last one wins, as in the kubelet
    ops: list[Op] = []
    for var in variables:
        found = entries_by_name.get(var.name)
        if found is None:
            ops.append(_add(f"{path}/env/-", {"name": var.name, "value": var.value}))
        elif var.mode == "append":
            ops += _append_flag(found[1], var.value, f"{path}/env/{found[0]}/value")
    return ops


def _append_flag(entry: Mapping[str, Any], flag: str, path: str) -> list[Op]:
    # A valueFrom entry is resolved by the kubelet from a ConfigMap/Secret we cannot see: leave it.
    if entry.get("valueFrom") is not None:
        return []
    current = entry.get("value")
    text = current if isinstance(current, str) else ""
    if flag in text.split():
        return []
    return [_add(path, f"{text} {flag}" if text.strip() else flag)]


def _add(path: str, value: Any) -> Op:
    return {"op": "add", "path": path, "value": value}


def apply_patch(obj: Any, ops: Sequence[Op]) -> Any:
    """Apply the `add` / `remove` / `replace` operations v4only emits to a copy of `obj`.

    Used by `v4only review` to show the patched object; tests compare it with the `jsonpatch`
    package, an independent RFC 6902 implementation.
    """
    result = copy.deepcopy(obj)
    for op in ops:
        result = _apply_one(result, op)
    return result


def _apply_one(doc: Any, op: Op) -> Any:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in str(op["path"]).split("/")[1:]]
    if not parts:
        return copy.deepcopy(op["value"])
    parent = doc
    for part in parts[:-1]:
        parent = parent[int(part)] if isinstance(parent, list) else parent[part]
    last = parts[-1]
    if op["op"] == "remove":
        del parent[int(last) if isinstance(parent, list) else last]
    elif isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if op["op"] == "add":
            parent.insert(index, copy.deepcopy(op["value"]))
        else:
            parent[index] = copy.deepcopy(op["value"])
    else:
        parent[last] = copy.deepcopy(op["value"])
    return doc
