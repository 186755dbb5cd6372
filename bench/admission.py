"""Admission benchmark: v4only against a floor server, over TLS on loopback, driven by wrk.

    .venv/bin/python bench/admission.py [--duration 5] [--rounds 3] [--levels 1,16,64]

Both servers run as separate processes pinned to CPU 0, wrk to CPU 1 (when the machine has two), so
they do not steal from each other. Each level runs `rounds` times per server; the medians are printed.
Bodies: the Chronicle pod (as its ReplicaSet creates it), a small pod and a 40-container pod, mixed.
Prints requests/s, median and p99 latency, the v4only/floor ratios, and each server's resident memory
before and after. Traffic goes to 127.0.0.1 only; every run is bounded by `--duration`.
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

from webhook.core import certs  # noqa: E402

CHRONICLE = ROOT / "tests" / "fixtures" / "admission" / "chronicle-allowed.request.json"
LUA = """
local bodies = {}
init = function(args)
  for _, path in ipairs(args) do
    local f = assert(io.open(path, "rb")); local body = f:read("*a"); f:close()
    bodies[#bodies + 1] = wrk.format("POST", "/mutate", {["Content-Type"] = "application/json"}, body)
  end
end
local i = 0
request = function() i = i % #bodies + 1; return bodies[i] end
"""


def bodies(directory: Path) -> dict[str, Path]:
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
        paths[name] = directory / f"{name}.json"
        paths[name].write_text(json.dumps(body))
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


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(port: int, connections: int, duration: float, script: Path, files: list[Path]) -> dict[str, float]:
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
    out = subprocess.run(command, capture_output=True, text=True, timeout=duration + 30, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50, p99 = (_latency(out, p) for p in ("50%", "99%"))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failed = (int(bad.group(1)) if bad else 0) + (sum(map(int, errors.groups())) if errors else 0)
    return {"rps": rps, "p50": p50, "p99": p99, "failed": failed}


def _latency(out: str, percentile: str) -> float:
    match = re.search(rf"{percentile}\s+([\d.]+)(us|ms|s)\b", out)
    assert match, out
    return float(match.group(1)) * UNITS[match.group(2)]


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    merged = {k: statistics.median(run[k] for run in runs) for k in ("rps", "p50", "p99")}
    merged["failed"] = sum(run["failed"] for run in runs)
    return merged


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--levels", default="1,16,64")
    parser.add_argument("--only", choices=("mix", "chronicle"), default=None)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    levels = [int(x) for x in args.levels.split(",")]
    with tempfile.TemporaryDirectory(prefix="v4only-bench-") as tmp:
        directory = Path(tmp)
        now = datetime.now(UTC)
        ca = certs.build_ca(common_name="bench CA", now=now, days=1)
        pair = certs.build_serving_cert(ca=ca, dns_names=["localhost"], ip_addresses=["127.0.0.1"], now=now, days=1)
        (directory / "tls.crt").write_bytes(pair.cert_pem)
        (directory / "tls.key").write_bytes(pair.key_pem)
        script = directory / "mix.lua"
        script.write_text(LUA)
        paths = bodies(directory)
        sets = {"chronicle": [paths["chronicle"]], "mix": list(paths.values())}
        servers = {name: start(name, directory / "tls.crt", directory / "tls.key") for name in ("v4only", "floor")}
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
    print("\nresident memory (MiB), before -> after load:")
    for name, (before, after) in memory.items():
        print(f"  {name:7s} {before:7.1f} -> {after:7.1f}")
    return 0


def report(set_name: str, files: list[Path], levels: list[int], servers: dict, script: Path, args) -> None:
    print(
        f"\n== {set_name} ({', '.join(f.stem for f in files)}), {args.rounds} x {args.duration:.0f}s per cell, medians"
    )
    print(f"{'conc':>4} {'server':7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'failed':>6}")
    for connections in levels:
        cells = {}
        for name, (_, port) in servers.items():
            wrk(port, connections, 1.0, script, files)  # warm-up, not counted
            cells[name] = median_of([wrk(port, connections, args.duration, script, files) for _ in range(args.rounds)])
            c = cells[name]
            print(f"{connections:>4} {name:7} {c['rps']:>9.0f} {c['p50']:>8.2f} {c['p99']:>8.2f} {c['failed']:>6.0f}")
        v, f = cells["v4only"], cells["floor"]
        print(
            f"{'':>4} {'ratio':7} {v['rps'] / f['rps']:>9.2f} {v['p50'] / f['p50']:>8.2f} {v['p99'] / f['p99']:>8.2f}"
            "   (targets: req/s >= 0.70, p99 <= 1.50)"
        )


if __name__ == "__main__":
    raise SystemExit(main())
