"""Named network namespaces and the one undo list that removes them, whatever ends the run.

Names carry the test process's pid (`v4l-PID-N-ROLE`), so parallel runs never collide and a run that was
killed outright (SIGKILL: no finalizer runs) is recognised and swept by the next one: `sweep_stale()` removes
every lab namespace (its processes first) and /etc/netns entry whose pid is no longer alive.

Undo steps run in reverse order, each once, even when one fails; Ctrl-C and SIGTERM that arrive while they
run are held until they are done (`signals_held`). SIGTERM and SIGHUP, whose default action would end the
process without unwinding, run every open undo list first; an atexit hook does the same for anything left.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

PREFIX = "v4l"
RUN_NETNS = Path("/run/netns")
ETC_NETNS = Path("/etc/netns")  # `ip netns exec NAME` bind-mounts /etc/netns/NAME/* over /etc/*
_STALE = re.compile(rf"^{PREFIX}-(\d+)-")
_checks = itertools.count()


class LabUnavailable(RuntimeError):
    """Namespaces cannot be made here; the message is the one line the lab fails with."""


def ip(*args: str, namespace: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["ip", *(["-n", namespace] if namespace else []), *args]
    run = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    if check and run.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {run.stderr.strip()}")
    return run


def lab_namespaces() -> list[str]:
    return sorted(p.name for p in RUN_NETNS.glob(f"{PREFIX}-*")) if RUN_NETNS.is_dir() else []


def namespace_pids(name: str) -> list[int]:
    run = ip("netns", "pids", name, check=False)
    return [int(pid) for pid in run.stdout.split()] if run.returncode == 0 else []


def delete_namespace(name: str) -> None:
    """Kill what still runs inside, delete the namespace (its veth end goes with it), drop /etc/netns/NAME."""
    for pid in namespace_pids(name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if (RUN_NETNS / name).exists():
        ip("netns", "delete", name)
    shutil.rmtree(ETC_NETNS / name, ignore_errors=True)
    with contextlib.suppress(OSError):
        ETC_NETNS.rmdir()  # only when empty: no other lab (or anyone else) has an entry there


def make_etc_dir(name: str) -> Path:
    """/etc/netns/NAME, also when a lab closing at this moment removes the then empty /etc/netns."""
    for _ in range(5):
        with contextlib.suppress(FileNotFoundError):
            (ETC_NETNS / name).mkdir(parents=True, exist_ok=True)
            return ETC_NETNS / name
    raise RuntimeError(f"cannot make {ETC_NETNS / name}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale() -> list[str]:
    """Remove lab namespaces (their processes first), /etc/netns entries and work directories left by runs
    whose process is gone (killed outright: no finalizer ran)."""
    names = set(lab_namespaces()) | ({p.name for p in ETC_NETNS.glob(f"{PREFIX}-*")} if ETC_NETNS.is_dir() else set())
    stale = sorted(n for n in names if _is_stale(n))
    for name in stale:
        delete_namespace(name)
    for work in Path(tempfile.gettempdir()).glob(f"{PREFIX}-*"):
        if _is_stale(work.name):
            shutil.rmtree(work, ignore_errors=True)
    return stale


def _is_stale(name: str) -> bool:
    match = _STALE.match(name)
    return match is not None and not _alive(int(match.group(1)))


def check_can_make_namespaces() -> None:
    """One line saying why the lab cannot run here, as LabUnavailable; nothing when it can."""
    if os.geteuid() != 0:
        raise LabUnavailable("the remedy lab needs root to make network namespaces (CI runs as root)")
    missing = [tool for tool in ("ip", "sysctl", "mount", "gcc", "musl-gcc") if shutil.which(tool) is None]
    if missing:
        raise LabUnavailable(f"the remedy lab needs {', '.join(missing)}: apt-get install iproute2 procps gcc "
                             "musl-tools (.ci/run installs them)")
    probe = f"{PREFIX}-{os.getpid()}-check{next(_checks)}"  # labs may open in several threads at once
    made = ip("netns", "add", probe, check=False)
    try:
        if made.returncode != 0:
            raise LabUnavailable(f"the remedy lab cannot make a network namespace here: {made.stderr.strip()}")
    finally:
        if made.returncode == 0:
            delete_namespace(probe)


class LabClosed(RuntimeError):
    """The lab is being removed: nothing new may start in it."""


class Undo:
    """A LIFO list of undo steps, run once; failures are collected and reported after every step ran.
    Once it runs it is closed: `opening()` guards anything that would add to the lab (a process starting),
    so nothing starts in a namespace after its processes were killed."""

    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[[], object]]] = []
        self._lock = threading.RLock()  # re-entered by a signal handler that interrupts its own thread
        self.closed = False

    def push(self, what: str, step: Callable[[], object]) -> None:
        with self._lock:
            self._steps.append((what, step))

    @contextlib.contextmanager
    def opening(self) -> Iterator[None]:
        with self._lock:
            if self.closed:
                raise LabClosed("the lab is closing")
            yield

    def run(self) -> list[str]:
        with self._lock:
            self.closed = True
        errors: list[str] = []
        while True:
            with self._lock:
                if not self._steps:
                    return errors
                what, step = self._steps.pop()
            try:
                step()
            except Exception as exc:  # every step must get its turn
                errors.append(f"{what}: {exc}")


_open: set[Undo] = set()
_open_lock = threading.Lock()


def register(undo: Undo) -> None:
    with _open_lock:
        _open.add(undo)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGHUP):
                if signal.getsignal(sig) == signal.SIG_DFL:  # never over a handler someone else installed
                    signal.signal(sig, _undo_all_then_die)


def unregister(undo: Undo) -> None:
    with _open_lock:
        _open.discard(undo)


def run_all_open() -> None:
    with _open_lock:
        pending = list(_open)
        _open.clear()
    for undo in pending:
        undo.run()


def _undo_all_then_die(signum: int, frame: FrameType | None) -> None:
    run_all_open()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


atexit.register(run_all_open)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while cleanup runs; deliver them afterwards (main thread only: Python's rule)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum)) for sig in held}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in dict.fromkeys(caught):
            os.kill(os.getpid(), signum)
