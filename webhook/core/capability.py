"""Which nodes accept the managed sysctls: per-node verdicts and an immutable, indexed snapshot.

Sources, strongest first (shared/product.md, "Capability sources"): the admin override label, evidence
(a pod refused with `SysctlForbidden` on that node), the running kubelet's `allowedUnsafeSysctls`
(from /configz), else unknown. The snapshot is built off the admission path and only read on it; its
indexes turn candidate-node filtering into set operations (see `placement.py`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from webhook.core import keys
from webhook.core.dns_remedy import DnsFacts
from webhook.core.shapes import mapping_or_empty as _mapping
from webhook.core.sysctls import Allowlist, kubelet_minor, normalize_name, safe_sysctls

Verdict = Literal["allowed", "forbidden", "unknown"]
Source = Literal["override", "evidence", "kubelet-safe", "kubelet-config", "assumed", "none"]

# Only these taint effects keep the scheduler away; PreferNoSchedule is a preference.
BLOCKING_EFFECTS = frozenset({"NoSchedule", "NoExecute"})
# Label values on at most this many nodes are indexed by position, not by bitmask (see Capability).
RARE_LABEL_NODES = 64


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    value: str = ""
    effect: str = "NoSchedule"


@dataclass(frozen=True, slots=True)
class NodeFacts:
    """What v4only keeps of a Node: only the fields the decision and `doctor` need."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    unschedulable: bool = False
    ready: bool = True
    kubelet_version: str = ""
    kernel_version: str = ""  # status.nodeInfo.kernelVersion: which safe sysctls the kubelet offers
    # The running kubelet's allowedUnsafeSysctls as reported; None when not known (not read, 403, down).
    allowlist: tuple[str, ...] | None = None
    # Normalised managed sysctl names a pod on this node was refused with SysctlForbidden.
    refused: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class NodeVerdict:
    verdict: Verdict
    source: Source
    detail: str


def evaluate_node(node: NodeFacts, sysctl_names: Iterable[str]) -> NodeVerdict:
    """The node's verdict for the whole set of managed sysctls (all must be accepted)."""
    override = node.labels.get(keys.NODE_OVERRIDE)
    if override == "allowed":
        return NodeVerdict("allowed", "override", f"label {keys.NODE_OVERRIDE}=allowed")
    if override == "forbidden":
        return NodeVerdict("forbidden", "override", f"label {keys.NODE_OVERRIDE}=forbidden")
    names = sorted(normalize_name(n) for n in sysctl_names)
    refused = [n for n in names if n in node.refused]
    if refused:
        return NodeVerdict("forbidden", "evidence", f"a pod was refused {refused[0]} (SysctlForbidden)")
    safe = safe_sysctls(node.kubelet_version, node.kernel_version)
    unsafe = [n for n in names if n not in safe]
    if not unsafe:  # allowed by every kubelet of this version on this kernel, whatever its allowlist
        return NodeVerdict("allowed", "kubelet-safe", f"safe sysctls on kubelet {node.kubelet_version or '(unknown)'}")
    if node.allowlist is None:
        return NodeVerdict("unknown", "none", "kubelet configuration not known")
    allowlist = Allowlist.parse(node.allowlist)
    missing = [n for n in unsafe if not allowlist.allows(n)]
    shown = ",".join(node.allowlist) or "(empty)"
    if missing:
        return NodeVerdict("forbidden", "kubelet-config", f"kubelet allowedUnsafeSysctls {shown} lacks {missing[0]}")
    return NodeVerdict("allowed", "kubelet-config", f"kubelet allowedUnsafeSysctls {shown}")


