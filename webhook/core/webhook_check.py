"""`v4only doctor --webhook`, the pure part: is the installed webhook configuration safe, and is its TLS sound?

The command (`webhook/cli/doctor_webhook.py`) reads every MutatingWebhookConfiguration (plain dicts), the
serving certificate (the Secret's `tls.crt`, and with `--served-by` what a replica serves) and the time;
`check_webhook` turns them into a `WebhookReport` (the certificates are checked in webhook_tls.py), and
`render_table` / `render_json` in webhook_report.py print it.

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
from datetime import datetime
from typing import Any

from webhook.core import certs
from webhook.core.webhook_report import (
    BUDGET_NOTE,
    BUDGET_PROBLEM,
    REQUEST_DEADLINE,
    BudgetEntry,
    Row,
    ServingSource,
    Status,
    WebhookReport,
)
from webhook.core.webhook_tls import check_certificates

NAME_LABEL = "kubernetes.io/metadata.name"
ALWAYS_EXCLUDED = ("kube-system",)
MAX_TIMEOUT = 5
DEFAULT_TIMEOUT = 10  # admissionregistration/v1


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
    certificates = check_certificates(hooks, bundles, serving, now, notes, problems)
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
