"""Which certificate does a TLS server present right now? (`v4only certs` asks each webhook replica.)"""

from __future__ import annotations

import socket
import ssl


def served_certificate(host: str, port: int, *, server_name: str | None = None, timeout: float = 3.0) -> bytes | None:
    """The leaf certificate the server at host:port presents, PEM; None when it cannot be reached or has none.

    Nothing is verified: the point is to see what is served, trusted or not. `server_name` is sent as SNI.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=server_name or host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError, ValueError):
        return None
    if not der:
        return None
    return ssl.DER_cert_to_PEM_cert(der).encode("ascii")
