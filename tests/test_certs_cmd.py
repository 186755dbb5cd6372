"""`v4only certs --out-dir`: files, modes, idempotence, renewal and a full CA rollover against a live TLS server."""

from __future__ import annotations

import argparse
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from webhook.adapters import cert_files
from webhook.cli import certs as certs_cmd
from webhook.cli.main import UsageError
from webhook.core import certs

FILES = ("ca.crt", "ca.key", "ca-bundle.crt", "tls.crt", "tls.key")


def run_certs(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="v4only")
    certs_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["certs", *argv])
    status: int = args.func(args)
    return status


def snapshot(directory: Path) -> dict[str, tuple[bytes, int, int]]:
    return {
        name: ((directory / name).read_bytes(), (directory / name).stat().st_ino, (directory / name).stat().st_mtime_ns)
        for name in FILES
    }


def verify_chain(child_pem: bytes, issuer_pem: bytes) -> bool:
    """Independent of webhook.core.certs."""
    child = x509.load_pem_x509_certificate(child_pem)
    issuer = x509.load_pem_x509_certificate(issuer_pem)
    public = issuer.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert child.signature_hash_algorithm is not None
    try:
        public.verify(child.signature, child.tbs_certificate_bytes, ec.ECDSA(child.signature_hash_algorithm))
    except Exception:
        return False
    return child.issuer == issuer.subject


def bundle_cas(directory: Path) -> list[bytes]:
    return certs.split_pem_bundle((directory / "ca-bundle.crt").read_bytes())


def test_writes_files_with_modes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tls"
    assert run_certs("--out-dir", str(out), "--service", "hook", "--namespace", "ns", "--ip-address", "10.0.0.9") == 0
    for name in FILES:
        mode = stat.S_IMODE((out / name).stat().st_mode)
        assert mode == (0o600 if name.endswith(".key") else 0o644), name
    serving = (out / "tls.crt").read_bytes()
    assert verify_chain(serving, (out / "ca.crt").read_bytes())
    assert certs.dns_names(serving) == ["hook", "hook.ns", "hook.ns.svc", "hook.ns.svc.cluster.local"]
    assert certs.ip_addresses(serving) == ["10.0.0.9"]
    assert certs.key_matches(serving, (out / "tls.key").read_bytes())
    assert bundle_cas(out) == certs.split_pem_bundle((out / "ca.crt").read_bytes())
    # No temp files left behind.
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    assert "ca: created" in capsys.readouterr().out


