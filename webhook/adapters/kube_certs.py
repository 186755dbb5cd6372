"""Kubernetes I/O for `v4only certs`: the two Secrets, the webhook configuration's caBundle, the Service endpoints.

Every function takes a `kubernetes.client.ApiClient` and speaks plain dicts/bytes: requests go through
`ApiClient.param_serialize` + `call_api` (so kubeconfig auth, TLS and proxies are the client's own) and responses
are parsed as JSON here, never deserialised into the client's models (v37 validates models strictly).
The `kubernetes` package is imported on first use only, so `v4only --help` stays fast.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from webhook.adapters.kube import KubeApi, KubeError

MWC_PATH = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
MANAGED_BY = {"app.kubernetes.io/name": "v4only", "app.kubernetes.io/managed-by": "v4only-certs"}


# ---------------------------------------------------------------------------------------------- Secrets


def read_secret(api: KubeApi, namespace: str, name: str) -> dict[str, bytes] | None:
    """The Secret's data, base64-decoded; None when the Secret does not exist."""
    secret = _request(api, "GET", _secret_path(namespace, name), missing_ok=True)
    if secret is None:
        return None
    data = secret.get("data") or {}
    return {key: base64.b64decode(value) for key, value in data.items()}


def write_secret(
    api: KubeApi,
    namespace: str,
    name: str,
    data: Mapping[str, bytes],
    *,
    secret_type: str,
    labels: Mapping[str, str] = MANAGED_BY,
) -> str:
    """Create the Secret, or replace its data; "created", "updated" or "unchanged".

    An update sends the resourceVersion that was read, so a concurrent writer makes this fail (409) instead of one
    silently overwriting the other.
    """
    encoded = {key: base64.b64encode(value).decode("ascii") for key, value in data.items()}
    current = _request(api, "GET", _secret_path(namespace, name), missing_ok=True)
    if current is None:
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
            "type": secret_type,
            "data": encoded,
        }
        _request(api, "POST", f"/api/v1/namespaces/{quote(namespace)}/secrets", body=body)
        return "created"
    if current.get("type", "Opaque") != secret_type:
        raise KubeError(
            422,
            f"Secret {namespace}/{name} has type {current.get('type')!r}, expected {secret_type!r} "
            "(the type cannot change: delete the Secret first)",
        )
    if (current.get("data") or {}) == encoded:
        return "unchanged"
    metadata = current.setdefault("metadata", {})
    metadata["labels"] = {**(metadata.get("labels") or {}), **labels}
    current["data"] = encoded
    _request(api, "PUT", _secret_path(namespace, name), body=current)
    return "updated"


# -------------------------------------------------------------------------------- webhook configuration


def read_webhook_ca_bundles(api: KubeApi, name: str) -> dict[str, bytes] | None:
    """Each webhook's `clientConfig.caBundle` (b"" when unset) by webhook name; None when there is no such MWC."""
    mwc = _request(api, "GET", f"{MWC_PATH}/{quote(name)}", missing_ok=True)
    if mwc is None:
        return None
    return {
        webhook["name"]: base64.b64decode((webhook.get("clientConfig") or {}).get("caBundle") or "")
        for webhook in mwc.get("webhooks") or []
    }


def list_webhook_configurations(api: KubeApi, *, page_size: int = 500) -> list[dict[str, Any]]:
    """Every MutatingWebhookConfiguration of the cluster, as plain dicts (paginated; `list` only, no `get`)."""
    items: list[dict[str, Any]] = []
    query = {"limit": str(page_size)}
    while True:
        page = _request(api, "GET", MWC_PATH, query=query)
        items += [item for item in (page or {}).get("items") or [] if isinstance(item, dict)]
        token = ((page or {}).get("metadata") or {}).get("continue")
        if not token:
            return items
        query["continue"] = str(token)


def write_webhook_ca_bundle(api: KubeApi, name: str, bundle: bytes) -> list[str]:
    """Set `caBundle` on every webhook of the MWC whose value differs; return the names changed.

    A JSON patch with a `test` of each webhook's name at its index: if the list changed since it was read, the
    whole patch fails instead of writing a bundle into the wrong webhook.
    """
    mwc = _request(api, "GET", f"{MWC_PATH}/{quote(name)}")
    assert mwc is not None
    value = base64.b64encode(bundle).decode("ascii")
    operations: list[dict[str, Any]] = []
    changed: list[str] = []
    for index, webhook in enumerate(mwc.get("webhooks") or []):
        client_config = webhook.get("clientConfig") or {}
        if client_config.get("caBundle") == value:
            continue
        operations.append({"op": "test", "path": f"/webhooks/{index}/name", "value": webhook["name"]})
        operations.append({"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": value})
        changed.append(webhook["name"])
    if operations:
        _request(
            api,
            "PATCH",
            f"{MWC_PATH}/{quote(name)}",
            body=operations,
            content_type="application/json-patch+json",
        )
    return changed


# ------------------------------------------------------------------------------------------- endpoints


def ready_endpoints(
    api: KubeApi, namespace: str, service: str, *, port_name: str | None = None
) -> list[tuple[str, int]]:
    """(address, port) of every ready endpoint of the Service, from its EndpointSlices.

    `port_name` picks the Service port by name; without it the slice's only port is used (an error if several).
    """
    slices = _request(
        api,
        "GET",
        f"/apis/discovery.k8s.io/v1/namespaces/{quote(namespace)}/endpointslices",
        query={"labelSelector": f"kubernetes.io/service-name={service}"},
    )
    assert slices is not None
    found: list[tuple[str, int]] = []
    for item in slices.get("items") or []:
        ports = [p for p in item.get("ports") or [] if port_name is None or p.get("name") == port_name]
        if len(ports) != 1 or ports[0].get("port") is None:
            continue
        port = int(ports[0]["port"])
        for endpoint in item.get("endpoints") or []:
            # `ready` unset means ready (discovery.k8s.io/v1 EndpointConditions).
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            found.extend((address, port) for address in endpoint.get("addresses") or [])
    return sorted(set(found))


# --------------------------------------------------------------------------------------------- helpers


def _secret_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{quote(namespace)}/secrets/{quote(name)}"


def _request(
    api: KubeApi,
    method: str,
    path: str,
    *,
    query: Mapping[str, str] | None = None,
    body: Any = None,
    content_type: str = "application/json",
    missing_ok: bool = False,
) -> Any:
    """One API call; the parsed JSON body, or None for a 404 when `missing_ok`. Other failures raise KubeError."""
    try:
        return api.request(method, path, query=query, body=body, content_type=content_type)
    except KubeError as error:
        if missing_ok and error.status == 404:
            return None
        raise
