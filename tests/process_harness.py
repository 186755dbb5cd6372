"""The webhook in a process of its own (so a test can read its memory and send it signals), on 127.0.0.1.

    with ServerProcess.launcher(tls, "--flip-ms", "5") as server: ...   # tests/launcher.py
    with ServerProcess.cli(tls, "serve", "--dev", ...) as server: ...   # python -m webhook

Every wait is bounded; the process is killed on the way out if it is still running.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.server_harness import TLSFiles

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


class ServerProcess:
    def __init__(self, command: list[str], *, tls: TLSFiles, port: int, log_file: Path,
                 env: dict[str, str] | None = None, ready_path: str = "/healthz") -> None:
        self.command, self.tls, self.port, self.log_file = command, tls, port, log_file
        self.ready_path = ready_path
        self._env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def launcher(cls, tls: TLSFiles, *args: str, log_file: Path | None = None) -> ServerProcess:
        port = free_port()
        command = [sys.executable, "-m", "tests.launcher", "--cert-file", str(tls.cert_file),
                   "--key-file", str(tls.key_file), "--port", str(port), *args]
        return cls(command, tls=tls, port=port, log_file=log_file or tls.directory / "server.log")

    @classmethod
    def cli(cls, tls: TLSFiles, *args: str, log_file: Path | None = None) -> ServerProcess:
        """`python -m webhook serve ... --port P` (the port is added here)."""
        port = free_port()
        command = [sys.executable, "-m", "webhook", *args, "--port", str(port)]
        return cls(command, tls=tls, port=port, log_file=log_file or tls.directory / "server.log")

    def __enter__(self) -> ServerProcess:
        with self.log_file.open("wb") as log:
            self.process = subprocess.Popen(self.command, cwd=ROOT, env=self._env, stdout=log,
                                            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        # Only "is it up?": `serve --dev` makes its own CA, so this poll does not verify the certificate.
        with httpx.Client(base_url=self.url, verify=False, timeout=1.0) as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.log()}")
                try:
                    if client.get(self.ready_path).status_code < 500:
                        return self
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not answer {self.ready_path}:\n{self.log()}")
                time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout: float = 15.0) -> int | None:
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # uvicorn: SIGINT is never drained
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        return process.returncode

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.tls.ca_file))

    def client(self, **kwargs: Any) -> httpx.Client:
        kwargs.setdefault("timeout", 10.0)
        return httpx.Client(base_url=self.url, verify=self.ssl_context(), **kwargs)
