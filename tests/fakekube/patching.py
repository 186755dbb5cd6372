"""The three patch types the API server accepts for built-in types (handlers/patch.go).

- application/merge-patch+json: RFC 7386 JSON merge patch, exact.
- application/strategic-merge-patch+json: APPROXIMATION of k8s.io/apimachinery/pkg/util/strategicpatch.
  Lists are merged by the patchMergeKey the core/v1 and apps/v1 Go types declare (containers and env
  by name, volumeMounts by mountPath, ...), `$patch: delete|replace` and `$deleteFromPrimitiveList/`
  directives are honoured, `$setElementOrder/` and `$retainKeys` are ignored, and new list items are
  appended instead of being ordered as the real code orders them. The merge key is chosen by field
  name alone, not by the Go type at that path; every list not named here is replaced (atomic), which
  is right for sysctls, tolerations, args and command.
- application/json-patch+json: RFC 6902 through the `jsonpatch` package.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from .status import bad_request, invalid_patch, unsupported_media_type

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
# the order the apiserver lists patch types in its 415 message (apply-patch+yaml is left out: not modelled)
ACCEPTED = [JSON_PATCH, MERGE, STRATEGIC]

# field name -> patchMergeKey, from `+patchMergeKey=` tags in k8s.io/api core/v1, apps/v1, meta/v1,
# admissionregistration/v1 types.go.
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "resourceClaims": "name",
    "webhooks": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "conditions": "type",
    "addresses": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
}
# lists of scalars with patchStrategy=merge: merged as an ordered set
_PRIMITIVE_MERGE = {"finalizers"}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _merge_key(field: str, items: list[Any]) -> str | None:
    if field == "ports":  # ContainerPort merges on containerPort, ServicePort on port
        has_container_port = any(isinstance(i, dict) and "containerPort" in i for i in items)
        return "containerPort" if has_container_port else "port"
    return _MERGE_KEYS.get(field)


def _merge_list(field: str, existing: Any, patch: list[Any]) -> list[Any]:
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    current: list[Any] = existing if isinstance(existing, list) else []
    if field in _PRIMITIVE_MERGE:
        return current + [v for v in patch if v not in current]
    key = _merge_key(field, patch + current)
    if key is None:
        return [copy.deepcopy(i) for i in patch]
    result = [copy.deepcopy(i) for i in current]
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise bad_request(f"map: {item} does not contain declared merge key: {key}")
        index = next((i for i, old in enumerate(result) if isinstance(old, dict) and old.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append(strategic_merge_patch({}, item))
        else:
            result[index] = strategic_merge_patch(result[index], item)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Approximate strategic merge (see the module docstring). Returns None for `$patch: delete`."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            out[name] = [v for v in out.get(name, []) if v not in value]
        elif key.startswith("$"):
            continue  # $setElementOrder/..., $retainKeys: ordering/pruning hints we do not model
        elif value is None:
            out.pop(key, None)
        elif isinstance(value, list):
            out[key] = _merge_list(key, out.get(key), value)
        else:
            merged = strategic_merge_patch(out.get(key), value)
            if merged is None:
                out.pop(key, None)
            else:
                out[key] = merged
    return out


def json_patch(target: dict[str, Any], ops: Any) -> Any:
    if not isinstance(ops, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    try:
        return jsonpatch.apply_patch(target, ops)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException):
        raise invalid_patch() from None


def apply(content_type: str, target: dict[str, Any], patch: Any) -> dict[str, Any]:
    """Apply a PATCH body of `content_type` to a copy of `target`."""
    media = content_type.split(";")[0].strip()
    if media == MERGE:
        result = merge_patch(target, patch)
    elif media == STRATEGIC:
        result = strategic_merge_patch(target, patch)
    elif media == JSON_PATCH:
        result = json_patch(target, patch)
    else:
        # Server-side apply (application/apply-patch+yaml) is not modelled: answer the 415 the apiserver
        # gives for a patch type it does not accept, listing the types this fake does accept.
        raise unsupported_media_type(ACCEPTED)
    if not isinstance(result, dict):
        raise bad_request("the patch did not produce an object")
    return result
