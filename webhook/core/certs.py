"""X.509 material for the webhook's TLS: a private CA, a serving certificate, and renewal decisions.

Pure: no files, no clock, no network. Every function that depends on time takes `now`.
Keys are ECDSA P-256 (accepted by the Kubernetes API server's webhook client and by every TLS stack
the webhook meets); signatures use SHA-256.

Why the details matter (shared/reference/peers.md): webhook outages caused by certificates are
almost always an expired serving certificate, a `caBundle` that does not match the serving
certificate, or a CA rotated out of the bundle while replicas still served the old chain. Hence:
- the serving certificate's `notBefore` is backdated (`CLOCK_SKEW`) so a node or API server whose clock
  is a little behind does not reject a fresh certificate;
- its `notAfter` never exceeds the CA's;
- bundles are merged, never replaced, during a CA rollover (`merge_ca_bundles`), and expired CAs are
  dropped.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CLOCK_SKEW = timedelta(minutes=5)
_PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"
_PEM_END = b"-----END CERTIFICATE-----"


class CertificateError(ValueError):
    """A PEM input that is not a usable certificate or key."""


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, both PEM (the key as unencrypted PKCS#8)."""

    cert_pem: bytes
    key_pem: bytes


# --------------------------------------------------------------------------------------------- building


def service_dns_names(service: str, namespace: str) -> list[str]:
    """The names the API server may use for `service` in `namespace` (it dials `svc.ns.svc`)."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]


def build_ca(*, common_name: str, now: datetime, days: int = 3650) -> KeyPair:
    """A self-signed CA (CA:true, critical; keyCertSign + cRLSign) valid from `now - CLOCK_SKEW`."""
    if days <= 0:
        raise ValueError("days must be positive")
    now = _aware(now)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert_pem=cert.public_bytes(serialization.Encoding.PEM), key_pem=_key_pem(key))


def build_serving_cert(
    *,
    ca: KeyPair,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str] = (),
    now: datetime,
    days: int = 365,
) -> KeyPair:
    """A TLS server certificate for `dns_names` / `ip_addresses`, signed by `ca`.

    CA:false, digitalSignature, extendedKeyUsage serverAuth. The subject CN is the first DNS name (clients
    ignore it when SANs are present; it only helps people reading the certificate). `notAfter` is capped at
    the CA's own `notAfter`.
    """
    if days <= 0:
        raise ValueError("days must be positive")
    if not dns_names and not ip_addresses:
        raise ValueError("a serving certificate needs at least one DNS name or IP address")
    now = _aware(now)
    ca_cert = load_cert(ca.cert_pem)
    ca_key = _load_signing_key(ca.key_pem)
    if not key_matches(ca.cert_pem, ca.key_pem):
        raise CertificateError("the CA key does not belong to the CA certificate")
    if not is_ca(ca.cert_pem):
        raise CertificateError("the CA certificate is not a CA (basicConstraints CA:false or missing)")
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(address)) for address in ip_addresses]
    common_name = dns_names[0] if dns_names else ip_addresses[0]
    not_after = min(now + timedelta(days=days), ca_cert.not_valid_after_utc)
    not_before = max(now - CLOCK_SKEW, ca_cert.not_valid_before_utc)
    try:
        ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(aki, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return KeyPair(cert_pem=cert.public_bytes(serialization.Encoding.PEM), key_pem=_key_pem(key))


# ------------------------------------------------------------------------------------------- inspecting


def load_cert(cert_pem: bytes) -> x509.Certificate:
    """The first certificate in `cert_pem`; `CertificateError` when there is none or it is malformed."""
    try:
        return x509.load_pem_x509_certificate(cert_pem)
    except ValueError as error:
        raise CertificateError(f"not a PEM certificate: {error}") from None


def split_pem_bundle(bundle_pem: bytes) -> list[bytes]:
    """Each certificate of a PEM bundle as its own PEM block (text between blocks is ignored)."""
    blocks: list[bytes] = []
    rest = bundle_pem
    while True:
        start = rest.find(_PEM_BEGIN)
        if start < 0:
            return blocks
        end = rest.find(_PEM_END, start)
        if end < 0:
            raise CertificateError("unterminated certificate in PEM bundle")
        end += len(_PEM_END)
        blocks.append(rest[start:end] + b"\n")
        rest = rest[end:]


def not_before(cert_pem: bytes) -> datetime:
    return load_cert(cert_pem).not_valid_before_utc


def not_after(cert_pem: bytes) -> datetime:
    """The certificate's expiry (timezone-aware, UTC)."""
    return load_cert(cert_pem).not_valid_after_utc


def is_valid_at(cert_pem: bytes, now: datetime) -> bool:
    cert = load_cert(cert_pem)
    now = _aware(now)
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def needs_renewal(cert_pem: bytes, *, now: datetime, renew_before: timedelta) -> bool:
    """True when the certificate is not yet valid, or expires within `renew_before` of `now`."""
    cert = load_cert(cert_pem)
    now = _aware(now)
    return now < cert.not_valid_before_utc or cert.not_valid_after_utc - renew_before <= now


def is_ca(cert_pem: bytes) -> bool:
    try:
        constraints = load_cert(cert_pem).extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    return constraints.value.ca


def dns_names(cert_pem: bytes) -> list[str]:
    """The DNS subject alternative names, in certificate order."""
    try:
        sans = load_cert(cert_pem).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(sans.get_values_for_type(x509.DNSName))


def ip_addresses(cert_pem: bytes) -> list[str]:
    """The IP subject alternative names, as strings, in certificate order."""
    try:
        sans = load_cert(cert_pem).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(address) for address in sans.get_values_for_type(x509.IPAddress)]


