"""`v4only patch`: bring existing workloads in line with what the webhook does, and rescue SysctlForbidden pods.

    v4only patch -n chronicle                      # what would change (a diff per workload, then a table)
    v4only patch -n chronicle --dry-run=none       # do it: restart each workload whose pods would change
    v4only patch -A --rescue --dry-run=none        # stop SysctlForbidden storms

The webhook only sees pods as they are created. Here every Deployment, StatefulSet, DaemonSet, unowned
ReplicaSet, CronJob and bare Pod in scope gets the webhook's own decision on its pod template
(`webhook.core.workload_plan`), with the cluster's capability read as `v4only doctor` reads it.
Exit status: 0 done; 1 an action or a rollout failed; 2 bad usage or a cluster that cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from webhook.adapters.kube import KubeError
from webhook.adapters.kube_workloads import KINDS, WorkloadApi
from webhook.adapters.progress import Progress
from webhook.cli.cluster_facts import gather
from webhook.cli.diffs import unified_yaml_diff
from webhook.cli.usage import EXIT_OK, EXIT_PROBLEMS, KUBECONFIG_HELP, UsageError, connect, load_settings
from webhook.core import text
from webhook.core.evidence import FAILED_PODS
from webhook.core.patch import apply_patch
from webhook.core.workload_plan import WorkloadPlan
from webhook.core.workload_rollout import RESTARTED_AT
from webhook.patcher.rescue import Rescuer, RescueReport
from webhook.patcher.workloads import (
    ActionResult,
    EventRecorder,
    Executor,
    Planner,
    Scope,
    now_rfc3339,
    plan_scope,
    read_pods,
)

DEFAULT_KINDS = ("deployments", "statefulsets", "daemonsets", "replicasets", "cronjobs", "pods")
KIND_NAMES = {
    **{k.plural: k.kind for k in KINDS.values()},
    **{k.kind.lower(): k.kind for k in KINDS.values()},
    "deploy": "Deployment", "sts": "StatefulSet", "ds": "DaemonSet", "rs": "ReplicaSet", "cj": "CronJob",
    "po": "Pod",
}
MAX_DELETIONS_LIMIT = 10_000
MAX_IN_FLIGHT_LIMIT = 100
# Volatile fields left out of the diffs: they never change here and only make the output noisy.
_VOLATILE_META = ("managedFields", "resourceVersion", "uid", "creationTimestamp", "generation", "selfLink")

HELP = """\
bring existing workloads in line with the webhook (dry run by default), or rescue SysctlForbidden pods"""
EPILOG = f"""\
examples:
  v4only patch -n chronicle                      what would change: a diff per workload, then a table
  v4only patch -n chronicle --dry-run=none       do it (restart what the webhook would change)
  v4only patch -A --rescue --dry-run=none        stop SysctlForbidden storms

strategies:
  restart   (default) set {RESTARTED_AT} on the pod template, as `kubectl rollout
            restart` does: the spec stays as written (GitOps-friendly) and each new pod passes
            through the webhook. Only a workload with a pod that is not what the webhook would make
            of it now is restarted, so a second run restarts nothing.
  template  write the webhook's change into the pod template itself (a GitOps tool reverts it).

Jobs are reported, never patched: their pod template cannot change, and their new pods pass through
the webhook. A bare Pod cannot change either: with --recreate-pods it is deleted (precondition: its
uid) and created again from the same metadata and spec, without spec.nodeName so the scheduler places
it again; with --strategy restart the webhook makes the change as the pod is created, with --strategy
template the change is written in. If the creation fails, the manifest is logged. A ReplicaSet
without owner does not roll out: --recreate-pods deletes its pods, and it re-creates them through
the webhook.

