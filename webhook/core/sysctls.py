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

# Pod Security "baseline" allowed sysctls by the version that first allows them (pod-security-admission
# policy/check_sysctls.go, compared by exact raw name; tags v0.29.0-v0.36.0). No version allows net.ipv6.*.
_PSA_BASELINE_SINCE: tuple[tuple[int, frozenset[str]], ...] = (
    (0, frozenset({"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
                   "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start"})),
    (27, frozenset({"net.ipv4.ip_local_reserved_ports"})),
    (29, frozenset({"net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                    "net.ipv4.tcp_keepalive_probes"})),
    (32, frozenset({"net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"})),
)
# "latest" is the API server's own version, which v4only does not know: the newest released one stands for
# it. A newer version label is capped the same way (registry.go caps at the library's maxVersion). The v1.37
# additions (tcp_slow_start_after_idle, tcp_notsent_lowat) exist only in 1.37 alphas so far.
PSA_NEWEST_RELEASED_MINOR = 36
_PSA_VERSION = re.compile(r"v1\.([0-9]|[1-9][0-9]*)")  # api/helpers.go versionRegexp


def psa_baseline_allowed(version: str | None, server_floor: int | None = None) -> frozenset[str]:
    """The sysctls Pod Security baseline allows at `pod-security.kubernetes.io/enforce-version` (None or
    "latest": latest; an invalid value is latest too, as helpers.go ParseVersion makes it).

    `server_floor`: a minor the API server is known to be at or above. Pod Security caps the version at its
    own (registry.go EvaluatePod), so where that is only known to be the floor or newer, the floor is the
    version that can be relied on."""
    match = _PSA_VERSION.fullmatch(version or "")
    minor = min(int(match[1]), PSA_NEWEST_RELEASED_MINOR) if match else PSA_NEWEST_RELEASED_MINOR
    if server_floor is not None:
        minor = min(minor, server_floor)
    return frozenset().union(*(names for since, names in _PSA_BASELINE_SINCE if since <= minor))


def psa_baseline_since(name: str) -> int | None:
    """The first version whose Pod Security baseline list allows `name` (None: none does)."""
    return next((since for since, names in _PSA_BASELINE_SINCE if name in names), None)


def kubelet_minor(kubelet_version: str) -> int | None:
    """The minor of a kubelet version such as v1.33.1+k3s1 (None: not a v1.x version)."""
    match = _MAJOR_MINOR.match(kubelet_version)
    return int(match[2]) if match and match[1] == "1" else None


# The kubelet's safe sysctls, allowed on every node whatever its allowedUnsafeSysctls (kubelet.go appends
# SafeSysctlAllowlist() to them): name, the kubelet minor that made it safe, the kernel it needs
# (pkg/kubelet/sysctl/safe_sysctls.go and pkg/util/kernel constants; reference/kubernetes.md section 1).
_SAFE_SINCE: tuple[tuple[str, int, tuple[int, int]], ...] = (
    ("kernel.shm_rmid_forced", 0, (0, 0)),
    ("net.ipv4.ip_local_port_range", 0, (0, 0)),
    ("net.ipv4.tcp_syncookies", 0, (0, 0)),
    ("net.ipv4.ping_group_range", 18, (0, 0)),
    ("net.ipv4.ip_unprivileged_port_start", 22, (0, 0)),
    ("net.ipv4.ip_local_reserved_ports", 27, (3, 16)),
    ("net.ipv4.tcp_keepalive_time", 29, (4, 5)),
    ("net.ipv4.tcp_fin_timeout", 29, (4, 6)),
    ("net.ipv4.tcp_keepalive_intvl", 29, (4, 5)),
    ("net.ipv4.tcp_keepalive_probes", 29, (4, 5)),
    ("net.ipv4.tcp_rmem", 32, (4, 15)),
    ("net.ipv4.tcp_wmem", 32, (4, 15)),
)
_MAJOR_MINOR = re.compile(r"v?([0-9]+)\.([0-9]+)")


def safe_sysctls(kubelet_version: str, kernel_version: str) -> frozenset[str]:
    """The safe sysctls of a kubelet at `kubelet_version` (e.g. v1.33.1+k3s1) on `kernel_version` (e.g.
    6.8.0-60-generic). Where either is not known, only what every kubelet and kernel v4only supports allows:
    the kubelet drops a kernel-gated entry when it cannot read the kernel version."""
    kubelet, kernel = _MAJOR_MINOR.match(kubelet_version), _MAJOR_MINOR.match(kernel_version)
    minor = int(kubelet[2]) if kubelet and kubelet[1] == "1" else 22
    release = (int(kernel[1]), int(kernel[2])) if kernel else None
    return frozenset(
        name for name, since, needs in _SAFE_SINCE
        if since <= minor and (needs == (0, 0) or (release is not None and release >= needs))
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


def namespace_of(name: str) -> str | None:
    """The kernel namespace of a sysctl name (component-helpers GetNamespace): "Net", "IPC" or None."""
    return _namespace_of(normalize_name(name))


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
