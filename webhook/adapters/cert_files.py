"""Certificate files on disk: read what is there, write atomically (temp file + rename), keys mode 0600.

Layout of an `--out-dir` (names match a `kubernetes.io/tls` Secret mounted as a volume):
  ca.crt, ca.key        the active CA
  ca-bundle.crt         every CA the API server should trust (during a CA rollover: new and old)
  tls.crt, tls.key      the serving certificate and key
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from webhook.core.certs import KeyPair

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
CA_BUNDLE = "ca-bundle.crt"
TLS_CERT = "tls.crt"
TLS_KEY = "tls.key"

KEY_MODE = 0o600
CERT_MODE = 0o644


@dataclass(frozen=True)
class CertDir:
    """What an `--out-dir` holds now (None for each part that is missing)."""

    ca: KeyPair | None
    serving: KeyPair | None
    bundle: bytes | None


def read_optional(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def read_cert_dir(directory: Path) -> CertDir:
    return CertDir(
        ca=_read_pair(directory / CA_CERT, directory / CA_KEY),
        serving=_read_pair(directory / TLS_CERT, directory / TLS_KEY),
        bundle=read_optional(directory / CA_BUNDLE),
    )


def write_atomic(path: Path, data: bytes, *, mode: int) -> bool:
    """Write `data` to `path` via a temp file in the same directory + rename. False when already identical.

    The temp file is created 0600 and given `mode` before any byte is written, so a key is never readable by others,
    not even for a moment. The rename is atomic: a reader sees the old or the new file, never half of one.
    """
    if read_optional(path) == data and (path.stat().st_mode & 0o777) == mode:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    _fsync_directory(path.parent)
    return True


def write_cert_dir(directory: Path, *, ca: KeyPair, serving: KeyPair, bundle: bytes) -> list[str]:
    """Write every file that changed; return their names, in writing order.

    Order: the bundle first (what clients trust), then the CA, then the serving key before its certificate, so a
    server that reloads when `tls.crt` changes finds the matching key already in place.
    """
    written: list[str] = []
    for name, data, mode in (
        (CA_BUNDLE, bundle, CERT_MODE),
        (CA_KEY, ca.key_pem, KEY_MODE),
        (CA_CERT, ca.cert_pem, CERT_MODE),
        (TLS_KEY, serving.key_pem, KEY_MODE),
        (TLS_CERT, serving.cert_pem, CERT_MODE),
    ):
        if write_atomic(directory / name, data, mode=mode):
            written.append(name)
    return written


def _read_pair(cert_path: Path, key_path: Path) -> KeyPair | None:
    cert = read_optional(cert_path)
    key = read_optional(key_path)
    if not cert or not key:
        return None
    return KeyPair(cert_pem=cert, key_pem=key)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
