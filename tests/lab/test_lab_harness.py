"""The lab harness itself: it keeps traffic inside, does what its API says, and leaves nothing behind, whether
the test passes, fails, is interrupted (Ctrl-C), terminated (SIGTERM) or killed outright (SIGKILL: the next
lab sweeps up); and on a machine where namespaces cannot be made it fails with one line."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.lab import netns
from tests.lab.harness import (
    INDEX_HOST,
    POD_IP,
    ROUTER_IP,
    TRAP_DOMAIN,
    DnsBehaviour,
    DnsQuery,
    Lab,
    NodeDns,
    cluster_search,
    kubelet_resolv_conf,
    pod_resolv_conf,
)
from tests.lab.tools import Tools

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]


def leftovers(pod: str, router: str, work: Path, pids: list[int]) -> list[str]:
    """Whatever of a lab still exists: namespaces, /etc/netns entries, mounts, its directory, processes."""
    found = [f"namespace {name}" for name in (pod, router) if name in netns.lab_namespaces()]
    found += [f"{netns.ETC_NETNS / name}" for name in (pod, router) if (netns.ETC_NETNS / name).exists()]
    mounts = Path("/proc/self/mountinfo").read_text()
    found += [f"mount naming {name}" for name in (pod, router) if name in mounts]
    found += [str(work)] if work.exists() else []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except FileNotFoundError:
            continue
        if state != "Z":  # a zombie only waits for its parent's wait(): it holds nothing
            found.append(f"process {pid}")
    return found


def test_lab_removes_everything_it_made(lab_tools: Tools) -> None:
    with Lab(lab_tools) as lab:
        sleeper = lab.popen(["sleep", "300"])
        made = (lab.pod, lab.router, lab.dir)
        pids = [sleeper.pid, *netns.namespace_pids(lab.router)]
        assert sleeper.pid in netns.namespace_pids(lab.pod)
        assert len(pids) == 2, "the router runs one server process"
        # while open: 2 namespaces, their /etc/netns entries and nsfs mounts, the directory, 2 processes
        assert len(leftovers(*made, pids)) == 9
    assert leftovers(*made, pids) == []


def test_lab_cleans_up_when_the_test_fails(lab_tools: Tools) -> None:
    with pytest.raises(AssertionError, match="a test that failed"), Lab(lab_tools) as lab:
        made = (lab.pod, lab.router, lab.dir)
        pids = [lab.popen(["sleep", "300"]).pid, *netns.namespace_pids(lab.router)]
        raise AssertionError("a test that failed")
    assert leftovers(*made, pids) == []


# A test run as a terminal starts it: Ctrl-C raises KeyboardInterrupt, SIGTERM is not ignored (a pytest that
# was started in the background by a non-interactive shell inherits both ignored).
DEFAULT_SIGNALS = """
import signal
import socket
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
"""
HOLDER = DEFAULT_SIGNALS + """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from tests.lab.harness import Lab
from tests.lab.tools import Tools
tools = Tools(**{k: Path(v) for k, v in json.loads(sys.argv[2]).items()})
with Lab(tools) as lab:
    sleeper = lab.popen(["sleep", "300"])
    print(json.dumps({"pod": lab.pod, "router": lab.router, "dir": str(lab.dir), "sleeper": sleeper.pid}), flush=True)
    time.sleep(300)
