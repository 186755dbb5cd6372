"""When and how serve last read each kubelet's /configz, as the elected replica publishes it for `doctor`.

Issue 11: a kubelet reconfigured in place is picked up at its next read, so "when was it last read" is what
tells a person whether serve has seen the change. The tracker records each answer (the path that read it:
direct, proxy or none, and why not); the elected replica writes the records to a ConfigMap
(`webhook/adapters/kube_configz.py`); `doctor` shows them next to its own read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

FORMAT = 1
# A ConfigMap holds at most 1 MiB (validation.go, MaxSecretSize applies to ConfigMaps too): the records stay
# well under it. About 70 bytes a node, so ~13,000 nodes fit; past that the nodes read directly are left out
# first (doctor shows "-" for them), since the failures are what a person looks for.
MAX_BYTES = 900_000
_ORDER = {"none": 0, "proxy": 1, "direct": 2}


class RecordsError(ValueError):
    """A published record that this version cannot read (hand-edited, or from another version)."""


@dataclass(frozen=True, slots=True)
class ConfigzRecord:
    """One node's last configz read by serve: the path that answered ("none" if none did), when, and why not
    directly (or why not at all) in doctor's short words ("" when the direct read answered)."""

    path: str
    read_at: datetime  # timezone-aware (UTC)
    error: str = ""


def records_to_dict(reads: Mapping[str, ConfigzRecord], max_bytes: int = MAX_BYTES) -> dict[str, Any]:
    """The published form, at most about `max_bytes` of JSON: failed reads first, then the others by name."""
    nodes: dict[str, Any] = {}
    size = 0
    for name, record in sorted(reads.items(), key=lambda item: (_ORDER.get(item[1].path, 0), item[0])):
        entry = {"path": record.path, "readAt": record.read_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
                 "error": record.error}
        size += len(orjson.dumps({name: entry}))
        if size > max_bytes:
            break
        nodes[name] = entry
    return {"format": FORMAT, "nodes": dict(sorted(nodes.items())), "omitted": len(reads) - len(nodes)}


def records_from_dict(doc: Any) -> dict[str, ConfigzRecord]:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("nodes"), dict):
        raise RecordsError("not a v4only configz record (format 1)")
    reads: dict[str, ConfigzRecord] = {}
    for name, entry in doc["nodes"].items():
        if not isinstance(entry, dict) or entry.get("path") not in ("direct", "proxy", "none"):
            raise RecordsError(f"node {name!r}: bad entry")
        try:
            read_at = datetime.fromisoformat(str(entry.get("readAt")).replace("Z", "+00:00"))
        except ValueError:
            raise RecordsError(f"node {name!r}: bad readAt") from None
        if read_at.tzinfo is None:
            raise RecordsError(f"node {name!r}: readAt has no time zone")
        reads[str(name)] = ConfigzRecord(entry["path"], read_at, str(entry.get("error") or ""))
    return reads


def age_text(seconds: float) -> str:
    """A short age for a table cell: 45s, 12m, 3h, 2d (a negative age, a clock skew, shows as 0s)."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
