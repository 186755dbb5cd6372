"""The remedy matrix: every row of remedy-lab.md's tables as lab cases, what was measured, and its rendering.

A case is one measurement: the lab's state (what the DNS server answers, the pod's IPv6, the sysctl), the
pod's resolv.conf (which DNS remedy, if any) and the client that runs (Chronicle started by the real musl
uv, `uv pip install`, the musl or glibc probe, Python). Tables name cases by row and column; a case that
appears in two tables is measured once. Every cell carries the result remedy-lab.md records (its
measurement, never v4only's code), which the tests compare with what this run measured.

Cases run concurrently, one Lab per distinct state, all cases of a lab at the same time (each command gets
its own resolv.conf, image and uv cache), so the slowest cell sets the time: uv retries a failed lookup
three times with backoff (about 4-10 s), a hang is bounded at HANG_SECONDS.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from tests.lab import chronicle
from tests.lab.chronicle import Image
from tests.lab.harness import (
    INDEX_HOST,
    INDEX_PORT,
    INDEX_URL,
    ROUTER_IP,
    SERVICE,
    TRAP_DOMAIN,
    DnsBehaviour,
    Lab,
    Ran,
    cluster_search,
    pod_resolv_conf,
)
from tests.lab.tools import Tools

NODATA = "Name has no usable address"  # musl >= 1.2.4 (uv's, the zig-built probe's) for NODATA: EAI_NODATA
NONAME = "Name does not resolve"  # musl for NXDOMAIN (EAI_NONAME); musl 1.2.3 (Debian's) also for NODATA
HANG_SECONDS = 3.0  # a connect still waiting after this long "hangs" (the SYN is lost); killed then
AT_ONCE_SECONDS = 1.0  # "connects at once": well under the hang bound, even on a busy 2-core machine
DISABLE_IPV6 = "net.ipv6.conf.all.disable_ipv6"
ENV_REMEDY = (("UV_NO_SYNC", "1"), ("UV_PYTHON_DOWNLOADS", "never"))
NO_SYNC = (("UV_NO_SYNC", "1"),)
PYTHON_CONNECT = (
    "import socket, sys, time\n"
    "started = time.monotonic()\n"
    "s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))\n"
    "print(f'connected {s.getpeername()[0]} {time.monotonic() - started:.2f}')\n"
)


class Resolv(Enum):
    """The pod's DNS settings, written as the kubelet writes them (harness.pod_resolv_conf) on a node whose
    search list ends in the trap domain: the plain ClusterFirst pod and the two DNS remedies
    (remedy-lab.md, "The cost of each DNS remedy"; product.md, the dns remedy)."""

    NODE = "ClusterFirst, ndots:5"
    NDOTS_1 = "dnsConfig ndots:1"
    CLUSTER_ONLY = "cluster-only search list, ndots:5"

    def pod_spec(self) -> dict[str, Any]:
        if self is Resolv.NODE:
            return {"dnsPolicy": "ClusterFirst"}
        if self is Resolv.NDOTS_1:
            return {"dnsPolicy": "ClusterFirst", "dnsConfig": {"options": [{"name": "ndots", "value": "1"}]}}
        return {"dnsPolicy": "None", "dnsConfig": {"nameservers": [ROUTER_IP], "searches": cluster_search(),
                                                   "options": [{"name": "ndots", "value": "5"}]}}

    def text(self) -> str:
        return pod_resolv_conf(self.pod_spec())


class Client(Enum):
    UV_START = "musl uv: Chronicle's `uv run`"
    UV_PIP = "musl uv: `uv pip install six`"
    MUSL = "musl getaddrinfo (probe, musl 1.2.5)"
    MUSL_123 = "musl 1.2.3 getaddrinfo (Debian 12's)"
    GLIBC = "glibc getaddrinfo (probe)"
    PYTHON = "Python socket.create_connection"


@dataclass(frozen=True)
class State:
    """What one Lab is set to for its cases."""

    dns: DnsBehaviour = field(default_factory=DnsBehaviour)
    blackholed_ipv6: bool = False  # F2: a global IPv6 address, the route black-holed
    sysctl: bool = False  # net.ipv6.conf.all.disable_ipv6=1 in the pod


@dataclass(frozen=True)
class Case:
    state: State
    resolv: Resolv
    client: Client
    image: Image = Image.SYNCED_NO_DEV  # UV_START only
    env: tuple[tuple[str, str], ...] = ()
    name: str = INDEX_HOST  # MUSL/GLIBC: the name looked up
    connect: bool = False  # MUSL/GLIBC: also connect, in order, to port 8080


@dataclass(frozen=True)
class Expect:
    """A result from remedy-lab.md: an outcome, and text the output must hold."""

    outcome: str  # starts | installs | resolves | connects | fails | hangs | ModuleNotFoundError
    texts: tuple[str, ...] = ()
    min_seconds: float | None = None
    max_seconds: float | None = None


@dataclass(frozen=True)
class Measured:
    outcome: str
    detail: str  # the error text, the address connected to
    seconds: float
    ran: Ran

    def cell(self) -> str:
        if self.outcome == "hangs":
            return f"hangs (no connection in {HANG_SECONDS:g} s)"
        if self.outcome == "connects":
            return f"connects to {self.detail} in {self.seconds:.2f} s"
        if self.outcome in ("starts", "installs"):
            return f"{self.outcome} ({self.seconds:.2f} s)"
        return f"{self.outcome}: {self.detail}" if self.detail else self.outcome


@dataclass(frozen=True)
class Cell:
    row: str
    column: str
    case: Case
    expect: Expect


@dataclass(frozen=True)
class Table:
    key: str
    title: str
    corner: str
    cells: tuple[Cell, ...]

    def rows(self) -> list[str]:
        return list(dict.fromkeys(c.row for c in self.cells))

    def columns(self) -> list[str]:
        return list(dict.fromkeys(c.column for c in self.cells))


# ------------------------------------------------------------------------------------------ the tables

F1 = State(DnsBehaviour(trap=True))
F1_SYSCTL = State(DnsBehaviour(trap=True), sysctl=True)
F2 = State(DnsBehaviour(trap=False), blackholed_ipv6=True)
F2_SYSCTL = State(DnsBehaviour(trap=False), blackholed_ipv6=True, sysctl=True)
AAAA_EMPTY = State(DnsBehaviour(trap=True, aaaa="noerror-empty"))
AAAA_NXDOMAIN = State(DnsBehaviour(trap=True, aaaa="nxdomain"))
AAAA_NXDOMAIN_SYSCTL = State(DnsBehaviour(trap=True, aaaa="nxdomain"), sysctl=True)

STARTS = Expect("starts", ("chronicle started",))
F1_FAILS = Expect("fails", (NODATA,))


def remedies(failure: State, with_sysctl: State) -> dict[str, tuple[State, Resolv, tuple[tuple[str, str], ...]]]:
    """Each remedy as the kubelet/runtime applies it: (lab state, pod resolv.conf, container env)."""
    return {
        "none": (failure, Resolv.NODE, ()),
        f"sysctl {DISABLE_IPV6}=1": (with_sysctl, Resolv.NODE, ()),
        "env UV_NO_SYNC=1 UV_PYTHON_DOWNLOADS=never": (failure, Resolv.NODE, ENV_REMEDY),
        "dnsConfig ndots:1": (failure, Resolv.NDOTS_1, ()),
        "cluster-only search list (ndots:5 kept)": (failure, Resolv.CLUSTER_ONLY, ()),
    }


def f1_table() -> Table:
    """remedy-lab.md "Failure F1", with the probes beside uv: glibc goes on after NODATA, musl stops (musl
    1.2.3 names it NONAME, as remedy-lab.md notes); UV_NO_SYNC saves uv's own start only ("a musl process
    that resolves an outside name later still fails")."""
    nodata, noname, resolves = F1_FAILS, Expect("fails", (NONAME,)), Expect("resolves")
    expected = {  # remedy -> (musl uv, musl 1.2.5 probe, musl 1.2.3 probe, glibc probe)
        "none": (F1_FAILS, nodata, noname, resolves),
        f"sysctl {DISABLE_IPV6}=1": (F1_FAILS, nodata, noname, resolves),
        "env UV_NO_SYNC=1 UV_PYTHON_DOWNLOADS=never": (STARTS, nodata, noname, resolves),
        "dnsConfig ndots:1": (STARTS, resolves, resolves, resolves),
        "cluster-only search list (ndots:5 kept)": (STARTS, resolves, resolves, resolves),
    }
    cells = []
    clients = (Client.UV_START, Client.MUSL, Client.MUSL_123, Client.GLIBC)
    for remedy, (state, resolv, env) in remedies(F1, F1_SYSCTL).items():
        for client, expect in zip(clients, expected[remedy], strict=True):
            cells.append(Cell(remedy, client.value, Case(state, resolv, client, env=env), expect))
    return Table("f1", f"F1: node search domain {TRAP_DOMAIN} answers NODATA (pod IPv6 link-local only)",
                 "remedy", tuple(cells))


