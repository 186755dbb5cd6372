"""`v4only doctor --webhook`, the pure part: is the installed webhook configuration safe, and is its TLS sound?

The command (`webhook/cli/doctor_webhook.py`) reads every MutatingWebhookConfiguration (plain dicts), the
serving certificate (the Secret's `tls.crt`, and with `--served-by` what a replica serves) and the time;
`check_webhook` turns them into a `WebhookReport`, and `render_table` / `render_json` print it.

What is checked, and what counts (shared/reference/kubernetes.md §5, shared/reference/peers.md):
- each webhook of the configuration: `failurePolicy` Ignore (Fail, or unset, which the API defaults to Fail, is a
  problem: a webhook that is down blocks every matching pod creation, including its own pods');
  `timeoutSeconds` at most 5 (unset means 10; above 5 is a problem); `sideEffects` None or NoneOnDryRun;
  `admissionReviewVersions` containing v1; rules matching pods CREATE and nothing else (UPDATE on pods is a
  problem); `reinvocationPolicy` IfNeeded (a note otherwise); a `caBundle` of PEM certificates.
- namespace exclusion: the `namespaceSelector` must make it impossible for kube-system and v4only's own
  namespace (and the namespace of the webhook's Service) to match, *whatever labels someone gives them*. The
  only label a namespace cannot choose is `kubernetes.io/metadata.name` (the API server sets it to the name), so
  only a requirement on that key is accepted: `NotIn` listing the namespace, `In` not listing it,
  `DoesNotExist`, or `matchLabels` naming another namespace. An opt-in on any other label (for example
  `v4only.io/inject In [enabled]`) does not exclude a namespace: anyone who may label it opts it in. CEL
  `matchConditions` are not evaluated (a namespace excluded only there is reported as not excluded).
- certificates: every CA of the caBundles and every serving certificate seen: days until `notAfter` (fewer
  than 7, expired or not yet valid is a problem, fewer than 30 a note; a CA that signed none of the serving
  certificates seen is only a note); a serving certificate must be signed by a CA in the caBundle of every
  webhook and name the Service (`NAME.NAMESPACE.svc`, what the API server dials).
- timeout budget: every mutating webhook of the cluster whose rules can match a pod CREATE (resources `pods`,
  `*` or `*/*`; operations CREATE or `*`; API group "" or `*`), `timeoutSeconds` default 10. The API server
  calls them one after another, and calls a webhook with `reinvocationPolicy: IfNeeded` at most once more: the
  worst case counts those twice. Above 30 s (half the API server's default 60 s request deadline) is a problem,
  above 15 s a note. Selectors are not evaluated, so this is an upper bound: as if one pod matched them all.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import orjson
from cryptography.x509.oid import NameOID

from webhook.core import certs
from webhook.core.text import problems_block, table

Status = Literal["ok", "note", "problem"]

NAME_LABEL = "kubernetes.io/metadata.name"
ALWAYS_EXCLUDED = ("kube-system",)
MAX_TIMEOUT = 5
DEFAULT_TIMEOUT = 10  # admissionregistration/v1
REQUEST_DEADLINE = 60  # the API server's default request timeout (--request-timeout)
BUDGET_PROBLEM = REQUEST_DEADLINE // 2
BUDGET_NOTE = 15
EXPIRY_PROBLEM_DAYS = 7
EXPIRY_NOTE_DAYS = 30
_DAY = timedelta(days=1)


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


# ---- checking ------------------------------------------------------------------------------------


def check_webhook(
    configurations: Sequence[Mapping[str, Any]],
    *,
    name: str,
    namespace: str,
    serving: Sequence[ServingSource],
    now: datetime,
) -> WebhookReport:
    """The whole report from plain facts: every MutatingWebhookConfiguration, the serving certificates, `now`."""
    notes: list[str] = []
    problems: list[str] = []
    ours = next((c for c in configurations if _name(c) == name), None)
    hooks = [h for h in (ours or {}).get("webhooks") or [] if isinstance(h, Mapping)]
    if ours is None:
        problems.append(
            f"MutatingWebhookConfiguration {name} not found: v4only's webhook is not installed "
            "(`kubectl apply -k manifests/`), or it has another name (--webhook-configuration)"
        )
    elif not hooks:
        problems.append(f"MutatingWebhookConfiguration {name} has no webhooks")
    rows: list[Row] = []
    bundles: dict[str, bytes] = {}
    for hook in hooks:
        hook_rows, bundle = _check_hook(hook, namespace, notes, problems)
        rows += hook_rows
        if bundle is not None:
            bundles[str(hook.get("name") or "")] = bundle
    certificates = _check_certificates(hooks, bundles, serving, now, notes, problems)
    budget = tuple(_budget(configurations))
    worst = sum(e.worst for e in budget)
    if worst > BUDGET_NOTE:
        text = (
            f"mutating webhooks called for a pod CREATE: worst case {worst} s with reinvocation "
            f"({len(budget)} webhooks, {sum(e.timeout for e in budget)} s called once each)"
        )
        if worst > BUDGET_PROBLEM:
            slowest = sorted(budget, key=lambda e: (-e.worst, e.configuration, e.webhook))[:3]
            problems.append(
                f"{text}, above {BUDGET_PROBLEM} s, half the API server's {REQUEST_DEADLINE} s request deadline: pod "
                "creation can time out even with failurePolicy Ignore (kubernetes#128162); lower timeoutSeconds of "
                f"{', '.join(_budget_name(e) for e in slowest)}"
            )
        else:
            notes.append(
                f"{text}, above {BUDGET_NOTE} s: little headroom under the API server's {REQUEST_DEADLINE} s request "
                "deadline"
            )
    return WebhookReport(
        configuration=name,
        namespace=namespace,
        found=ours is not None,
        rows=tuple(rows),
        certificates=certificates,
        budget=budget,
        notes=tuple(notes),
        problems=tuple(problems),
        sources=tuple(serving),
    )


def service_host(configurations: Sequence[Mapping[str, Any]], *, name: str, namespace: str) -> str:
    """The host name the API server dials for the configuration's first webhook (`v4only.NS.svc` by default)."""
    ours = next((c for c in configurations if _name(c) == name), None)
    for hook in (ours or {}).get("webhooks") or []:
        service = (hook.get("clientConfig") or {}).get("service") or {}
        if service.get("name") and service.get("namespace"):
            return f"{service['name']}.{service['namespace']}.svc"
    return f"v4only.{namespace}.svc"


