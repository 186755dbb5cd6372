"""A ConfigMap as v4only's small shared store: one JSON document under one key, written whole by the one
replica that leads, read by anyone (doctor, live review, a new leader). Missing, forbidden (403) or
unreadable counts as "nothing published": the readers then say so instead of failing.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson

from webhook.adapters.kube import KubeApi, KubeError

_PATH = "/api/v1/namespaces/{namespace}/configmaps"


def read_data(api: KubeApi, namespace: str, name: str) -> dict[str, Any] | None:
    """The ConfigMap's `data`; None when it does not exist or this caller may not read it."""
    try:
        configmap = api.request("GET", f"{_PATH.format(namespace=quote(namespace))}/{quote(name)}")
    except KubeError as error:
        if error.status in (403, 404):
            return None
        raise
    data = configmap.get("data")
    return data if isinstance(data, dict) else {}


def read_json(api: KubeApi, namespace: str, name: str, key: str) -> Any:
    """The JSON document under `key`; None when there is none or it is not JSON (hand-edited: as good as none)."""
    raw = (read_data(api, namespace, name) or {}).get(key)
    if not isinstance(raw, str):
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def write_json(api: KubeApi, namespace: str, name: str, key: str, document: Any, *, component: str,
               indent: bool = True) -> None:
    """Create or replace the ConfigMap (a full PUT: the leading replica is its only writer). `indent` for a
    document people read with kubectl; compact for a big one."""
    body = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"app.kubernetes.io/name": "v4only", "app.kubernetes.io/component": component}},
        "data": {key: orjson.dumps(document, option=orjson.OPT_INDENT_2 if indent else None).decode()},
    }
    path = _PATH.format(namespace=quote(namespace))
    try:
        api.request("PUT", f"{path}/{quote(name)}", body=body)
    except KubeError as error:
        if error.status != 404:
            raise
        api.request("POST", path, body=body)
