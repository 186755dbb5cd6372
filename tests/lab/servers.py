"""The lab's router: a DNS server (dnslib) and a PEP 503 index over IPv4 only, in one process.

Run by the harness inside the router namespace as a plain script (`python servers.py STATE_DIR`), so it
imports nothing from the project. What the DNS server answers is read from STATE_DIR/dns.json at every
query, so the harness switches behaviour by rewriting that file (atomically); every query is appended to
STATE_DIR/dns.log as `TYPE NAME RCODE ANSWERS`, for tests that count what a client asked.

Answers (remedy-lab.md, "The set-up"):
- the records in dns.json (`pypi.lab.test` A and AAAA, `svc1.default.svc.cluster.local` A), NOERROR; a name
  that has records but none of the asked type answers NOERROR with no records (NODATA), as CoreDNS does;
- any name under a trap domain: NOERROR with no records (NODATA), as wildcard, split-horizon and some
  home-router or VPN resolvers answer;
- everything else NXDOMAIN;
- `aaaa: "noerror-empty"` / `"nxdomain"` answer every AAAA question that way first, as a CoreDNS
  `template IN AAAA . { rcode NOERROR }` / `template ANY AAAA { rcode NXDOMAIN }` does.
The index is served by http.server from STATE_DIR/index on 0.0.0.0 (an AF_INET socket: IPv4 only).
The process exits when its parent goes away, so a killed test run leaves no server behind.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from dnslib import AAAA, QTYPE, RCODE, RR, A, DNSRecord  # type: ignore[import-untyped]
from dnslib.server import DNSServer  # type: ignore[import-untyped]

DNS_PORT = 53
INDEX_PORT = 8080
TTL = 5


class QuietLogger:
    """dnslib's logger interface with every hook silent (the query log is ours)."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args: None


class LabResolver:
    def __init__(self, state: Path) -> None:
        self.mode_file = state / "dns.json"
        self.log = (state / "dns.log").open("a", buffering=1)
        self.lock = threading.Lock()

    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
        mode = json.loads(self.mode_file.read_text())
        name = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        reply = request.reply()
        rcode, answers = answer(mode, name, qtype)
        reply.header.rcode = getattr(RCODE, rcode)
        for value in answers:
            data = A(value) if qtype == "A" else AAAA(value)
            reply.add_answer(RR(request.q.qname, request.q.qtype, ttl=TTL, rdata=data))
        with self.lock:
            self.log.write(f"{qtype} {name} {rcode} {','.join(answers) or '-'}\n")
        return reply


def answer(mode: dict[str, Any], name: str, qtype: str) -> tuple[str, list[str]]:
    if qtype == "AAAA" and mode["aaaa"] == "noerror-empty":
        return "NOERROR", []
    if qtype == "AAAA" and mode["aaaa"] == "nxdomain":
        return "NXDOMAIN", []
    records: dict[str, dict[str, list[str]]] = mode["records"]
    if name in records:
        return "NOERROR", list(records[name].get(qtype, []))
    if any(name == trap or name.endswith("." + trap) for trap in mode["trap_domains"]):
        return "NOERROR", []
    return "NXDOMAIN", []


class IndexHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def exit_with_parent() -> None:
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(0)


def main() -> None:
    state = Path(sys.argv[1])
    dns = DNSServer(LabResolver(state), address="0.0.0.0", port=DNS_PORT, logger=QuietLogger())
    dns.start_thread()
    handler = functools.partial(IndexHandler, directory=str(state / "index"))
    index = http.server.ThreadingHTTPServer(("0.0.0.0", INDEX_PORT), handler)
    threading.Thread(target=exit_with_parent, daemon=True).start()
    print("ready", flush=True)
    index.serve_forever()


if __name__ == "__main__":
    main()