def excludes(selector: Mapping[str, Any] | None, namespace: str) -> bool:
    """True when no namespace named `namespace` can match `selector`, whatever other labels it is given.

    Only `kubernetes.io/metadata.name` counts: the API server sets it to the namespace's name and nobody can
    change it. A requirement on any other key can be met by labelling the namespace.
    """
    selector = selector or {}
    labels = selector.get("matchLabels") or {}
    if NAME_LABEL in labels and labels[NAME_LABEL] != namespace:
        return True
    for expression in selector.get("matchExpressions") or []:
        if expression.get("key") != NAME_LABEL:
            continue
        operator, values = expression.get("operator"), list(expression.get("values") or [])
        if operator == "In" and namespace not in values:
            return True
        if operator == "NotIn" and namespace in values:
            return True
        if operator == "DoesNotExist":
            return True
    return False


def matches_pod_create(hook: Mapping[str, Any]) -> bool:
    """Some rule of the webhook can match a core/v1 Pod CREATE (the API server would call it)."""
    return any(
        bool({"", "*"} & set(rule.get("apiGroups") or []))
        and bool({"pods", "*", "*/*"} & set(rule.get("resources") or []))
        and bool({"CREATE", "*"} & set(rule.get("operations") or []))
        and rule.get("scope", "*") in ("*", "Namespaced")
        for rule in hook.get("rules") or []
    )