@dataclass(frozen=True, slots=True)
class Capability:
    """An immutable view of the cluster's nodes and their verdicts, indexed for the decision.

    `state` is `known` once the node list has been read, `unknown` before (or when stale: the edge
    swaps in `Capability.unknown(...)`), `assumed` for a static answer (`--assume`, `serve --dev`).
    """

    state: Literal["known", "unknown", "assumed"]
    note: str = ""
    nodes: tuple[NodeFacts, ...] = ()
    verdicts: tuple[NodeVerdict, ...] = ()
    assumed: Verdict = "unknown"
    labels_published: bool = False
    # Indexes. `by_name` maps a node to its position in `nodes`; every other index is a set of
    # positions held as an int bitmask (bit i = nodes[i]), so the decision's set algebra is a few
    # word-level `&`/`|` and its counts are `bit_count()`: at 5,000 nodes a frozenset intersection
    # costs ~100 us, a bitmask one well under 1 us (bench/decision.py).
    # A mask of bit i costs i/8 bytes, so a label value few nodes share (kubernetes.io/hostname) is kept
    # as positions instead (`rare_labels`); `label_mask` answers for both.
    by_name: Mapping[str, int] = field(default_factory=dict)
    by_label: Mapping[tuple[str, str], int] = field(default_factory=dict)
    rare_labels: Mapping[tuple[str, str], tuple[int, ...]] = field(default_factory=dict)
    by_key: Mapping[str, int] = field(default_factory=dict)
    everyone: int = 0
    cordoned: int = 0
    allowed: int = 0
    forbidden: int = 0
    # Nodes grouped by their blocking taints (nodes with none are in no group).
    taint_groups: tuple[tuple[tuple[Taint, ...], int], ...] = ()
    # The cluster's DNS as the tracker's probe found it (rule 7): part of what the tracker knows.
    dns: DnsFacts = field(default_factory=DnsFacts)
    # The newest kubelet minor (None: none known). No kubelet is newer than its API server (the version skew
    # policy), so the API server is at least this new: Pod Security's version can be bounded by it.
    kubelet_minor: int | None = None

    @classmethod
    def unknown(cls, note: str) -> Capability:
        return cls(state="unknown", note=note)

    @classmethod
    def assume(cls, verdict: Verdict, note: str) -> Capability:
        return cls(state="assumed", assumed=verdict, note=note)

    @classmethod
    def build(
        cls, nodes: Iterable[NodeFacts], *, sysctl_names: Iterable[str], labels_published: bool
    ) -> Capability:
        ordered = tuple(sorted(nodes, key=lambda n: n.name))
        names = tuple(sysctl_names)
        verdicts = tuple(evaluate_node(n, names) for n in ordered)
        by_label: dict[tuple[str, str], list[int]] = defaultdict(list)
        by_key: dict[str, list[int]] = defaultdict(list)
        groups: dict[tuple[Taint, ...], list[int]] = defaultdict(list)
        for i, node in enumerate(ordered):
            for key, value in node.labels.items():
                by_label[(key, value)].append(i)
                by_key[key].append(i)
            blocking = tuple(sorted((t for t in node.taints if t.effect in BLOCKING_EFFECTS), key=_taint_key))
            if blocking:
                groups[blocking].append(i)
        return cls(
            state="known",
            nodes=ordered,
            verdicts=verdicts,
            labels_published=labels_published,
            by_name={n.name: i for i, n in enumerate(ordered)},
            by_label={k: bitmask(v) for k, v in by_label.items() if len(v) > RARE_LABEL_NODES},
            rare_labels={k: tuple(v) for k, v in by_label.items() if len(v) <= RARE_LABEL_NODES},
            by_key={k: bitmask(v) for k, v in by_key.items()},
            everyone=(1 << len(ordered)) - 1,
            cordoned=bitmask(i for i, n in enumerate(ordered) if n.unschedulable),
            allowed=bitmask(i for i, v in enumerate(verdicts) if v.verdict == "allowed"),
            forbidden=bitmask(i for i, v in enumerate(verdicts) if v.verdict == "forbidden"),
            taint_groups=tuple((t, bitmask(v)) for t, v in groups.items()),
            kubelet_minor=max((m for m in map(kubelet_minor, (n.kubelet_version for n in ordered)) if m is not None),
                              default=None),
        )

    def label_mask(self, key: str, value: str) -> int:
        """The nodes labelled key=value, as a bitmask."""
        mask = self.by_label.get((key, value))
        return mask if mask is not None else bitmask(self.rare_labels.get((key, value), ()))


def bitmask(positions: Iterable[int]) -> int:
    """The set of node positions as an int with those bits set."""
    mask = 0
    for i in positions:
        mask |= 1 << i
    return mask


def positions(mask: int) -> Iterator[int]:
    """The node positions set in `mask`, lowest first."""
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


def _taint_key(taint: Taint) -> tuple[str, str, str]:
    return (taint.key, taint.value, taint.effect)


def node_facts_from_object(obj: Mapping[str, Any]) -> NodeFacts:
    """NodeFacts from a Node object (plain dict), for offline review (`--nodes FILE`).

    The kubelet allowlist comes from the annotation `v4only.io/kubelet-allowed-unsafe-sysctls` (a
    comma list; absent means not known); the tracker sets `allowlist` from /configz instead.
    """
    meta = _mapping(obj.get("metadata"))
    spec = _mapping(obj.get("spec"))
    annotations = _mapping(meta.get("annotations"))
    raw_allowlist = annotations.get(keys.NODE_KUBELET_ALLOWLIST)
    allowlist = None
    if isinstance(raw_allowlist, str):
        allowlist = tuple(p.strip() for p in raw_allowlist.split(",") if p.strip())
    return NodeFacts(
        name=str(meta.get("name", "")),
        labels={str(k): str(v) for k, v in _mapping(meta.get("labels")).items()},
        taints=taints_from_spec(spec),
        unschedulable=spec.get("unschedulable") is True,
        ready=node_is_ready(obj),
        kubelet_version=str(_mapping(_mapping(obj.get("status")).get("nodeInfo")).get("kubeletVersion", "")),
        kernel_version=str(_mapping(_mapping(obj.get("status")).get("nodeInfo")).get("kernelVersion", "")),
        allowlist=allowlist,
    )


def taints_from_spec(spec: Mapping[str, Any]) -> tuple[Taint, ...]:
    taints = spec.get("taints")
    if not isinstance(taints, list):
        return ()
    return tuple(
        Taint(str(t.get("key", "")), str(t.get("value") or ""), str(t.get("effect", "")))
        for t in taints
        if isinstance(t, Mapping)
    )


def node_is_ready(obj: Mapping[str, Any]) -> bool:
    conditions = _mapping(obj.get("status")).get("conditions")
    if not isinstance(conditions, list):
        return False
    return any(
        isinstance(c, Mapping) and c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
    )