def no_sync_table() -> Table:
    """remedy-lab.md "What UV_NO_SYNC=1 does to real images"; broken network = F1, working = cluster-only."""
    expected = {  # image -> (broken, broken + UV_NO_SYNC, working, working + UV_NO_SYNC)
        Image.COPIED_AFTER_SYNC: (Expect("fails", (NODATA, "setuptools")), STARTS, STARTS, STARTS),
        Image.SYNCED_WITHOUT_EXTRA: (
            Expect("fails", (NODATA, "tomli")), Expect("ModuleNotFoundError", ("No module named 'tomli'",)),
            STARTS, Expect("ModuleNotFoundError", ("No module named 'tomli'",))),
        Image.UNSYNCED: (
            Expect("fails", (NODATA,)), Expect("ModuleNotFoundError", ("No module named 'six'",)),
            STARTS, Expect("ModuleNotFoundError", ("No module named 'six'",))),
    }
    columns = (("network broken (F1)", Resolv.NODE, ()), ("broken, UV_NO_SYNC=1", Resolv.NODE, NO_SYNC),
               ("network working", Resolv.CLUSTER_ONLY, ()), ("working, UV_NO_SYNC=1", Resolv.CLUSTER_ONLY, NO_SYNC))
    cells = []
    for image, expects in expected.items():
        for (column, resolv, env), expect in zip(columns, expects, strict=True):
            cells.append(Cell(image.value, column, Case(F1, resolv, Client.UV_START, image=image, env=env), expect))
    return Table("no-sync", "What UV_NO_SYNC=1 does to images (Chronicle started with `uv run`)", "image",
                 tuple(cells))


