"""Read a kubelet's /configz directly, authorized by `get nodes/configz` (KEP-2862), not through `nodes/proxy`.

The direct read goes to `https://<node address>:<status.daemonEndpoints.kubeletEndpoint.Port>/configz` with
the caller's own credentials (the ServiceAccount token in a pod, the kubeconfig's user for `doctor`). The
kubelet checks `nodes/configz` first and, failing that, `nodes/proxy` (kubelet `server/auth.go`, gate
`KubeletFineGrainedAuthz`: beta and on in 1.33, GA in 1.36; shared/reference/kubernetes.md §4).

The kubelet's serving certificate is verified against the cluster CA (the ServiceAccount's ca.crt, or the
kubeconfig's certificate-authority) or an admin-configured kubelet CA bundle. The TLS handshake finishes
before any byte of the request is written, so a kubelet that does not prove itself never sees the token,
unless the risk-named setting V4ONLY_INSECURE_SEND_TOKEN_TO_UNVERIFIED_KUBELETS says so.

The API server's node proxy (`nodes/proxy`, which on the kubelet also authorizes exec/run) is a fallback
only when enabled (the `configz-via-proxy` kustomize component sets V4ONLY_CONFIGZ_VIA_PROXY) and only when
the kubelet refused us (401: token authentication off; 403: neither nodes/configz nor nodes/proxy granted,
which also refuses the proxy) or could not be reached (a network policy): never after a certificate that
does not verify, which is a trust question and not a reachability one. With no CA at all no kubelet is
dialled, and the proxy (when enabled) is asked instead.
"""

from __future__ import annotations

import http.client
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from webhook.adapters.kube import Credentials, KubeApi, KubeError, KubeletConfig, parse_configz

__all__ = ["ConfigzRead", "KubeletAccess", "KubeletConfigz"]

# kubeadm's `--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname` (its control-plane manifest).
# The API server's own default is Hostname,InternalDNS,InternalIP,ExternalDNS,ExternalIP; a Hostname is often
# not resolvable from a pod, so v4only starts with the addresses the kubelet's serving certificate names.
DEFAULT_ADDRESS_TYPES = ("InternalIP", "ExternalIP", "Hostname")
_KNOWN_ADDRESS_TYPES = {"Hostname", "InternalIP", "ExternalIP", "InternalDNS", "ExternalDNS"}
TIMEOUT = 5.0  # seconds, connect and each read
MAX_BODY = 4 << 20  # a KubeletConfiguration is a few KiB; MicroK8s kubelite adds other components' configs

Path = Literal["direct", "proxy", "none"]


@dataclass(frozen=True, slots=True)
class KubeletAccess:
    """How v4only may reach kubelets; from the environment so the Deployment (and its kustomize components)
    sets it next to the RBAC that goes with it."""

    address_types: tuple[str, ...] = DEFAULT_ADDRESS_TYPES
    ca_file: str | None = None  # an admin's kubelet CA bundle, used instead of the cluster CA
    send_token_to_unverified: bool = False
    proxy_fallback: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KubeletAccess:
        env = os.environ if environ is None else environ
        types = tuple(t.strip() for t in env.get("V4ONLY_KUBELET_ADDRESS_TYPES", "").split(",") if t.strip())
        unknown = sorted(set(types) - _KNOWN_ADDRESS_TYPES)
        if unknown:
            raise ValueError(f"V4ONLY_KUBELET_ADDRESS_TYPES: unknown node address type(s) {', '.join(unknown)}")
        return cls(
            address_types=types or DEFAULT_ADDRESS_TYPES,
            ca_file=env.get("V4ONLY_KUBELET_CA_FILE") or None,
            send_token_to_unverified=_flag(env, "V4ONLY_INSECURE_SEND_TOKEN_TO_UNVERIFIED_KUBELETS"),
            proxy_fallback=_flag(env, "V4ONLY_CONFIGZ_VIA_PROXY"),
        )


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value not in {"", "true", "false", "1", "0"}:
        raise ValueError(f"{name}: expected true or false, got {value!r}")
    return value in {"true", "1"}


