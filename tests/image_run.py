"""Run an image from its docker-archive as the kubelet runs v4only's pods, with no container engine.

`unpack` lays the archive's layers, in order, into a directory (whiteouts applied) and reads the image config.
`Container` runs the image's entrypoint in a mount and PID namespace of its own (`unshare`): the root
filesystem bind-mounted read-only, a tmpfs on /tmp (the pods' emptyDir), a fresh /dev and /proc, each volume
bind-mounted (read-only where the pod spec says so), then `chroot` as the pod's uid and gid with its fsGroup as
supplementary group, no capabilities left (a non-root uid keeps none) and no_new_privs set
(allowPrivilegeEscalation: false). The network is the host's: tests talk to it over 127.0.0.1. Not
reproduced: seccomp, cgroup limits. Every mount lives in the container's own mount namespace, so all of it
goes when its process ends; `stop()` ends it (SIGTERM, then SIGKILL) and is safe to call twice.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


@dataclass(frozen=True)
class Image:
    rootfs: Path
    repo_tags: list[str]
    config: dict[str, Any]  # the OCI/docker image config's "config" (Entrypoint, Cmd, Env, User, ...)
    layer_bytes: list[int]  # uncompressed size of each layer, base first


def unpack(archive: Path, rootfs: Path) -> Image:
    """A docker-archive (manifest.json, config, layer tars) unpacked into `rootfs`."""
    with tarfile.open(archive) as tar:
        (manifest,) = json.load(_member(tar, "manifest.json"))
        config = json.load(_member(tar, manifest["Config"]))
    rootfs.mkdir(mode=0o755)
    sizes = []
    for layer in manifest["Layers"]:
        with tarfile.open(archive) as tar:
            sizes.append(tar.getmember(layer).size)
        # GNU tar, as root: owners, modes and device nodes as recorded; the layer streamed out of the archive.
        with subprocess.Popen(["tar", "-xOf", str(archive), layer], stdout=subprocess.PIPE) as reader:
            subprocess.run(["tar", "-x", "--numeric-owner", "-C", str(rootfs)], stdin=reader.stdout, check=True,
                           timeout=300)
        assert reader.returncode == 0, f"{layer}: not readable from {archive}"
        _apply_whiteouts(rootfs)
    return Image(rootfs, manifest.get("RepoTags") or [], config["config"], sizes)


def _member(tar: tarfile.TarFile, name: str) -> Any:
    extracted = tar.extractfile(name)
    assert extracted is not None, f"{name} missing from the archive"
    return extracted


def _apply_whiteouts(rootfs: Path) -> None:
    for marker in list(rootfs.rglob(".wh.*")):
        if marker.name == ".wh..wh..opq":  # opaque directory: nothing below it from earlier layers
            for child in marker.parent.iterdir():
                if child != marker:
                    _remove(child)
        else:
            _remove(marker.with_name(marker.name[len(".wh.") :]))
        marker.unlink()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str  # inside the container
    read_only: bool = True


@dataclass
class Container:
    image: Image
    args: list[str]  # the container's `args` (they replace the image's Cmd)
    command: list[str] | None = None  # the container's `command` (replaces the image's Entrypoint)
    uid: int = 65532
    gid: int = 65532
    fs_group: int = 65532
    env: dict[str, str] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)
    log_file: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        root = self.image.rootfs
        script = ["set -eu", f"root={shlex.quote(str(root))}", 'mount --bind "$root" "$root"',
                  'mount -t proc -o nosuid,nodev,noexec proc "$root/proc"',
                  'mount -t tmpfs -o nosuid,noexec,mode=755 tmpfs "$root/dev"']
        for device in DEVICES:
            script.append(f'touch "$root/dev/{device}" && mount --bind /dev/{device} "$root/dev/{device}"')
        script.append('mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs "$root/tmp"')
        for mount in self.mounts:
            target = f'"$root"{shlex.quote(mount.target)}'
            script.append(f"mount --bind {shlex.quote(str(mount.source))} {target}")
            if mount.read_only:
                script.append(f"mount -o remount,bind,ro,nosuid,nodev {target}")
        script += ['mount -o remount,bind,ro "$root"', 'exec "$@"']
        config = self.image.config
        workdir = config.get("WorkingDir") or "/"
        assert workdir == "/", f"WorkingDir {workdir}: not supported by this runner"
        environment = [*config.get("Env", []), *(f"{k}={v}" for k, v in self.env.items())]
        return [
            "unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private",
            "sh", "-c", "\n".join(script), "container",
            "setpriv", "--no-new-privs",
            _which("env"), "-i", "HOME=/", *environment,
            _which("chroot"), f"--userspec={self.uid}:{self.gid}", f"--groups={self.fs_group}", str(root),
            *(self.command if self.command is not None else config.get("Entrypoint", [])), *self.args,
        ]

    def start(self) -> Container:
        for mount in self.mounts:  # the runtime makes mount points in the container's writable layer
            (self.image.rootfs / mount.target.lstrip("/")).mkdir(parents=True, exist_ok=True)
        log = open(self.log_file, "wb") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.process = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            if self.log_file:
                log.close()  # type: ignore[union-attr]
        return self

    def init_pid(self, timeout: float = 10.0) -> int:
        """The host pid of the container's PID 1: unshare's child, which execs the mount script, then setpriv,
        env, chroot and finally the entrypoint (call it once the entrypoint is known to run)."""
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = children.read_text().split() if children.exists() else []
            if pids:
                return int(pids[0])
            time.sleep(0.05)
        raise AssertionError(f"no container process after {timeout}s; log: {self.log()}")

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")[-4000:] if self.log_file and self.log_file.exists() else ""

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def terminate(self, timeout: float) -> int:
        """SIGTERM to the container's PID 1, as the kubelet sends it; its exit status."""
        os.kill(self.init_pid(), signal.SIGTERM)
        return self.wait(timeout)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)  # unshare --kill-child takes PID 1 (and so the rest) along
            self.process.wait(10)
        self.process = None


def _which(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} not found"
    return path


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path` in this process's mount namespace (none may survive a container)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        if point == str(path) or point.startswith(f"{path}/"):
            found.append(point)
    return found


def run(image: Image, args: list[str], log_file: Path, *, timeout: float = 60, **options: Any) -> tuple[int, str]:
    """Run to completion (a Job's pod): exit status and output."""
    container = Container(image, args, log_file=log_file, **options).start()
    try:
        status = container.wait(timeout)
    finally:
        container.stop()
    return status, log_file.read_text(errors="replace")
