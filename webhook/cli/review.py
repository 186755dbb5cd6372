"""`v4only review [FILE|-]`: the webhook's decision on a file, with no server (a dry run).

Input: Pods, workloads (their pod template), CronJobs (their job's template) or AdmissionReviews, as
YAML or JSON, several documents allowed. The decision and the patch come from the same core functions
the server calls (`decide`, `plan_patch`, `review_request`), so the two can never disagree.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson
import yaml

from webhook.adapters import files
from webhook.cli.diffs import unified_yaml_diff
from webhook.cli.usage import KUBECONFIG_HELP, UsageError, parse_labels
from webhook.core import keys
from webhook.core.admission import build_response, parse_review, review_request
from webhook.core.capability import Capability, node_facts_from_object
from webhook.core.decision import Decision, decide
from webhook.core.dns_remedy import MAX_NAMESERVERS, DnsFacts
from webhook.core.errors import InvalidReview, UnhandledObject
from webhook.core.patch import Op, apply_patch, plan_patch
from webhook.core.settings import Settings
from webhook.core.workloads import TEMPLATE_POINTERS, check_containers, namespace_of, pod_template

OUTPUTS = ("diff", "yaml", "json", "review")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "review", help="show what the webhook would do to a Pod, workload or AdmissionReview"
    )
    parser.add_argument("file", nargs="?", default="-", help="YAML or JSON file, or - for standard input (default)")
    parser.add_argument("-o", "--output", choices=OUTPUTS, default="diff")
    capability = parser.add_mutually_exclusive_group()
    capability.add_argument("--nodes", help="a Node list (YAML/JSON) to take node capability from")
    capability.add_argument("--assume", choices=("allowed", "forbidden"), help="assume every node allows/forbids")
    namespaces = parser.add_mutually_exclusive_group()
    namespaces.add_argument("--namespace-labels", help="labels of the object's namespace: k=v,k2=v2")
    namespaces.add_argument("--namespace-file", help="Namespace objects (YAML/JSON) to take labels from")
    dns = parser.add_argument_group("cluster DNS (offline; live review reads the DNS probe's published finding)")
    dns.add_argument("--dns-trap", action="append", default=[], metavar="DOMAIN",
                     help="a node search domain that answers NODATA (repeatable)")
    dns.add_argument("--cluster-dns", action="append", default=[], metavar="IP",
                     help="the cluster DNS address pods get (repeatable; kubelet clusterDNS)")
    dns.add_argument("--cluster-domain", metavar="DOMAIN", help="the cluster domain (kubelet clusterDomain)")
    dns.add_argument("--aaaa-blocked", choices=("nxdomain", "noerror-empty"),
                     help="the cluster DNS hides AAAA records this way (a CoreDNS template)")
    parser.add_argument("--config", help="settings YAML (as in the v4only-config ConfigMap)")
    parser.add_argument("--kubeconfig", metavar="FILE", help=KUBECONFIG_HELP)
    parser.add_argument("--context", help="kubeconfig context")
    parser.set_defaults(func=run)


@dataclass(frozen=True)
class Inputs:
    settings: Settings
    capability: Capability
    # Labels by namespace name; `default_labels` applies to namespaces not listed (None = not known).
    namespaces: Mapping[str, Mapping[str, str]]
    default_labels: Mapping[str, str] | None


@dataclass(frozen=True)
class Result:
    """One reviewed document: the object before and after, the operations, and the decision."""

    before: Any
    after: Any
    ops: tuple[Op, ...]
    decision: Decision | None
    warnings: tuple[str, ...]
    response: dict[str, Any] | None  # None: passed through (no pod template), as `kubectl apply` would leave it


def run(args: argparse.Namespace) -> int:
    try:
        documents = files.load_documents(files.read_input(args.file), source=files.source_name(args.file))
        inputs = _inputs(args)
    except files.InputError as error:
        raise UsageError(str(error)) from None
    if not documents:
        raise UsageError(f"{_source(args.file)} holds no documents")
    results = [_review_document(doc, inputs, index) for index, doc in enumerate(documents)]
    passed = [_display_name(r.before) for r in results if r.response is None]
    if passed:  # a kustomize build mixes ConfigMaps, Services... with workloads: not an error, said once
        print(f"v4only review: passed through unchanged (no pod template): {', '.join(passed)}", file=sys.stderr)
    sys.stdout.write(render(results, args.output))
    return 0


def _source(path: str) -> str:
    return "standard input" if path == "-" else path


def _inputs(args: argparse.Namespace) -> Inputs:
    settings = files.load_settings(args.config)
    cluster_namespaces: Mapping[str, Mapping[str, str]] | None = None
    if args.nodes:
        capability = capability_from_file(args.nodes, settings)
    elif args.assume:
        capability = Capability.assume(args.assume, "--assume")
    else:
        capability, cluster_namespaces = _from_cluster(args, settings)
    if args.dns_trap or args.cluster_dns or args.cluster_domain or args.aaaa_blocked:
        capability = replace(capability, dns=dns_facts_from_flags(args))
    if args.namespace_file:
        return Inputs(settings, capability, namespaces_from_file(args.namespace_file), None)
    if args.namespace_labels is None and cluster_namespaces is not None:
        return Inputs(settings, capability, cluster_namespaces, None)
    return Inputs(settings, capability, {}, parse_labels(args.namespace_labels or ""))


def _from_cluster(
    args: argparse.Namespace, settings: Settings
) -> tuple[Capability, Mapping[str, Mapping[str, str]]]:
    """Live capability and namespace labels, read the way `doctor` reads them."""
    from webhook.cli.cluster_facts import read_cluster  # only this path talks to a cluster

    facts = read_cluster(args, hint=" (or give --nodes FILE or --assume allowed|forbidden)")
    return facts.capability(settings), facts.namespaces


def dns_facts_from_flags(args: argparse.Namespace) -> DnsFacts:
    for address in args.cluster_dns:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise UsageError(f"--cluster-dns: {address!r} is not an IP address") from None
    if len(args.cluster_dns) > MAX_NAMESERVERS:
        raise UsageError(f"--cluster-dns: at most {MAX_NAMESERVERS} (the API server's dnsConfig limit)")
    traps = tuple(domain.strip(".") for domain in args.dns_trap)
    return DnsFacts(known=True, traps=traps, nameservers=tuple(args.cluster_dns),
                    cluster_domain=args.cluster_domain.strip(".") if args.cluster_domain else None,
                    aaaa_nxdomain=args.aaaa_blocked == "nxdomain")


def capability_from_file(path: str, settings: Settings) -> Capability:
    nodes = [d for d in files.load_documents(files.read_input(path), source=path) if _kind(d) == "Node"]
    if not nodes:
        raise UsageError(f"{path} holds no Node objects")
    facts = [node_facts_from_object(n) for n in nodes]
    # Offline, the only sign that labels are published is a node that carries one.
    published = any(keys.NODE_CAPABILITY in f.labels for f in facts)
    return Capability.build(facts, sysctl_names=settings.sysctl_names, labels_published=published)


def namespaces_from_file(path: str) -> dict[str, Mapping[str, str]]:
    found: dict[str, Mapping[str, str]] = {}
    for doc in files.load_documents(files.read_input(path), source=path):
        if _kind(doc) == "Namespace":
            meta = doc.get("metadata") or {}
            found[str(meta.get("name", ""))] = dict(meta.get("labels") or {})
    if not found:
        raise UsageError(f"{path} holds no Namespace objects")
    return found


def _kind(doc: Any) -> str | None:
    return doc.get("kind") if isinstance(doc, Mapping) else None


def _labels_for(namespace: str, inputs: Inputs) -> Mapping[str, str] | None:
    return inputs.namespaces.get(namespace, inputs.default_labels)


def _review_document(doc: Any, inputs: Inputs, index: int) -> Result:
    if _kind(doc) == "AdmissionReview":
        return _review_admission(doc, inputs, index)
    if not isinstance(doc, Mapping):
        raise UsageError(f"document {index + 1} is not an object")
    kind = doc.get("kind")
    if not isinstance(kind, str) or not kind:
        raise UsageError(f"document {index + 1} has no kind")
    if kind not in TEMPLATE_POINTERS:
        return Result(doc, doc, (), None, (), None)
    try:
        template, pointer = pod_template(doc)
        check_containers(template)  # whatever the decision: it must not depend on the assumption given
        namespace = namespace_of(doc)
        decision = decide(
            template,
            namespace=namespace,
            namespace_labels=_labels_for(namespace, inputs),
            capability=inputs.capability,
            settings=inputs.settings,
            daemonset=_kind(doc) == "DaemonSet",
        )
        plan = plan_patch(template, decision, inputs.settings, base=pointer)
    except UnhandledObject as error:
        raise UsageError(f"document {index + 1} ({_display_name(doc)}): {error}") from None
    warnings = (*decision.warnings, *plan.warnings) if decision.managed else ()
    uid = f"v4only-review-{index + 1}"
    response = build_response(uid, ops=plan.ops, warnings=list(warnings))
    return Result(doc, apply_patch(doc, plan.ops), plan.ops, decision, warnings, response)


def _review_admission(doc: Mapping[str, Any], inputs: Inputs, index: int) -> Result:
    try:
        request = parse_review(doc)
    except InvalidReview as error:
        raise UsageError(f"document {index + 1}: {error}") from None
    namespace = str(request.get("namespace") or "")
    labels = _labels_for(namespace, inputs)
    review = review_request(
        request,
        namespaces={namespace: labels} if labels is not None else {},
        capability=inputs.capability,
        settings=inputs.settings,
    )
    before = request.get("object")
    warnings = tuple(review.response["response"].get("warnings", ()))
    after = apply_patch(before, review.plan.ops)
    return Result(before, after, review.plan.ops, review.decision, warnings, review.response)


def render(results: list[Result], output: str) -> str:
    """`yaml`/`json` keep every object in place and in order; `diff`/`review` show the reviewed ones."""
    if output == "review":
        return _json([r.response for r in results if r.response is not None])
    if output == "json":
        return _json([r.after for r in results])
    if output == "yaml":
        return yaml.safe_dump_all([r.after for r in results], sort_keys=False, allow_unicode=True)
    return "".join(_render_diff(r) for r in results if r.response is not None)


def _json(items: list[Any]) -> str:
    payload = items[0] if len(items) == 1 else {"apiVersion": "v1", "kind": "List", "items": items}
    return orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode() + "\n"


def _render_diff(result: Result) -> str:
    name = _display_name(result.before)
    diff = unified_yaml_diff(
        result.before, result.after, from_name=f"{name} (as given)", to_name=f"{name} (as admitted)"
    )
    lines = [diff] if diff else [f"{name}: no change\n"]
    decision = result.decision
    if decision is None:
        lines.append("decision: skipped (only Pod CREATE is reviewed)\n")
    elif decision.remedy is None:
        lines.append(f"decision: not managed\nreason: {decision.reason}\n")
    else:
        lines.append(f"decision: {decision.applied}\nreason: {decision.reason}\n")
    shown = () if decision is None else (decision.lines or (decision.reason,))  # already on the reason line
    lines += [f"warning: {w}\n" for w in result.warnings if w not in shown]
    return "".join(lines)


def _display_name(obj: Any) -> str:
    if not isinstance(obj, Mapping):
        return "object"
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    name = meta.get("name") or (f"{meta['generateName']}*" if meta.get("generateName") else "(no name)")
    return f"{obj.get('kind') or 'Pod'}/{name}"
