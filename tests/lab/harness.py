"""The remedy lab: a pod namespace and a router namespace joined by a veth pair, with real servers in the router.

    with Lab(tools) as lab:                      # tools: tests.lab.tools.prepare(...), once per session
        lab.write_resolv_conf(kubelet_resolv_conf(search=[*cluster_search(), TRAP_DOMAIN]))
        ran = lab.run([str(lab.tools.uv), "run", "python", "-c", "import six"], env=..., cwd=image)

- pod: eth0 192.0.2.2/24, IPv4 default route via the router; IPv6 left on (link-local only), as an
  IPv4-only CNI gives. `lo` up, so servers started in the pod (v4only serve, the stand-in API) reach each
  other on 127.0.0.1.
- router: 192.0.2.1/24 with the DNS server (UDP 53) and the PEP 503 index (TCP 8080, IPv4 only), one
  process (servers.py). No route leaves the two namespaces: neither has an interface but lo and its veth end.
- Commands in the pod run through `ip netns exec`, so they read /etc/netns/POD/resolv.conf as their
  /etc/resolv.conf (`write_resolv_conf`); `run(..., resolv_conf=TEXT)` gives one command its own file instead
  (a bind mount inside that command's private mount namespace), so commands with different resolver
  settings can run at the same time.
- Everything made is removed on exit, also on failure, Ctrl-C or SIGTERM (tests.lab.netns).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, TypeVar, cast

from tests.lab import netns
from tests.lab.tools import INDEX_WHEELS, LAB_PATH, Tools, sha256

POD_IP = "192.0.2.2"
ROUTER_IP = "192.0.2.1"
POD_IPV6 = "2001:db8:ffff::2"  # F2 only: a global address
ROUTER_IPV6 = "2001:db8:ffff::1"
INDEX_HOST = "pypi.lab.test"
INDEX_IPV6 = "2001:db8::1"  # pypi.lab.test's AAAA: unroutable in F1, black-holed by the router in F2
INDEX_PORT = 8080
INDEX_URL = f"http://{INDEX_HOST}:{INDEX_PORT}/simple/"
CLUSTER_DOMAIN = "cluster.local"
POD_NAMESPACE = "default"
SERVICE = "svc1"  # svc1.default.svc.cluster.local: an A record (the router, so it also serves the index)
TRAP_DOMAIN = "corp.example"  # a node search domain that answers NODATA for every name under it
SERVICE_FQDN = f"{SERVICE}.{POD_NAMESPACE}.svc.{CLUSTER_DOMAIN}"
AaaaMode = Literal["normal", "noerror-empty", "nxdomain"]
_serial = itertools.count(1)
T = TypeVar("T")


def cluster_search(namespace: str = POD_NAMESPACE, domain: str = CLUSTER_DOMAIN) -> list[str]:
    """The search entries the kubelet writes first for a ClusterFirst pod."""
    return [f"{namespace}.svc.{domain}", f"svc.{domain}", domain]


def kubelet_resolv_conf(search: Sequence[str], nameservers: Sequence[str] = (ROUTER_IP,), ndots: int = 5) -> str:
    """A resolv.conf as the kubelet writes it (search line, nameservers, `options ndots:N`)."""
    lines = [f"search {' '.join(search)}"] if search else []
    lines += [f"nameserver {server}" for server in nameservers]
    lines.append(f"options ndots:{ndots}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class NodeDns:
    """What the kubelet knows on the lab's node: its clusterDNS/clusterDomain and the node's own resolv.conf."""

    cluster_dns: tuple[str, ...] = (ROUTER_IP,)
    cluster_domain: str = CLUSTER_DOMAIN
    nameservers: tuple[str, ...] = (ROUTER_IP,)
    search: tuple[str, ...] = (TRAP_DOMAIN,)  # F1: the node's DHCP/VPN search domain is the trap
    options: tuple[str, ...] = ()


MAX_NAMESERVERS, MAX_SEARCHES, MAX_SEARCH_CHARS = 3, 32, 2048  # core/v1 validation limits (1.33)


def pod_resolv_conf(spec: Mapping[str, Any], namespace: str = POD_NAMESPACE, node: NodeDns = NodeDns()) -> str:
    """The resolv.conf the kubelet writes for a pod spec's dnsPolicy/dnsConfig (kubelet's GetPodDNS in
    pkg/kubelet/network/dns/dns.go): ClusterFirst = the cluster DNS, `<ns>.svc.<domain> svc.<domain>
    <domain>` then the node's search domains, `ndots:5`; Default (and ClusterFirst with hostNetwork) = the
    node's own file; None = nothing; then dnsConfig appended (duplicates dropped, options by name
    overriding), cut to the limits. Option order is kept as given (the kubelet's comes from a Go map)."""
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    host_network = bool(spec.get("hostNetwork"))
    if policy == "None":
        servers: list[str] = []
        searches: list[str] = []
        options: list[str] = []
    elif policy == "ClusterFirstWithHostNet" or (policy == "ClusterFirst" and not host_network):
        servers = list(node.cluster_dns)
        searches = _unique([*cluster_search(namespace, node.cluster_domain), *node.search])
        options = ["ndots:5"]
    else:  # Default, or ClusterFirst on the host network
        servers, searches, options = list(node.nameservers), list(node.search), list(node.options)
    config = spec.get("dnsConfig") or {}
    servers = _unique([*servers, *config.get("nameservers", [])])[:MAX_NAMESERVERS]
    searches = _unique([*searches, *config.get("searches", [])])[:MAX_SEARCHES]
    while searches and len(" ".join(searches)) > MAX_SEARCH_CHARS:
        searches.pop()
    merged = dict(option.partition(":")[::2] for option in options)
    merged.update({o["name"]: str(o.get("value") or "") for o in config.get("options", [])})
    lines = [f"search {' '.join(searches)}"] if searches else []
    lines += [f"nameserver {server}" for server in servers]
    if merged:
        lines.append("options " + " ".join(f"{k}:{v}" if v else k for k, v in merged.items()))
    return "\n".join(lines) + "\n"


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


NODE_RESOLV_CONF = pod_resolv_conf({})  # a ClusterFirst pod on the lab's node: the trap after the cluster's


@dataclass(frozen=True)
class DnsBehaviour:
    """What the router's DNS server answers (servers.py)."""

    trap: bool = True  # names under TRAP_DOMAIN answer NODATA (else NXDOMAIN, a safe search domain)
    aaaa: AaaaMode = "normal"  # or every AAAA answered as a CoreDNS template would: NOERROR-empty / NXDOMAIN

    def as_json(self) -> str:
        records = {INDEX_HOST: {"A": [ROUTER_IP], "AAAA": [INDEX_IPV6]}, SERVICE_FQDN: {"A": [ROUTER_IP]}}
        trap_domains = [TRAP_DOMAIN] if self.trap else []
        return json.dumps({"records": records, "trap_domains": trap_domains, "aaaa": self.aaaa})


@dataclass(frozen=True)
class DnsQuery:
    qtype: str
    name: str
    rcode: str
    answers: tuple[str, ...]


@dataclass(frozen=True)
class Ran:
    """A finished (or, past its timeout, killed) command."""

    argv: tuple[str, ...]
    returncode: int | None  # None: still running at the timeout, killed
    stdout: str
    stderr: str
    seconds: float

    @property
    def timed_out(self) -> bool:
        return self.returncode is None

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Lab:
    """One pod namespace, one router namespace, the servers; see the module docstring."""

    def __init__(self, tools: Tools) -> None:
        self.tools = tools
        self.pod = ""  # the namespace names (`ip netns exec NAME ...`), set on entering
        self.router = ""
        self.dir = Path()  # the lab's own files (removed on exit)
        self._undo = netns.Undo()
        self._dns = DnsBehaviour()

    # ------------------------------------------------------------------------------------------ lifetime

    def __enter__(self) -> Lab:
        netns.sweep_stale()
        netns.check_can_make_namespaces()
        netns.register(self._undo)
        try:
            self._make()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Kill the lab's processes, delete its namespaces (and veth), mounts and files; raise what failed."""
        with netns.signals_held():
            errors = self._undo.run()
            netns.unregister(self._undo)
        if errors:
            raise RuntimeError("remedy lab clean-up failed: " + "; ".join(errors))

    def _make(self) -> None:
        serial = next(_serial)
        base = f"{netns.PREFIX}-{os.getpid()}-{serial}"
        self.pod, self.router = f"{base}-pod", f"{base}-router"
        self.dir = Path(tempfile.mkdtemp(prefix=f"{base}-"))
        self._undo.push(f"remove {self.dir}", lambda: shutil.rmtree(self.dir, ignore_errors=True))
        for name in (self.router, self.pod):
            self._undo.push(f"delete namespace {name}", functools.partial(netns.delete_namespace, name))
            netns.ip("netns", "add", name)
            netns.make_etc_dir(name)
            netns.ip("link", "set", "lo", "up", namespace=name)
        # made inside the namespaces: the host's own interfaces are never touched, names cannot collide
        netns.ip("link", "add", "eth0", "type", "veth", "peer", "name", "pod0", "netns", self.router,
                 namespace=self.pod)
        netns.ip("addr", "add", f"{POD_IP}/24", "dev", "eth0", namespace=self.pod)
        netns.ip("addr", "add", f"{ROUTER_IP}/24", "dev", "pod0", namespace=self.router)
        netns.ip("link", "set", "eth0", "up", namespace=self.pod)
        netns.ip("link", "set", "pod0", "up", namespace=self.router)
        netns.ip("route", "add", "default", "via", ROUTER_IP, namespace=self.pod)
        # the router's own resolver: the image builder's view (healthy: /etc/hosts names the index)
        (netns.ETC_NETNS / self.router / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        (netns.ETC_NETNS / self.router / "hosts").write_text(f"127.0.0.1 localhost\n{ROUTER_IP} {INDEX_HOST}\n")
        self.write_resolv_conf(NODE_RESOLV_CONF)
        self._start_servers()

    def _start_servers(self) -> None:
        state = self.dir / "router"
        write_index(state / "index", self.tools.wheels)
        self.set_dns(DnsBehaviour())
        (state / "dns.log").touch()
        servers = Path(__file__).with_name("servers.py")
        errors = state / "servers.err"
        with errors.open("w") as err:
            process = self.popen([sys.executable, str(servers), str(state)], stdout=subprocess.PIPE, stderr=err,
                                 namespace=self.router)
        assert process.stdout is not None
        ready = _read_line(process.stdout, timeout=20)
        if ready != "ready":
            raise RuntimeError(f"the lab's DNS/index server did not start: {ready!r} {errors.read_text()[-2000:]}")

    # ------------------------------------------------------------------------------------------ the pod

    def write_resolv_conf(self, text: str) -> None:
        """The pod's /etc/resolv.conf for every command started after this (as the kubelet writes it)."""
        _write_atomic(netns.ETC_NETNS / self.pod / "resolv.conf", text)

    def env(self, extra: Mapping[str, str] | None = None, home: Path | None = None) -> dict[str, str]:
        """A clean environment for the pod (nothing from the test process leaks in): PATH, HOME, LANG + extra."""
        home = home or self.dir / "home"
        home.mkdir(parents=True, exist_ok=True)
        return {"PATH": LAB_PATH, "HOME": str(home), "LANG": "C.UTF-8", **(extra or {})}

    def run(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, resolv_conf: str | None = None,
            cwd: Path | None = None, timeout: float = 60, namespace: str | None = None) -> Ran:
        """Run a command in the pod namespace (or `namespace`) and wait; past `timeout` it is killed and
        `Ran.timed_out` is true (a bounded hang, not an error). `env` is the whole environment (see env())."""
        started = time.monotonic()
        process = self._spawn(namespace or self.pod, argv, env=env if env is not None else self.env(),
                              resolv_conf=resolv_conf, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = process.communicate(timeout=timeout)
            code: int | None = process.returncode
        except subprocess.TimeoutExpired:
            _kill_group(process)
            out, err = process.communicate()
            code = None
        finally:
            _kill_group(process)  # also on Ctrl-C; and a child it left behind (uv's python) goes with it
            process.wait()
        return Ran(tuple(argv), code, out, err, time.monotonic() - started)

    def popen(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, resolv_conf: str | None = None,
              cwd: Path | None = None, stdout: int | IO[str] | None = subprocess.DEVNULL,
              stderr: int | IO[str] | None = subprocess.DEVNULL, namespace: str | None = None,
              ) -> subprocess.Popen[str]:
        """Start a long-running command in the pod namespace (v4only serve, ...); killed when the lab closes."""
        process = self._spawn(namespace or self.pod, argv, env=env if env is not None else self.env(),
                              resolv_conf=resolv_conf, cwd=cwd, stdout=stdout, stderr=stderr)
        self._undo.push(f"stop {' '.join(argv)[:80]}", lambda: _stop(process))
        return process

    def sysctl(self, name: str, value: str, namespace: str | None = None) -> str:
        """`sysctl -w name=value` inside the pod namespace (or `namespace`), as runc applies
        securityContext.sysctls; returns the value it had."""
        before = self._sysctl(namespace, "-n", name).stdout.strip()
        self._sysctl(namespace, "-q", "-w", f"{name}={value}")
        return before

    def _sysctl(self, namespace: str | None, *args: str) -> Ran:
        ran = self.run(["sysctl", *args], timeout=10, namespace=namespace)
        assert ran.returncode == 0, f"sysctl {' '.join(args)} in {namespace or self.pod}: {ran.output}"
        return ran

    def add_blackholed_ipv6_route(self) -> None:
        """F2: the pod gets a global IPv6 address and an IPv6 default route; the router forwards IPv6 but drops
        everything for pypi.lab.test's IPv6 address without a word (a blackhole route: the SYN is lost)."""
        netns.ip("-6", "addr", "add", f"{ROUTER_IPV6}/64", "dev", "pod0", "nodad", namespace=self.router)
        netns.ip("-6", "route", "add", "blackhole", f"{INDEX_IPV6}/128", namespace=self.router)
        self.sysctl("net.ipv6.conf.all.forwarding", "1", namespace=self.router)
        netns.ip("-6", "addr", "add", f"{POD_IPV6}/64", "dev", "eth0", "nodad", namespace=self.pod)
        netns.ip("-6", "route", "add", "default", "via", ROUTER_IPV6, namespace=self.pod)

    def call_in(self, fn: Callable[[], T], namespace: str | None = None, timeout: float = 60) -> T:
        """fn() in a thread of this process moved into the pod's (or `namespace`'s) network namespace:
        sockets it opens live there (a test's HTTP client reaching a server started with popen). Files
        and DNS are still the host's: address servers in the lab by IP."""
        outcome: list[Any] = []

        def enter_and_call() -> None:
            try:
                _enter_network_namespace(netns.RUN_NETNS / (namespace or self.pod))
                outcome.append((True, fn()))
            except BaseException as exc:
                outcome.append((False, exc))

        with self._undo.opening():
            thread = threading.Thread(target=enter_and_call, name=f"in-{namespace or self.pod}", daemon=True)
            thread.start()
        thread.join(timeout)
        if not outcome:
            raise TimeoutError(f"call_in {namespace or self.pod}: still running after {timeout} s")
        ok, value = outcome[0]
        if not ok:
            raise value
        return cast(T, value)

    # ------------------------------------------------------------------------------------------ the router

    @property
    def dns(self) -> DnsBehaviour:
        return self._dns

    def set_dns(self, behaviour: DnsBehaviour) -> None:
        """Switch what the DNS server answers; the next query sees it (servers.py reads it per query)."""
        state = self.dir / "router"
        state.mkdir(parents=True, exist_ok=True)
        _write_atomic(state / "dns.json", behaviour.as_json())
        self._dns = behaviour

    def dns_queries(self) -> list[DnsQuery]:
        """Every query the DNS server answered so far, in order."""
        queries = []
        for line in (self.dir / "router" / "dns.log").read_text().splitlines():
            qtype, name, rcode, answers = line.split(" ")
            queries.append(DnsQuery(qtype, name, rcode, tuple(a for a in answers.split(",") if a != "-")))
        return queries

    # ------------------------------------------------------------------------------------------ processes

    def _spawn(self, namespace: str, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path | None = None,
               resolv_conf: str | None = None, stdout: int | IO[str] | None, stderr: int | IO[str] | None,
               ) -> subprocess.Popen[str]:
        prefix = ["ip", "netns", "exec", namespace]
        if resolv_conf is not None:
            own = Path(tempfile.mkstemp(prefix="resolv-", dir=self.dir)[1])
            own.write_text(resolv_conf)
            # inside the private mount namespace `ip netns exec` made for this command only
            prefix += ["sh", "-c", 'mount --bind "$0" /etc/resolv.conf && exec "$@"', str(own)]
        with self._undo.opening():  # never into a lab whose processes are being killed
            return subprocess.Popen([*prefix, *argv], env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
                                    stdout=stdout, stderr=stderr, text=True, start_new_session=True)


def _stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM to the process group, SIGKILL after 3 s."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            process.wait(timeout=10)
    _kill_group(process)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


_CLONE_NEWNET = 0x40000000


def _enter_network_namespace(path: Path) -> None:
    """setns(2) for the calling thread only (Python 3.11 has no os.setns)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def _kill_group(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _read_line(stream: IO[str], timeout: float) -> str:
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(stream.readline().strip()), daemon=True)
    reader.start()
    reader.join(timeout)
    return line[0] if line else f"nothing within {timeout} s"


def _write_atomic(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    partial.write_text(text)
    partial.replace(path)


def write_index(root: Path, wheels: Path, names: Iterable[str] = INDEX_WHEELS) -> None:
    """A PEP 503 simple index: /simple/<project>/ lists its files with their sha256; files under /files/."""
    files = root / "files"
    files.mkdir(parents=True, exist_ok=True)
    projects: dict[str, list[str]] = {}
    for name in names:
        shutil.copyfile(wheels / name, files / name)
        project = name.split("-")[0].lower().replace("_", "-")
        projects.setdefault(project, []).append(f'<a href="/files/{name}#sha256={sha256(wheels / name)}">{name}</a>')
    (root / "simple").mkdir(exist_ok=True)
    links = "".join(f'<a href="/simple/{p}/">{p}</a>\n' for p in sorted(projects))
    (root / "simple" / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
    for project, anchors in projects.items():
        (root / "simple" / project).mkdir(exist_ok=True)
        (root / "simple" / project / "index.html").write_text(
            "<!DOCTYPE html><html><body>\n" + "\n".join(anchors) + "\n</body></html>\n")
