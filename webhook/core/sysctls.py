"""Sysctl names and the kubelet's unsafe-sysctl allowlist rules, reproduced exactly.

Sources (shared/reference/kubernetes.md §1):
- kubernetes/component-helpers node/util/sysctl/sysctl.go `NormalizeName` and namespace.go `GetNamespace`;
- kubernetes/kubernetes pkg/kubelet/sysctl/allowlist.go `NewAllowlist` / `validateSysctl`;
- pkg/apis/policy/validation/validation.go `IsValidSysctlPattern`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# policy/validation: sysctlContainSlashPatternFmt; at most 253 characters. Used with `fullmatch`: Go's
# `^...$` never matches before a final newline, Python's `$` does (a YAML block scalar ends with one).
_PATTERN_RE = re.compile(r"([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\./])*([a-z0-9][-_a-z0-9]*)?[a-z0-9*]")
# core/validation: SysctlContainSlashFmt (names in a pod spec: no `*`).
_NAME_RE = re.compile(r"([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?")
MAX_LENGTH = 253

# component-helpers namespace.go (identical in 1.29-1.36): exact IPC names and namespaced prefixes.
_IPC_NAMES = frozenset(
    {
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
        "kernel.shm",
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.msg",
    }
)
_NAMESPACED_PREFIXES = ("net.", "fs.mqueue.")

# Pod Security "baseline" allowed sysctls (pod-security-admission policy/check_sysctls.go, v1.32 set,
# compared by exact raw name). No version allows any net.ipv6.* name.
PSA_BASELINE_ALLOWED = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
        "net.ipv4.tcp_rmem",
        "net.ipv4.tcp_wmem",
    }
)


def normalize_name(name: str) -> str:
    """The kubelet's NormalizeName: if the first separator is `/`, swap every `/` and `.`."""
    dot, slash = name.find("."), name.find("/")
    if slash == -1 or (dot != -1 and dot < slash):
        return name
    return name.translate(str.maketrans("./", "/."))


def is_valid_name(name: str) -> bool:
    """A sysctl name the API server accepts in `spec.securityContext.sysctls`."""
    return len(name) <= MAX_LENGTH and _NAME_RE.fullmatch(name) is not None


def _namespace_of(name: str) -> str | None:
    if name in _IPC_NAMES:
        return "IPC"
    for prefix in _NAMESPACED_PREFIXES:
        if name.startswith(prefix):
            return "Net" if prefix == "net." else "IPC"
    return None


def pattern_error(pattern: str) -> str | None:
    """Why the kubelet would refuse to start with this allowlist entry, or None if it is valid."""
    if len(pattern) > MAX_LENGTH or _PATTERN_RE.fullmatch(pattern) is None:
        return f"sysctl {pattern!r} must have at most {MAX_LENGTH} characters and match the kubelet's pattern"
    normal = normalize_name(pattern)
    prefix = normal.split("*", 1)[0]
    if _namespace_of(prefix) is None:
        return f"the sysctls {prefix!r} are not known to be namespaced"
    return None


@dataclass(frozen=True, slots=True)
class Allowlist:
    """The kubelet's compiled allowlist: exact names and `*` prefixes, both normalised.

    Invalid entries are kept aside (`invalid`): a real kubelet would not even start with them, so they
    never allow anything here.
    """

    exact: frozenset[str]
    prefixes: tuple[str, ...]
    invalid: tuple[str, ...] = ()

    @classmethod
    def parse(cls, patterns: Iterable[str]) -> Allowlist:
        exact: set[str] = set()
        prefixes: list[str] = []
        invalid: list[str] = []
        for pattern in patterns:
            if pattern_error(pattern) is not None:
                invalid.append(pattern)
                continue
            normal = normalize_name(pattern)
            if normal.endswith("*"):
                prefixes.append(normal[:-1])
            else:
                exact.add(normal)
        return cls(frozenset(exact), tuple(prefixes), tuple(invalid))

    def allows(self, name: str) -> bool:
        normal = normalize_name(name)
        return normal in self.exact or any(normal.startswith(p) for p in self.prefixes)