def test_rerun_is_a_no_op(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_certs("--out-dir", str(tmp_path)) == 0
    before = snapshot(tmp_path)
    capsys.readouterr()
    assert run_certs("--out-dir", str(tmp_path)) == 0
    assert snapshot(tmp_path) == before  # same bytes, same inode, same mtime: nothing rewritten
    out = capsys.readouterr().out
    assert "ca: kept" in out and "serving: kept" in out and "unchanged" in out


def test_a_key_left_world_readable_is_fixed(tmp_path: Path) -> None:
    assert run_certs("--out-dir", str(tmp_path)) == 0
    (tmp_path / "tls.key").chmod(0o644)
    assert run_certs("--out-dir", str(tmp_path)) == 0
    assert stat.S_IMODE((tmp_path / "tls.key").stat().st_mode) == 0o600


def test_renews_a_serving_certificate_inside_the_window(tmp_path: Path) -> None:
    assert run_certs("--out-dir", str(tmp_path), "--days", "20") == 0
    first = snapshot(tmp_path)
    # Valid for 20 more days: a 10-day window keeps it, a 480h (20-day) window renews it.
    assert run_certs("--out-dir", str(tmp_path), "--days", "20", "--renew-before", "10d") == 0
    assert snapshot(tmp_path) == first
    assert run_certs("--out-dir", str(tmp_path), "--renew-before", "480h") == 0  # 20 days: renewal due
    after = snapshot(tmp_path)
    assert after["tls.crt"][0] != first["tls.crt"][0]
    assert after["tls.key"][0] != first["tls.key"][0]
    assert after["ca.crt"] == first["ca.crt"] and after["ca.key"] == first["ca.key"]  # CA kept
    assert after["ca-bundle.crt"] == first["ca-bundle.crt"]
    serving = after["tls.crt"][0]
    assert verify_chain(serving, after["ca.crt"][0])
    assert certs.not_after(serving) > datetime.now(UTC) + timedelta(days=364)


def test_renews_when_the_names_change(tmp_path: Path) -> None:
    assert run_certs("--out-dir", str(tmp_path)) == 0
    assert run_certs("--out-dir", str(tmp_path), "--dns-name", "hook.example.org") == 0
    assert "hook.example.org" in certs.dns_names((tmp_path / "tls.crt").read_bytes())


def test_replaces_a_serving_key_that_does_not_match(tmp_path: Path) -> None:
    assert run_certs("--out-dir", str(tmp_path)) == 0
    (tmp_path / "tls.key").write_bytes((tmp_path / "ca.key").read_bytes())
    assert run_certs("--out-dir", str(tmp_path)) == 0
    assert certs.key_matches((tmp_path / "tls.crt").read_bytes(), (tmp_path / "tls.key").read_bytes())


# ----------------------------------------------------------------------------------------- CA rollover


class TLSServer:
    """A TLS server on 127.0.0.1 presenting whatever pair it was last given."""

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self.cert_file, self.key_file = cert_file, key_file
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert_file, key_file)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def reload(self) -> None:
        self.context.load_cert_chain(self.cert_file, self.key_file)

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(2)
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass
            finally:
                conn.close()

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=2)
        self.sock.close()


@contextmanager
def tls_server(directory: Path) -> Iterator[TLSServer]:
    # The server keeps its own copy, as a replica keeps what it loaded until it reloads.
    live = directory.parent / (directory.name + "-live")
    live.mkdir(exist_ok=True)
    for name in ("tls.crt", "tls.key"):
        (live / name).write_bytes((directory / name).read_bytes())
    server = TLSServer(live / "tls.crt", live / "tls.key")
    try:
        yield server
    finally:
        server.close()


def pick_up(directory: Path, server: TLSServer) -> None:
    """The replica reloads the files that were written (as the kubelet + serve's reloader do)."""
    for name in ("tls.crt", "tls.key"):
        (server.cert_file.parent / name).write_bytes((directory / name).read_bytes())
    server.reload()


def test_ca_rollover_sequence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "certs"
    assert run_certs("--out-dir", str(out)) == 0
    old_ca = (out / "ca.crt").read_bytes()
    old_serving = (out / "tls.crt").read_bytes()

    with tls_server(out) as replica:
        served_by = f"127.0.0.1:{replica.port}"
        # Step 1: rollover starts. New CA active, bundle = new + old, serving reissued from the new CA.
        assert run_certs("--out-dir", str(out), "--rotate-ca", "--served-by", served_by) == 0
        new_ca = (out / "ca.crt").read_bytes()
        new_serving = (out / "tls.crt").read_bytes()
        assert new_ca != old_ca
        assert verify_chain(new_serving, new_ca) and not verify_chain(new_serving, old_ca)
        bundle = bundle_cas(out)
        assert [certs.fingerprint(b) for b in bundle] == [certs.fingerprint(new_ca), certs.fingerprint(old_ca)]
        assert "0 of 1 replicas" in capsys.readouterr().out
        # What the API server now trusts covers both the replica still serving the old certificate and the new one.
        assert certs.chains_to(old_serving, (out / "ca-bundle.crt").read_bytes())
        assert certs.chains_to(new_serving, (out / "ca-bundle.crt").read_bytes())

        # Step 2: the replica has not reloaded yet: the old CA stays, nothing is rewritten.
        before = snapshot(out)
        assert run_certs("--out-dir", str(out), "--served-by", served_by) == 0
        assert snapshot(out) == before

        # Unknown (no replica asked): the old CA stays too.
        assert run_certs("--out-dir", str(out)) == 0
        assert len(bundle_cas(out)) == 2
        assert "could not check" in capsys.readouterr().out

        # Step 3: the replica serves the new certificate: the old CA leaves the bundle.
        pick_up(out, replica)
        assert run_certs("--out-dir", str(out), "--served-by", served_by) == 0
        assert [certs.fingerprint(b) for b in bundle_cas(out)] == [certs.fingerprint(new_ca)]
        assert "retired 1 old CA" in capsys.readouterr().out
        assert (out / "tls.crt").read_bytes() == new_serving  # the serving certificate was not touched again


