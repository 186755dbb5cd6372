"""`v4only certs --secret`: Secrets and the webhook configuration's caBundle, against the fake API server.

The command builds its client from a real kubeconfig file (`--kubeconfig`), exactly as in production; nothing
in the kubernetes client is patched.
"""

from __future__ import annotations

import argparse
import base64
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from tests.fakekube import FakeKube, objects
from tests.test_certs_cmd import TLSServer
from webhook.cli import certs as certs_cmd
from webhook.core import certs

pytest_plugins = ["tests.fakekube.fixtures"]

NS = "v4only-system"
MWC = yaml.safe_load(
    (Path(__file__).parents[1] / "manifests" / "base" / "mutatingwebhookconfiguration.yaml").read_text()
)
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


@pytest.fixture
def kubeconfig(fake_kube: FakeKube, tmp_path: Path) -> str:
    fake_kube.put_object(objects.namespace(NS))
    fake_kube.put_object(MWC)
    return str(fake_kube.kubeconfig_path(tmp_path))


def run_certs(kubeconfig: str, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="v4only")
    certs_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["certs", "--secret", "v4only-tls", "--kubeconfig", kubeconfig, "--no-probe", *argv])
    status: int = args.func(args)
    return status


def secret(kube: FakeKube, name: str) -> dict[str, Any]:
    obj = kube.get_object("Secret", name, NS)
    assert obj is not None, name
    return obj


def data(kube: FakeKube, name: str) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in secret(kube, name)["data"].items()}


def ca_bundles(kube: FakeKube) -> dict[str, bytes]:
    mwc = kube.get_object("MutatingWebhookConfiguration", "v4only")
    assert mwc is not None
    return {w["name"]: base64.b64decode(w["clientConfig"].get("caBundle", "")) for w in mwc["webhooks"]}


def writes(kube: FakeKube) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in kube.requests if r.method in WRITES]


def verify_chain(child_pem: bytes, issuer_pem: bytes) -> None:
    child = x509.load_pem_x509_certificate(child_pem)
    public = x509.load_pem_x509_certificate(issuer_pem).public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey) and child.signature_hash_algorithm is not None
    public.verify(child.signature, child.tbs_certificate_bytes, ec.ECDSA(child.signature_hash_algorithm))


