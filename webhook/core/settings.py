"""Settings: one YAML document (a ConfigMap in the cluster), checked strictly at start-up.

`parse_settings` takes the already-parsed mapping; reading the file is the adapters' job. Every error
names the key, so a typo in a ConfigMap stops the server with a message instead of being ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from webhook.core import sysctls
from webhook.core.dns_remedy import DNS_MODES, DnsMode

EnvMode = Literal["set", "append"]
MixedPolicy = Literal["affinity", "env"]
PodSecurityLevel = Literal["privileged", "baseline", "restricted"]


# apimachinery validation.go IsEnvVarName: envVarNameFmt, and never ".", ".." or a "..." prefix. The strict
# form, not IsRelaxedEnvVarName (feature gate RelaxedEnvironmentVariableValidation): every API server accepts
# what it accepts. `fullmatch`, as Go's anchored regexp: no trailing newline slips through.
_ENV_NAME_RE = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")


class SettingsError(ValueError):
    """A settings file with an unknown key or a bad value; the message names the key."""


@dataclass(frozen=True, slots=True)
class Sysctl:
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class FallbackVar:
    """An environment variable of the `env` remedy: `set` adds it if absent, `append` adds a flag."""

    name: str
    value: str
    mode: EnvMode


@dataclass(frozen=True, slots=True)
class DnsRemedy:
    """Rule 7: `auto` adds the cluster-only search list where the probe found a trap (product.md)."""

    mode: DnsMode = "auto"
    probe_names: tuple[str, ...] = ("pypi.org",)
    probe_interval_seconds: float = 300.0


@dataclass(frozen=True, slots=True)
class Settings:
    sysctls: tuple[Sysctl, ...] = (Sysctl("net.ipv6.conf.all.disable_ipv6", "1"),)
    fallback_env: tuple[FallbackVar, ...] = (
        FallbackVar("NODE_OPTIONS", "--dns-result-order=ipv4first", "append"),
        FallbackVar("JAVA_TOOL_OPTIONS", "-Djava.net.preferIPv4Stack=true", "append"),
    )
    # Only where uv's network start is known to fail and no DNS remedy cures it, or where asked
    # (v4only.io/uv-offline): an image that relies on `uv run` to install at start fails under it.
    uv_offline_env: tuple[FallbackVar, ...] = (
        FallbackVar("UV_NO_SYNC", "1", "set"),
        FallbackVar("UV_PYTHON_DOWNLOADS", "never", "set"),
    )
    excluded_namespaces: frozenset[str] = frozenset({"kube-system", "v4only-system"})
    # What to do when only some candidate nodes accept the sysctl (and node labels are published).
    mixed_clusters: MixedPolicy = "affinity"
    dns: DnsRemedy = field(default_factory=DnsRemedy)
    # The cluster-wide Pod Security enforce default (AdmissionConfiguration), for unlabelled namespaces.
    pod_security_default: PodSecurityLevel = "privileged"
    # Capability older than this is not trusted: decisions fall back to `env`.
    capability_max_age_seconds: float = 600.0

    @property
    def sysctl_names(self) -> frozenset[str]:
        """Managed sysctl names, normalised as the kubelet does (`/` and `.`)."""
        return frozenset(sysctls.normalize_name(s.name) for s in self.sysctls)


_TOP_KEYS = {
    "sysctls",
    "fallbackEnv",
    "uvOfflineEnv",
    "excludedNamespaces",
    "mixedClusters",
    "dns",
    "podSecurityDefault",
    "capabilityMaxAgeSeconds",
}


def parse_settings(raw: Any) -> Settings:
    """Build Settings from a parsed YAML document; missing keys keep their defaults."""
    if raw is None:
        return Settings()
    doc = _mapping(raw, "settings", {k: None for k in _TOP_KEYS})
    defaults = Settings()
    return Settings(
        sysctls=_parse_sysctls(doc["sysctls"]) if "sysctls" in doc else defaults.sysctls,
        fallback_env=(
            _parse_fallback(doc["fallbackEnv"], "fallbackEnv") if "fallbackEnv" in doc else defaults.fallback_env
        ),
        uv_offline_env=(
            _parse_fallback(doc["uvOfflineEnv"], "uvOfflineEnv") if "uvOfflineEnv" in doc else defaults.uv_offline_env
        ),
        excluded_namespaces=(
            frozenset(_strings(doc["excludedNamespaces"], "excludedNamespaces"))
            if "excludedNamespaces" in doc
            else defaults.excluded_namespaces
        ),
        mixed_clusters=_choice(doc.get("mixedClusters", "affinity"), "mixedClusters", ("affinity", "env")),
        dns=_parse_dns(doc["dns"]) if "dns" in doc else defaults.dns,
        pod_security_default=_choice(
            doc.get("podSecurityDefault", "privileged"),
            "podSecurityDefault",
            ("privileged", "baseline", "restricted"),
        ),
        capability_max_age_seconds=_positive_number(
            doc.get("capabilityMaxAgeSeconds", defaults.capability_max_age_seconds), "capabilityMaxAgeSeconds"
        ),
    )


def _mapping(raw: Any, where: str, allowed: Mapping[str, object]) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise SettingsError(f"{where}: expected a mapping, got {type(raw).__name__}")
    unknown = sorted(str(k) for k in raw if k not in allowed)
    if unknown:
        raise SettingsError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(allowed))})")
    return raw


def _list(raw: Any, where: str) -> list[Any]:
    if not isinstance(raw, list):
        raise SettingsError(f"{where}: expected a list, got {type(raw).__name__}")
    return raw


def _string(raw: Any, where: str) -> str:
    # YAML turns `1` into an int; a sysctl or env value is a string in the API, so say so.
    if not isinstance(raw, str):
        raise SettingsError(f"{where}: expected a string (quote it in YAML), got {type(raw).__name__}")
    return raw


def _strings(raw: Any, where: str) -> list[str]:
    return [_string(item, f"{where}[{i}]") for i, item in enumerate(_list(raw, where))]


def _choice(raw: Any, where: str, choices: tuple[str, ...]) -> Any:
    if raw not in choices:
        raise SettingsError(f"{where}: {raw!r} is not one of {', '.join(choices)}")
    return raw


def _positive_number(raw: Any, where: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw <= 0:
        raise SettingsError(f"{where}: expected a positive number, got {raw!r}")
    return float(raw)


def _parse_sysctls(raw: Any) -> tuple[Sysctl, ...]:
    items = _list(raw, "sysctls")
    if not items:
        raise SettingsError("sysctls: at least one sysctl is needed")
    parsed: list[Sysctl] = []
    for i, item in enumerate(items):
        where = f"sysctls[{i}]"
        entry = _mapping(item, where, {"name": None, "value": None})
        name = _string(entry.get("name"), f"{where}.name")
        if not sysctls.is_valid_name(name):
            raise SettingsError(f"{where}.name: {name!r} is not a valid sysctl name")
        if sysctls.namespace_of(name) is None:  # the kubelet refuses such an allowlist entry (allowlist.go)
            raise SettingsError(f"{where}.name: {name!r} is not namespaced, so no kubelet can allow it")
        parsed.append(Sysctl(name, _string(entry.get("value"), f"{where}.value")))
    names = [sysctls.normalize_name(s.name) for s in parsed]
    if len(set(names)) != len(names):
        raise SettingsError("sysctls: a sysctl is listed twice")
    return tuple(parsed)


def _parse_fallback(raw: Any, key: str) -> tuple[FallbackVar, ...]:
    parsed: list[FallbackVar] = []
    for i, item in enumerate(_list(raw, key)):
        where = f"{key}[{i}]"
        entry = _mapping(item, where, {"name": None, "value": None, "mode": None})
        name = _string(entry.get("name"), f"{where}.name")
        if _ENV_NAME_RE.fullmatch(name) is None or name == "." or name.startswith(".."):
            raise SettingsError(
                f"{where}.name: {name!r} is not a valid environment variable name (letters, digits, '_', '-', '.'; "
                "not starting with a digit)"
            )
        mode = _choice(entry.get("mode", "set"), f"{where}.mode", ("set", "append"))
        parsed.append(FallbackVar(name, _string(entry.get("value"), f"{where}.value"), mode))
    if len({v.name for v in parsed}) != len(parsed):
        raise SettingsError(f"{key}: a variable is listed twice")
    return tuple(parsed)


def _parse_dns(raw: Any) -> DnsRemedy:
    entry = _mapping(raw, "dns", {"mode": None, "probeNames": None, "probeIntervalSeconds": None})
    defaults = DnsRemedy()
    mode = _choice(entry.get("mode", "auto"), "dns.mode", DNS_MODES)
    names = tuple(_strings(entry["probeNames"], "dns.probeNames")) if "probeNames" in entry else defaults.probe_names
    for name in names:
        if not _DNS_NAME.fullmatch(name):
            raise SettingsError(f"dns.probeNames: {name!r} is not a DNS name")
    interval = _positive_number(entry.get("probeIntervalSeconds", defaults.probe_interval_seconds),
                                "dns.probeIntervalSeconds")
    return DnsRemedy(mode=mode, probe_names=names, probe_interval_seconds=interval)


_DNS_NAME = re.compile(r"(?=.{1,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