def aaaa_table() -> Table:
    """remedy-lab.md "Cluster DNS that blocks AAAA": musl uv `pip install` and a musl getaddrinfo."""
    expected = {  # (state, trap present) -> (uv, musl probe)
        (AAAA_EMPTY, False): (Expect("installs"), Expect("resolves")),
        (AAAA_EMPTY, True): (Expect("fails", (NODATA,)), Expect("fails", (NODATA,))),
        (AAAA_NXDOMAIN, False): (Expect("fails", (NONAME,)), Expect("fails", (NONAME,))),
        (AAAA_NXDOMAIN, True): (Expect("fails", (NONAME,)), Expect("fails", (NONAME,))),
    }
    rows = {AAAA_EMPTY: "AAAA answered NOERROR, empty", AAAA_NXDOMAIN: "AAAA answered NXDOMAIN"}
    cells = []
    for (state, trap), (uv, musl) in expected.items():
        resolv = Resolv.NODE if trap else Resolv.CLUSTER_ONLY
        where = "trap search domain present" if trap else "no trap search domain"
        cells += [Cell(rows[state], f"{where}: uv pip install", Case(state, resolv, Client.UV_PIP), uv),
                  Cell(rows[state], f"{where}: musl probe", Case(state, resolv, Client.MUSL), musl)]
    return Table("aaaa", "Cluster DNS that blocks AAAA (a CoreDNS template)", "cluster DNS", tuple(cells))


