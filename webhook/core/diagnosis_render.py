"""How a `Diagnosis` prints: `render_table` for a person (long lists grouped and clipped), `render_json` for a
script (everything).
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from webhook.core import keys
from webhook.core.configz_reads import age_text
from webhook.core.diagnosis import Diagnosis, NodeReport, PodReport, strip_remedy
from webhook.core.text import problems_block, table

# One screen: rows beyond these are grouped or summarised (the JSON output always has everything).
MAX_NODE_ROWS = 12
MAX_NAMESPACE_ROWS = 10
MAX_POD_ROWS = 5
MAX_CELL = 44


def render_json(diagnosis: Diagnosis) -> str:
    finding = diagnosis.dns.finding
    doc = {
        "sysctls": list(diagnosis.sysctls),
        "dns": None if finding is None else finding.to_dict(),
        "labelsPublished": diagnosis.labels_published,
        "nodes": [
            {
                "name": n.name,
                "kubeletVersion": n.kubelet_version,
                "distro": n.distro,
                "cordoned": n.cordoned,
                "ready": n.ready,
                "allowlist": None if n.allowlist is None else list(n.allowlist),
                "configzError": n.configz_error or None,
                "configzPath": n.configz_path or None,
                "configzDirectError": n.configz_direct_error or None,
                "serveConfigzRead": None if n.serve_read is None else {
                    "path": n.serve_read.path,
                    "readAt": n.serve_read.read_at.isoformat().replace("+00:00", "Z"),
                    "ageSeconds": None if n.serve_read_age_seconds is None else round(n.serve_read_age_seconds),
                    "error": n.serve_read.error or None,
                },
                "verdicts": dict(n.verdicts),
                "verdict": n.verdict,
                "source": n.source,
                "detail": n.detail,
                "invalidPatterns": [{"pattern": p, "error": e} for p, e in n.invalid_patterns],
            }
            for n in diagnosis.nodes
        ],
        "namespaces": [
            {
                "name": n.name,
                "podSecurity": n.pod_security,
                "remedy": n.remedy,
                "reason": n.reason,
                "problem": n.problem,
            }
            for n in diagnosis.namespaces
        ],
        "failedPods": [
            {
                "namespace": p.namespace,
                "name": p.name,
                "node": p.node,
                "message": p.message,
                "managed": p.managed,
                "cause": p.cause,
            }
            for p in diagnosis.pods
        ],
        "hints": list(diagnosis.hints),
        "problems": list(diagnosis.problems),
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n"


def render_table(diagnosis: Diagnosis) -> str:
    lines = [_summary(diagnosis), ""]
    lines += _nodes_table(diagnosis)
    lines += ["", *_namespaces_table(diagnosis)]
    if diagnosis.pods:
        lines += ["", *_pods_table(diagnosis.pods)]
    lines += _dns_section(diagnosis)
    if diagnosis.hints:
        lines += ["", "HINTS", *(f"- {h}" for h in diagnosis.hints)]
    lines.append("")
    lines += problems_block(
        diagnosis.problems, none="no problems: every opted-in namespace gets the sysctl, or the fallback by design"
    )
    return "\n".join(lines) + "\n"


def _dns_section(diagnosis: Diagnosis) -> list[str]:
    finding = diagnosis.dns.finding
    if finding is None:
        return []
    where = f"probed from node {finding.node}" if finding.node else "probed"
    servers = ", ".join(finding.nameservers) or "-"
    head = (f"DNS ({where} at {finding.checked_at}; cluster DNS {servers}, domain {finding.cluster_domain or '-'}; "
            f"AAAA hidden: {finding.aaaa_blocking})")
    headers = ("NODE SEARCH DOMAIN", "VERDICT", "SINCE", "A MUSL CLIENT (uv, Alpine)", "ANSWER")
    rows = list(diagnosis.dns.rows) or [("(none)", "-", "-", "resolves: no node search domain in the list", "-")]
    return ["", head, *table(headers, rows)]


def _summary(diagnosis: Diagnosis) -> str:
    counts = {v: sum(1 for n in diagnosis.nodes if n.verdict == v) for v in ("allowed", "forbidden", "unknown")}
    return (
        f"sysctls: {', '.join(diagnosis.sysctls)}; nodes: {len(diagnosis.nodes)} "
        f"({counts['allowed']} allowed, {counts['forbidden']} forbidden, {counts['unknown']} unknown); "
        f"node labels published: {'yes' if diagnosis.labels_published else 'no'}"
    )


def _nodes_table(diagnosis: Diagnosis) -> list[str]:
    rows = [
        (
            n.name + ("" if n.ready else " (not ready)") + (" (cordoned)" if n.cordoned else ""),
            n.kubelet_version or "-",
            _configz_cell(n),
            _serve_read_cell(n, with_age=len(diagnosis.nodes) <= MAX_NODE_ROWS),
            _allowlist_cell(n),
            *(v for _, v in n.verdicts),
            n.source,
        )
        for n in diagnosis.nodes
    ]
    headers = (
        "NODE", "KUBELET", "CONFIGZ READ", "SERVE READ", "ALLOWLIST (running kubelet)", *diagnosis.sysctls, "SOURCE"
    )
    return [f"NODES ({len(rows)})", *table(headers, _group(rows, MAX_NODE_ROWS))]


def _configz_cell(node: NodeReport) -> str:
    """The path that read the kubelet's configuration, and why not directly (the proxy needs nodes/proxy)."""
    if not node.configz_path:
        return "-"
    if not node.configz_direct_error:
        return node.configz_path
    return _clip(f"{node.configz_path} (direct: {node.configz_direct_error})")