--rescue finds the pods the kubelet refused with SysctlForbidden for a managed sysctl, restarts (or
patches) their Deployment, StatefulSet or DaemonSet, labels the node v4only.io/ipv6-sysctl=forbidden
when node labels are published, and deletes the failed pods, oldest first, at most --max-deletions,
keeping the newest one on each node as evidence for the capability tracker."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("patch", help=HELP, description=HELP, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", help="the namespace to look in")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="look in every namespace")
    parser.add_argument("-l", "--selector", help="label selector on the workloads (with --rescue: on the failed "
                        "pods), as kubectl -l")
    parser.add_argument("--kind", default=",".join(DEFAULT_KINDS),
                        help=f"comma list of kinds (default {','.join(DEFAULT_KINDS)}; jobs can be added)")
    parser.add_argument("--dry-run", choices=("client", "server", "none"), default="client",
                        help="client (default): show the diffs, send nothing; server: send with dryRun=All "
                        "(admission and validation run, nothing changes); none: apply")
    parser.add_argument("--strategy", choices=("restart", "template"), default="restart",
                        help="restart (default) or template, see below")
    parser.add_argument("--max-in-flight", type=_bounded(1, MAX_IN_FLIGHT_LIMIT), default=5, metavar="N",
                        help="rollouts at a time; each must finish before the next starts (default 5)")
    parser.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                        help="how long one rollout may take (default 600, a Deployment's progressDeadlineSeconds)")
    parser.add_argument("--recreate-pods", action="store_true",
                        help="delete and re-create bare Pods (and the pods of unowned ReplicaSets), see below")
    parser.add_argument("--rescue", action="store_true", help="rescue pods refused with SysctlForbidden, see below")
    parser.add_argument("--max-deletions", type=_bounded(0, MAX_DELETIONS_LIMIT), default=100, metavar="N",
                        help=f"--rescue deletes at most N failed pods (default 100, at most {MAX_DELETIONS_LIMIT})")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    parser.add_argument("--config", help="settings YAML (as in the v4only-config ConfigMap)")
    parser.add_argument("--kubeconfig", metavar="FILE", help=KUBECONFIG_HELP)
    parser.add_argument("--context", help="kubeconfig context")
    parser.set_defaults(func=run)


