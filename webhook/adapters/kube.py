"""The one seam between v4only's capability code and the Kubernetes API: plain dicts in and out.

Requests go through the `kubernetes` client's `ApiClient.param_serialize` + `call_api`, so kubeconfig
auth, TLS and proxies are the client's own, but bodies are parsed as JSON here (orjson) and never
turned into the client's models: v37 validates models strictly and a watch of thousands of nodes
would pay for it on every event. Every failure, HTTP or network, becomes `KubeError` with the HTTP
status (0 when the server could not be reached or did not answer in time); nothing above this module
sees `ApiException` or urllib3.

Only what the tracker, the Lease lock and `doctor` use is here (see `webhook/adapters/rbac_used.py`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import orjson
import urllib3

from webhook.core.dns_remedy import KubeletDns, kubelet_dns

__all__ = [
    "Credentials", "KubeApi", "KubeError", "KubeletConfig", "Listing", "Resource", "WatchStream", "parse_configz",
]

Resource = Literal["nodes", "namespaces", "pods"]
_COLLECTIONS: Mapping[Resource, str] = {
    "nodes": "/api/v1/nodes",
    "namespaces": "/api/v1/namespaces",
    "pods": "/api/v1/pods",
}
LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
TIMEOUT = (5.0, 30.0)  # (connect, read) seconds for ordinary calls
PAGE_SIZE = 500


class KubeError(Exception):
    """An API call failed: HTTP status (0 when the server could not be reached) and the server's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class KubeletConfig:
    """What v4only reads of a kubelet's /configz: its unsafe-sysctl allowlist and its cluster DNS (rule 7)."""

    allowed_unsafe_sysctls: tuple[str, ...]
    dns: KubeletDns


def parse_configz(body: Any, node: str) -> KubeletConfig:
    """The /configz body: `{"kubeletconfig": {...KubeletConfiguration v1beta1...}}`.

    Other components in the same process (MicroK8s kubelite) may add keys, so only `kubeletconfig` is read.
    `allowedUnsafeSysctls` is omitted when empty (shared/reference/kubernetes.md §4); a malformed one is an
    error, since the capability verdict rests on it. A malformed `clusterDNS`/`clusterDomain` only means
    "not known" for the DNS remedy (`webhook.core.dns_remedy.kubelet_dns`).
    """
    config = body.get("kubeletconfig") if isinstance(body, dict) else None
    if not isinstance(config, dict):
        raise KubeError(0, f"configz of node {node} has no kubeletconfig")
    allowed = config.get("allowedUnsafeSysctls") or []
    if not isinstance(allowed, list) or not all(isinstance(p, str) for p in allowed):
        raise KubeError(0, f"configz of node {node}: allowedUnsafeSysctls is not a list of strings")
    return KubeletConfig(tuple(allowed), kubelet_dns(config))


def load_api_client(*, kubeconfig: str | None = None, context: str | None = None) -> Any:
    """An ApiClient from `kubeconfig` (or $KUBECONFIG, ~/.kube/config), else the in-cluster service account."""
    from kubernetes import client
    from kubernetes import config as untyped_config

    config: Any = untyped_config  # its loaders are untyped
    default = Path(os.path.expanduser("~/.kube/config"))
    source = _config_source(kubeconfig, default)
    try:
        if source is not None or context:
            return config.new_client_from_config(config_file=kubeconfig, context=context, persist_config=False)
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        return client.ApiClient(configuration)
    except (config.ConfigException, OSError) as error:
        reason = str(error).rstrip(".")
        tried = (
            f"{source}: {reason}"
            if source
            else f"tried --kubeconfig (not given), $KUBECONFIG (unset), {default} (missing), in-cluster ({reason})"
        )
        message = f"cannot load a Kubernetes client configuration: {tried}"
        raise KubeError(0, message + NO_CONFIG_HINT) from None


# What a newcomer with no kubeconfig needs; MicroK8s keeps its own apart from ~/.kube/config.
NO_CONFIG_HINT = "; pass --kubeconfig FILE or set $KUBECONFIG (MicroK8s: microk8s config > ~/.kube/config)"


