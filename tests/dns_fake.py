"""A DNS server on 127.0.0.1 (dnslib) that answers as remedy-lab.md measured real resolvers answer."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from dnslib import AAAA, QTYPE, RCODE, RR, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer

KUBELET_RESOLV = """\
search team.svc.cluster.local svc.cluster.local cluster.local corp.example home.example broken.example
nameserver 127.0.0.1
options ndots:5
"""


class LabResolver(BaseResolver):  # type: ignore[misc]
    def __init__(self, aaaa: str = "answer") -> None:
        self.aaaa = aaaa  # "answer", "noerror-empty" or "nxdomain": the cluster DNS's AAAA behaviour
        self.questions: list[str] = []

    def resolve(self, request, handler):
        reply = request.reply()
        name, qtype = str(request.q.qname).rstrip("."), QTYPE[request.q.qtype]
        self.questions.append(f"{name} {qtype}")
        if qtype == "AAAA" and self.aaaa != "answer":
            if self.aaaa == "nxdomain":
                reply.header.rcode = RCODE.NXDOMAIN
            return reply
        if name == "pypi.org":
            record = A("192.0.2.1") if qtype == "A" else AAAA("2001:db8::1")
            reply.add_answer(RR(name, getattr(QTYPE, qtype), rdata=record, ttl=60))
        elif name.endswith(".corp.example"):
            pass  # NOERROR, no records: NODATA
        elif name.endswith(".broken.example"):
            reply.header.rcode = RCODE.SERVFAIL
        else:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


@contextmanager
def dns_server(resolver: LabResolver) -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = DNSServer(resolver, address="127.0.0.1", port=port, logger=DNSLogger(logf=lambda _: None))
    server.start_thread()
    try:
        yield port
    finally:
        server.stop()
        server.server.server_close()  # dnslib's stop() leaves the socket open