def _serve_read_cell(node: NodeReport, *, with_age: bool) -> str:
    """serve's last read of the kubelet: the path and how long before doctor's own read ("-": none published).
    Without the age when rows are grouped (ages differ on every node; -o json has them all)."""
    read = node.serve_read
    if read is None:
        return "-"
    seconds = node.serve_read_age_seconds
    return read.path if seconds is None or not with_age else f"{read.path} {age_text(seconds)} ago"


def _allowlist_cell(node: NodeReport) -> str:
    if node.allowlist is None:
        if node.configz_path:  # the CONFIGZ READ cell says why not directly; here why not via the proxy
            proxy = node.configz_error.partition("proxy: ")[2]
            return f"unknown (proxy: {proxy})" if proxy else "unknown"
        return f"unknown ({node.configz_error})" if node.configz_error else "unknown"
    return _clip(",".join(node.allowlist) or "(empty)")


def _namespaces_table(diagnosis: Diagnosis) -> list[str]:
    title = f"OPTED-IN NAMESPACES ({len(diagnosis.namespaces)})"
    if not diagnosis.namespaces:
        return [title, f"(none: label a namespace {keys.INJECT}={keys.ENABLED})"]
    rows = [
        (n.name, n.pod_security, n.remedy + (" !" if n.problem else ""), strip_remedy(n.reason))
        for n in diagnosis.namespaces
    ]
    return [title, *table(("NAMESPACE", "POD SECURITY", "NEW POD GETS", "WHY"), _group(rows, MAX_NAMESPACE_ROWS))]


def _pods_table(pods: Sequence[PodReport]) -> list[str]:
    rows = [(f"{p.namespace}/{p.name}", p.node or "-", p.message) for p in pods[:MAX_POD_ROWS]]
    lines = [f"PODS FAILED WITH SysctlForbidden ({len(pods)})", *table(("POD", "NODE", "MESSAGE"), rows)]
    if len(pods) > MAX_POD_ROWS:
        lines.append(f"... and {len(pods) - MAX_POD_ROWS} more (-o json lists them all)")
    return lines


def _group(rows: Sequence[tuple[str, ...]], limit: int) -> list[tuple[str, ...]]:
    """Rows as they are when they fit; otherwise rows alike but for their name share one line."""
    if len(rows) <= limit:
        return list(rows)
    groups: dict[tuple[str, ...], list[str]] = {}
    for row in rows:
        groups.setdefault(row[1:], []).append(row[0])
    grouped = [
        (f"{names[0]} (+{len(names) - 1} alike)" if len(names) > 1 else names[0], *rest)
        for rest, names in groups.items()
    ]
    if len(grouped) > limit:
        hidden = len(grouped) - limit + 1
        grouped = [
            *grouped[: limit - 1],
            (f"... {hidden} more groups (-o json lists them all)", *("",) * (len(rows[0]) - 1)),
        ]
    return grouped


def _clip(text: str) -> str:
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 3] + "..."