@dataclass(frozen=True, slots=True)
class ConfigzRead:
    """One node's answer: the allowlist (None: unknown), which path read it, and why not the direct one.

    `direct_error` and `proxy_error` are short (for doctor's table: "403 Forbidden", "unreachable", ...);
    `detail` is the whole story for logs.
    """

    config: KubeletConfig | None  # None: not read
    path: Path
    direct_error: str = ""  # why the direct read did not answer ("" when it did)
    proxy_error: str = ""  # why the proxy read did not answer ("" when it did or was not tried)
    detail: str = ""

    @property
    def allowlist(self) -> tuple[str, ...] | None:
        return None if self.config is None else self.config.allowed_unsafe_sysctls

    @property
    def error(self) -> str:
        parts = (("direct", self.direct_error), ("proxy", self.proxy_error))
        return "; ".join(f"{path}: {error}" for path, error in parts if error)


class _Refused(Exception):
    """The kubelet (or something on the way) answered, but not with the configuration."""

    def __init__(self, short: str, detail: str = "", *, may_fall_back: bool) -> None:
        super().__init__(detail or short)
        self.short, self.may_fall_back = short, may_fall_back


class KubeletConfigz:
    """Reads kubelets' /configz for the tracker and `doctor`, with the API's credentials and CA."""

    def __init__(self, api: KubeApi, access: KubeletAccess, credentials: Credentials | None = None) -> None:
        self._api, self._access = api, access
        creds = credentials or api.kubelet_credentials()
        self._authorization = creds.authorization
        ca_file = access.ca_file or creds.ca_file
        try:
            self._verified = _context(ca_file, creds.cert_file, creds.key_file) if ca_file else None
        except (OSError, ssl.SSLError) as error:
            raise ValueError(f"cannot load the CA for kubelets {ca_file}: {error}") from None
        self._no_ca_reason = "" if ca_file else "no CA to verify kubelets (no cluster CA, no V4ONLY_KUBELET_CA_FILE)"
        self._unverified = (
            _context(None, creds.cert_file, creds.key_file) if access.send_token_to_unverified else None
        )

    @classmethod
    def from_env(cls, api: KubeApi) -> KubeletConfigz:
        """From V4ONLY_KUBELET_* (ValueError naming the variable or file when one is wrong)."""
        return cls(api, KubeletAccess.from_env())

    def config(self, node: str) -> KubeletConfig:
        """The node's kubelet configuration, or KubeError saying why each path failed."""
        result = self.read_by_name(node)
        if result.config is None:
            raise KubeError(0, f"configz of node {node}: {result.detail or result.error}")
        return result.config

    def read_by_name(self, node: str) -> ConfigzRead:
        """Look the node up (`list` with a name selector), then `read`: for a caller without the Node object
        (the tracker passes the one its watch keeps)."""
        try:
            items = self._api.list("nodes", field_selector=f"metadata.name={node}").items
        except KubeError as error:
            return ConfigzRead(None, "none", "node not readable", detail=str(error))
        if not items:
            return ConfigzRead(None, "none", "node gone", detail="the node is gone")
        return self.read(items[0])

    def read(self, node: Mapping[str, Any]) -> ConfigzRead:
        name = str((node.get("metadata") or {}).get("name") or "")
        try:
            return ConfigzRead(self._direct(node, name), "direct")
        except _Refused as refused:
            direct, detail, fall_back = refused.short, f"direct: {refused}", refused.may_fall_back
        if not (fall_back and self._access.proxy_fallback):
            return ConfigzRead(None, "none", direct, detail=detail)
        try:
            return ConfigzRead(self._api.kubelet_config(name), "proxy", direct, detail=detail)
        except KubeError as error:
            return ConfigzRead(None, "none", direct, _short(error), f"{detail}; proxy: {error}")

    def _direct(self, node: Mapping[str, Any], name: str) -> KubeletConfig:
        host, port = self._endpoint(node)
        first = self._verified or self._unverified
        if first is None:  # no kubelet dialled: the opt-in proxy may answer
            raise _Refused("no CA for kubelets", self._no_ca_reason, may_fall_back=True)
        try:
            connection = self._connect(host, port, first)
        except ssl.SSLCertVerificationError as error:
            if self._unverified is None:
                reason = f"kubelet certificate not trusted: {error.verify_message}"
                raise _Refused("certificate not trusted", reason, may_fall_back=False) from None
            # V4ONLY_INSECURE_SEND_TOKEN_TO_UNVERIFIED_KUBELETS: the admin accepted sending the token anyway.
            connection = self._connect(host, port, self._unverified)
        try:
            try:
                connection.request("GET", "/configz", headers=self._headers())
                response = connection.getresponse()
                body = response.read(MAX_BODY + 1)
            except (OSError, http.client.HTTPException) as error:
                raise _Refused("unreachable", f"kubelet unreachable: {error}", may_fall_back=True) from None
        finally:
            connection.close()
        if response.status in (401, 403):
            text = body[:200].decode("utf-8", "replace").strip()
            short = "403 Forbidden" if response.status == 403 else "401 Unauthorized"
            raise _Refused(short, f"kubelet answered {response.status}: {text}", may_fall_back=True)
        if response.status != 200:
            raise _Refused(f"HTTP {response.status}", f"kubelet answered HTTP {response.status}", may_fall_back=False)
        if len(body) > MAX_BODY:
            raise _Refused("configz too large", "kubelet configz is larger than 4 MiB", may_fall_back=False)
        try:
            return parse_configz(orjson.loads(body), name)
        except (orjson.JSONDecodeError, KubeError) as error:
            raise _Refused("bad configz", f"kubelet configz: {error}", may_fall_back=False) from None

    @staticmethod
    def _connect(host: str, port: int, context: ssl.SSLContext) -> http.client.HTTPSConnection:
        """A connection whose TLS handshake (and certificate check) is done: only then is the token written.
        Raises SSLCertVerificationError for a certificate that does not verify, _Refused when unreachable."""
        connection = http.client.HTTPSConnection(host, port, context=context, timeout=TIMEOUT)
        try:
            connection.connect()
        except ssl.SSLCertVerificationError:
            connection.close()
            raise
        except (OSError, ssl.SSLError) as error:
            connection.close()
            raise _Refused("unreachable", f"kubelet unreachable: {error}", may_fall_back=True) from None
        return connection

    def _endpoint(self, node: Mapping[str, Any]) -> tuple[str, int]:
        status = node.get("status") or {}
        port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
        if not isinstance(port, int) or not 0 < port < 65536:
            raise _Refused("no kubelet port", "the node has no status.daemonEndpoints port", may_fall_back=True)
        addresses = [a for a in status.get("addresses") or [] if isinstance(a, dict)]
        for kind in self._access.address_types:
            for address in addresses:
                if address.get("type") == kind and address.get("address"):
                    return str(address["address"]), port
        wanted = ", ".join(self._access.address_types)
        raise _Refused("no address", f"the node has no address of type {wanted}", may_fall_back=True)

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        authorization = self._authorization()
        if authorization:
            headers["Authorization"] = authorization
        return headers


def _context(ca_file: str | None, cert_file: str | None, key_file: str | None) -> ssl.SSLContext:
    """Verifying against `ca_file` (hostname = the node address dialled), or not verifying at all."""
    if ca_file:
        context = ssl.create_default_context(cafile=ca_file)
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_file:
        context.load_cert_chain(cert_file, key_file)
    return context


def _short(error: KubeError) -> str:
    if error.status == 403:
        return "403 Forbidden"
    if error.status == 503:
        return "503 kubelet unreachable"
    return "unreachable" if error.status == 0 else f"HTTP {error.status}"