def test_unreachable_replica_keeps_the_old_ca(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_certs("--out-dir", str(tmp_path)) == 0
    assert run_certs("--out-dir", str(tmp_path), "--rotate-ca") == 0
    assert len(bundle_cas(tmp_path)) == 2
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    assert run_certs("--out-dir", str(tmp_path), "--served-by", f"127.0.0.1:{port}") == 0
    assert len(bundle_cas(tmp_path)) == 2
    assert "did not answer" in capsys.readouterr().out


def test_ca_too_close_to_expiry_rolls_over(tmp_path: Path) -> None:
    assert run_certs("--out-dir", str(tmp_path), "--ca-days", "400") == 0  # 400 > 365 + 30
    old_ca = (tmp_path / "ca.crt").read_bytes()
    # A 380-day serving certificate plus the 30-day window no longer fits in what is left of the CA.
    assert run_certs("--out-dir", str(tmp_path), "--days", "380") == 0
    assert (tmp_path / "ca.crt").read_bytes() != old_ca
    assert len(bundle_cas(tmp_path)) == 2


def test_retire_old_cas_on_request(tmp_path: Path) -> None:
    assert run_certs("--out-dir", str(tmp_path)) == 0
    assert run_certs("--out-dir", str(tmp_path), "--rotate-ca") == 0
    assert len(bundle_cas(tmp_path)) == 2
    assert run_certs("--out-dir", str(tmp_path), "--retire-old-cas") == 0
    assert bundle_cas(tmp_path) == certs.split_pem_bundle((tmp_path / "ca.crt").read_bytes())


def test_dry_run_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_certs("--out-dir", str(tmp_path / "x"), "--dry-run") == 0
    assert not (tmp_path / "x").exists()
    assert "dry run" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ usage


@pytest.mark.parametrize(
    "argv",
    [
        ("--out-dir", "d", "--renew-before", "soon"),
        ("--out-dir", "d", "--ip-address", "not-an-ip"),
        ("--out-dir", "d", "--served-by", "nohostport"),
        ("--out-dir", "d", "--ca-days", "100"),  # shorter than a serving certificate plus the window
        ("--out-dir", "d", "--days", "0"),
        ("--out-dir", "d", "--ca-secret", "x"),
        ("--out-dir", "d", "--no-probe", "--served-by", "h:1"),
        ("--out-dir", "d", "--webhook-configuration", "a", "--no-webhook-configuration"),
    ],
)
def test_usage_errors(tmp_path: Path, argv: tuple[str, ...]) -> None:
    with pytest.raises(UsageError):
        run_certs(*argv)


def test_out_dir_or_secret_is_required() -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_certs()
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        run_certs("--out-dir", "a", "--secret", "b")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30d", timedelta(days=30)), ("720h", timedelta(days=30)), ("1d12h", timedelta(hours=36)), ("7", timedelta(7))],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert certs_cmd.parse_duration(text) == expected


def test_write_atomic_never_exposes_a_key(tmp_path: Path) -> None:
    path = tmp_path / "k"
    assert cert_files.write_atomic(path, b"secret", mode=0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not cert_files.write_atomic(path, b"secret", mode=0o600)
    assert cert_files.write_atomic(path, b"other", mode=0o600)
    assert path.read_bytes() == b"other"
    assert [p.name for p in tmp_path.iterdir()] == ["k"]
