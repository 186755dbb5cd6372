"""`v4only doctor`: read the cluster once, then explain per node and per namespace what v4only does.

The reading is `cluster_facts.gather`; the explaining is pure (`webhook.core.diagnosis`), so the output can
be compared exactly in tests. Exit status: 0 no problems, 1 problems (defined in diagnosis.py), 2 bad
usage or a cluster that cannot be read (one line on stderr). `--webhook` checks the installation instead
(`webhook/cli/doctor_webhook.py`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from webhook.cli import doctor_webhook
from webhook.cli.cluster_facts import read_cluster
from webhook.cli.usage import KUBECONFIG_HELP, load_settings
from webhook.core.diagnosis import diagnose
from webhook.core.diagnosis_render import render_json, render_table


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "doctor", help="explain, per node and per namespace, what v4only does and what to fix"
    )
    parser.add_argument("--kubeconfig", metavar="FILE", help=KUBECONFIG_HELP)
    parser.add_argument("--context", help="kubeconfig context")
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")
    parser.add_argument("--config", help="settings YAML (as in the v4only-config ConfigMap)")
    webhook = parser.add_argument_group(
        "installation checks (--webhook)",
        "check the installed MutatingWebhookConfiguration, its caBundle and serving certificate, and the timeouts "
        "of every mutating webhook called for a pod CREATE, instead of nodes and namespaces",
    )
    webhook.add_argument("--webhook", action="store_true", help="check the installation (see above)")
    webhook.add_argument(
        "--webhook-configuration", default="v4only", metavar="NAME", help="MutatingWebhookConfiguration (v4only)"
    )
    webhook.add_argument("--namespace", default="v4only-system", help="v4only's namespace (v4only-system)")
    webhook.add_argument("--secret", default="v4only-tls", help="serving certificate Secret, key tls.crt (v4only-tls)")
    webhook.add_argument(
        "--served-by",
        metavar="HOST:PORT",
        help="also check the certificate served there (e.g. `kubectl port-forward -n v4only-system svc/v4only "
        "8443:443`, then 127.0.0.1:8443)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.webhook:
        return doctor_webhook.run(args)
    settings = load_settings(args.config)
    facts = read_cluster(args)
    diagnosis = diagnose(
        facts.nodes,
        configz_errors=facts.configz_errors,
        configz_paths=facts.configz_paths,
        serve_reads=facts.serve_reads,
        read_at=facts.read_at,
        namespaces=facts.namespaces,
        rejections=facts.rejections,
        settings=settings,
        labels_published=facts.labels_published,
        pods_error=facts.pods_error,
        dns=facts.dns,
        kubelet_dns=facts.kubelet_dns,
        corefiles=facts.corefiles,
    )
    sys.stdout.write(render_json(diagnosis) if args.output == "json" else render_table(diagnosis))
    return diagnosis.exit_status