def cost_table() -> Table:
    """remedy-lab.md "The cost of each DNS remedy": what a musl client can still resolve."""
    fails = Expect("fails", (NONAME,))
    expected = {  # name -> (ndots:5, ndots:1, cluster-only)
        SERVICE: (Expect("resolves"), Expect("resolves"), Expect("resolves")),
        f"{SERVICE}.default": (Expect("resolves"), fails, Expect("resolves")),
        f"{SERVICE}.default.svc": (Expect("resolves"), fails, Expect("resolves")),
        INDEX_HOST: (F1_FAILS, Expect("resolves"), Expect("resolves")),
    }
    cells = []
    for name, expects in expected.items():
        for resolv, expect in zip((Resolv.NODE, Resolv.NDOTS_1, Resolv.CLUSTER_ONLY), expects, strict=True):
            cells.append(Cell(f"`{name}`", resolv.value, Case(F1, resolv, Client.MUSL, name=name), expect))
    return Table("cost", f"The cost of each DNS remedy (musl probe; {TRAP_DOMAIN} is a trap)", "name looked up",
                 tuple(cells))


def f2_table() -> Table:
    """remedy-lab.md "Failure F2": global IPv6 with a black-holed route, no trap."""
    hangs = Expect("hangs", min_seconds=HANG_SECONDS)
    at_once = Expect("connects", (f"connected {ROUTER_IP}",), max_seconds=AT_ONCE_SECONDS)
    expected = {  # client -> (no remedy, sysctl)
        Client.MUSL: (hangs, at_once),
        Client.GLIBC: (hangs, at_once),
        # with timeout=HANG_SECONDS (remedy-lab.md: 20): all of it lost on IPv6, then IPv4
        Client.PYTHON: (Expect("connects", (f"connected {ROUTER_IP}",), min_seconds=HANG_SECONDS), at_once),
        # uv races IPv6 and IPv4 (remedy-lab.md: 1.3 s instead of 0.07 s): each connection gives IPv6 hyper-util's
        # 300 ms Happy Eyeballs head start, and the index (HTTP/1.0) needs two, the page and the wheel
        Client.UV_PIP: (Expect("installs", min_seconds=0.6), Expect("installs")),
    }
    labels = {Client.MUSL: "musl C getaddrinfo + connect in order", Client.GLIBC: "glibc C, same",
              Client.PYTHON: f"Python create_connection(timeout={HANG_SECONDS:g})", Client.UV_PIP: Client.UV_PIP.value}
    cells = []
    for client, (bare, cured) in expected.items():
        connect = client in (Client.MUSL, Client.GLIBC)
        cells += [Cell(labels[client], "no remedy", Case(F2, Resolv.NODE, client, connect=connect), bare),
                  Cell(labels[client], f"sysctl {DISABLE_IPV6}=1", Case(F2_SYSCTL, Resolv.NODE, client, connect=connect),
                       cured)]
    return Table("f2", "F2: global IPv6, route black-holed by the router (no trap)", "client", tuple(cells))