def test_first_run_creates_secrets_and_sets_every_ca_bundle(fake_kube: FakeKube, kubeconfig: str) -> None:
    assert run_certs(kubeconfig) == 0
    ca, tls = secret(fake_kube, "v4only-ca"), secret(fake_kube, "v4only-tls")
    assert ca["type"] == tls["type"] == "kubernetes.io/tls"
    assert tls["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "v4only-certs"
    ca_data, tls_data = data(fake_kube, "v4only-ca"), data(fake_kube, "v4only-tls")
    assert set(tls_data) == {"tls.crt", "tls.key", "ca.crt"}
    verify_chain(tls_data["tls.crt"], ca_data["tls.crt"])
    assert tls_data["ca.crt"] == ca_data["tls.crt"]
    assert certs.dns_names(tls_data["tls.crt"]) == certs.service_dns_names("v4only", NS)
    assert ca_bundles(fake_kube) == {"namespaces.v4only.io": ca_data["tls.crt"], "pods.v4only.io": ca_data["tls.crt"]}
    # Order: the CA is stored first, then the bundle, then the serving certificate.
    assert writes(fake_kube) == [
        ("POST", f"/api/v1/namespaces/{NS}/secrets"),
        ("PATCH", "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/v4only"),
        ("POST", f"/api/v1/namespaces/{NS}/secrets"),
    ]
    # The rest of the webhook configuration is untouched.
    mwc = fake_kube.get_object("MutatingWebhookConfiguration", "v4only")
    assert mwc is not None
    for hook, original in zip(mwc["webhooks"], MWC["webhooks"], strict=True):
        hook = dict(hook, clientConfig={k: v for k, v in hook["clientConfig"].items() if k != "caBundle"})
        assert {k: hook[k] for k in original} == original


def test_rerun_writes_nothing(fake_kube: FakeKube, kubeconfig: str) -> None:
    assert run_certs(kubeconfig) == 0
    before = (data(fake_kube, "v4only-ca"), data(fake_kube, "v4only-tls"), ca_bundles(fake_kube))
    fake_kube.clear_requests()
    assert run_certs(kubeconfig) == 0
    assert writes(fake_kube) == []
    assert (data(fake_kube, "v4only-ca"), data(fake_kube, "v4only-tls"), ca_bundles(fake_kube)) == before


def test_renewal_updates_only_the_serving_secret(fake_kube: FakeKube, kubeconfig: str) -> None:
    assert run_certs(kubeconfig, "--days", "20") == 0
    ca_before, tls_before = data(fake_kube, "v4only-ca"), data(fake_kube, "v4only-tls")
    fake_kube.clear_requests()
    assert run_certs(kubeconfig) == 0  # 20 days left, 30-day window: renew
    assert writes(fake_kube) == [("PUT", f"/api/v1/namespaces/{NS}/secrets/v4only-tls")]
    assert data(fake_kube, "v4only-ca") == ca_before
    assert data(fake_kube, "v4only-tls")["tls.crt"] != tls_before["tls.crt"]


def test_a_bundle_reset_by_kubectl_apply_is_restored(fake_kube: FakeKube, kubeconfig: str) -> None:
    assert run_certs(kubeconfig) == 0
    fake_kube.put_object(MWC)  # replaced without caBundle
    assert run_certs(kubeconfig) == 0
    ca_pem = data(fake_kube, "v4only-ca")["tls.crt"]
    assert set(ca_bundles(fake_kube).values()) == {ca_pem}


def test_ca_rollover_through_the_api(fake_kube: FakeKube, kubeconfig: str, tmp_path: Path) -> None:
    assert run_certs(kubeconfig) == 0
    old_ca = data(fake_kube, "v4only-ca")["tls.crt"]
    (tmp_path / "tls.crt").write_bytes(data(fake_kube, "v4only-tls")["tls.crt"])
    (tmp_path / "tls.key").write_bytes(data(fake_kube, "v4only-tls")["tls.key"])
    replica = TLSServer(tmp_path / "tls.crt", tmp_path / "tls.key")
    try:
        served_by = ["--served-by", f"127.0.0.1:{replica.port}"]
        fake_kube.clear_requests()
        assert run_certs(kubeconfig, "--rotate-ca") == 0
        new_ca = data(fake_kube, "v4only-ca")["tls.crt"]
        assert new_ca != old_ca
        assert [m for m, _ in writes(fake_kube)] == ["PUT", "PATCH", "PUT"]  # CA, bundle, then serving
        for bundle in ca_bundles(fake_kube).values():
            assert certs.bundle_fingerprints(bundle) == [certs.fingerprint(new_ca), certs.fingerprint(old_ca)]
        verify_chain(data(fake_kube, "v4only-tls")["tls.crt"], new_ca)
        # The replica still serves the old certificate: the old CA stays.
        assert run_certs_probing(kubeconfig, *served_by) == 0
        assert all(len(certs.split_pem_bundle(b)) == 2 for b in ca_bundles(fake_kube).values())
        # It reloads the new pair: the old CA goes.
        (tmp_path / "tls.crt").write_bytes(data(fake_kube, "v4only-tls")["tls.crt"])
        (tmp_path / "tls.key").write_bytes(data(fake_kube, "v4only-tls")["tls.key"])
        replica.reload()
        assert run_certs_probing(kubeconfig, *served_by) == 0
        assert set(ca_bundles(fake_kube).values()) == {certs.split_pem_bundle(new_ca)[0]}
    finally:
        replica.close()


def run_certs_probing(kubeconfig: str, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="v4only")
    certs_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["certs", "--secret", "v4only-tls", "--kubeconfig", kubeconfig, *argv])
    status: int = args.func(args)
    return status


def test_endpoints_that_cannot_be_listed_keep_the_old_ca(
    fake_kube: FakeKube, kubeconfig: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_certs(kubeconfig) == 0
    assert run_certs(kubeconfig, "--rotate-ca") == 0
    fake_kube.forbid("list", "endpointslices")
    assert run_certs_probing(kubeconfig) == 0
    assert all(len(certs.split_pem_bundle(b)) == 2 for b in ca_bundles(fake_kube).values())
    assert "cannot list the endpoints" in capsys.readouterr().out


def test_missing_webhook_configuration_is_reported(
    fake_kube: FakeKube, kubeconfig: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_kube.delete_object("MutatingWebhookConfiguration", "v4only")
    assert run_certs(kubeconfig) == 1
    assert "MutatingWebhookConfiguration v4only not found" in capsys.readouterr().err
    assert "tls.crt" in data(fake_kube, "v4only-tls")  # the Secrets are written all the same


def test_forbidden_is_one_line_and_status_1(
    fake_kube: FakeKube, kubeconfig: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_kube.forbid("create", "/secrets")
    assert run_certs(kubeconfig) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "403" in err and "forbidden" in err


def test_concurrent_writer_conflict_fails_safely(
    fake_kube: FakeKube, kubeconfig: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_certs(kubeconfig, "--days", "20") == 0
    fake_kube.conflict_next("Secret", "v4only-tls", namespace=NS)
    assert run_certs(kubeconfig) == 1
    assert "409" in capsys.readouterr().err
    assert run_certs(kubeconfig) == 0  # the next run (tomorrow's CronJob) completes the renewal


def test_dry_run_writes_nothing(fake_kube: FakeKube, kubeconfig: str) -> None:
    fake_kube.clear_requests()
    assert run_certs(kubeconfig, "--dry-run") == 0
    assert writes(fake_kube) == []


def test_unreachable_api_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kube = FakeKube().start()
    path = str(kube.kubeconfig_path(tmp_path))
    kube.stop()
    assert run_certs(path) == 1
    assert "cannot reach the API server" in capsys.readouterr().err
