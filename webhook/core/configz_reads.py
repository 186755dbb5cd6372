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

FORMAT = 1


class RecordsError(ValueError):
    """A published record that this version cannot read (hand-edited, or from another version)."""


@dataclass(frozen=True, slots=True)
class ConfigzRecord:
    """One node's last configz read by serve: the path that answered ("none" if none did), when, and why not
    directly (or why not at all) in doctor's short words ("" when the direct read answered)."""

    path: str
    read_at: datetime  # timezone-aware (UTC)
    error: str = ""


def records_to_dict(reads: Mapping[str, ConfigzRecord]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "nodes": {
            name: {"path": r.path, "readAt": r.read_at.isoformat().replace("+00:00", "Z"), "error": r.error}
            for name, r in sorted(reads.items())
        },
    }


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
