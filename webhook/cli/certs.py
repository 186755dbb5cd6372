"""`v4only certs`: create, renew and roll over the webhook's CA and serving certificate.

Safe to run again at any time (a CronJob does, daily): a serving certificate valid for longer than
`--renew-before` is kept; otherwise it is reissued. A CA too close to expiry to sign a full-length serving
certificate is rolled over: the new CA joins the old one in every webhook's `caBundle` (written BEFORE the new
serving certificate), and the old CA leaves the bundle only once every replica serves a certificate from the
new CA (checked over TLS), or once it expires.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from webhook.adapters import cert_files, kube_certs, tls_probe
from webhook.adapters.kube import KubeApi, KubeError
from webhook.cli.usage import EXIT_OK, EXIT_PROBLEMS, KUBECONFIG_HELP, UsageError, connect
from webhook.core import cert_renewal, certs

DEFAULT_SERVICE = "v4only"
DEFAULT_NAMESPACE = "v4only-system"
DEFAULT_WEBHOOK_CONFIGURATION = "v4only"
DEFAULT_CA_SECRET = "v4only-ca"
TLS_SECRET_TYPE = "kubernetes.io/tls"

_DURATION_RE = re.compile(r"(\d+)([dhms])")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "certs",
        help="create or renew the webhook's CA and serving certificate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out-dir", metavar="DIR", help="write ca.crt, ca.key, ca-bundle.crt, tls.crt, tls.key")
    target.add_argument("--secret", metavar="NAME", help="write a kubernetes.io/tls Secret (e.g. v4only-tls)")
    parser.add_argument(
        "--ca-secret",
        metavar="NAME",
        default=DEFAULT_CA_SECRET,
        help=f"with --secret: the Secret holding the CA (default {DEFAULT_CA_SECRET})",
    )
    parser.add_argument("--service", default=DEFAULT_SERVICE, help=f"Service name (default {DEFAULT_SERVICE})")
    parser.add_argument(
        "--namespace", default=DEFAULT_NAMESPACE, help=f"its namespace, and the Secrets' (default {DEFAULT_NAMESPACE})"
    )
    parser.add_argument("--dns-name", action="append", default=[], metavar="NAME", help="an extra DNS name (repeat)")
    parser.add_argument("--ip-address", action="append", default=[], metavar="IP", help="an IP address SAN (repeat)")
    parser.add_argument(
        "--webhook-configuration",
        metavar="NAME",
        help="MutatingWebhookConfiguration whose caBundle to set "
        f"(default with --secret: {DEFAULT_WEBHOOK_CONFIGURATION}; with --out-dir: none)",
    )
    parser.add_argument(
        "--no-webhook-configuration", action="store_true", help="do not touch any MutatingWebhookConfiguration"
    )
    parser.add_argument(
        "--renew-before",
        default="30d",
        metavar="DURATION",
        help="renew a serving certificate that expires within this (e.g. 30d, 720h; default 30d)",
    )
    parser.add_argument("--days", type=int, default=365, help="serving certificate lifetime in days (default 365)")
    parser.add_argument("--ca-days", type=int, default=3650, help="CA lifetime in days (default 3650)")
    parser.add_argument("--rotate-ca", action="store_true", help="start a CA rollover now")
    parser.add_argument(
        "--retire-old-cas",
        action="store_true",
        help="drop old CAs from the bundle now (only when you know no replica serves an old certificate)",
    )
    parser.add_argument(
        "--served-by",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="a replica to ask which certificate it serves (repeat); "
        "with --secret the Service's ready endpoints are asked by default",
    )
    parser.add_argument("--no-probe", action="store_true", help="do not contact the replicas")
    parser.add_argument("--dry-run", action="store_true", help="say what would change; write nothing")
    parser.add_argument("--kubeconfig", metavar="FILE", help=KUBECONFIG_HELP)
    parser.add_argument("--context", help="kubeconfig context")
    parser.set_defaults(func=run)


@dataclass
class _Stored:
    ca: certs.KeyPair | None
    serving: certs.KeyPair | None
    trusted: bytes
    webhook_bundles: dict[str, bytes] | None  # None: no webhook configuration (missing, or not asked for)


def run(args: argparse.Namespace) -> int:
    request = _request_from(args)
    mwc_name = _webhook_configuration(args)
    served_by = [_parse_host_port(value) for value in args.served_by]
    now = datetime.now(UTC)
    api: KubeApi | None = None
    if args.secret or mwc_name:
        api = connect(args)  # like every command: no cluster configuration is a usage error (exit 2)
    try:
        return _run(args, request, mwc_name, served_by, api, now)
    except KubeError as error:
        return _fail(str(error))
    except OSError as error:
        return _fail(f"{getattr(error, 'filename', None) or ''}: {error.strerror or error}".lstrip(": "))


def _run(
    args: argparse.Namespace,
    request: cert_renewal.CertRequest,
    mwc_name: str | None,
    served_by: list[tuple[str, int]],
    api: Any,
    now: datetime,
) -> int:
    stored = _read_stored(args, api, mwc_name)
    served = _observe_served(args, api, served_by)
    plan = cert_renewal.plan_certs(
        request, ca=stored.ca, serving=stored.serving, trusted=stored.trusted, served=served, now=now
    )
    for note in plan.notes:
        _say(note)
    if args.dry_run:
        _say("dry run: nothing written")
        return EXIT_OK

    status = EXIT_OK
    # The CA first (its key must never be lost), then the bundle, then the serving certificate: the API server must
    # trust a new chain before any replica can present it.
    if args.secret:
        outcome = kube_certs.write_secret(
            api,
            args.namespace,
            args.ca_secret,
            {"tls.crt": plan.ca.cert_pem, "tls.key": plan.ca.key_pem},
            secret_type=TLS_SECRET_TYPE,
        )
        _say(f"Secret {args.namespace}/{args.ca_secret}: {outcome}")
    if mwc_name:
        if stored.webhook_bundles is None:
            _warn(
                f"MutatingWebhookConfiguration {mwc_name} not found: caBundle not written (apply the manifests, rerun)"
            )
            status = EXIT_PROBLEMS
        else:
            changed = kube_certs.write_webhook_ca_bundle(api, mwc_name, plan.bundle)
            what = f"caBundle set on {', '.join(changed)}" if changed else "caBundle unchanged"
            _say(f"MutatingWebhookConfiguration {mwc_name}: {what}")
    if args.secret:
        outcome = kube_certs.write_secret(
            api,
            args.namespace,
            args.secret,
            {"tls.crt": plan.serving.cert_pem, "tls.key": plan.serving.key_pem, "ca.crt": plan.ca.cert_pem},
            secret_type=TLS_SECRET_TYPE,
        )
        _say(f"Secret {args.namespace}/{args.secret}: {outcome}")
    else:
        directory = Path(args.out_dir)
        written = cert_files.write_cert_dir(directory, ca=plan.ca, serving=plan.serving, bundle=plan.bundle)
        _say(f"{directory}: {'wrote ' + ', '.join(written) if written else 'unchanged'}")
    return status


def _read_stored(args: argparse.Namespace, api: Any, mwc_name: str | None) -> _Stored:
    trusted: list[bytes] = []
    if args.secret:
        ca_data = kube_certs.read_secret(api, args.namespace, args.ca_secret) or {}
        tls_data = kube_certs.read_secret(api, args.namespace, args.secret) or {}
        ca = _pair(ca_data.get("tls.crt"), ca_data.get("tls.key"))
        serving = _pair(tls_data.get("tls.crt"), tls_data.get("tls.key"))
        trusted.append(tls_data.get("ca.crt") or b"")  # the CA that issued what the replicas mount now
    else:
        stored = cert_files.read_cert_dir(Path(args.out_dir))
        ca, serving = stored.ca, stored.serving
        trusted.append(stored.bundle or b"")
    bundles = kube_certs.read_webhook_ca_bundles(api, mwc_name) if mwc_name else None
    if bundles:
        trusted.extend(bundles.values())
    return _Stored(ca=ca, serving=serving, trusted=b"".join(trusted), webhook_bundles=bundles)


def _observe_served(args: argparse.Namespace, api: Any, served_by: list[tuple[str, int]]) -> list[bytes] | None:
    """The certificate each replica serves now; None when unknown (then old CAs stay in the bundle)."""
    if args.no_probe:
        return None
    targets = served_by
    if not targets and args.secret:
        try:
            targets = kube_certs.ready_endpoints(api, args.namespace, args.service)
        except KubeError as error:
            _say(f"replicas: cannot list the endpoints of Service {args.namespace}/{args.service}: {error}")
            return None
    if not targets:
        return None
    server_name = f"{args.service}.{args.namespace}.svc"
    served: list[bytes] = []
    for host, port in targets:
        pem = tls_probe.served_certificate(host, port, server_name=server_name)
        if pem is None:
            _say(f"replicas: {_host_port(host, port)} did not answer over TLS; treating the rollover as unfinished")
            return None
        served.append(pem)
    return served


def _request_from(args: argparse.Namespace) -> cert_renewal.CertRequest:
    if args.no_webhook_configuration and args.webhook_configuration:
        raise UsageError("--webhook-configuration and --no-webhook-configuration exclude each other")
    if not args.secret and args.ca_secret != DEFAULT_CA_SECRET:
        raise UsageError("--ca-secret needs --secret")
    if args.no_probe and args.served_by:
        raise UsageError("--no-probe and --served-by exclude each other")
    for address in args.ip_address:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise UsageError(f"--ip-address {address!r} is not an IP address") from None
    dns_names = certs.service_dns_names(args.service, args.namespace)
    dns_names += [name for name in args.dns_name if name not in dns_names]
    try:
        return cert_renewal.CertRequest(
            dns_names=tuple(dns_names),
            ip_addresses=tuple(args.ip_address),
            renew_before=parse_duration(args.renew_before),
            ca_days=args.ca_days,
            serving_days=args.days,
            rotate_ca=args.rotate_ca,
            retire_old_cas=args.retire_old_cas,
        )
    except ValueError as error:
        raise UsageError(str(error)) from None


def _webhook_configuration(args: argparse.Namespace) -> str | None:
    if args.no_webhook_configuration:
        return None
    if args.webhook_configuration:
        return str(args.webhook_configuration)
    return DEFAULT_WEBHOOK_CONFIGURATION if args.secret else None


def parse_duration(text: str) -> timedelta:
    """`30d`, `720h`, `1d12h`, `90m`, `3600s`; a bare number is days."""
    text = text.strip()
    if text.isdigit():
        return timedelta(days=int(text))
    parts = _DURATION_RE.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise UsageError(f"--renew-before {text!r}: expected a duration such as 30d or 720h")
    unit_seconds = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    return timedelta(seconds=sum(int(number) * unit_seconds[unit] for number, unit in parts))


def _parse_host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--served-by {text!r}: expected HOST:PORT (IPv6 as [addr]:port)")
    return host.removeprefix("[").removesuffix("]"), int(port)


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _pair(cert_pem: bytes | None, key_pem: bytes | None) -> certs.KeyPair | None:
    return certs.KeyPair(cert_pem=cert_pem, key_pem=key_pem) if cert_pem and key_pem else None


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")


def _warn(line: str) -> None:
    sys.stderr.write(f"v4only certs: {line}\n")


def _fail(message: str) -> int:
    _warn(message)
    return EXIT_PROBLEMS