def _check_hook(
    hook: Mapping[str, Any], namespace: str, notes: list[str], problems: list[str]
) -> tuple[list[Row], bytes | None]:
    name = str(hook.get("name") or "?")
    rows: list[Row] = []

    def add(check: str, value: str, status: Status, message: str = "") -> None:
        rows.append(Row(name, check, value, status))
        if status == "problem":
            problems.append(f"{name}: {message}")
        elif status == "note":
            notes.append(f"{name}: {message}")

    policy = hook.get("failurePolicy")
    if policy == "Ignore":
        add("failurePolicy", "Ignore", "ok")
    else:
        shown = str(policy) if policy else "(unset: Fail)"
        add(
            "failurePolicy",
            shown,
            "problem",
            f"failurePolicy {shown}: while the webhook is down or unreachable no matching pod can be created, "
            "including the pods that would bring it back; use Ignore",
        )

    timeout, timeout_set = _timeout(hook)
    shown_timeout = f"{timeout} s" if timeout_set else f"(unset: {timeout} s)"
    if timeout <= MAX_TIMEOUT:
        add("timeoutSeconds", shown_timeout, "ok")
    else:
        add(
            "timeoutSeconds",
            shown_timeout,
            "problem",
            f"timeoutSeconds {shown_timeout}: above {MAX_TIMEOUT} s a slow webhook holds every matching pod creation "
            f"that long and eats the request deadline shared with other webhooks; use {MAX_TIMEOUT} or less "
            "(v4only ships 3)",
        )

    side_effects = hook.get("sideEffects")
    if side_effects in ("None", "NoneOnDryRun"):
        add("sideEffects", str(side_effects), "ok")
    else:
        shown = str(side_effects) if side_effects else "(unset)"
        add(
            "sideEffects",
            shown,
            "problem",
            f"sideEffects {shown}: dry-run pod requests (`kubectl apply --dry-run=server`, `kubectl diff`) "
            "fail with \"does not support dry run\"; use None",
        )

    versions = [str(v) for v in hook.get("admissionReviewVersions") or []]
    if "v1" in versions:
        add("admissionReviewVersions", ", ".join(versions), "ok")
    else:
        shown = ", ".join(versions) or "(none)"
        add(
            "admissionReviewVersions",
            shown,
            "problem",
            f"admissionReviewVersions {shown} lacks v1: v4only answers admission.k8s.io/v1 only, so every call "
            "fails",
        )

    covered = _rule_items(hook)
    extra = [item for item in covered if item != "pods CREATE"]
    shown_rules = ", ".join(covered) or "(none)"
    if not matches_pod_create(hook):
        add("rules", shown_rules, "problem", "rules do not match pods CREATE: the webhook is never called")
    elif extra:
        add(
            "rules",
            shown_rules,
            "problem",
            f"rules also match {', '.join(extra)}: v4only mutates pods on CREATE only (mutating pods on UPDATE "
            "can break finalizer removal, gatekeeper#4121); use resources [pods], operations [CREATE]",
        )
    else:
        add("rules", shown_rules, "ok")

    reinvocation = hook.get("reinvocationPolicy") or "Never"
    if reinvocation == "IfNeeded":
        add("reinvocationPolicy", "IfNeeded", "ok")
    else:
        add(
            "reinvocationPolicy",
            str(reinvocation),
            "note",
            f"reinvocationPolicy {reinvocation}: containers that a later webhook adds do not get v4only's env "
            "fallback; IfNeeded calls v4only again (its patch is idempotent)",
        )

    service_ns = str(((hook.get("clientConfig") or {}).get("service") or {}).get("namespace") or "")
    wanted = list(dict.fromkeys([*ALWAYS_EXCLUDED, namespace, *([service_ns] if service_ns else [])]))
    selector = hook.get("namespaceSelector")
    missing = [ns for ns in wanted if not excludes(selector, ns)]
    if missing:
        add(
            "namespaceSelector",
            f"does not exclude {', '.join(missing)}",
            "problem",
            f"namespaceSelector does not exclude {', '.join(missing)}: pods there are sent to v4only, and its own "
            "pods cannot wait on themselves; add the expression "
            f"`{NAME_LABEL} NotIn [{', '.join(wanted)}]` (an opt-in label does not count: anyone who may label "
            "the namespace opts it in)",
        )
    else:
        add("namespaceSelector", f"excludes {', '.join(wanted)}", "ok")

    bundle, problem = _bundle(hook)
    if problem:
        add("caBundle", problem.split(":")[0], "problem", problem)
        return rows, None
    count = len(certs.split_pem_bundle(bundle))
    add("caBundle", f"{count} CA{'s' if count != 1 else ''}", "ok")
    return rows, bundle


def _timeout(hook: Mapping[str, Any]) -> tuple[int, bool]:
    value = hook.get("timeoutSeconds")
    if isinstance(value, int) and not isinstance(value, bool):
        return value, True
    return DEFAULT_TIMEOUT, False


