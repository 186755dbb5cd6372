"""Reading parsed JSON without trusting its shape: the checks the decision and the patch share.

A wrong shape raises `UnhandledObject`, which the callers turn into "admitted unchanged, with a
warning". Objects are plain dicts and lists (see errors.py for why `dict`, not `Mapping`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from webhook.core.errors import UnhandledObject


def optional_mapping(value: Any, where: str) -> Mapping[str, Any]:
    """A mapping, or {} for a missing (None) one."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UnhandledObject(f"{where} is not a mapping")
    return value


def required_mapping(value: Any, where: str) -> Mapping[str, Any]:
    """A mapping that must be there: the patch adds under it, and an `add` under null fails to apply."""
    if not isinstance(value, dict):
        raise UnhandledObject(f"{where} is not a mapping")
    return value


def optional_list(value: Any, where: str) -> Sequence[Any] | None:
    """A list, or None for a missing one."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise UnhandledObject(f"{where} is not a list")
    return value


def mapping_or_empty(value: Any) -> Mapping[str, Any]:
    """`value` when it is a mapping, else {}: for reading objects the API server already validated (a
    workload, a pod, a node), where a missing or null field means "none"."""
    return value if isinstance(value, Mapping) else {}