"""


def start_holder(tools: Tools) -> tuple[subprocess.Popen[str], dict[str, str], list[int]]:
    """A process that opens a lab and waits inside it (what a test run is when a signal reaches it)."""
    fields = json.dumps({k: str(v) for k, v in dataclasses.asdict(tools).items()})
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(ROOT), fields], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    made = json.loads(holder.stdout.readline() or "{}")
    assert made, f"the holder did not open its lab: {holder.communicate(timeout=30)[1][-2000:]}"
    return holder, made, [int(made["sleeper"]), *netns.namespace_pids(made["router"])]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_run_leaves_nothing(lab_tools: Tools, signum: int) -> None:
    holder, made, pids = start_holder(lab_tools)
    assert made["pod"] in netns.lab_namespaces()
    holder.send_signal(signum)
    _, err = holder.communicate(timeout=30)
    assert holder.returncode != 0
    assert leftovers(made["pod"], made["router"], Path(made["dir"]), pids) == [], err[-2000:]


MATRIX_HOLDER = DEFAULT_SIGNALS + """
import json, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from tests.lab import matrix
from tests.lab.tools import Tools
tools = Tools(**{k: Path(v) for k, v in json.loads(sys.argv[2]).items()})
slow = [c for c in matrix.all_cases() if c.state in (matrix.F1, matrix.F2) and c.client is not matrix.Client.MUSL]
matrix.measure(tools, slow)
"""


def traces_of(pid: int) -> list[str]:
    """Namespaces, /etc/netns entries, work directories and processes of the labs that process `pid` made."""
    prefix = f"{netns.PREFIX}-{pid}-"
    found = [n for n in netns.lab_namespaces() if n.startswith(prefix)]
    found += [str(p) for p in (netns.ETC_NETNS.glob(f"{prefix}*") if netns.ETC_NETNS.is_dir() else [])]
    found += [str(p) for p in Path("/tmp").glob(f"{prefix}*")]
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            seen = proc.joinpath("cmdline").read_bytes().decode(errors="replace") + os.readlink(proc / "cwd")
        except OSError:
            continue
        if f"/{prefix}" in seen:
            found.append(f"process {proc.name}: {seen[:120]}")
    return found


def test_ctrl_c_during_the_matrix_stops_it_at_once_and_leaves_nothing(lab_tools: Tools) -> None:
    """Interrupted while cases run (uv retrying, probes hanging), the measurement starts nothing more, kills
    what runs and removes every lab, within seconds (not after the remaining cases)."""
    fields = json.dumps({k: str(v) for k, v in dataclasses.asdict(lab_tools).items()})
    holder = subprocess.Popen([sys.executable, "-c", MATRIX_HOLDER, str(ROOT), fields], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while len([n for n in netns.lab_namespaces() if n.startswith(f"{netns.PREFIX}-{holder.pid}-")]) < 4:
        assert holder.poll() is None and time.monotonic() < deadline, "the matrix did not start its labs"
        time.sleep(0.05)
    time.sleep(2)  # cases running: images built, uv retrying, probes waiting on a lost SYN
    assert any(t.startswith("process") for t in traces_of(holder.pid))
    interrupted = time.monotonic()
    holder.send_signal(signal.SIGINT)
    _, err = holder.communicate(timeout=30)
    assert "KeyboardInterrupt" in err
    assert time.monotonic() - interrupted < 8, "it waited for the cases instead of stopping them"
    assert traces_of(holder.pid) == []


def test_a_killed_run_is_swept_by_the_next_lab(lab_tools: Tools) -> None:
    holder, made, pids = start_holder(lab_tools)
    holder.kill()  # no finalizer, no handler: everything stays behind
    holder.communicate(timeout=30)
    sleeper, server = pids
    deadline = time.monotonic() + 5
    while Path(f"/proc/{server}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{server}").exists(), "the router's server outlived its parent"
    assert leftovers(made["pod"], made["router"], Path(made["dir"]), [sleeper]) != []
    with Lab(lab_tools):
        pass  # entering sweeps what dead runs left
    assert leftovers(made["pod"], made["router"], Path(made["dir"]), [sleeper]) == []


def test_without_namespaces_the_lab_fails_with_one_line_unless_left_out() -> None:
    """A user namespace is root without the power to make a named network namespace (`ip netns add` cannot
    mount /run/netns): the lab fails there, with one line; V4ONLY_SKIP_LAB=1 leaves it out instead."""
    target = "tests/lab/test_lab_harness.py::test_lab_removes_everything_it_made"
    argv = ["unshare", "--user", "--map-root-user", sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            target]
    env = {**{k: v for k, v in os.environ.items() if k != "V4ONLY_SKIP_LAB"}, "COLUMNS": "400"}
    failed = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=90)
    assert failed.returncode == 1, failed.stdout[-3000:]
    line = ("the remedy lab cannot make a network namespace here: mount --make-shared /run/netns failed: "
            "Operation not permitted (V4ONLY_SKIP_LAB=1 leaves the lab out)")
    lines = failed.stdout.splitlines()
    assert line in lines and f"ERROR {target} - Failed: {line}" in lines, failed.stdout[-3000:]
    skipped = subprocess.run(argv, cwd=ROOT, env={**env, "V4ONLY_SKIP_LAB": "1"}, capture_output=True, text=True,
                             check=False, timeout=90)
    assert skipped.returncode == 0, skipped.stdout[-3000:]
    assert "1 skipped" in skipped.stdout


def test_traffic_has_no_way_out_of_the_lab(lab: Lab) -> None:
    """Each namespace has lo and its end of the veth pair, nothing else; only the pod has a default route
    (to the router), and the router has no route beyond the lab's /24. The index listens on IPv4 only."""
    for name, veth in ((lab.pod, "eth0"), (lab.router, "pod0")):
        links = netns.ip("-o", "link", "show", namespace=name).stdout
        assert {line.split(":")[1].strip().split("@")[0] for line in links.splitlines()} == {veth, "lo"}
    assert netns.ip("-4", "route", "show", namespace=lab.pod).stdout.splitlines() == [
        f"default via {ROUTER_IP} dev eth0 ", f"192.0.2.0/24 dev eth0 proto kernel scope link src {POD_IP} "]
    assert netns.ip("-4", "route", "show", namespace=lab.router).stdout.splitlines() == [
        f"192.0.2.0/24 dev pod0 proto kernel scope link src {ROUTER_IP} "]
    listening = lab.run(["ss", "-H", "-l", "-n", "-t"], namespace=lab.router).stdout.split()
    assert "0.0.0.0:8080" in listening and not [s for s in listening if s.startswith("[") and s.endswith(":8080")]