def _rule_items(hook: Mapping[str, Any]) -> list[str]:
    """What the rules match, as "RESOURCE OPERATION" (API group first when not core), sorted."""
    items: set[str] = set()
    for rule in hook.get("rules") or []:
        for group in rule.get("apiGroups") or []:
            for resource in rule.get("resources") or []:
                for operation in rule.get("operations") or []:
                    items.add(f"{resource if group == '' else f'{group}/{resource}'} {operation}")
    return sorted(items)


def _bundle(hook: Mapping[str, Any]) -> tuple[bytes, str]:
    """The decoded caBundle, or a problem (the text before the first colon is the table's value)."""
    raw = (hook.get("clientConfig") or {}).get("caBundle") or ""
    if not raw:
        return b"", (
            "no caBundle: the API server cannot verify the webhook's certificate and every call fails "
            "(`v4only certs` or cert-manager's cainjector writes it)"
        )
    try:
        bundle = base64.b64decode(raw, validate=True)
        blocks = certs.split_pem_bundle(bundle)
        for block in blocks:
            certs.load_cert(block)
    except ValueError:  # binascii.Error is one
        blocks = []
    if not blocks:
        return b"", "caBundle is not PEM certificates: every call fails its TLS handshake"
    return bundle, ""


# ---- certificates --------------------------------------------------------------------------------


def _check_certificates(
    hooks: Sequence[Mapping[str, Any]],
    bundles: Mapping[str, bytes],
    serving: Sequence[ServingSource],
    now: datetime,
    notes: list[str],
    problems: list[str],
) -> tuple[CertReport, ...]:
    reports: list[CertReport] = []
    seen_serving: list[bytes] = []
    dns = sorted(
        {
            f"{svc['name']}.{svc['namespace']}.svc"
            for hook in hooks
            if (svc := (hook.get("clientConfig") or {}).get("service") or {}).get("name") and svc.get("namespace")
        }
    )
    secret_pem = next((s.pem for s in serving if s.kind == "secret" and s.pem), None)
    for source in serving:
        if source.pem is None:
            _unreadable(source, notes, problems)
            continue
        try:
            certs.load_cert(source.pem)
        except certs.CertificateError:
            problems.append(f"{source.label}: the certificate is not PEM")
            continue
        seen_serving.append(source.pem)
        status: Status = "ok"
        unsigned = [name for name, bundle in bundles.items() if not certs.chains_to(source.pem, bundle)]
        if unsigned:
            status = "problem"
            problems.append(
                f"{source.label}: certificate {_short(source.pem)} is not signed by a CA in the caBundle of "
                f"{', '.join(unsigned)}: the API server refuses the TLS handshake, so those calls fail "
                "(with failurePolicy Ignore pods are created without v4only)"
            )
        unnamed = [name for name in dns if not certs.covers(source.pem, dns_names=[name])]
        if unnamed:
            status = "problem"
            problems.append(
                f"{source.label}: certificate {_short(source.pem)} does not name {', '.join(unnamed)}, "
                "the host the API server dials: it refuses the certificate"
            )
        status = _worse(status, _expiry(source.label, "certificate", source.pem, now, notes, problems))
        if source.kind == "served" and secret_pem is not None and certs.fingerprint(secret_pem) != certs.fingerprint(
            source.pem
        ):
            status = _worse(status, "note")
            notes.append(
                f"{source.label}: serves certificate {_short(source.pem)} but the Secret holds "
                f"{_short(secret_pem)}: the replica has not reloaded it yet, or this is another installation"
            )
        signed = not unsigned if bundles else None
        reports.append(_cert_report("serving", source.label, source.pem, now, signed, status))
    cas: dict[str, bytes] = {}
    for bundle in bundles.values():
        for block in certs.split_pem_bundle(bundle):
            cas.setdefault(certs.fingerprint(block), block)
    for ca in cas.values():
        used = not seen_serving or any(certs.issued_by(pem, ca) for pem in seen_serving)
        label = f"caBundle CA {_subject(ca)}"
        status = _expiry(label, "CA", ca, now, notes, problems, unused=not used)
        reports.append(_cert_report("CA", "caBundle", ca, now, None, status))
    return tuple(sorted(reports, key=lambda r: r.role))  # CAs first, then serving certificates in source order


