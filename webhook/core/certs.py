"""X.509 material for the webhook's TLS: a private CA, a serving certificate, bundles (renewal: cert_renewal.py).

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
    now = aware(now)
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
    now = aware(now)
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
    now = aware(now)
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def needs_renewal(cert_pem: bytes, *, now: datetime, renew_before: timedelta) -> bool:
    """True when the certificate is not yet valid, or expires within `renew_before` of `now`."""
    cert = load_cert(cert_pem)
    now = aware(now)
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
    now = aware(now)
    seen: set[str] = set()
    out: list[bytes] = []
    for bundle in bundles:
        for block in _complete_blocks(bundle):
            if not is_certificate(block):
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


def aware(now: datetime) -> datetime:
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


def is_certificate(pem: bytes) -> bool:
    try:
        load_cert(pem)
    except CertificateError:
        return False
    return True


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