def covers(cert_pem: bytes, *, dns_names: Sequence[str], ip_addresses: Sequence[str] = ()) -> bool:
    """True when the certificate names every requested DNS name and IP address."""
    have_dns = {name.lower() for name in _dns_names(cert_pem)}
    have_ips = {ipaddress.ip_address(address) for address in _ip_addresses(cert_pem)}
    return all(name.lower() in have_dns for name in dns_names) and all(
        ipaddress.ip_address(address) in have_ips for address in ip_addresses
    )


def key_matches(cert_pem: bytes, key_pem: bytes) -> bool:
    """True when `key_pem` is the private key of the certificate's public key."""
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        return False
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    mine = key.public_key().public_bytes(enc, fmt)
    return mine == load_cert(cert_pem).public_key().public_bytes(enc, fmt)


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the DER certificate, lowercase hex (what `openssl x509 -fingerprint -sha256` shows)."""
    der = load_cert(cert_pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def issued_by(cert_pem: bytes, issuer_pem: bytes) -> bool:
    """True when `issuer_pem`'s subject is the certificate's issuer and its key signed the certificate."""
    cert = load_cert(cert_pem)
    issuer = load_cert(issuer_pem)
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def chains_to(cert_pem: bytes, ca_bundle_pem: bytes, *, now: datetime | None = None) -> bool:
    """True when some CA in `ca_bundle_pem` directly issued the certificate.

    With `now`, the certificate and that CA must also be valid at `now`. (The webhook chain is one level
    deep: the serving certificate is signed by the bundle's CA; no intermediates.)
    """
    if now is not None and not is_valid_at(cert_pem, now):
        return False
    for ca_pem in split_pem_bundle(ca_bundle_pem):
        if not is_ca(ca_pem):
            continue
        if now is not None and not is_valid_at(ca_pem, now):
            continue
        if issued_by(cert_pem, ca_pem):
            return True
    return False


# -------------------------------------------------------------------------------------------- bundles


def merge_ca_bundles(*bundles: bytes, now: datetime) -> bytes:
    """One PEM bundle holding every CA certificate of `bundles` that has not expired at `now`.

    Order is kept (first occurrence wins), duplicates are dropped, certificates that are not CAs are
    dropped. Put the newest CA first. During a rollover pass the new CA and the current bundle, so the
    API server trusts both the old and the new serving chain until the old CA is retired.
    """
    now = _aware(now)
    seen: set[str] = set()
    out: list[bytes] = []
    for bundle in bundles:
        for block in _complete_blocks(bundle):
            if not _is_certificate(block):
                continue  # a damaged entry cannot be trusted anyway; the rest of the bundle still counts
            fp = fingerprint(block)
            if fp in seen or not is_ca(block) or not_after(block) < now:
                continue
            seen.add(fp)
            out.append(_normalise_pem(block))
    return b"".join(out)


def without_cas(bundle_pem: bytes, retired: Iterable[bytes]) -> bytes:
    """`bundle_pem` minus the certificates in `retired` (compared by fingerprint)."""
    drop = {fingerprint(block) for pem in retired for block in split_pem_bundle(pem)}
    return b"".join(_normalise_pem(b) for b in split_pem_bundle(bundle_pem) if fingerprint(b) not in drop)


def bundle_fingerprints(bundle_pem: bytes) -> list[str]:
    return [fingerprint(block) for block in split_pem_bundle(bundle_pem)]


# -------------------------------------------------------------------------------------------- helpers


def _complete_blocks(bundle_pem: bytes) -> list[bytes]:
    """`split_pem_bundle`, minus a truncated last block instead of an error."""
    try:
        return split_pem_bundle(bundle_pem)
    except CertificateError:
        return split_pem_bundle(bundle_pem[: bundle_pem.rfind(_PEM_BEGIN)])


def _dns_names(cert_pem: bytes) -> list[str]:
    return dns_names(cert_pem)


def _ip_addresses(cert_pem: bytes) -> list[str]:
    return ip_addresses(cert_pem)


def _aware(now: datetime) -> datetime:
    """Naive datetimes are taken as UTC (cryptography does the same)."""
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_signing_key(key_pem: bytes) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    """An ECDSA or RSA private key (a CA brought by the user may be RSA; ours are always ECDSA)."""
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as error:
        raise CertificateError(f"not an unencrypted PEM private key: {error}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise CertificateError("the CA key is neither ECDSA nor RSA")
    return key


def _normalise_pem(block: bytes) -> bytes:
    return load_cert(block).public_bytes(serialization.Encoding.PEM)


# ------------------------------------------------------------------------------------- renewal planning


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
    now = _aware(now)
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
    elif not _is_certificate(ca.cert_pem) or not is_ca(ca.cert_pem):
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
    elif not _is_certificate(serving.cert_pem):
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
    if served and all(_is_certificate(pem) and issued_by(pem, active.cert_pem) for pem in served):
        return f"every replica checked ({len(served)}) serves a certificate from the active CA"
    return None


def _keep_reason(active: KeyPair, served: Sequence[bytes] | None) -> str:
    if served is None:
        return "could not check which certificate the replicas serve"
    if not served:
        return "no replica to check"
    new = sum(1 for pem in served if _is_certificate(pem) and issued_by(pem, active.cert_pem))
    return f"{new} of {len(served)} replicas serve a certificate from the active CA"


def _is_certificate(pem: bytes) -> bool:
    try:
        load_cert(pem)
    except CertificateError:
        return False
    return True


def _day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    """ECDSA keys sign (digital_signature) and never encipher; only the CA signs certificates and CRLs."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )
