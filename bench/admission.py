"""Admission benchmark: v4only against a floor server, over TLS on loopback, driven by wrk.

    .venv/bin/python bench/admission.py [--duration 5] [--rounds 3] [--levels 1,16,64] [--breakdown] [--distinct]

Both servers run as separate processes pinned to CPU 0, wrk to CPU 1 (when the machine has two), so
they do not steal from each other. Each level runs `rounds` times per server, alternating between the two;
the medians are printed, and the load average before and after (other processes make the figures noisy).
Bodies: the Chronicle pod (as its ReplicaSet creates it), a small pod and a 40-container pod, mixed, written
compactly as the API server does, each request with a fresh uid. By default each pod repeats, as replicas of
one template do (v4only replays the answer: server/replay.py); with --distinct every request is a new pod.
Prints requests/s, median and p99 latency, the server's CPU time per request (user + system, from /proc:
what other processes on the machine barely disturb), the v4only/floor ratios (for CPU: floor/v4only, the
throughput ratio a CPU-bound server reaches), and each server's resident memory before and after.
Traffic goes to 127.0.0.1 only; every run is bounded by `--duration`.
Targets (issue 6): throughput >= 0.7 x floor, p99 <= 1.5 x floor.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.memory import rss_mib  # noqa: E402
from webhook.core import certs  # noqa: E402

CHRONICLE = ROOT / "tests" / "fixtures" / "admission" / "chronicle-allowed.request.json"
# Each request gets a fresh uid, as the API server sends: the templates carry `@N@` where the request number goes
# (in the uid, and with --distinct in a pod label too). Split once at init, joined per request.
LUA = """
local templates = {}
init = function(args)
  for _, path in ipairs(args) do
    local f = assert(io.open(path, "rb")); local body = f:read("*a"); f:close()
    local parts = {}
    for piece in (body .. "@N@"):gmatch("(.-)@N@") do parts[#parts + 1] = piece end
    templates[#templates + 1] = parts
  end
end
local i, n = 0, 0
request = function()
  i = i % #templates + 1; n = n + 1
  local body = table.concat(templates[i], string.format("%012d", n))
  return wrk.format("POST", "/mutate", {["Content-Type"] = "application/json"}, body)
end
"""
UID = "00000000-0000-4000-8000-@N@"


def bodies(directory: Path, *, distinct: bool) -> dict[str, Path]:
    """The three pods as AdmissionReview templates, written compactly as the API server's Go encoder does."""
    chronicle = json.loads(CHRONICLE.read_text())
    small = json.loads(CHRONICLE.read_text())
    small["request"]["namespace"] = "team-a"
    small["request"]["object"] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "small-", "labels": {"app": "s"}},
        "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
    }
    wide = json.loads(CHRONICLE.read_text())
    template = wide["request"]["object"]["spec"]["containers"][0]
    wide["request"]["object"]["spec"]["containers"] = [
        {**template, "name": f"c{i}", "env": [{"name": f"VAR_{j}", "value": "x" * 20} for j in range(5)]}
        for i in range(40)
    ]
    paths = {}
    for name, body in (("chronicle", chronicle), ("small", small), ("wide40", wide)):
        body["request"]["uid"] = UID
        if distinct:  # a label no two requests share: every pod is new to the server
            body["request"]["object"]["metadata"].setdefault("labels", {})["bench-pod"] = "p@N@"
        paths[name] = directory / f"{name}.json"
        paths[name].write_text(json.dumps(body, separators=(",", ":")))
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []


def start(which: str, cert: Path, key: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    command = [
        *pin(0),
        sys.executable,
        str(ROOT / "bench" / "servers.py"),
        which,
        "--port",
        str(port),
        "--cert",
        str(cert),
        "--key",
        str(key),
    ]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, port
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit(f"{which} server did not start")


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(port: int, connections: int, duration: float, script: Path, files: list[Path], pid: int) -> dict[str, float]:
    """One wrk run; also the server's CPU time per request, which other processes on the machine barely move."""
    command = [
        *pin(1),
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "--timeout",
        "5s",
        "-s",
        str(script),
        f"https://127.0.0.1:{port}",
        "--",
        *map(str, files),
    ]
    cpu_before = cpu_seconds(pid)
    out = subprocess.run(command, capture_output=True, text=True, timeout=duration + 30, check=True).stdout
    cpu = cpu_seconds(pid) - cpu_before
    count = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50, p99 = (_latency(out, p) for p in ("50%", "99%"))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failed = (int(bad.group(1)) if bad else 0) + (sum(map(int, errors.groups())) if errors else 0)
    return {"rps": rps, "p50": p50, "p99": p99, "failed": failed, "cpu_us": cpu / max(count, 1) * 1e6}


def _latency(out: str, percentile: str) -> float:
    match = re.search(rf"{percentile}\s+([\d.]+)(us|ms|s)\b", out)
    assert match, out
    return float(match.group(1)) * UNITS[match.group(2)]


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    merged = {k: statistics.median(run[k] for run in runs) for k in ("rps", "p50", "p99", "cpu_us")}
    merged["failed"] = sum(run["failed"] for run in runs)
    return merged


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--levels", default="1,16,64")
    parser.add_argument("--only", choices=("mix", "chronicle"), default=None)
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="where v4only's CPU goes: also run the edge with a fixed answer and with parsing only (see servers.py)",
    )
    parser.add_argument(
        "--distinct",
        action="store_true",
        help="every request a different pod (a label carries the request number), so no answer is replayed: "
        "v4only's worst case. Without it, each pod repeats with a fresh uid, as replicas of one template do",
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    levels = [int(x) for x in args.levels.split(",")]
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="v4only-bench-") as tmp:
        directory = Path(tmp)
        now = datetime.now(UTC)
        ca = certs.build_ca(common_name="bench CA", now=now, days=1)
        pair = certs.build_serving_cert(ca=ca, dns_names=["localhost"], ip_addresses=["127.0.0.1"], now=now, days=1)
        (directory / "tls.crt").write_bytes(pair.cert_pem)
        (directory / "tls.key").write_bytes(pair.key_pem)
        script = directory / "mix.lua"
        script.write_text(LUA)
        paths = bodies(directory, distinct=args.distinct)
        sets = {"chronicle": [paths["chronicle"]], "mix": list(paths.values())}
        names = ["v4only", "floor"]
        if args.breakdown:
            names += ["v4only-fixed", "v4only-parse", "v4only-noreplay"]
        servers = {name: start(name, directory / "tls.crt", directory / "tls.key") for name in names}
        try:
            memory = {name: [rss_mib(p.pid)] for name, (p, _) in servers.items()}
            for set_name, files in sets.items():
                if args.only and set_name != args.only:
                    continue
                report(set_name, files, levels, servers, script, args)
            for name, (process, _) in servers.items():
                memory[name].append(rss_mib(process.pid))
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(10)
    print(f"\nload average (1 min) before the run: {load_before:.2f} (the benchmark itself adds about 1.5; a start"
          " well above 0 means other processes compete for the CPUs and the req/s and latency figures are noisy)")
    print("resident memory (MiB), before -> after load:")
    for name, (before, after) in memory.items():
        print(f"  {name:12s} {before:7.1f} -> {after:7.1f}")
    return 0


def report(
    set_name: str,
    files: list[Path],
    levels: list[int],
    servers: dict[str, tuple[subprocess.Popen[bytes], int]],
    script: Path,
    args: argparse.Namespace,
) -> None:
    pods = "every pod distinct" if args.distinct else "pods repeat with fresh uids, as replicas do"
    print(
        f"\n== {set_name} ({', '.join(f.stem for f in files)}; {pods}), {args.rounds} x {args.duration:.0f}s per cell,"
        " medians"
    )
    print(f"{'conc':>4} {'server':12} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'failed':>6} {'cpu us/req':>10}")
    for connections in levels:
        for process, port in servers.values():
            wrk(port, connections, 1.0, script, files, process.pid)  # warm-up, not counted
        # Rounds alternate between the servers, so a disturbance (another process waking up) lands on both.
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
        for _ in range(args.rounds):
            for name, (process, port) in servers.items():
                runs[name].append(wrk(port, connections, args.duration, script, files, process.pid))
        cells = {name: median_of(runs[name]) for name in servers}
        for name, c in cells.items():
            print(
                f"{connections:>4} {name:12} {c['rps']:>9.0f} {c['p50']:>8.2f} {c['p99']:>8.2f} {c['failed']:>6.0f}"
                f" {c['cpu_us']:>10.1f}"
            )
        if "v4only-parse" in cells:
            edge, parse, real, floor = (cells[k]["cpu_us"] for k in ("v4only-fixed", "v4only-parse", "v4only", "floor"))
            print(
                f"{'':>4} cpu us/req: floor {floor:.1f} + HTTP edge {edge - floor:.1f}"
                f" + orjson parse {parse - edge:.1f} + decision, patch and response {real - parse:.1f} = {real:.1f}"
                f" (without the replica cache: {cells['v4only-noreplay']['cpu_us']:.1f})"
            )
        v, f = cells["v4only"], cells["floor"]
        print(
            f"{'':>4} {'ratio':12} {v['rps'] / f['rps']:>9.2f} {v['p50'] / f['p50']:>8.2f} {v['p99'] / f['p99']:>8.2f}"
            f" {'':>6} {f['cpu_us'] / v['cpu_us']:>10.2f}   (targets: req/s >= 0.70, p99 <= 1.50)"
        )


if __name__ == "__main__":
    raise SystemExit(main())
