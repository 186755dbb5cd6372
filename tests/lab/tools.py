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
- The probe (probe.c), a bare getaddrinfo + connect in order: what uv cannot show alone (any other musl
  client, glibc beside musl). Built three times:
  - `zig cc -target x86_64-linux-musl -static` with the `ziglang` wheel from PyPI (pinned by version and
    sha256): zig 0.17 bundles musl 1.2.5, the musl of the uv binary and of today's Alpine, with its texts
    ("Name has no usable address" for NODATA). This is the lab's musl client: remedy-lab.md's tables record
    those texts for "a musl getaddrinfo", and the README's "any other musl client" row must say what an
    Alpine container prints. Costly only once per machine: the wheel is 101 MB and zig compiles musl and
    its runtime on first use (40 s of CPU); the built probe is cached (keyed by zig's version and
    probe.c's hash), the unpacked zig removed. `make lab`/`make test` prepare it before pytest starts
    (`python -m tests.lab.tools`), so no test's timeout pays for a cold cache.
  - `musl-gcc -static` (Debian 12's musl-tools, musl 1.2.3): shows that the older musl stops at NODATA too,
    naming it "Name does not resolve" (remedy-lab.md's note on Debian 12's musl).
  - gcc (glibc): goes on to the next search entry after NODATA.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shutil
import signal
import stat
import subprocess
import sys
import time
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
ZIG_VERSION = "0.17.0"  # bundles musl 1.2.5
ZIG_WHEEL = f"ziglang-{ZIG_VERSION}-py3-none-manylinux_2_12_x86_64.manylinux2010_x86_64.musllinux_1_1_x86_64.whl"
ZIG_SHA256 = "97079827064a7492cce5541ceb438ae8003ce1e54e399676da2d62fb7a5dc08b"
PROBE_SOURCE = Path(__file__).with_name("probe.c")


@dataclass(frozen=True)
class Tools:
    uv: Path  # the musl uv binary
    wheels: Path  # the index's wheels (a directory of the files in INDEX_WHEELS)
    musl_probe: Path  # probe.c, zig cc -target x86_64-linux-musl -static (musl 1.2.5, uv's texts)
    musl123_probe: Path  # probe.c, musl-gcc -static (Debian 12's musl 1.2.3)
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


def current_musl_probe(cache: Path) -> Path:
    """probe.c linked statically against the musl zig bundles, built once per machine (see the docstring)."""
    target = cache / f"probe-musl-zig{ZIG_VERSION}-{sha256(PROBE_SOURCE)[:12]}"
    if target.is_file():
        return target
    if platform.machine() != "x86_64":
        raise RuntimeError(f"the remedy lab pins zig's x86_64 wheel; this machine is {platform.machine()}")
    _fetch(cache, {ZIG_WHEEL: (f"ziglang=={ZIG_VERSION}", ZIG_SHA256)}, ["--platform", "manylinux_2_12_x86_64"])
    _sweep_builds(cache)
    build = cache / f".zig-build-{os.getpid()}"
    shutil.rmtree(build, ignore_errors=True)
    try:
        zig = _unpack_zig(cache / ZIG_WHEEL, build)
        partial = build / "probe"
        # zig's caches inside the build directory: nothing of a cold build is left behind
        env = {**os.environ, "ZIG_GLOBAL_CACHE_DIR": str(build / "cache"), "ZIG_LOCAL_CACHE_DIR": str(build / "cache")}
        compile_ = subprocess.Popen([str(zig), "cc", "-target", "x86_64-linux-musl", "-static", "-O2", "-s", "-Wall",
                                     "-o", str(partial), str(PROBE_SOURCE)], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
        try:
            _, err = compile_.communicate(timeout=600)
        finally:  # Ctrl-C, timeout: zig and the compilers it started go together
            with contextlib.suppress(ProcessLookupError):
                os.killpg(compile_.pid, signal.SIGKILL)
            compile_.wait()
        assert compile_.returncode == 0, f"zig cc probe.c:\n{err[-3000:]}"
        partial.replace(target)  # atomic: a parallel run sees the whole probe or none
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return target


def _unpack_zig(wheel: Path, dest: Path) -> Path:
    """zig and the part of its lib/ that a static x86_64 musl C program needs (240 of the wheel's 413 MB)."""
    headers = {"generic-musl", "x86_64-linux-musl", "any-linux-any", "x86-linux-any", "x86_64-linux-any"}
    unused = {"libcxx", "libcxxabi", "libtsan", "libunwind", "docs"}
    other_libcs = {"mingw", "glibc", "wasi", "darwin", "freebsd", "netbsd", "openbsd"}
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.infolist():
            parts = member.filename.split("/")
            if parts[0] != "ziglang":
                continue
            lib = parts[2:] if len(parts) > 2 and parts[1] == "lib" else []
            if lib and (lib[0] in unused or (lib[0] == "libc" and len(lib) > 1 and (
                    lib[1] in other_libcs or (lib[1] == "include" and len(lib) > 2 and lib[2] not in headers)))):
                continue
            archive.extract(member, dest)
    zig = dest / "ziglang" / "zig"
    zig.chmod(zig.stat().st_mode | stat.S_IXUSR)
    return zig


def _sweep_builds(cache: Path) -> None:
    """Remove what a zig build killed outright left behind (its pid is gone)."""
    for stale in cache.glob(".zig-build-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(stale, ignore_errors=True)


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
        musl_probe=current_musl_probe(cache),
        musl123_probe=build_probe("musl-gcc", work / "probe-musl123"),
        glibc_probe=build_probe("gcc", work / "probe-glibc"),
        python=lab_python(),
        build_cache=work / "uv-build-cache",
    )



def main() -> None:
    """`make lab`/`make test` fill the cache first, so no test's timeout pays for a cold one."""
    started = time.monotonic()
    cache = cache_root()
    uv, probe = uv_binary(cache), current_musl_probe(cache)
    index_wheels(cache)
    print(f"remedy lab tools in {cache}: {uv.parent.name}, {len(INDEX_WHEELS)} wheels, {probe.name} "
          f"({time.monotonic() - started:.1f} s)")


if __name__ == "__main__":
    main()