def test_resolv_conf_per_pod_and_per_command(lab: Lab) -> None:
    host_before = Path("/etc/resolv.conf").read_text()
    healthy = kubelet_resolv_conf(cluster_search(), ndots=2)
    lab.write_resolv_conf(healthy)
    assert lab.run(["cat", "/etc/resolv.conf"]).stdout == healthy
    own = "nameserver 192.0.2.1\n"
    assert lab.run(["cat", "/etc/resolv.conf"], resolv_conf=own).stdout == own
    assert lab.run(["cat", "/etc/resolv.conf"]).stdout == healthy
    assert Path("/etc/resolv.conf").read_text() == host_before


def test_dns_behaviour_switches_and_every_query_is_logged(lab: Lab) -> None:
    trapped = f"{INDEX_HOST}.{TRAP_DOMAIN}."
    probe = [str(lab.tools.glibc_probe), trapped]
    assert lab.run(probe).returncode == 2
    lab.set_dns(DnsBehaviour(trap=False))
    assert lab.run(probe).returncode == 2
    lab.set_dns(DnsBehaviour(trap=True, aaaa="nxdomain"))
    assert lab.run([str(lab.tools.glibc_probe), f"{INDEX_HOST}."]).stdout == f"addr {ROUTER_IP}\n"
    name = trapped.rstrip(".")
    assert sorted((q.qtype, q.rcode) for q in lab.dns_queries() if q.name == name) == [
        ("A", "NOERROR"), ("A", "NXDOMAIN"), ("AAAA", "NOERROR"), ("AAAA", "NXDOMAIN")]
    assert DnsQuery("AAAA", INDEX_HOST, "NXDOMAIN", ()) in lab.dns_queries()
    assert DnsQuery("A", INDEX_HOST, "NOERROR", (ROUTER_IP,)) in lab.dns_queries()


def test_sysctl_applies_in_the_pod_only(lab: Lab) -> None:
    host = Path("/proc/sys/net/ipv6/conf/all/disable_ipv6").read_text()
    assert lab.sysctl("net.ipv6.conf.all.disable_ipv6", "1") == "0"
    assert lab.run(["cat", "/proc/sys/net/ipv6/conf/all/disable_ipv6"]).stdout == "1\n"
    assert lab.run(["ip", "-6", "addr", "show", "dev", "eth0"]).stdout == ""
    assert Path("/proc/sys/net/ipv6/conf/all/disable_ipv6").read_text() == host


def test_a_hang_is_bounded_and_reported(lab: Lab) -> None:
    ran = lab.run(["sleep", "30"], timeout=0.5)
    assert ran.timed_out and ran.returncode is None and 0.5 <= ran.seconds < 5


@pytest.mark.parametrize(("spec", "expected"), [
    ({}, "search default.svc.cluster.local svc.cluster.local cluster.local corp.example\n"
         "nameserver 192.0.2.1\noptions ndots:5\n"),
    ({"dnsPolicy": "ClusterFirst", "dnsConfig": {"options": [{"name": "ndots", "value": "1"}, {"name": "edns0"}],
                                                 "searches": ["corp.example", "extra.test"]}},
     "search default.svc.cluster.local svc.cluster.local cluster.local corp.example extra.test\n"
     "nameserver 192.0.2.1\noptions ndots:1 edns0\n"),
    ({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["192.0.2.1"], "searches": ["default.svc.cluster.local"]}},
     "search default.svc.cluster.local\nnameserver 192.0.2.1\n"),
    ({"dnsPolicy": "ClusterFirst", "hostNetwork": True}, "search corp.example\nnameserver 198.51.100.53\n"),
    ({"dnsPolicy": "ClusterFirstWithHostNet", "hostNetwork": True},
     "search default.svc.cluster.local svc.cluster.local cluster.local corp.example\n"
     "nameserver 192.0.2.1\noptions ndots:5\n"),
    ({"dnsPolicy": "Default", "dnsConfig": {"nameservers": ["192.0.2.7", "192.0.2.8", "192.0.2.9"]}},
     "search corp.example\nnameserver 198.51.100.53\nnameserver 192.0.2.7\nnameserver 192.0.2.8\n"),
], ids=["cluster-first", "dns-config-merged", "none", "host-network-falls-back", "with-host-net", "three-servers"])
def test_pod_resolv_conf_is_what_the_kubelet_writes(spec: dict[str, object], expected: str) -> None:
    """Kubelet GetPodDNS (pkg/kubelet/network/dns/dns.go): the policy's base, dnsConfig appended without
    duplicates and options overriding by name, at most 3 nameservers."""
    assert pod_resolv_conf(spec, node=NodeDns(nameservers=("198.51.100.53",))) == expected


def test_call_in_opens_sockets_inside_the_pod(lab: Lab) -> None:
    """A test's own client reaching the lab: the socket is made in the pod's namespace, from the pod's address."""
    def fetch() -> tuple[str, bytes]:
        with socket.create_connection((ROUTER_IP, 8080), timeout=10) as conn:
            conn.sendall(b"GET /simple/ HTTP/1.0\r\n\r\n")
            return conn.getsockname()[0], b"".join(iter(lambda: conn.recv(65536), b""))  # to EOF

    source, reply = lab.call_in(fetch)
    assert source == POD_IP and reply.startswith(b"HTTP/1.0 200") and b"/simple/six/" in reply
    assert lab.call_in(lambda: Path("/proc/self/net/dev").read_text()).count("eth0") == 1
    with pytest.raises(ZeroDivisionError):
        lab.call_in(lambda: 1 // 0)


def test_the_musl_probes_are_static_and_of_the_musl_they_claim(lab_tools: Tools) -> None:
    """The zig-built probe carries musl >= 1.2.4's EAI_NODATA text (uv's), Debian's musl 1.2.3 does not; both
    are static (no ELF interpreter), so no libc of the host takes part; the glibc probe is dynamic."""
    def interpreter(path: Path) -> bool:
        return b"/ld-linux-x86-64.so" in path.read_bytes()[:4096]

    current, old = lab_tools.musl_probe.read_bytes(), lab_tools.musl123_probe.read_bytes()
    assert b"Name has no usable address" in current and b"Name has no usable address" not in old
    assert not interpreter(lab_tools.musl_probe) and not interpreter(lab_tools.musl123_probe)
    assert interpreter(lab_tools.glibc_probe)
