"""Asking one DNS server one question, with a short timeout (dnslib builds and parses the packets).

Exact answers are the point: glibc's getaddrinfo walks the search list and folds NODATA and NXDOMAIN
into its own codes, so the probe sends absolute names to the cluster DNS itself and reads the rcode.
"""

from __future__ import annotations

from pathlib import Path

from dnslib import QTYPE, RCODE, DNSError, DNSRecord

from webhook.core.dns_trap import Answer, Rcode

_KNOWN: tuple[Rcode, ...] = ("NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED")


def ask(server: str, name: str, qtype: str, *, port: int = 53, timeout: float = 2.0) -> Answer:
    """The rcode and the number of `qtype` records in the reply; TIMEOUT when none came in time."""
    question = DNSRecord.question(name.rstrip(".") + ".", qtype)
    try:
        packet = question.send(server, port, timeout=timeout, ipv6=":" in server)
        reply = DNSRecord.parse(packet)
    except (TimeoutError, OSError):
        return Answer("TIMEOUT")
    except DNSError:
        return Answer("OTHER")
    if reply.header.id != question.header.id:
        return Answer("OTHER")
    rcode = str(RCODE.get(reply.header.rcode))
    wanted = getattr(QTYPE, qtype)
    records = sum(1 for rr in reply.rr if rr.rtype == wanted)
    known: Rcode = next((r for r in _KNOWN if r == rcode), "OTHER")
    return Answer(known, records)


def has_ipv6_default_route(proc: Path = Path("/proc/net")) -> bool | None:
    """A global IPv6 address and an IPv6 default route in this pod (F2 is possible): from procfs, or None."""
    try:
        addresses = (proc / "if_inet6").read_text().splitlines()
        routes = (proc / "ipv6_route").read_text().splitlines()
    except OSError:
        return None  # IPv6 disabled in this pod's kernel view, or no procfs: cannot tell
    # if_inet6: address, ifindex, prefix length, scope (00 = global), flags, name. A ULA (fc00::/7) source
    # sorts after IPv4 in both libcs (RFC 6724 labels), so only a global address makes F2 possible.
    global_address = any(len(f := line.split()) >= 4 and f[3] == "00" and f[0][:2] not in ("fc", "fd")
                         for line in addresses)
    # ipv6_route: destination, prefix length, ... device; a default route has ::/0 and is not `lo`.
    default = any(len(f := line.split()) >= 10 and f[0] == "0" * 32 and f[1] == "00" and f[9] != "lo"
                  for line in routes)
    return global_address and default

