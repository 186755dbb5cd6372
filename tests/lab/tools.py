"""What the lab runs, made ready once per test session: the real uv, the index's wheels, the resolver probes.

- uv: the musllinux wheel of a pinned uv from PyPI (a static-pie musl build: the kind in astral's images,
  the one Chronicle ran); the binary is `uv-VERSION.data/scripts/uv` inside the wheel. musl 1.2.5 inside,
  so its errors are the texts a pod sees ("Name has no usable address").
- The index's wheels: six (Chronicle's dependency), tomli (its dev group and an extra), setuptools (the
  build backend of the image that rebuilds its editable project at start), real wheels from PyPI, pinned by
  version and sha256. Real rather than tiny home-made wheels because uv locks, resolves and installs them
  as it would in a pod: the metadata, the hashes in the lock and setuptools actually building an editable
  project are part of what is measured.
- Both are fetched with pip (`--require-hashes`) into $XDG_CACHE_HOME/v4only/lab (default ~/.cache) and
  reused between runs on one machine; the cache only saves time (about 2 s here), never required.
- The probe (probe.c) built twice: `musl-gcc -static` (Debian's musl-tools, musl 1.2.3) and gcc (glibc).
  Debian's musl rather than a current one (the `ziglang` wheel bundles musl 1.2.5) because the uv binary
  already is the current-musl client every row of remedy-lab.md is about, with its exact texts; the probe
  adds what uv cannot show (a bare getaddrinfo, connect in order, glibc beside musl), where musl 1.2.3
  behaves the same (it stops the search list at NODATA; it only names it "Name does not resolve", as
  remedy-lab.md records). A 50 MB zig download and a first compile of musl from source would cost more than
  the lab's whole run.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import stat
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

UV_VERSION = "0.13.9"
UV_WHEEL = f"uv-{UV_VERSION}-py3-none-musllinux_1_1_x86_64.whl"
UV_SHA256 = "2c45530751517d6c3bbc69a19473f6effe47cce047bede01ffd8af7ea7b36b25"
INDEX_WHEELS = {  # file name -> (requirement, sha256)
    "six-1.17.0-py2.py3-none-any.whl":
        ("six==1.17.0", "4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274"),
    "tomli-2.5.0-py3-none-any.whl":
        ("tomli==2.5.0", "32a7b79ac57a2e83670ce329ccf675798bc5a2094783a63676866b70503f2e2b"),
    "setuptools-84.2.1-py3-none-any.whl":
        ("setuptools==84.2.1", "ca140b45d5325a9478f880e351484f62fef15f336462e449ca0c03c873d589c2"),
}
PROBE_SOURCE = Path(__file__).with_name("probe.c")


@dataclass(frozen=True)
class Tools:
    uv: Path  # the musl uv binary
    wheels: Path  # the index's wheels (a directory of the files in INDEX_WHEELS)
    musl_probe: Path  # probe.c, musl-gcc -static (musl 1.2.3)
    glibc_probe: Path  # probe.c, gcc (glibc)
    python: Path  # the interpreter uv finds in the pod (first python3 on the lab's PATH)
    build_cache: Path  # uv's cache for building images (shared: images build from warm wheels)


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "v4only" / "lab"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(cache: Path, files: dict[str, tuple[str, str]], pip_args: list[str]) -> None:
    """pip download the files whose cached copy is missing or wrong, checked against their hashes."""
    wanted = {name: pin for name, pin in files.items() if not (cache / name).is_file() or sha256(cache / name) != pin[1]}
    if not wanted:
        return
    cache.mkdir(parents=True, exist_ok=True)
    requirements = cache / f"requirements-{os.getpid()}.txt"
    requirements.write_text("".join(f"{req} --hash=sha256:{digest}\n" for req, digest in wanted.values()))
    try:
        run = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             "--require-hashes", "-r", str(requirements), "-d", str(cache), *pip_args],
            capture_output=True, text=True, check=False, timeout=300,
        )
    finally:
        requirements.unlink()
    missing = [name for name in wanted if not (cache / name).is_file()]
    assert run.returncode == 0 and not missing, f"pip download {' '.join(missing)}:\n{run.stderr[-3000:]}"


def uv_binary(cache: Path) -> Path:
    if platform.machine() != "x86_64":
        raise RuntimeError(f"the remedy lab pins uv's x86_64 musllinux wheel; this machine is {platform.machine()}")
    target = cache / f"uv-{UV_VERSION}-musl" / "uv"
    if target.is_file():
        return target
    _fetch(cache, {UV_WHEEL: (f"uv=={UV_VERSION}", UV_SHA256)}, ["--platform", "musllinux_1_1_x86_64"])
    partial = target.with_name(f"uv.{os.getpid()}")
    partial.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(cache / UV_WHEEL) as wheel, wheel.open(f"uv-{UV_VERSION}.data/scripts/uv") as src, \
            partial.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    partial.replace(target)  # atomic: a parallel run sees the whole binary or none
    return target


def index_wheels(cache: Path) -> Path:
    # pure-python wheels: the platform flags only stop pip from preferring a compiled build for this interpreter
    _fetch(cache, INDEX_WHEELS, ["--platform", "any", "--implementation", "py", "--abi", "none"])
    return cache


def build_probe(compiler: str, output: Path) -> Path:
    flags = ["-static"] if compiler == "musl-gcc" else []
    run = subprocess.run([compiler, "-O2", "-Wall", *flags, "-o", str(output), str(PROBE_SOURCE)],
                         capture_output=True, text=True, check=False, timeout=120)
    assert run.returncode == 0, f"{compiler} probe.c:\n{run.stderr}"
    return output


def lab_python() -> Path:
    found = shutil.which("python3", path=LAB_PATH)
    assert found, f"no python3 on {LAB_PATH}"
    return Path(found)


LAB_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"


def prepare(work: Path) -> Tools:
    """Everything the lab runs; `work` holds what is built per session (probes, the build cache)."""
    cache = cache_root()
    work.mkdir(parents=True, exist_ok=True)
    return Tools(
        uv=uv_binary(cache),
        wheels=index_wheels(cache),
        musl_probe=build_probe("musl-gcc", work / "probe-musl"),
        glibc_probe=build_probe("gcc", work / "probe-glibc"),
        python=lab_python(),
        build_cache=work / "uv-build-cache",
    )
