"""CoreDNS `template` blocks that hide AAAA records, found in a Corefile (the `coredns` ConfigMap).

The template plugin (coredns.io/plugins/template) answers matching queries itself: `template CLASS TYPE
[ZONE...] { match REGEX... answer RR ... rcode CODE fallthrough ... }`. With TYPE AAAA (or ANY) and no
`answer`, it answers with no records, and with `rcode` NXDOMAIN it says the name does not exist (the default
rcode is NOERROR). remedy-lab.md measured both: the NOERROR form is harmless alone; the NXDOMAIN form makes
every musl client fail for every name (musl takes NXDOMAIN for AAAA as "no such name"), and no pod setting
cures it. So doctor names the exact line to remove.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TEMPLATE = re.compile(r"^\s*template\s+(\S+)\s+([^\s{]+)([^{]*)")


@dataclass(frozen=True, slots=True)
class AaaaTemplate:
    """One template block that answers AAAA queries with no records."""

    line: int  # 1-based, in the Corefile text
    text: str  # the `template ...` line, stripped
    rcode: str  # upper case; NOERROR when the block sets none
    matches_some: bool  # zones other than "." or a `match` limit it to some names

    @property
    def nxdomain(self) -> bool:
        return self.rcode == "NXDOMAIN"


def aaaa_templates(corefile: str) -> tuple[AaaaTemplate, ...]:
    """Every template block of `corefile` that answers AAAA (type AAAA or ANY, class IN or ANY) without an
    `answer`: the ones that hide IPv6 addresses. Comments (`#` to the end of a line) are ignored."""
    lines = [_uncomment(line) for line in corefile.splitlines()]
    found: list[AaaaTemplate] = []
    for index, line in enumerate(lines):
        head = _TEMPLATE.match(line)
        if head is None or head[1].upper() not in ("IN", "ANY") or head[2].upper() not in ("AAAA", "ANY"):
            continue
        body = _block(lines, index)
        if any(words[0] == "answer" for words in body):
            continue  # it makes up records, it does not hide them
        rcode = next((words[1].upper() for words in body if words[0] == "rcode" and len(words) > 1), "NOERROR")
        zones = [z for z in head[3].split() if z != "."]
        some = bool(zones) or any(words[0] == "match" for words in body)
        found.append(AaaaTemplate(index + 1, line.strip(), rcode, some))
    return tuple(found)


def _uncomment(line: str) -> str:
    return line.split("#", 1)[0]


def _block(lines: list[str], start: int) -> list[list[str]]:
    """The directives (split into words) inside the `{ ... }` that opens on line `start`; [] when it has none."""
    first = lines[start]
    if "{" not in first:
        return []
    text = [first.split("{", 1)[1]]
    depth = 1 + text[0].count("{") - text[0].count("}")
    for line in lines[start + 1:]:
        if depth <= 0:
            break
        text.append(line)
        depth += line.count("{") - line.count("}")
    words = (line.replace("{", " ").replace("}", " ").split() for line in text)
    return [w for w in words if w]
