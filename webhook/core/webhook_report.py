"""What `v4only doctor --webhook` reports (plain frozen dataclasses) and how it prints it: `render_table` for a
person, `render_json` for a script. The checking is webhook_check.py (hooks, budget) and webhook_tls.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import orjson

from webhook.core.text import problems_block, table

Status = Literal["ok", "note", "problem"]

REQUEST_DEADLINE = 60  # the API server's default request timeout (--request-timeout)
BUDGET_PROBLEM = REQUEST_DEADLINE // 2
BUDGET_NOTE = 15


@dataclass(frozen=True, slots=True)
class ServingSource:
    """A serving certificate as read by the edge: from the Secret, or from a live endpoint (`--served-by`).

    `pem` is None when it could not be read; `error` then says why ("not found", "403 Forbidden", "no tls.crt",
    "unreachable").
    """

    kind: Literal["secret", "served"]
    where: str  # "NAMESPACE/NAME" for a Secret, "HOST:PORT" for an endpoint
    pem: bytes | None
    error: str = ""

    @property
    def label(self) -> str:
        return f"Secret {self.where}" if self.kind == "secret" else f"served by {self.where}"


@dataclass(frozen=True, slots=True)
class Row:
    """One check of one webhook: what was found, and its verdict."""

    webhook: str
    check: str
    value: str
    status: Status


@dataclass(frozen=True, slots=True)
class CertReport:
    role: Literal["CA", "serving"]
    source: str  # "caBundle", "Secret NS/NAME", "served by HOST:PORT"
    subject: str
    fingerprint: str
    not_after: datetime
    days_left: int
    signed_by_bundle: bool | None  # serving certificates only
    status: Status


@dataclass(frozen=True, slots=True)
class BudgetEntry:
    configuration: str
    webhook: str
    timeout: int
    timeout_set: bool
    reinvoked: bool

    @property
    def worst(self) -> int:
        return self.timeout * (2 if self.reinvoked else 1)


@dataclass(frozen=True, slots=True)
class WebhookReport:
    configuration: str
    namespace: str
    found: bool
    rows: tuple[Row, ...]
    certificates: tuple[CertReport, ...]
    budget: tuple[BudgetEntry, ...]
    notes: tuple[str, ...]
    problems: tuple[str, ...]
    sources: tuple[ServingSource, ...] = field(default=())

    @property
    def budget_total(self) -> int:
        return sum(e.timeout for e in self.budget)

    @property
    def budget_worst(self) -> int:
        return sum(e.worst for e in self.budget)

    @property
    def exit_status(self) -> int:
        return 1 if self.problems else 0


def render_json(report: WebhookReport) -> str:
    doc = {
        "configuration": report.configuration,
        "namespace": report.namespace,
        "found": report.found,
        "checks": [
            {"webhook": r.webhook, "check": r.check, "value": r.value, "status": r.status} for r in report.rows
        ],
        "certificates": [
            {
                "role": c.role,
                "source": c.source,
                "subject": c.subject,
                "fingerprint": c.fingerprint,
                "notAfter": c.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "daysLeft": c.days_left,
                "signedByCaBundle": c.signed_by_bundle,
                "status": c.status,
            }
            for c in report.certificates
        ],
        "timeouts": {
            "webhooks": [
                {
                    "configuration": e.configuration,
                    "webhook": e.webhook,
                    "timeoutSeconds": e.timeout,
                    "timeoutSet": e.timeout_set,
                    "reinvoked": e.reinvoked,
                }
                for e in report.budget
            ],
            "onceSeconds": report.budget_total,
            "worstCaseSeconds": report.budget_worst,
        },
        "notes": list(report.notes),
        "problems": list(report.problems),
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n"


def render_table(report: WebhookReport) -> str:
    hooks = list(dict.fromkeys(r.webhook for r in report.rows))
    if report.found:
        head = f"webhook configuration {report.configuration}: {len(hooks)} webhook{'s' if len(hooks) != 1 else ''}"
    else:
        head = f"webhook configuration {report.configuration}: not found"
    lines = [f"{head}; v4only namespace: {report.namespace}", ""]
    if report.rows:
        rows = [
            (r.webhook if i == 0 or report.rows[i - 1].webhook != r.webhook else "", r.check, r.value, _mark(r.status))
            for i, r in enumerate(report.rows)
        ]
        lines += [f"WEBHOOKS ({len(hooks)})", *table(("WEBHOOK", "CHECK", "VALUE", "RESULT"), rows), ""]
    cert_rows = [
        (
            c.role,
            c.source,
            c.subject,
            c.fingerprint[:16],
            f"{c.not_after:%Y-%m-%d} ({c.days_left} d)",
            "-" if c.signed_by_bundle is None else "yes" if c.signed_by_bundle else "no",
            _mark(c.status),
        )
        for c in report.certificates
    ]
    lines.append(f"CERTIFICATES ({len(cert_rows)})")
    if cert_rows:
        headers = ("ROLE", "SOURCE", "SUBJECT", "SHA-256", "EXPIRES", "SIGNED BY caBundle", "RESULT")
        lines += table(headers, cert_rows)
    else:
        lines.append("(none read)")
    budget_rows = [
        (e.configuration, e.webhook, f"{e.timeout} s" + ("" if e.timeout_set else " (default)"),
         "IfNeeded (x2)" if e.reinvoked else "Never", f"{e.worst} s")
        for e in report.budget
    ]
    lines += ["", f"MUTATING WEBHOOKS CALLED FOR A POD CREATE ({len(budget_rows)}, in call order)"]
    if budget_rows:
        lines += table(("CONFIGURATION", "WEBHOOK", "TIMEOUT", "REINVOCATION", "WORST CASE"), budget_rows)
    worst = report.budget_worst
    verdict = "problem" if worst > BUDGET_PROBLEM else "note" if worst > BUDGET_NOTE else "ok"
    lines.append(
        f"total: {report.budget_total} s called once, {worst} s worst case with reinvocation "
        f"(limit {BUDGET_PROBLEM} s, half the API server's {REQUEST_DEADLINE} s request deadline): {verdict}"
    )
    if report.notes:
        lines += ["", f"NOTES ({len(report.notes)})", *(f"- {n}" for n in report.notes)]
    lines.append("")
    lines += problems_block(
        report.problems,
        none="no problems: the webhook cannot block pod creation, and its certificates chain and are current",
    )
    return "\n".join(lines) + "\n"


def _mark(status: Status) -> str:
    return {"ok": "ok", "note": "note", "problem": "PROBLEM"}[status]


REQUEST_DEADLINE = 60  # the API server's default request timeout (--request-timeout)


BUDGET_PROBLEM = REQUEST_DEADLINE // 2


BUDGET_NOTE = 15