def _bounded(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value

    return parse


def parse_kinds(text: str) -> tuple[str, ...]:
    kinds: list[str] = []
    for item in filter(None, (part.strip().lower() for part in text.split(","))):
        if item not in KIND_NAMES:
            raise UsageError(f"--kind: unknown kind {item!r} (known: {', '.join(k.plural for k in KINDS.values())})")
        if KIND_NAMES[item] not in kinds:
            kinds.append(KIND_NAMES[item])
    if not kinds:
        raise UsageError("--kind: no kind given")
    return tuple(kinds)


@dataclass
class Run:
    """One `v4only patch`: its options, the planner and executor it built, and what it found."""

    args: argparse.Namespace
    scope: Scope
    planner: Planner
    wapi: WorkloadApi
    labels_published: bool
    node_labels: Mapping[str, Mapping[str, str]]
    progress: Progress


def run(args: argparse.Namespace) -> int:
    if not args.namespace and not args.all_namespaces:
        raise UsageError("say where to look: -n NAMESPACE, or -A for all namespaces")
    kinds = parse_kinds(args.kind)
    settings = load_settings(args.config)
    api = connect(args)
    progress = Progress()
    try:
        progress.update("reading nodes, namespaces and kubelet configurations...", force=True)
        try:
            facts = gather(api)
        except KubeError as error:
            raise UsageError(f"cannot read the cluster: {error}") from None
        wapi = WorkloadApi(api)
        planner = Planner(
            capability=facts.capability(settings),
            namespaces=facts.namespaces,
            settings=settings,
            strategy=args.strategy,
            restarted_at=now_rfc3339(),
            recreate_pods=args.recreate_pods,
        )
        state = Run(args, Scope(args.namespace, args.selector, kinds), planner, wapi, facts.labels_published,
                    {n.name: n.labels for n in facts.nodes}, progress)
        try:
            return _rescue(state) if args.rescue else _patch(state)
        except KubeError as error:
            raise UsageError(f"cannot read the cluster: {error}") from None
    finally:
        progress.clear()
        api.close()


# ---- patch


@dataclass(frozen=True, slots=True)
class Entry:
    plan: WorkloadPlan
    diff: str = ""  # client dry run: the unified diff of the changed workload
    result: ActionResult | None = None


def _patch(state: Run) -> int:
    args = state.args
    read_pods(state.wapi, state.planner, state.scope, state.progress)
    diffs: dict[tuple[str, str, str], str] = {}

    def keep_diff(obj: Mapping[str, Any], plan: WorkloadPlan) -> None:
        if args.dry_run == "client" and plan.outcome == "changed":
            diffs[plan.key] = render_diff(obj, plan)

    plans = plan_scope(state.wapi, state.planner, state.scope, state.progress, each=keep_diff)
    results: dict[tuple[str, str, str], ActionResult] = {}
    if args.dry_run != "client":
        executor = Executor(state.wapi, state.planner, dry_run=args.dry_run == "server",
                            events=EventRecorder(state.wapi), progress=state.progress, timeout=args.timeout)
        for result in executor.run(plans, max_in_flight=args.max_in_flight, wait=True):
            results[result.plan.key] = result
    entries = [Entry(p, diffs.get(p.key, ""), results.get(p.key)) for p in sorted(plans, key=_order)]
    output = render_json(entries, args) if args.output == "json" else render_text(entries, args)
    sys.stdout.write(output)
    return EXIT_PROBLEMS if any(e.result is not None and not e.result.ok for e in entries) else EXIT_OK


def _order(plan: WorkloadPlan) -> tuple[str, int, str]:
    kinds = list(KINDS)
    return (plan.namespace, kinds.index(plan.kind) if plan.kind in kinds else len(kinds), plan.name)


def manifest_view(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object without status and the metadata the server keeps for itself."""
    view = {k: v for k, v in obj.items() if k != "status"}
    meta = obj.get("metadata")
    if isinstance(meta, Mapping):
        view["metadata"] = {k: v for k, v in meta.items() if k not in _VOLATILE_META}
    return view


def render_diff(obj: Mapping[str, Any], plan: WorkloadPlan) -> str:
    """The diff of what the webhook changes, then the decision, the action and the notes."""
    ref = f"{plan.kind} {plan.namespace}/{plan.name}"
    before = manifest_view(obj)
    after = apply_patch(before, plan.template_ops)
    target = {"restart": "its new pods, as the webhook admits them", "delete-pods": "its new pods, as the webhook "
              "admits them", "patch": "pod template as patched", "recreate": "as re-created"}[plan.action]
    lines = [unified_yaml_diff(before, after, from_name=f"{ref} (now)", to_name=f"{ref} ({target})")]
    remedy = plan.decision.remedy if plan.decision is not None else "?"
    lines += [f"remedy: {remedy}\n", f"reason: {plan.reason}\n", f"action: {_action_text(plan)}\n"]
    lines += [f"note: {note}\n" for note in plan.notes]
    return "".join(lines)


def _action_text(plan: WorkloadPlan) -> str:
    if plan.action == "restart":
        return (f"restart: set {RESTARTED_AT} on the pod template; the spec stays as it is, and the webhook "
                "makes the change above in each new pod")
    if plan.action == "patch":
        return "patch: write the change above into the pod template (a rollout follows)"
    if plan.action == "recreate":
        how = "with the change written in" if plan.strategy == "template" else "the webhook makes the change"
        return f"recreate: delete the pod and create it again ({how})"
    names = ", ".join(p.name for p in plan.delete_pods)
    return f"delete pods ({names}): the ReplicaSet re-creates them through the webhook"


def _result_text(entry: Entry, dry_run: str) -> str:
    plan = entry.plan
    if entry.result is not None:
        return entry.result.result
    if plan.outcome == "changed" and dry_run == "client":
        return f"would {plan.action}"
    return plan.outcome


def render_text(entries: Sequence[Entry], args: argparse.Namespace) -> str:
    out: list[str] = [e.diff + "\n" for e in entries if e.diff]
    shown = [e for e in entries if e.plan.skip not in ("not-managed", "owned")]
    rows = [("KIND", "NAMESPACE", "NAME", "RESULT", "DETAIL")]
    for entry in shown:
        plan = entry.plan
        detail = entry.result.detail if entry.result is not None and entry.result.detail else plan.reason
        rows.append((plan.kind, plan.namespace, plan.name, _result_text(entry, args.dry_run), detail))
    if len(rows) > 1:
        out.append(table(rows))
    if args.dry_run != "client":
        out += [f"note: {e.plan.kind} {e.plan.namespace}/{e.plan.name}: {note}\n"
                for e in entries if e.plan.outcome == "changed" for note in e.plan.notes]
    out.append(_summary(entries, args))
    return "".join(out)


def table(rows: Sequence[Sequence[str]]) -> str:
    """`rows[0]` is the header row."""
    return "".join(line + "\n" for line in text.table(rows[0], rows[1:]))


def _summary(entries: Sequence[Entry], args: argparse.Namespace) -> str:
    hidden = Counter(e.plan.skip for e in entries if e.plan.skip in ("not-managed", "owned"))
    outcomes = Counter(e.plan.outcome for e in entries if e.plan.skip not in ("not-managed", "owned"))
    text = f"{outcomes['changed']} changed, {outcomes['unchanged']} unchanged, {outcomes['skipped']} skipped"
    extra = [f"{hidden['not-managed']} not opted in"] if hidden["not-managed"] else []
    extra += [f"{hidden['owned']} owned by a workload listed above them"] if hidden["owned"] else []
    if extra:
        text += f" (not listed: {', '.join(extra)})"
    failures = [e for e in entries if e.result is not None and not e.result.ok]
    lines = [text + "\n"]
    if args.dry_run == "client":
        lines.append("dry run: nothing was sent; --dry-run=server has the API server check it, --dry-run=none "
                     "applies it\n")
    elif args.dry_run == "server":
        lines.append("server dry run (dryRun=All): the API server checked every patch and stored nothing\n")
    if failures:
        first = failures[0]
        lines.append(f"stopped: {first.plan.kind} {first.plan.namespace}/{first.plan.name}: {first.result.result}: "
                     f"{first.result.detail}\n" if first.result is not None else "")
        not_started = sum(1 for e in entries if e.result is not None and e.result.result == "not started")
        if not_started:
            lines.append(f"{not_started} workloads were not started; run again once it is fixed\n")
    return "".join(lines)


def render_json(entries: Sequence[Entry], args: argparse.Namespace) -> str:
    items = []
    for entry in entries:
        plan = entry.plan
        item: dict[str, Any] = {
            "kind": plan.kind, "namespace": plan.namespace, "name": plan.name, "outcome": plan.outcome,
            "result": _result_text(entry, args.dry_run), "reason": plan.reason,
            "remedy": plan.remedy,
            "action": plan.action or None, "gitops": plan.gitops, "notes": list(plan.notes),
            "patch": list(plan.patch),
        }
        if plan.skip is not None:
            item["skip"] = plan.skip
        if entry.result is not None:
            item.update(ok=entry.result.ok, detail=entry.result.detail)
        items.append(item)
    summary = Counter(e.plan.outcome for e in entries)
    payload = {"dryRun": args.dry_run, "strategy": args.strategy, "items": items,
               "summary": {k: summary[k] for k in ("changed", "unchanged", "skipped")}}
    return orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode() + "\n"


# ---- rescue


def _rescue(state: Run) -> int:
    args = state.args
    state.progress.update("reading failed pods...", force=True)
    failed = state.wapi.list("Pod", namespace=state.scope.namespace, field_selector=FAILED_PODS,
                             label_selector=state.scope.label_selector)
    executor = Executor(state.wapi, state.planner, dry_run=args.dry_run != "none", events=EventRecorder(state.wapi),
                        progress=state.progress, timeout=args.timeout)
    rescuer = Rescuer(state.wapi, state.planner, executor, state.planner.settings, args.dry_run, args.max_deletions,
                      state.labels_published)
    report = rescuer.rescue(failed, state.node_labels)
    state.progress.clear()
    sys.stdout.write(render_rescue_json(report, args) if args.output == "json" else render_rescue_text(report, args))
    failed_entries = [e for e in report.entries if e.result in ("failed",)]
    return EXIT_PROBLEMS if failed_entries else EXIT_OK


def render_rescue_text(report: RescueReport, args: argparse.Namespace) -> str:
    if not report.found:
        return "no pods refused with SysctlForbidden for a managed sysctl\n"
    verb = "would delete" if args.dry_run == "client" else "deleted"
    rows = [("KIND", "NAMESPACE", "NAME", "FAILED", "RESULT", verb.upper(), "DETAIL")]
    rows += [(e.kind, e.namespace, e.name, str(e.failed), e.result, str(e.deleted), e.detail) for e in report.entries]
    lines = [table(rows)]
    lines += [f"node {node}: {what}\n" for node, what in report.nodes]
    summary = f"{report.found} SysctlForbidden pods: {report.deleted} {verb} (oldest first)"
    if report.held_back:
        summary += f", {report.held_back} left by --max-deletions={args.max_deletions}"
    if report.kept_as_evidence:
        summary += f", {report.kept_as_evidence} kept as evidence (the newest on each node)"
    lines.append(summary + "\n")
    if args.dry_run == "client":
        lines.append("dry run: nothing was sent; --dry-run=none rescues them\n")
    elif args.dry_run == "server":
        lines.append("server dry run (dryRun=All): the API server checked every call and stored nothing\n")
    return "".join(lines)


def render_rescue_json(report: RescueReport, args: argparse.Namespace) -> str:
    payload = {
        "dryRun": args.dry_run,
        "items": [{"kind": e.kind, "namespace": e.namespace, "name": e.name, "failedPods": e.failed,
                   "result": e.result, "deletedPods": e.deleted, "detail": e.detail} for e in report.entries],
        "nodes": [{"name": node, "label": what} for node, what in report.nodes],
        "summary": {"found": report.found, "deleted": report.deleted, "keptAsEvidence": report.kept_as_evidence,
                    "heldBack": report.held_back},
    }
    return orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode() + "\n"
