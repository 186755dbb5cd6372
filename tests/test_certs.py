"""webhook.core.certs: what the certificates contain, checked with cryptography directly (and openssl)."""

from __future__ import annotations

import ipaddress
import shutil
import ssl
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from webhook.core import certs

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DNS = certs.service_dns_names("v4only", "v4only-system")


@pytest.fixture(scope="module")
def ca() -> certs.KeyPair:
    return certs.build_ca(common_name="v4only-ca", now=NOW)


@pytest.fixture(scope="module")
def serving(ca: certs.KeyPair) -> certs.KeyPair:
    return certs.build_serving_cert(ca=ca, dns_names=DNS, ip_addresses=["127.0.0.1", "::1"], now=NOW)


def _verify_signature(child_pem: bytes, issuer_pem: bytes) -> None:
    """Independent of webhook.core.certs: ECDSA signature over the TBS bytes with the issuer's key."""
    child = x509.load_pem_x509_certificate(child_pem)
    issuer = x509.load_pem_x509_certificate(issuer_pem)
    public = issuer.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert child.signature_hash_algorithm is not None
    public.verify(child.signature, child.tbs_certificate_bytes, ec.ECDSA(child.signature_hash_algorithm))
    assert child.issuer == issuer.subject


def test_service_dns_names() -> None:
    assert certs.service_dns_names("svc", "ns") == ["svc", "svc.ns", "svc.ns.svc", "svc.ns.svc.cluster.local"]


def test_ca_extensions(ca: certs.KeyPair) -> None:
    cert = x509.load_pem_x509_certificate(ca.cert_pem)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP256R1)
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(public)
    assert cert.subject == cert.issuer
    assert cert.not_valid_before_utc <= NOW
    assert cert.not_valid_after_utc == NOW + timedelta(days=3650)
    _verify_signature(ca.cert_pem, ca.cert_pem)  # self-signed


def test_serving_extensions(ca: certs.KeyPair, serving: certs.KeyPair) -> None:
    cert = x509.load_pem_x509_certificate(serving.cert_pem)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == DNS
    assert sans.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_cert_sign and not ku.crl_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    # Backdated for clock skew, not past the CA.
    assert cert.not_valid_before_utc < NOW - timedelta(minutes=1)
    assert cert.not_valid_before_utc >= NOW - timedelta(minutes=10)
    assert cert.not_valid_after_utc == NOW + timedelta(days=365)


def test_serving_chain_verifies_independently(ca: certs.KeyPair, serving: certs.KeyPair) -> None:
    _verify_signature(serving.cert_pem, ca.cert_pem)
    assert certs.chains_to(serving.cert_pem, ca.cert_pem)
    assert certs.chains_to(serving.cert_pem, ca.cert_pem, now=NOW)


