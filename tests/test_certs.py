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

from webhook.core import cert_renewal, certs

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
    assert not certs.needs_renewal(serving.cert_pem, now=expiry - window - timedelta(seconds=1), renew_before=window)
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
    assert certs.bundle_fingerprints(certs.without_cas(bundle, [ca.cert_pem])) == [certs.fingerprint(new.cert_pem)]


def test_split_pem_bundle_ignores_text_between_blocks(ca: certs.KeyPair) -> None:
    text = b"# comment\n" + ca.cert_pem + b"\nsubject=...\n" + ca.cert_pem
    assert len(certs.split_pem_bundle(text)) == 2
    with pytest.raises(certs.CertificateError):
        certs.split_pem_bundle(b"-----BEGIN CERTIFICATE-----\nAAAA")


# ------------------------------------------------------------------------------------------- plan_certs

REQUEST = cert_renewal.CertRequest(dns_names=tuple(DNS))


def _plan(state: cert_renewal.CertPlan | None, now: datetime, **kwargs):
    served = kwargs.pop("served", None)
    request = kwargs.pop("request", REQUEST)
    return cert_renewal.plan_certs(
        request,
        ca=state.ca if state else None,
        serving=state.serving if state else None,
        trusted=state.bundle if state else b"",
        served=served,
        now=now,
        **kwargs,
    )


def test_plan_over_ten_years() -> None:
    """Daily runs for ten years: never an expired serving certificate, never an untrusted one, always ≤ 2 CAs."""
    state = _plan(None, NOW)
    now = NOW
    renewals = rollovers = 0
    while now < NOW + timedelta(days=3650):
        now += timedelta(days=1)
        # The single replica picks up what was written the day before.
        new = _plan(state, now, served=[state.serving.cert_pem])
        renewals += new.serving_changed
        rollovers += new.ca_changed
        assert certs.is_valid_at(new.serving.cert_pem, now)
        assert not certs.needs_renewal(new.serving.cert_pem, now=now, renew_before=timedelta(days=29))
        assert certs.chains_to(new.serving.cert_pem, new.bundle, now=now)
        # What the replica still serves today is trusted by the bundle written today.
        assert certs.chains_to(state.serving.cert_pem, new.bundle, now=now)
        assert len(certs.split_pem_bundle(new.bundle)) <= 2
        state = new
    assert rollovers == 1  # the 10-year CA is rolled over once, about 395 days before it expires
    assert 9 <= renewals <= 12


def test_plan_keeps_everything_when_nothing_is_due() -> None:
    first = _plan(None, NOW)
    again = _plan(first, NOW + timedelta(days=100))
    assert again.ca == first.ca and again.serving == first.serving and again.bundle == first.bundle
    assert not again.ca_changed and not again.serving_changed and not again.rollover_pending


def test_plan_renews_inside_the_window_only() -> None:
    first = _plan(None, NOW)
    assert not _plan(first, NOW + timedelta(days=334)).serving_changed
    renewed = _plan(first, NOW + timedelta(days=336))
    assert renewed.serving_changed and not renewed.ca_changed
    assert renewed.bundle == first.bundle


def test_plan_rollover_waits_for_every_replica() -> None:
    first = _plan(None, NOW)
    rolled = _plan(first, NOW, request=cert_renewal.CertRequest(dns_names=tuple(DNS), rotate_ca=True))
    assert rolled.ca_changed and rolled.serving_changed and rolled.rollover_pending
    old_serving, new_serving = first.serving.cert_pem, rolled.serving.cert_pem
    mixed = _plan(rolled, NOW, served=[new_serving, old_serving])
    assert mixed.rollover_pending and "1 of 2 replicas" in " ".join(mixed.notes)
    assert _plan(rolled, NOW, served=[]).rollover_pending  # nothing to check: keep
    assert _plan(rolled, NOW, served=[b"garbage"]).rollover_pending
    done = _plan(rolled, NOW, served=[new_serving, new_serving])
    assert not done.rollover_pending and done.bundle == rolled.ca.cert_pem
    assert not done.serving_changed and not done.ca_changed


def test_plan_drops_an_expired_old_ca_without_asking() -> None:
    old = certs.build_ca(common_name="old", now=NOW - timedelta(days=30), days=20)
    first = _plan(None, NOW)
    plan = cert_renewal.plan_certs(
        REQUEST, ca=first.ca, serving=first.serving, trusted=first.bundle + old.cert_pem, served=None, now=NOW
    )
    assert plan.bundle == first.ca.cert_pem


def test_plan_trusts_the_ca_of_a_stored_certificate_even_if_the_bundle_lost_it() -> None:
    first = _plan(None, NOW)
    rolled = cert_renewal.plan_certs(
        cert_renewal.CertRequest(dns_names=tuple(DNS), rotate_ca=True),
        ca=first.ca,
        serving=first.serving,
        trusted=b"",  # e.g. the webhook configuration was re-created without a caBundle
        served=None,
        now=NOW,
    )
    assert certs.chains_to(first.serving.cert_pem, rolled.bundle)


def test_plan_replaces_a_broken_ca() -> None:
    first = _plan(None, NOW)
    other = certs.build_ca(common_name="x", now=NOW)
    plan = cert_renewal.plan_certs(
        REQUEST,
        ca=certs.KeyPair(first.ca.cert_pem, other.key_pem),
        serving=first.serving,
        trusted=first.bundle,
        served=None,
        now=NOW,
    )
    assert plan.ca_changed and plan.serving_changed
    assert "does not match" in plan.notes[0]


def test_plan_ignores_damaged_bundle_entries() -> None:
    first = _plan(None, NOW)
    other = certs.build_ca(common_name="other", now=NOW)
    damaged = b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"
    truncated = b"-----BEGIN CERTIFICATE-----\nAB"
    trusted = damaged + other.cert_pem + truncated
    plan = cert_renewal.plan_certs(REQUEST, ca=first.ca, serving=first.serving, trusted=trusted, served=None, now=NOW)
    assert plan.bundle == first.ca.cert_pem + other.cert_pem


def test_request_rejects_a_ca_shorter_than_a_serving_certificate() -> None:
    with pytest.raises(ValueError):
        cert_renewal.CertRequest(dns_names=("a",), ca_days=300, serving_days=365)