def cures_table() -> Table:
    """Which remedy cures what: each failure under each remedy (README). F1 and F2 from their sections of
    remedy-lab.md; the AAAA NXDOMAIN row from "no pod-level remedy cures it (only UV_NO_SYNC keeps uv's
    start off the network)"; F2 under a DNS remedy or env: nothing there touches the route."""
    fails_nodata = F1_FAILS
    hangs = Expect("hangs", min_seconds=HANG_SECONDS)
    cured_connect = Expect("connects", (f"connected {ROUTER_IP}",), max_seconds=AT_ONCE_SECONDS)
    rows: list[tuple[str, State, State, Client, tuple[Expect, ...]]] = [
        ("F1 trap domain: Chronicle (musl uv)", F1, F1_SYSCTL, Client.UV_START,
         (fails_nodata, fails_nodata, STARTS, STARTS, STARTS)),
        ("F1 trap domain: any other musl client", F1, F1_SYSCTL, Client.MUSL,
         (fails_nodata, fails_nodata, fails_nodata, Expect("resolves"), Expect("resolves"))),
        ("F2 black-holed IPv6: a client connecting in order", F2, F2_SYSCTL, Client.MUSL,
         (hangs, cured_connect, hangs, hangs, hangs)),
        ("AAAA NXDOMAIN in cluster DNS: Chronicle (musl uv)", AAAA_NXDOMAIN, AAAA_NXDOMAIN_SYSCTL, Client.UV_START,
         (Expect("fails", (NONAME,)), Expect("fails", (NONAME,)), STARTS, Expect("fails", (NONAME,)),
          Expect("fails", (NONAME,)))),
    ]
    cells = []
    for label, failure, with_sysctl, client, expects in rows:
        for (remedy, (state, resolv, env)), expect in zip(remedies(failure, with_sysctl).items(), expects, strict=True):
            case = Case(state, resolv, client, env=env, connect=client is Client.MUSL and failure.blackholed_ipv6)
            cells.append(Cell(label, remedy, case, expect))
    return Table("cures", "Which remedy cures what", "failure (client)", tuple(cells))


def tables() -> list[Table]:
    return [cures_table(), f1_table(), no_sync_table(), aaaa_table(), cost_table(), f2_table()]


# ------------------------------------------------------------------------------------------ running


@dataclass
class Run:
    results: dict[Case, Measured] = field(default_factory=dict)
    setup_seconds: float = 0.0  # namespaces, servers, states
    run_seconds: float = 0.0  # every case, concurrently (builds included)


def measure(tools: Tools, cases: list[Case], workers: int = 8) -> Run:
    """Every case, one Lab per state, concurrently; the labs are gone when this returns."""
    run = Run()
    started = time.monotonic()
    with ExitStack() as stack:
        labs: dict[State, Lab] = {}
        for state in dict.fromkeys(case.state for case in cases):
            labs[state] = stack.enter_context(Lab(tools))
            apply_state(labs[state], state)
        run.setup_seconds = time.monotonic() - started
        pool = ThreadPoolExecutor(max_workers=workers)
        try:
            futures = {case: pool.submit(measure_case, labs[case.state], case, index)
                       for index, case in enumerate(dict.fromkeys(cases))}
            run.results = {case: future.result() for case, future in futures.items()}
        finally:
            # on Ctrl-C or a failed case: start nothing more; closing the labs kills what runs
            pool.shutdown(wait=False, cancel_futures=True)
        run.run_seconds = time.monotonic() - started - run.setup_seconds
    return run


def apply_state(lab: Lab, state: State) -> None:
    lab.set_dns(state.dns)
    if state.blackholed_ipv6:
        lab.add_blackholed_ipv6_route()
    if state.sysctl:
        lab.sysctl(DISABLE_IPV6, "1")


def measure_case(lab: Lab, case: Case, index: int) -> Measured:
    work = lab.dir / "cases" / str(index)
    work.mkdir(parents=True)
    env = lab.env({"UV_CACHE_DIR": str(work / "uv-cache"), **dict(case.env)}, home=work / "home")
    resolv = case.resolv.text()
    uv = str(lab.tools.uv)
    if case.client is Client.UV_START:
        image = chronicle.build(lab, case.image, work / "image")
        ran = lab.run([uv, *chronicle.start_command(case.image)], env=env, cwd=image, resolv_conf=resolv, timeout=90)
    elif case.client is Client.UV_PIP:
        ran = lab.run([uv, "pip", "install", "--python", str(lab.tools.python), "--target", str(work / "target"),
                       "--index-url", INDEX_URL, "six"], env=env, cwd=work, resolv_conf=resolv, timeout=90)
    elif case.client is Client.PYTHON:
        ran = lab.run([str(lab.tools.python), "-c", PYTHON_CONNECT, case.name, str(INDEX_PORT), f"{HANG_SECONDS:g}"],
                      env=env, cwd=work, resolv_conf=resolv, timeout=HANG_SECONDS * 3)
    else:
        probe = {Client.MUSL: lab.tools.musl_probe, Client.MUSL_123: lab.tools.musl123_probe}.get(
            case.client, lab.tools.glibc_probe)
        argv = [str(probe), case.name, *([str(INDEX_PORT)] if case.connect else [])]
        ran = lab.run(argv, env=env, cwd=work, resolv_conf=resolv, timeout=HANG_SECONDS if case.connect else 30)
    return classify(case, ran)


