"""Unified diffs of Kubernetes objects as YAML, for `v4only review` and `v4only patch`."""

from __future__ import annotations

import difflib
from typing import Any

import yaml

# libyaml's emitter when the wheel has it (it does on the usual platforms): same YAML, several times faster.
_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def to_yaml(obj: Any) -> str:
    """Block-style YAML, keys in the object's own order (as `kubectl get -o yaml` shows them)."""
    text: str = yaml.dump(obj, Dumper=_DUMPER, sort_keys=False)
    return text


def unified_yaml_diff(before: Any, after: Any, *, from_name: str, to_name: str) -> str:
    """The unified diff (3 lines of context) of the two objects' YAML; "" when they are the same."""
    old = to_yaml(before).splitlines(keepends=True)
    new = to_yaml(after).splitlines(keepends=True)
    return "".join(difflib.unified_diff(old, new, from_name, to_name))
