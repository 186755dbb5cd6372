"""The kubelet's allowlist rules, with the kubelet's own test cases as tables.

Source: kubernetes/kubernetes pkg/kubelet/sysctl/allowlist_test.go @20041e7 (`TestNewAllowlist`,
`TestAllowlist`). The kubelet builds its allowlist from `SafeSysctlAllowlist()` plus the configured
unsafe entries; `Allowlist.parse` holds only what the kubelet config lists, so the safe names the
upstream cases rely on are added here (safe_sysctls.go, initial set + ping_group_range/unprivileged).
The host-namespace cases are the pod's fault, not the node's: v4only handles hostNetwork in the
decision (rule 3), so those rows check the name matches and that `decide` gives `env`.
"""

from __future__ import annotations

import pytest

from webhook.core.capability import Capability
from webhook.core.decision import decide
from webhook.core.settings import Settings
from webhook.core.sysctls import Allowlist, normalize_name, pattern_error

SAFE = (
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
)

# TestNewAllowlist: (patterns, kubelet refuses to start)
NEW_ALLOWLIST = [
    (["kernel.msg*", "kernel.sem"], False),
    (["kernel/msg*", "kernel/sem"], False),
    ([" kernel.msg*"], True),
    (["kernel.msg* "], True),
    (["kernel.msg*\n"], True),  # Go's `^...$` does not match before a final newline
    (["net.-"], True),
    (["net.*.foo"], True),
    (["net.*/foo"], True),
    (["foo"], True),
    (["foo*"], True),
]


@pytest.mark.parametrize(("patterns", "fails"), NEW_ALLOWLIST, ids=[repr(p) for p, _ in NEW_ALLOWLIST])
def test_kubelet_new_allowlist_cases(patterns: list[str], fails: bool) -> None:
    errors = [pattern_error(p) for p in (*SAFE, *patterns)]
    assert any(errors) is fails
    parsed = Allowlist.parse([*SAFE, *patterns])
    assert bool(parsed.invalid) is fails


UPSTREAM_ALLOWLIST = Allowlist.parse([*SAFE, "kernel.msg*", "kernel.sem", "net.b.*"])

# TestAllowlist: (sysctl, hostNet, hostIPC, admitted by the kubelet)
ALLOWLIST_CASES = [
    ("kernel.shm_rmid_forced", False, False, True),
    ("kernel/shm_rmid_forced", False, False, True),
    ("net.ipv4.ip_local_port_range", False, False, True),
    ("kernel.msgmax", False, False, True),
    ("kernel.sem", False, False, True),
    ("kernel/sem", False, False, True),
    ("kernel.shm_rmid_forced", False, True, False),
    ("net.ipv4.ip_local_port_range", True, False, False),
    ("foo", False, False, False),
    ("net.a.b.c", False, False, False),
    ("net.ipv4.ip_local_port_range.a.b.c", False, False, False),
    ("kernel.msgmax", False, True, False),
    ("kernel.sem", False, True, False),
    ("net.b.c", True, False, False),
]


@pytest.mark.parametrize(("name", "host_net", "host_ipc", "admitted"), ALLOWLIST_CASES)
def test_kubelet_allowlist_cases(name: str, host_net: bool, host_ipc: bool, admitted: bool) -> None:
    by_name = UPSTREAM_ALLOWLIST.allows(name)
    if host_net or host_ipc:
        # Rejected for the host namespace although allowlisted by name (allowlist.go validateSysctl).
        assert by_name and not admitted
    else:
        assert by_name is admitted


@pytest.mark.parametrize("name", [n for n, host_net, _, _ in ALLOWLIST_CASES if host_net])
def test_host_network_pods_get_env_whatever_the_allowlist(name: str) -> None:
    pod = {"metadata": {"labels": {"v4only.io/inject": "enabled"}}, "spec": {"hostNetwork": True, "containers": []}}
    settings = Settings()
    capability = Capability.assume("allowed", "test")
    decision = decide(pod, namespace="t", namespace_labels={}, capability=capability, settings=settings)
    assert decision.remedy == "env"


# v4only's own sysctl against the entries people write (shared/reference/kubernetes.md §1, §7).
IPV6 = "net.ipv6.conf.all.disable_ipv6"
V4ONLY_CASES = [
    ("net.ipv6.conf.all.disable_ipv6", True, None),
    ("net/ipv6/conf/all/disable_ipv6", True, None),
    ("net.ipv6.*", True, None),
    ("net/ipv6/*", True, None),
    ("net.*", True, None),
    ("net.ipv6.conf.default.disable_ipv6", False, None),
    ("net.ipv4.*", False, None),
    ("'net.ipv6.*'", False, "must have at most 253 characters"),
    ('"net.ipv6.*"', False, "must have at most 253 characters"),
    (" net.ipv6.*", False, "must have at most 253 characters"),
    ("*", False, "are not known to be namespaced"),
    ("net*", False, "are not known to be namespaced"),
    ("vm.*", False, "are not known to be namespaced"),
]


@pytest.mark.parametrize(("entry", "allows", "error"), V4ONLY_CASES)
def test_entries_for_the_ipv6_sysctl(entry: str, allows: bool, error: str | None) -> None:
    assert Allowlist.parse([entry]).allows(IPV6) is allows
    assert Allowlist.parse([entry]).allows(normalize_name("net/ipv6/conf/all/disable_ipv6")) is allows
    found = pattern_error(entry)
    assert (found is None) if error is None else (found is not None and error in found)
