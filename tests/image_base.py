"""A stand-in for the Dockerfile's base image, made locally: these machines pull from no image registry.

`mmdebstrap --variant=minbase bookworm` with python3, python3-venv, python-is-python3 and ca-certificates,
from this machine's own apt sources, without docs, man pages and locales (as Debian's slim images). The
build stage's pip must reach the package index the way pip does on this machine, so the CA bundle pip uses
here and its index settings (index-url, http(s) extra-index-url, trusted-host, proxy, timeouts) go into the
base's /etc/pip.conf; settings that name local files (find-links, file:// indexes, constraints) stay behind.

The tarball is cached in $XDG_CACHE_HOME/v4only/image-base/ (default ~/.cache), keyed by a hash of all of the
above, so a changed recipe, bundle or pip setting makes a new one. The cache only saves time (about 25 s):
with none, the base is made again.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
DPKG_OPTIONS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
)
# merged /usr without the usrmerge package (which drags in perl: +90 MB)
MERGED_USR_HOOKS = "/usr/share/mmdebstrap/hooks/merged-usr"
PIP_KEYS = ("index-url", "extra-index-url", "trusted-host", "proxy", "default-timeout", "timeout", "retries")
CA_BUNDLE_IN_BASE = "/etc/ssl/certs/ca-certificates.crt"
TOOLS = ("buildah", "mmdebstrap")


def ensure_tools() -> None:
    """buildah and mmdebstrap, installed with apt-get when missing (CI runs as root from a clean machine)."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if not missing:
        return
    assert os.geteuid() == 0, f"the image test needs {', '.join(missing)}: apt-get install {' '.join(missing)}"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    wait_for_lock = ["-o", "DPkg::Lock::Timeout=300"]  # another engineer's apt-get may hold it
    install = ["apt-get", *wait_for_lock, "install", "-y", "-q", "--no-install-recommends", *TOOLS]
    for command in (["apt-get", "update", "-q"], install):
        run = subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=600)
        assert run.returncode == 0, f"{' '.join(command)}\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"


def apt_sources() -> list[Path]:
    """This machine's enabled apt source files (mmdebstrap takes each as a mirror argument)."""
    candidates = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    found = [p for p in candidates if p.suffix in {".list", ".sources"} and p.is_file() and p.read_text().strip()]
    assert found, "no apt sources on this machine: mmdebstrap has nowhere to fetch bookworm from"
    return found


def host_pip_settings() -> dict[str, str]:
    """pip's effective settings here (environment over files), as `pip config list` reports them."""
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    from_files: dict[str, str] = {}
    from_env: dict[str, str] = {}
    for line in listing.splitlines():
        name, _, value = line.partition("=")
        scope, _, key = name.partition(".")
        (from_env if scope == ":env:" else from_files)[key] = str(ast.literal_eval(value))
    return {**from_files, **from_env}


def _urls(value: str) -> str:
    return " ".join(url for url in value.split() if url.startswith(("http://", "https://")))


def pip_conf(settings: dict[str, str]) -> str:
    lines = ["[global]"]
    for key in PIP_KEYS:
        value = settings.get(key, "")
        if key.endswith("index-url"):
            value = _urls(value)
        if value:
            lines.append(f"{key} = {value}")
    if settings.get("cert"):
        lines.append(f"cert = {CA_BUNDLE_IN_BASE}")
    return "\n".join(lines) + "\n"


def ca_bundle(settings: dict[str, str]) -> Path | None:
    """The bundle pip trusts here: its `cert` setting, else the system bundle."""
    for candidate in (settings.get("cert"), os.environ.get("SSL_CERT_FILE"), CA_BUNDLE_IN_BASE):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


class Recipe:
    def __init__(self) -> None:
        settings = host_pip_settings()
        self.bundle = ca_bundle(settings)
        if self.bundle is not None:
            settings.setdefault("cert", str(self.bundle))
        self.pip_conf = pip_conf(settings)
        self.sources = apt_sources()

    def key(self) -> str:
        described = {
            "packages": PACKAGES,
            "dpkg": DPKG_OPTIONS,
            "hooks": MERGED_USR_HOOKS,
            "sources": {str(p): p.read_text() for p in self.sources},
            "bundle": hashlib.sha256(self.bundle.read_bytes()).hexdigest() if self.bundle else None,
            "pip.conf": self.pip_conf,
        }
        return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]

    def build(self, tarball: Path, work: Path) -> None:
        conf = work / "pip.conf"
        conf.write_text(self.pip_conf)
        command = [
            "mmdebstrap", "--variant=minbase", "--format=tar", "--include=" + ",".join(PACKAGES),
            f"--hook-dir={MERGED_USR_HOOKS}",
            *(f"--dpkgopt={option}" for option in DPKG_OPTIONS),
            f"--customize-hook=upload {conf} /etc/pip.conf",
        ]
        if self.bundle is not None:
            command.append(f"--customize-hook=upload {self.bundle} {CA_BUNDLE_IN_BASE}")
        command += ["bookworm", str(tarball), *map(str, self.sources)]
        run = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
                             timeout=600)
        assert run.returncode == 0, f"mmdebstrap failed\n{run.stderr[-4000:]}"


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "v4only" / "image-base"


def base_tarball(work: Path) -> Path:
    """The base's root filesystem as a tarball: from the cache, or made now (and cached, replacing older ones)."""
    recipe = Recipe()
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    cached = directory / f"bookworm-python3-{recipe.key()}.tar"
    if cached.is_file():
        return cached
    partial = directory / f".{os.getpid()}-{cached.name}"
    try:
        recipe.build(partial, work)
        partial.replace(cached)
    finally:
        partial.unlink(missing_ok=True)
    for old in directory.glob("bookworm-python3-*.tar"):
        if old != cached:
            old.unlink(missing_ok=True)
    return cached


def import_base(tarball: Path, env: dict[str, str]) -> str:
    """The tarball as a local image in buildah's storage; returns its reference (for PYTHON_IMAGE)."""
    reference = f"localhost/v4only-test-base:{tarball.stem.rsplit('-', 1)[-1]}"

    def buildah(*args: str) -> str:
        run = subprocess.run(["buildah", *args], env=env, capture_output=True, text=True, check=False, timeout=300)
        assert run.returncode == 0, f"buildah {' '.join(args)}\n{run.stderr[-4000:]}"
        return run.stdout.strip()

    container = buildah("from", "scratch")
    buildah("add", container, str(tarball), "/")
    # What python:*-slim sets too: the build's RUN steps find `python` on PATH.
    buildah("config", "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--env", "LANG=C.UTF-8", "--cmd", "python3", container)
    buildah("commit", "--rm", "--quiet", container, reference)
    return reference
