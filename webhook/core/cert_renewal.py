"""Renewal planning for `v4only certs`: from what is stored, trusted and served, decide what to keep, renew, or
roll over (`plan_certs`), and say why. Pure, like certs.py: `now` is an argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from webhook.core.certs import (
    KeyPair,
    aware,
    build_ca,
    build_serving_cert,
    covers,
    fingerprint,
    is_ca,
    is_certificate,
    issued_by,
    key_matches,
    merge_ca_bundles,
    needs_renewal,
    not_after,
    split_pem_bundle,
)


@dataclass(frozen=True)
class CertRequest:
    """What `v4only certs` should maintain."""

    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...] = ()
    renew_before: timedelta = timedelta(days=30)
    ca_days: int = 3650
    serving_days: int = 365
    ca_common_name: str = "v4only-ca"
    rotate_ca: bool = False  # start a CA rollover now, whatever the CA's expiry
    retire_old_cas: bool = False  # the operator asserts no replica serves an old chain any more

    def __post_init__(self) -> None:
        if self.serving_days <= 0 or self.ca_days <= 0:
            raise ValueError("certificate lifetimes must be positive")
        if self.renew_before < timedelta(0):
            raise ValueError("renew_before must not be negative")
        if timedelta(days=self.ca_days) <= self.ca_rollover_window:
            # Otherwise a fresh CA would already be due for rollover on the next run, forever.
            raise ValueError(
                f"the CA lifetime ({self.ca_days} days) must exceed the serving lifetime plus the renewal "
                f"window ({self.ca_rollover_window.days} days)"
            )

    @property
    def ca_rollover_window(self) -> timedelta:
        """A CA is rolled over while it can still sign one full serving certificate before renewal is due."""
        return timedelta(days=self.serving_days) + self.renew_before


@dataclass(frozen=True)
class CertPlan:
    """The material `v4only certs` should leave behind, and why (one note per decision)."""

    ca: KeyPair
    serving: KeyPair
    bundle: bytes  # what every webhook's caBundle should hold: the active CA first
    ca_changed: bool
    serving_changed: bool
    retained_cas: tuple[str, ...]  # fingerprints of old CAs still trusted during a rollover
    notes: tuple[str, ...]

    @property
    def rollover_pending(self) -> bool:
        return bool(self.retained_cas)


def plan_certs(
    request: CertRequest,
    *,
    ca: KeyPair | None,
    serving: KeyPair | None,
    trusted: bytes,
    served: Sequence[bytes] | None,
    now: datetime,
) -> CertPlan:
    """Decide what to keep, renew, or roll over.

    - `ca`, `serving`: what is stored now (None when missing).
    - `trusted`: every CA bundle currently in use (the webhook configuration's caBundle values, the CA named in the
      serving Secret, ...), concatenated.
    - `served`: the certificates the running replicas present right now, one per replica; None when that could
      not be checked. Old CAs leave the bundle only when at least one replica was checked and every one serves a
      certificate issued by the active CA (or when `request.retire_old_cas`), or when they expire.

    Rollover sequence (each step is one run):
      1. the CA is due (or `rotate_ca`): a new CA becomes active; the bundle holds new + old; the serving certificate
         is reissued from the new CA. Writers must update the bundle BEFORE the serving certificate, so the API
         server trusts the new chain before any replica can present it.
      2. replicas pick up the new serving certificate; while any still serves the old one, the old CA stays.
      3. every replica serves the new chain: the old CA is dropped from the bundle.
    """
    now = aware(now)
    notes: list[str] = []

    active, ca_changed, old_ca = _plan_ca(request, ca, now, notes)

    new_serving, serving_changed = _plan_serving(request, active, serving, now, notes, ca_changed=ca_changed)

    # Old CAs: the stored one (if it was replaced) and whatever the bundle already trusted.
    previous = b"".join(pem for pem in (old_ca, trusted) if pem)
    merged = merge_ca_bundles(active.cert_pem, previous, now=now)
    active_fp = fingerprint(active.cert_pem)
    old = [block for block in split_pem_bundle(merged) if fingerprint(block) != active_fp]
    if old:
        reason = _retire_reason(request, active, served)
        if reason is not None:
            merged = active.cert_pem
            notes.append(f"bundle: retired {len(old)} old CA(s): {reason}")
            old = []
        else:
            notes.append(f"bundle: kept {len(old)} old CA(s) next to the active CA: {_keep_reason(active, served)}")
    else:
        notes.append("bundle: the active CA only")

    return CertPlan(
        ca=active,
        serving=new_serving,
        bundle=merged,
        ca_changed=ca_changed,
        serving_changed=serving_changed,
        retained_cas=tuple(fingerprint(block) for block in old),
        notes=tuple(notes),
    )


def _plan_ca(
    request: CertRequest, ca: KeyPair | None, now: datetime, notes: list[str]
) -> tuple[KeyPair, bool, bytes | None]:
    """(active CA, changed?, the old CA certificate to keep trusting or None)."""
    problem: str | None
    old: bytes | None = None
    if ca is None:
        problem = "no CA stored"
    elif not is_certificate(ca.cert_pem) or not is_ca(ca.cert_pem):
        problem = "the stored CA certificate is not a CA certificate"
    elif not key_matches(ca.cert_pem, ca.key_pem):
        problem = "the stored CA key does not match the CA certificate"
        old = ca.cert_pem  # its certificate may still be what the replicas' chain needs
    elif request.rotate_ca:
        problem = "rollover requested (--rotate-ca)"
        old = ca.cert_pem
    elif needs_renewal(ca.cert_pem, now=now, renew_before=request.ca_rollover_window):
        problem = (
            f"rollover: the CA expires {_day(not_after(ca.cert_pem))}, too soon to sign a "
            f"{request.serving_days}-day certificate"
        )
        old = ca.cert_pem
    else:
        notes.append(f"ca: kept (expires {_day(not_after(ca.cert_pem))})")
        return ca, False, None
    new = build_ca(common_name=request.ca_common_name, now=now, days=request.ca_days)
    notes.append(f"ca: created (expires {_day(not_after(new.cert_pem))}): {problem}")
    return new, True, old


def _plan_serving(
    request: CertRequest,
    ca: KeyPair,
    serving: KeyPair | None,
    now: datetime,
    notes: list[str],
    *,
    ca_changed: bool,
) -> tuple[KeyPair, bool]:
    problem: str | None = None
    if serving is None:
        problem = "no serving certificate stored"
    elif not is_certificate(serving.cert_pem):
        problem = "the stored serving certificate is not a PEM certificate"
    elif not key_matches(serving.cert_pem, serving.key_pem):
        problem = "the stored key does not match the serving certificate"
    elif ca_changed or not issued_by(serving.cert_pem, ca.cert_pem):
        problem = "it was not issued by the active CA"
    elif not covers(serving.cert_pem, dns_names=request.dns_names, ip_addresses=request.ip_addresses):
        problem = "it does not name every requested DNS name and IP address"
    elif needs_renewal(serving.cert_pem, now=now, renew_before=request.renew_before):
        problem = f"it expires {_day(not_after(serving.cert_pem))}, within {request.renew_before.days} days"
    if problem is None and serving is not None:
        notes.append(f"serving: kept (expires {_day(not_after(serving.cert_pem))})")
        return serving, False
    new = build_serving_cert(
        ca=ca,
        dns_names=request.dns_names,
        ip_addresses=request.ip_addresses,
        now=now,
        days=request.serving_days,
    )
    notes.append(f"serving: issued (expires {_day(not_after(new.cert_pem))}): {problem}")
    return new, True


def _retire_reason(request: CertRequest, active: KeyPair, served: Sequence[bytes] | None) -> str | None:
    if request.retire_old_cas:
        return "requested (--retire-old-cas)"
    if served and all(is_certificate(pem) and issued_by(pem, active.cert_pem) for pem in served):
        return f"every replica checked ({len(served)}) serves a certificate from the active CA"
    return None


def _keep_reason(active: KeyPair, served: Sequence[bytes] | None) -> str:
    if served is None:
        return "could not check which certificate the replicas serve"
    if not served:
        return "no replica to check"
    new = sum(1 for pem in served if is_certificate(pem) and issued_by(pem, active.cert_pem))
    return f"{new} of {len(served)} replicas serve a certificate from the active CA"


def _day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")