def test_python_ssl_accepts_the_pair(tmp_path, ca: certs.KeyPair, serving: certs.KeyPair) -> None:
    """The stdlib TLS stack (what the webhook server uses) loads the pair and trusts the CA."""
    (tmp_path / "tls.crt").write_bytes(serving.cert_pem)
    (tmp_path / "tls.key").write_bytes(serving.key_pem)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    client = ssl.create_default_context(cadata=ca.cert_pem.decode())
    assert len(client.get_ca_certs()) == 1


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
def test_openssl_verifies_for_ssl_server(tmp_path, ca: certs.KeyPair, serving: certs.KeyPair) -> None:
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    (tmp_path / "tls.crt").write_bytes(serving.cert_pem)
    at = int((NOW + timedelta(days=1)).timestamp())
    result = subprocess.run(
        ["openssl", "verify", "-attime", str(at), "-purpose", "sslserver", "-x509_strict",
         "-verify_hostname", "v4only.v4only-system.svc", "-CAfile", str(tmp_path / "ca.crt"),
         str(tmp_path / "tls.crt")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_key_matches(ca: certs.KeyPair, serving: certs.KeyPair) -> None:
    assert certs.key_matches(serving.cert_pem, serving.key_pem)
    assert certs.key_matches(ca.cert_pem, ca.key_pem)
    assert not certs.key_matches(serving.cert_pem, ca.key_pem)
    assert not certs.key_matches(serving.cert_pem, b"garbage")


def test_other_ca_does_not_chain(serving: certs.KeyPair) -> None:
    other = certs.build_ca(common_name="v4only-ca", now=NOW)  # same name, different key
    assert not certs.chains_to(serving.cert_pem, other.cert_pem)
    assert not certs.issued_by(serving.cert_pem, other.cert_pem)


def test_chains_to_any_ca_of_a_bundle(ca: certs.KeyPair, serving: certs.KeyPair) -> None:
    other = certs.build_ca(common_name="other", now=NOW)
    assert certs.chains_to(serving.cert_pem, other.cert_pem + ca.cert_pem)
    assert not certs.chains_to(serving.cert_pem, b"")


def test_chains_to_with_now_rejects_expired(ca: certs.KeyPair, serving: certs.KeyPair) -> None:
    assert not certs.chains_to(serving.cert_pem, ca.cert_pem, now=NOW + timedelta(days=366))


def test_serving_cert_never_outlives_ca() -> None:
    short_ca = certs.build_ca(common_name="short", now=NOW, days=10)
    pair = certs.build_serving_cert(ca=short_ca, dns_names=["a"], now=NOW, days=365)
    assert certs.not_after(pair.cert_pem) == certs.not_after(short_ca.cert_pem)


def test_serving_cert_rejects_mismatched_ca_key(ca: certs.KeyPair) -> None:
    other = certs.build_ca(common_name="x", now=NOW)
    with pytest.raises(certs.CertificateError):
        certs.build_serving_cert(ca=certs.KeyPair(ca.cert_pem, other.key_pem), dns_names=["a"], now=NOW)


def test_serving_cert_cannot_sign(ca: certs.KeyPair, serving: certs.KeyPair) -> None:
    with pytest.raises(certs.CertificateError):
        certs.build_serving_cert(ca=serving, dns_names=["a"], now=NOW)


def test_needs_renewal_boundaries(serving: certs.KeyPair) -> None:
    expiry = certs.not_after(serving.cert_pem)
    window = timedelta(days=30)
    assert not certs.needs_renewal(serving.cert_pem, now=NOW, renew_before=window)
    assert not certs.needs_renewal(
        serving.cert_pem, now=expiry - window - timedelta(seconds=1), renew_before=window
    )
    assert certs.needs_renewal(serving.cert_pem, now=expiry - window, renew_before=window)
    assert certs.needs_renewal(serving.cert_pem, now=expiry + timedelta(days=1), renew_before=window)
    # Not yet valid (a clock far behind, or a certificate from the future): renew.
    assert certs.needs_renewal(serving.cert_pem, now=NOW - timedelta(days=1), renew_before=window)


def test_naive_now_is_utc(serving: certs.KeyPair) -> None:
    naive = NOW.replace(tzinfo=None)
    assert certs.needs_renewal(serving.cert_pem, now=naive, renew_before=timedelta(0)) is False


def test_covers(serving: certs.KeyPair) -> None:
    assert certs.covers(serving.cert_pem, dns_names=DNS, ip_addresses=["127.0.0.1"])
    assert certs.covers(serving.cert_pem, dns_names=["V4ONLY.v4only-system.svc"])
    assert not certs.covers(serving.cert_pem, dns_names=["v4only.other.svc"])
    assert not certs.covers(serving.cert_pem, dns_names=[], ip_addresses=["10.0.0.1"])


def test_merge_keeps_order_dedupes_and_drops_expired(ca: certs.KeyPair, serving: certs.KeyPair) -> None:
    new = certs.build_ca(common_name="new", now=NOW)
    expired = certs.build_ca(common_name="old", now=NOW - timedelta(days=20), days=10)
    merged = certs.merge_ca_bundles(new.cert_pem, ca.cert_pem + expired.cert_pem + new.cert_pem, now=NOW)
    assert certs.bundle_fingerprints(merged) == [
        certs.fingerprint(new.cert_pem),
        certs.fingerprint(ca.cert_pem),
    ]
    # A serving (non-CA) certificate never enters a bundle.
    assert certs.merge_ca_bundles(serving.cert_pem, now=NOW) == b""
    # What merge produces is a bundle ssl can load.
    ssl.create_default_context(cadata=merged.decode())


def test_without_cas(ca: certs.KeyPair) -> None:
    new = certs.build_ca(common_name="new", now=NOW)
    bundle = certs.merge_ca_bundles(new.cert_pem, ca.cert_pem, now=NOW)
    assert certs.bundle_fingerprints(certs.without_cas(bundle, [ca.cert_pem])) == [
        certs.fingerprint(new.cert_pem)
    ]


def test_split_pem_bundle_ignores_text_between_blocks(ca: certs.KeyPair) -> None:
    text = b"# comment\n" + ca.cert_pem + b"\nsubject=...\n" + ca.cert_pem
    assert len(certs.split_pem_bundle(text)) == 2
    with pytest.raises(certs.CertificateError):
        certs.split_pem_bundle(b"-----BEGIN CERTIFICATE-----\nAAAA")
