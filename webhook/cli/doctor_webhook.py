"""`v4only doctor --webhook`: read the installed webhook configuration and its certificates, then judge them.

The reading is here; the judging is pure (`webhook.core.webhook_check`). Reads: every
MutatingWebhookConfiguration (one `list`: v4only's own and the others, whose timeouts add up with v4only's), the
serving Secret's `tls.crt` (a 403 is reported and the rest is still checked), and with `--served-by HOST:PORT`
the certificate a replica actually serves (through `kubectl port-forward`, for example), and whether the
webhook's ServiceAccount can `get nodes/proxy` (a warning: see webhook/adapters/access_review.py). Permissions:
`webhook/adapters/rbac_used.py` DOCTOR_WEBHOOK. Exit status: 0 no problems, 1 problems, 2 bad usage or a cluster
that cannot be read (one line on stderr).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from datetime import UTC, datetime

from webhook.adapters import access_review, kube_certs, tls_probe
from webhook.adapters.kube import KubeApi, KubeError
from webhook.cli.usage import UsageError, connect
from webhook.core.webhook_check import check_webhook, service_host
from webhook.core.webhook_report import ServingSource, render_json, render_table


def run(args: argparse.Namespace) -> int:
    served_by = parse_host_port(args.served_by) if args.served_by else None
    api = connect(args)
    try:
        configurations = kube_certs.list_webhook_configurations(api)
        secret = read_serving_secret(api, args.namespace, args.secret)
        node_proxy = access_review.can_get_node_subresource(api, "proxy", namespace=args.namespace, name="v4only")
    except KubeError as error:
        raise UsageError(f"cannot read the cluster: {error}") from None
    finally:
        api.close()
    sources = [secret]
    if served_by is not None:
        host, port = served_by
        sni = service_host(configurations, name=args.webhook_configuration, namespace=args.namespace)
        pem = tls_probe.served_certificate(host, port, server_name=sni)
        sources.append(ServingSource("served", args.served_by, pem, "" if pem else "unreachable or not TLS"))
    report = check_webhook(
        configurations,
        name=args.webhook_configuration,
        namespace=args.namespace,
        serving=sources,
        now=datetime.now(UTC),
    )
    note = node_proxy_note(node_proxy, f"{args.namespace}/v4only")
    report = replace(report, notes=(*report.notes, note)) if note else report
    sys.stdout.write(render_json(report) if args.output == "json" else render_table(report))
    return report.exit_status


def node_proxy_note(answer: access_review.AccessAnswer, account: str) -> str:
    """A warning when the webhook's ServiceAccount holds `get nodes/proxy` (nothing when it does not)."""
    if answer.allowed is None:
        return f"could not check whether ServiceAccount {account} can `get nodes/proxy`: {answer.how}"
    if not answer.allowed:
        return ""
    return (
        f"WARNING: ServiceAccount {account} can `get nodes/proxy` ({answer.how}). On the kubelet that also "
        "authorizes exec/run in every pod on every node. v4only reads kubelets with `nodes/configz`; it uses "
        "nodes/proxy only with manifests/configz-via-proxy/. Remove the grant unless you chose that (README, "
        "Permissions)"
    )


def read_serving_secret(api: KubeApi, namespace: str, name: str) -> ServingSource:
    """The Secret's `tls.crt` (the same Secret whether `v4only certs` or cert-manager writes it)."""
    where = f"{namespace}/{name}"
    try:
        data = kube_certs.read_secret(api, namespace, name)
    except KubeError as error:
        if error.status != 403:
            raise
        return ServingSource("secret", where, None, "403 Forbidden")
    if data is None:
        return ServingSource("secret", where, None, "not found")
    if not data.get("tls.crt"):
        return ServingSource("secret", where, None, "no tls.crt in the Secret")
    return ServingSource("secret", where, data["tls.crt"])


def parse_host_port(value: str) -> tuple[str, int]:
    """HOST:PORT (an IPv6 host in brackets: [::1]:8443)."""
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--served-by {value!r}: expected HOST:PORT, for example 127.0.0.1:8443")
    return host, int(port)
