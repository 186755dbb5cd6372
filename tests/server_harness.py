"""A real v4only HTTPS server (uvicorn, TLS from v4only's own cert code) on 127.0.0.1, in a thread."""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from webhook.cli.serve import ServeOptions, _watch_tls, build_server
from webhook.core import certs
from webhook.core.settings import Settings
from webhook.loops.state import ClusterState
from webhook.server.metrics import Metrics
from webhook.server.read_deadline import READ_DEADLINE_SECONDS


@dataclass
class TLSFiles:
    directory: Path
    ca: certs.KeyPair

    @property
    def cert_file(self) -> Path:
        return self.directory / "tls.crt"

    @property
    def key_file(self) -> Path:
        return self.directory / "tls.key"

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.crt"


def make_tls(directory: Path, *, ca_name: str = "test CA") -> TLSFiles:
    now = datetime.now(UTC)
    ca = certs.build_ca(common_name=ca_name, now=now, days=2)
    write_serving(directory, ca)
    (directory / "ca.crt").write_bytes(ca.cert_pem)
    return TLSFiles(directory, ca)


def write_serving(directory: Path, ca: certs.KeyPair) -> certs.KeyPair:
    """A new serving pair for 127.0.0.1, swapped in atomically (write then rename, as kubelet volumes do)."""
    pair = certs.build_serving_cert(ca=ca, dns_names=["localhost"], ip_addresses=["127.0.0.1"],
                                    now=datetime.now(UTC), days=1)
    for name, data in (("tls.crt", pair.cert_pem), ("tls.key", pair.key_pem)):
        tmp = directory / f".{name}.tmp"
        tmp.write_bytes(data)
        tmp.replace(directory / name)
    return pair


class ServerThread:
    def __init__(self, tls: TLSFiles, *, state: ClusterState, settings: Settings | None = None,
                 reload_interval: float = 0.1, drain_seconds: float = 0.0,
                 read_deadline: float = READ_DEADLINE_SECONDS) -> None:
        self.options = ServeOptions(host="127.0.0.1", port=0, cert_file=str(tls.cert_file),
                                    key_file=str(tls.key_file), settings=settings or Settings(), state=state,
                                    drain_seconds=drain_seconds, reload_interval=reload_interval,
                                    read_deadline_seconds=read_deadline)
        self.metrics = Metrics()
        self.tls_files = tls
        self.server, self.tls = build_server(self.options, metrics=self.metrics)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        reloader = asyncio.create_task(_watch_tls(self.tls, self.metrics, self.options.reload_interval))
        try:
            await self.server.serve()
        finally:
            reloader.cancel()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(15)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def client(self, ca_file: Path | None = None) -> httpx.Client:
        """A client that trusts only the CA bundle, as the API server trusts only the caBundle."""
        context = ssl.create_default_context(cafile=str(ca_file or self.tls_files.ca_file))
        return httpx.Client(base_url=self.url, verify=context, timeout=10)
