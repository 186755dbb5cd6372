"""`v4only doctor --webhook`, the certificates: every CA of the caBundles and every serving certificate seen,
checked for expiry, for a signature by a CA in every webhook's caBundle, and for the Service name the API
server dials (rules in webhook_check.py's docstring).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from cryptography.x509.oid import NameOID

from webhook.core import certs
from webhook.core.webhook_report import CertReport, ServingSource, Status

EXPIRY_PROBLEM_DAYS = 7
EXPIRY_NOTE_DAYS = 30
_DAY = timedelta(days=1)


def check_certificates(
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
