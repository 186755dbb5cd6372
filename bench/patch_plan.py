"""How long `v4only patch` takes to plan 10,000 workloads in a client dry run, and how much memory it holds.

    .venv/bin/python -m bench.patch_plan                 # both measurements, 10,000 workloads
    .venv/bin/python -m bench.patch_plan --workloads 2000

1. served: the whole command (`v4only patch -A`, client dry run, text output with a diff per changed
   workload) against the fake API server in another process, over HTTP with the real client: reading
   nodes and configz as `doctor` does, then pods, ReplicaSets and every workload page by page;
2. in process: the same planning and diff rendering on objects already in memory (no HTTP), to show
   how much of (1) is the listing (the fake API server copies and serialises every object per page).

Target (issue 5): under 30 s and under 300 MiB for 10,000 workloads, with the progress display on (it
writes to stderr here even when stderr is not a terminal). Prints figures only; no asserts.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.memory import rss_mib

IPV6 = "net.ipv6.conf.all.disable_ipv6"
NAMESPACES = 100
MIX = (("Deployment", 0.70), ("StatefulSet", 0.15), ("DaemonSet", 0.10), ("CronJob", 0.05))


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cluster(workloads: int) -> list[dict[str, Any]]:
    """Namespaces (opted in), nodes that refuse the sysctl, and `workloads` workloads with their
    ReplicaSets and one running pod each, created before the namespace opted in."""
    from tests.fakekube import objects

    objs: list[dict[str, Any]] = [objects.node(f"w-{i}") for i in range(3)]
    objs += [objects.namespace(f"ns-{i:03}", labels={"v4only.io/inject": "enabled"}) for i in range(NAMESPACES)]
    counts = [(kind, round(workloads * share)) for kind, share in MIX]
    builders = {"Deployment": objects.deployment, "StatefulSet": objects.statefulset,
                "DaemonSet": objects.daemonset, "CronJob": objects.cronjob}
    serial = 0
    for kind, count in counts:
        for _ in range(count):
            ns, name = f"ns-{serial % NAMESPACES:03}", f"{kind.lower()}-{serial:05}"
            serial += 1
            env = {"LOG_LEVEL": "info"} if serial % 3 else None
            obj = builders[kind](name, ns, containers=[objects.container(env=env)])
            objs.append(obj)
            owner = obj
            if kind == "Deployment":
                owner = objects.replicaset(f"{name}-5d8f9c7b6d", ns, owner=obj,
                                           pod_labels=obj["spec"]["template"]["metadata"]["labels"])
                objs.append(owner)
            if kind != "CronJob":
                objs.append(objects.pod(f"{name}-p0", ns, owner=owner, node_name=f"w-{serial % 3}",
                                        labels=obj["spec"]["template"]["metadata"]["labels"]))
    return objs


def _serve(workloads: int, ready: Any, port: Any, done: Any) -> None:
    from tests.fakekube import FakeKube, objects

    kube = FakeKube(history_size=10)
    for obj in cluster(workloads):
        if obj["kind"] == "Node":
            kube.set_configz(obj["metadata"]["name"], objects.kubelet_config(("net.ipv4.ip_forward",)))
        kube.put_object(obj)
    kube.start()
    port.value = kube.port
    ready.set()
    done.wait(900)
    kube.stop()


def served(workloads: int) -> None:
    from tests.fakekube import FakeKube
    from webhook.cli import patch as patch_cmd

    context = multiprocessing.get_context("spawn")
    ready, done, port = context.Event(), context.Event(), context.Value("i", 0)
    server = context.Process(target=_serve, args=(workloads, ready, port, done), daemon=True)
    start = time.perf_counter()
    server.start()
    try:
        if not ready.wait(900):
            print("served: the fake API server did not start")
            return
        print(f"served: fake API server ready with {workloads} workloads (+ReplicaSets, pods) in "
              f"{time.perf_counter() - start:.1f} s")
        fake = FakeKube()
        fake._port = port.value  # only to write a kubeconfig pointing at the other process
        kubeconfig = fake.kubeconfig_path(Path(tempfile.mkdtemp()))
        parser = argparse.ArgumentParser(prog="v4only")
        patch_cmd.register(parser.add_subparsers())
        args = parser.parse_args(["patch", "-A", "--kubeconfig", str(kubeconfig)])
        gc.collect()
        before = rss_mib()
        out = io.StringIO()
        progress = _progress_on()
        start = time.perf_counter()
        with contextlib.redirect_stdout(out):
            status = patch_cmd.run(args)
        elapsed = time.perf_counter() - start
        text = out.getvalue()
        print(f"served: `v4only patch -A` (client dry run) exit {status} in {elapsed:.1f} s; "
              f"{text.count(chr(10) + '--- ') + text.startswith('--- ')} diffs, {len(text) / 1e6:.1f} MB of output; "
              f"{progress.updates} progress redraws")
        print(f"served: process RSS {rss_mib():.0f} MiB (before {before:.0f}), peak {peak_mib():.0f} MiB")
        print("served: " + text.strip().splitlines()[-2])
    finally:
        done.set()
        server.join(60)


def _progress_on() -> Any:
    """Force the progress display on (stderr may be a file here): it is part of what is measured."""
    from webhook.adapters import progress
    from webhook.cli import patch as patch_cmd

    created: list[progress.Progress] = []

    class Shown(progress.Progress):
        def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: ARG002  (any stream: stderr, shown)
            super().__init__(sys.stderr, enabled=True)
            created.append(self)

    patch_cmd.Progress = Shown  # type: ignore[misc]

    class Total:
        @property
        def updates(self) -> int:
            return sum(p.updates for p in created)

    return Total()


def in_process(workloads: int) -> None:
    from webhook.adapters.progress import Progress
    from webhook.cli.patch import render_diff
    from webhook.core.capability import Capability, NodeFacts
    from webhook.core.settings import Settings
    from webhook.core.workload_pods import pods_by_workload
    from webhook.patcher.workloads import Planner, now_rfc3339, trim_pod

    objs = cluster(workloads)
    settings = Settings()
    nodes = [NodeFacts(f"w-{i}", allowlist=("net.ipv4.ip_forward",)) for i in range(3)]
    capability = Capability.build(nodes, sysctl_names=settings.sysctl_names, labels_published=False)
    namespaces = {o["metadata"]["name"]: o["metadata"]["labels"] for o in objs if o["kind"] == "Namespace"}
    pods = [trim_pod(o) for o in objs if o["kind"] == "Pod"]
    replicasets = [o for o in objs if o["kind"] == "ReplicaSet"]
    targets = [o for o in objs if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "CronJob")]
    for obj in targets:
        obj["metadata"]["resourceVersion"] = "1000"
    gc.collect()
    before = rss_mib()
    show = Progress(sys.stderr, enabled=True)
    start = time.perf_counter()
    planner = Planner(capability=capability, namespaces=namespaces, settings=settings, strategy="restart",
                      restarted_at=now_rfc3339(), pods_by_owner=pods_by_workload(pods, replicasets))
    diffs = 0
    planned = 0
    plan_time = diff_time = 0.0
    for obj in targets:
        t0 = time.perf_counter()
        plan = planner.plan(obj)
        t1 = time.perf_counter()
        if plan.outcome == "changed":
            diffs += len(render_diff(obj, plan)) > 0
        diff_time += time.perf_counter() - t1
        plan_time += t1 - t0
        planned += 1
        show.update(f"planned {planned} workloads")
    show.clear()
    elapsed = time.perf_counter() - start
    print(f"in process: {planned} workloads planned in {elapsed:.2f} s (decide+plan {plan_time:.2f} s, diffs "
          f"{diff_time:.2f} s for {diffs} changed); RSS {rss_mib():.0f} MiB (objects in memory: "
          f"{before:.0f} MiB before planning), {show.updates} progress redraws")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=int, default=10_000)
    parser.add_argument("--only", choices=("served", "in-process"))
    args = parser.parse_args()
    if args.only != "in-process":
        served(args.workloads)
    if args.only != "served":
        in_process(args.workloads)


if __name__ == "__main__":
    main()