def _config_source(kubeconfig: str | None, default: Path) -> str | None:
    """Which kubeconfig the client will read, in the client's own order; None: the in-cluster service account."""
    if kubeconfig:
        return f"--kubeconfig {kubeconfig}"
    if os.environ.get("KUBECONFIG"):
        return f"$KUBECONFIG={os.environ['KUBECONFIG']}"
    if default.exists():
        return str(default)
    return None


@dataclass(frozen=True, slots=True)
class Listing:
    items: list[dict[str, Any]]
    resource_version: str


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the client authenticates with, for talking to kubelets directly (webhook/adapters/kubelet.py)."""

    ca_file: str | None  # the cluster CA: the ServiceAccount's ca.crt, or the kubeconfig's certificate-authority
    cert_file: str | None
    key_file: str | None
    authorization: Callable[[], str | None]  # the Authorization header; in a pod the token file is re-read


class WatchStream:
    """The events of one watch request, as (type, object) pairs; `close()` may be called from any thread.

    An `ERROR` event (for example `410 Gone`: the resourceVersion is too old) raises KubeError with the
    Status's code. The stream ends when the server closes it (after `timeoutSeconds`); a server that
    sends nothing for `read_timeout` seconds raises KubeError(0), which is the watchdog for a hung
    connection.
    """

    def __init__(self, response: Any, description: str) -> None:
        self._response = response
        self._description = description
        self._closed = False

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        try:
            for line in self._lines():
                event = orjson.loads(line)
                kind, obj = str(event.get("type", "")), event.get("object")
                if not isinstance(obj, dict):
                    raise KubeError(0, f"{self._description}: malformed watch event")
                if kind == "ERROR":
                    raise KubeError(int(obj.get("code") or 0), f"{self._description}: {obj.get('message', '')}")
                yield kind, obj
        except (urllib3.exceptions.HTTPError, OSError, orjson.JSONDecodeError) as error:
            if not self._closed:
                raise KubeError(0, f"{self._description}: {error}") from None
        finally:
            self._release()

    def close(self) -> None:
        """Stop the stream; a thread blocked reading it wakes up and sees the end."""
        self._closed = True
        with contextlib.suppress(Exception):
            self._response.shutdown()
        self._release()

    def _lines(self) -> Iterator[bytes]:
        response = self._response
        if response.chunked and response.supports_chunked_reads():
            chunks: Iterator[bytes] = response.read_chunked(decode_content=True)
        else:
            chunks = iter(lambda: bytes(response.read1(65536)), b"")
        buffer = b""
        for chunk in chunks:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            yield from (line for line in lines if line.strip())
            if self._closed:
                return
        if buffer.strip() and not self._closed:
            yield buffer

    def _release(self) -> None:
        with contextlib.suppress(Exception):
            self._response.release_conn()


class KubeApi:
    """Kubernetes API calls v4only makes, over one `kubernetes.client.ApiClient`."""

    def __init__(self, client: Any) -> None:
        self._client = client

    @classmethod
    def connect(cls, *, kubeconfig: str | None = None, context: str | None = None) -> KubeApi:
        """From `kubeconfig`/`context` (or $KUBECONFIG, ~/.kube/config), else the in-cluster service account."""
        return cls(load_api_client(kubeconfig=kubeconfig, context=context))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()

    # ---- nodes, namespaces, pods

    def list(
        self,
        resource: Resource,
        *,
        field_selector: str | None = None,
        keep: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> Listing:
        """Every object (paginated), with the list's resourceVersion to start a watch from.

        `keep` trims each object as its page arrives, so a big list never sits in memory whole.
        """
        items: list[dict[str, Any]] = []
        query: dict[str, str] = {"limit": str(PAGE_SIZE)}
        if field_selector:
            query["fieldSelector"] = field_selector
        while True:
            page = self.request("GET", _COLLECTIONS[resource], query=query)
            page_items = (item for item in page.get("items") or [] if isinstance(item, dict))
            items.extend(map(keep, page_items) if keep else page_items)
            meta = page.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                return Listing(items, str(meta.get("resourceVersion") or ""))
            query["continue"] = str(token)

    def watch(
        self,
        resource: Resource,
        *,
        resource_version: str,
        timeout_seconds: int,
        read_timeout: float,
        field_selector: str | None = None,
    ) -> WatchStream:
        """A watch from `resource_version`; the server ends it after `timeout_seconds`."""
        query = {
            "watch": "true",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(timeout_seconds),
            "allowWatchBookmarks": "true",
        }
        if field_selector:
            query["fieldSelector"] = field_selector
        path = _COLLECTIONS[resource]
        response = self._send("GET", path, query=query, timeout=(TIMEOUT[0], read_timeout))
        return WatchStream(response, f"watch {path}")

    def kubelet_config(self, node: str) -> KubeletConfig:
        """What v4only reads of the running kubelet's configuration: /configz through the API server's node proxy.

        Needs `get nodes/proxy`: only the opt-in fallback of webhook/adapters/kubelet.py, which reads each
        kubelet directly (nodes/configz) first.
        """
        return parse_configz(self.request("GET", f"/api/v1/nodes/{quote(node, safe='')}/proxy/configz"), node)

    def kubelet_credentials(self) -> Credentials:
        configuration = self._client.configuration
        return Credentials(
            ca_file=configuration.ssl_ca_cert or None,
            cert_file=configuration.cert_file or None,
            key_file=configuration.key_file or None,
            authorization=lambda: configuration.get_api_key_with_prefix("BearerToken", alias="authorization") or None,
        )

    def patch_node_labels(self, node: str, labels: Mapping[str, str | None]) -> None:
        """A JSON merge patch of `metadata.labels` (None removes a label); nothing else on the node changes."""
        self.request(
            "PATCH",
            f"/api/v1/nodes/{quote(node, safe='')}",
            body={"metadata": {"labels": dict(labels)}},
            content_type="application/merge-patch+json",
        )

    # ---- coordination.k8s.io/v1 Lease (leader election)

    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.request("GET", f"{LEASES.format(namespace=quote(namespace))}/{quote(name)}")
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    def create_lease(self, namespace: str, lease: Mapping[str, Any]) -> dict[str, Any]:
        return self.request("POST", LEASES.format(namespace=quote(namespace)), body=lease)

    def replace_lease(self, namespace: str, name: str, lease: Mapping[str, Any]) -> dict[str, Any]:
        """PUT with the lease's resourceVersion: 409 when someone else wrote it since it was read."""
        return self.request("PUT", f"{LEASES.format(namespace=quote(namespace))}/{quote(name)}", body=lease)

    # ---- plumbing

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One call, JSON in and out, KubeError on failure. Sibling adapters (`kube_certs.py`,
        `kube_workloads.py`) use it with their own paths, kept next to their own permissions."""
        response = self._send(method, path, query=query, body=body, content_type=content_type, timeout=TIMEOUT)
        try:
            raw = response.data
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise KubeError(0, f"{method} {path}: {error}") from None
        finally:
            with contextlib.suppress(Exception):
                response.release_conn()
        try:
            parsed = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            raise KubeError(0, f"{method} {path}: the answer is not JSON") from None
        if not isinstance(parsed, dict):
            raise KubeError(0, f"{method} {path}: the answer is not a JSON object")
        return parsed

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None,
        timeout: tuple[float, float],
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        """The urllib3 response of a 2xx answer (body not read yet); anything else raises KubeError."""
        from kubernetes.client.exceptions import ApiException

        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        request = self._client.param_serialize(
            method=method,
            resource_path=path,
            query_params=list(query.items()) if query else None,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self._client.call_api(*request, _request_timeout=timeout).response
        except ApiException as error:
            raise KubeError(int(error.status or 0), f"{method} {path}: {error.reason}") from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise KubeError(0, f"{method} {path}: cannot reach the API server: {error}") from None
        if not 200 <= response.status < 300:
            message = _status_message(response)
            raise KubeError(int(response.status), f"{method} {path}: HTTP {response.status}: {message}")
        return response


def _status_message(response: Any) -> str:
    """The `message` of a metav1.Status body, or the start of whatever the body is."""
    try:
        raw = response.data
    except (urllib3.exceptions.HTTPError, OSError):
        return "(no body)"
    finally:
        with contextlib.suppress(Exception):
            response.release_conn()
    try:
        status = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return bytes(raw[:200]).decode("utf-8", "replace")
    if isinstance(status, dict) and status.get("message"):
        return str(status["message"])
    return bytes(raw[:200]).decode("utf-8", "replace")