def _unreadable(source: ServingSource, notes: list[str], problems: list[str]) -> None:
    namespace, _, name = source.where.partition("/")
    if source.kind == "served":
        problems.append(
            f"{source.label}: no TLS certificate ({source.error or 'unreachable'}); is `kubectl port-forward` "
            "running?"
        )
    elif source.error.startswith("403"):
        notes.append(
            f"{source.label} not readable ({source.error}): the serving certificate was not checked; grant `get` on "
            f"secrets in {namespace}, or pass --served-by HOST:PORT (`kubectl port-forward -n {namespace} "
            "svc/v4only 8443:443`)"
        )
    elif source.error == "not found":
        problems.append(
            f"{source.label} not found: the webhook has no certificate to serve (`v4only certs --secret {name}`, "
            "or check the cert-manager Certificate), or pass --secret"
        )
    else:
        problems.append(f"{source.label}: {source.error}")


def _expiry(
    label: str, what: str, pem: bytes, now: datetime, notes: list[str], problems: list[str], *, unused: bool = False
) -> Status:
    expires = certs.not_after(pem)
    day = expires.strftime("%Y-%m-%d")
    days = _days_left(pem, now)
    renew = "renew it (`v4only certs`, or check the cert-manager Certificate)"
    status: Status
    if now < certs.not_before(pem):
        start = f"{certs.not_before(pem):%Y-%m-%d %H:%M}"
        message, status = f"{label}: {what} {_short(pem)} is not valid before {start} UTC", "problem"
    elif expires <= now:
        message, status = f"{label}: {what} {_short(pem)} expired on {day}: {renew}", "problem"
    elif days < EXPIRY_PROBLEM_DAYS:
        message, status = f"{label}: {what} {_short(pem)} expires {day} (in {days} days): {renew} now", "problem"
    elif days < EXPIRY_NOTE_DAYS:
        message, status = f"{label}: {what} {_short(pem)} expires {day} (in {days} days): {renew}", "note"
    else:
        return "ok"
    if unused and status == "problem":
        message, status = f"{message} (it signed none of the serving certificates seen)", "note"
    (problems if status == "problem" else notes).append(message)
    return status


def _cert_report(
    role: Literal["CA", "serving"], source: str, pem: bytes, now: datetime, signed: bool | None, status: Status
) -> CertReport:
    return CertReport(
        role=role,
        source=source,
        subject=_subject(pem),
        fingerprint=certs.fingerprint(pem),
        not_after=certs.not_after(pem),
        days_left=_days_left(pem, now),
        signed_by_bundle=signed,
        status=status,
    )


def _days_left(pem: bytes, now: datetime) -> int:
    """Whole days until `notAfter` (rounded down; negative once expired)."""
    return (certs.not_after(pem) - now) // _DAY


def _subject(pem: bytes) -> str:
    names = certs.load_cert(pem).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else ""
    return f"CN={value if isinstance(value, str) else value.decode()}" if names else "(no CN)"


def _short(pem: bytes) -> str:
    """The first 16 hex digits of the SHA-256 fingerprint: enough to tell certificates apart on screen."""
    return certs.fingerprint(pem)[:16]


def _worse(a: Status, b: Status) -> Status:
    order: tuple[Status, ...] = ("ok", "note", "problem")
    return a if order.index(a) >= order.index(b) else b


# ---- timeout budget ------------------------------------------------------------------------------


def _budget(configurations: Sequence[Mapping[str, Any]]) -> list[BudgetEntry]:
    """Every mutating webhook that can be called for a pod CREATE, in the order the API server calls them."""
    entries: list[BudgetEntry] = []
    for configuration in sorted(configurations, key=_name):
        for hook in configuration.get("webhooks") or []:
            if not matches_pod_create(hook):
                continue
            timeout, timeout_set = _timeout(hook)
            entries.append(
                BudgetEntry(
                    configuration=_name(configuration),
                    webhook=str(hook.get("name") or "?"),
                    timeout=timeout,
                    timeout_set=timeout_set,
                    reinvoked=hook.get("reinvocationPolicy") == "IfNeeded",
                )
            )
    return entries


def _budget_name(entry: BudgetEntry) -> str:
    return f"{entry.configuration}/{entry.webhook} ({entry.timeout} s)"


def _name(configuration: Mapping[str, Any]) -> str:
    return str((configuration.get("metadata") or {}).get("name") or "")


# ---- rendering -----------------------------------------------------------------------------------


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
