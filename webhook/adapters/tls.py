"""The serving TLS context, reloaded in place when the certificate or key files change.

`SSLContext.load_cert_chain` on the live context affects only handshakes that start afterwards, so a
rotation needs no restart and breaks no connection in flight. A new pair is first loaded into a
throw-away context: a half-written rotation (new certificate, old key) is refused and retried on the
next check instead of taking the server down.
"""

from __future__ import annotations

import logging
import os
import ssl
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Stamp:
    cert: tuple[int, int, int]
    key: tuple[int, int, int]


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # The API server speaks TLS 1.2+; nothing older is ever needed.
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # TLS 1.2: forward-secret AEAD suites only (no CBC); the API server's Go client offers these first.
    # TLS 1.3 suites are not affected by set_ciphers and are all AEAD.
    context.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20")
    context.load_cert_chain(cert_file, key_file)
    return context


class ReloadingTLS:
    def __init__(self, cert_file: str, key_file: str) -> None:
        self.cert_file, self.key_file = cert_file, key_file
        self.context = server_context(cert_file, key_file)
        self._stamp = self._read_stamp()
        self.reloads = 0
        self.failures = 0

    def _read_stamp(self) -> _Stamp | None:
        try:
            return _Stamp(_file_stamp(self.cert_file), _file_stamp(self.key_file))
        except OSError:
            return None

    def check(self) -> bool:
        """Reload if either file changed; True when a new pair is now served."""
        stamp = self._read_stamp()
        if stamp is None or stamp == self._stamp:
            return False
        try:
            server_context(self.cert_file, self.key_file)  # validate the pair before touching the live one
            self.context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as error:
            self.failures += 1
            log.warning("TLS files changed but cannot be loaded yet (%s); still serving the previous pair", error)
            return False
        self._stamp = stamp
        self.reloads += 1
        log.info("reloaded the TLS certificate from %s", self.cert_file)
        return True


def _file_stamp(path: str) -> tuple[int, int, int]:
    # Kubernetes Secret volumes swap a symlink (..data): stat follows it, so the inode changes too.
    info = os.stat(path)
    return (info.st_ino, info.st_mtime_ns, info.st_size)