_LOOKUP = re.compile(r"failed to lookup address information: (.+)")
_GAI = re.compile(r"^getaddrinfo: (.+)$", re.M)


def classify(case: Case, ran: Ran) -> Measured:
    """What happened, from the exit status and the output only."""
    if ran.timed_out:
        return Measured("hangs", "", ran.seconds, ran)
    connected = re.search(r"^connected (\S+)", ran.stdout, re.M)
    if case.client in (Client.UV_START, Client.UV_PIP):
        if ran.returncode == 0:
            return Measured("starts" if case.client is Client.UV_START else "installs", "", ran.seconds, ran)
        if "ModuleNotFoundError" in ran.stderr:
            missing = re.search(r"ModuleNotFoundError: (.+)", ran.stderr)
            return Measured("ModuleNotFoundError", missing.group(1) if missing else "", ran.seconds, ran)
        lookup = _LOOKUP.search(ran.stderr)
        return Measured("fails", lookup.group(1).strip() if lookup else last_line(ran), ran.seconds, ran)
    if case.client is Client.PYTHON or case.connect:
        if ran.returncode == 0 and connected:
            return Measured("connects", connected.group(1), ran.seconds, ran)
        return Measured("fails", last_line(ran), ran.seconds, ran)
    if ran.returncode == 0:
        return Measured("resolves", ", ".join(re.findall(r"^addr (\S+)", ran.stdout, re.M)), ran.seconds, ran)
    gai = _GAI.search(ran.stdout)
    return Measured("fails", gai.group(1) if gai else last_line(ran), ran.seconds, ran)


def last_line(ran: Ran) -> str:
    lines = [line for line in ran.output.splitlines() if line.strip()]
    return lines[-1].strip() if lines else f"exit {ran.returncode}, no output"


def mismatches(expect: Expect, measured: Measured) -> Iterator[str]:
    """How a measurement differs from remedy-lab.md's result (nothing: it reproduces)."""
    if measured.outcome != expect.outcome:
        yield f"expected {expect.outcome}, measured {measured.cell()}"
    for text in expect.texts:
        if text not in measured.ran.output:
            yield f"output lacks {text!r}"
    if expect.min_seconds is not None and measured.seconds < expect.min_seconds * 0.95:
        yield f"took {measured.seconds:.2f} s, expected at least {expect.min_seconds:g} s"
    if expect.max_seconds is not None and measured.seconds > expect.max_seconds:
        yield f"took {measured.seconds:.2f} s, expected at most {expect.max_seconds:g} s"


# ------------------------------------------------------------------------------------------ rendering


def render(table: Table, results: dict[Case, Measured]) -> str:
    """A Markdown table of what was measured (the README's rows are pasted from this)."""
    columns = table.columns()
    by_place = {(c.row, c.column): c for c in table.cells}
    lines = [f"{table.title}", "", f"| {table.corner} | " + " | ".join(columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    for row in table.rows():
        values = []
        for column in columns:
            cell = by_place.get((row, column))
            values.append("-" if cell is None or cell.case not in results else results[cell.case].cell())
        lines.append(f"| {row} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def render_all(run: Run) -> str:
    parts = [render(table, run.results) for table in tables()]
    parts.append(f"{len(run.results)} cases: set-up {run.setup_seconds:.1f} s, run {run.run_seconds:.1f} s "
                 "(concurrently; builds included)")
    return "\n\n".join(parts)


def all_cases() -> list[Case]:
    return list(dict.fromkeys(cell.case for table in tables() for cell in table.cells))
