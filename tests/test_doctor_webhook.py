"""`v4only doctor --webhook` against the fake API server: the shipped configuration passes, each hazard is named.

The cluster is reached through a real kubeconfig file (`fake_kube.kubeconfig_path`), as in production; nothing in
the kubernetes client is patched. Certificates are made with this test's own `now`; the command compares them with
the wall clock, so only whole days until expiry depend on it (and those are computed the same way here).
"""

from __future__ import annotations

import argparse
import base64
import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from tests.fakekube import FakeKube, objects
from tests.fakekube.fixtures import running
from tests.server_harness import ServerThread, make_tls
from tests.test_tracker import _permission
from webhook.adapters import rbac_used
from webhook.cli import doctor
from webhook.cli.usage import UsageError
from webhook.core import certs
from webhook.core.webhook_check import excludes
from webhook.loops.state import ClusterState

NS = "v4only-system"
SHIPPED = yaml.safe_load(
    (Path(__file__).parents[1] / "manifests" / "base" / "mutatingwebhookconfiguration.yaml").read_text()
)
HOOKS = ("namespaces.v4only.io", "pods.v4only.io")


@dataclass
class Install:
    ca: certs.KeyPair
    serving: certs.KeyPair
    now: datetime

    def days(self, pem: bytes) -> int:
        """Whole days left, as the command computes them (its clock runs a little after ours)."""
        return (certs.not_after(pem) - self.now).days

    def short(self, pem: bytes) -> str:
        return certs.fingerprint(pem)[:16]


WEBHOOK_SA = f"system:serviceaccount:{NS}:v4only"


def install(
    kube: FakeKube,
    *,
    mutate: Callable[[dict[str, Any]], None] | None = None,
    serving_days: int = 365,
    bundle_ca: certs.KeyPair | None = None,
    node_proxy: bool = False,
) -> Install:
    """The shipped MWC with a caBundle from a CA made by webhook/core/certs.py, and the matching Secret."""
    now = datetime.now(UTC)
    ca = certs.build_ca(common_name="v4only CA", now=now)
    serving = certs.build_serving_cert(
        ca=ca, dns_names=certs.service_dns_names("v4only", NS), now=now, days=serving_days
    )
    mwc = copy.deepcopy(SHIPPED)
    bundle = base64.b64encode((bundle_ca or ca).cert_pem).decode()
    for hook in mwc["webhooks"]:
        hook["clientConfig"]["caBundle"] = bundle
    if mutate:
        mutate(mwc)
    kube.put_object(objects.namespace(NS))
    kube.put_object(mwc)
    tls = {"tls.crt": serving.cert_pem, "tls.key": serving.key_pem}
    kube.put_object(objects.secret("v4only-tls", NS, tls, type="kubernetes.io/tls"))
    if not node_proxy:  # the default install grants no nodes/proxy (manifests/configz-via-proxy/ does)
        kube.deny_node_subresource("proxy", user=WEBHOOK_SA)
    return Install(ca, serving, now)


def doctor_webhook(kube: FakeKube, tmp_path: Path, *extra: str) -> int:
    parser = argparse.ArgumentParser(prog="v4only")
    doctor.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["doctor", "--webhook", "--kubeconfig", str(kube.kubeconfig_path(tmp_path)), *extra])
    status: int = args.func(args)
    return status


def each_hook(change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def mutate(mwc: dict[str, Any]) -> None:
        for hook in mwc["webhooks"]:
            change(hook)

    return mutate


def problems(out: str) -> list[str]:
    lines = out.splitlines()
    if not any(line.startswith("PROBLEMS (") for line in lines):
        return []
    start = next(i for i, line in enumerate(lines) if line.startswith("PROBLEMS ("))
    return [line[2:] for line in lines[start + 1 :]]


# ---- the shipped installation -------------------------------------------------------------------


def test_the_shipped_configuration_passes_with_an_exact_table(
    fake_kube: FakeKube, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    done = install(fake_kube)
    assert doctor_webhook(fake_kube, tmp_path) == 0
    ca, crt = done.ca.cert_pem, done.serving.cert_pem
    ca_expires = f"{certs.not_after(ca):%Y-%m-%d} ({done.days(ca)} d)"
    crt_expires = f"{certs.not_after(crt):%Y-%m-%d} ({done.days(crt)} d)"
    assert done.days(ca) == 3649 and done.days(crt) == 364
    expected = f"""\
webhook configuration v4only: 2 webhooks; v4only namespace: v4only-system

WEBHOOKS (2)
WEBHOOK               CHECK                    VALUE                                RESULT
namespaces.v4only.io  failurePolicy            Ignore                               ok
                      timeoutSeconds           3 s                                  ok
                      sideEffects              None                                 ok
                      admissionReviewVersions  v1                                   ok
                      rules                    pods CREATE                          ok
                      reinvocationPolicy       IfNeeded                             ok
                      namespaceSelector        excludes kube-system, v4only-system  ok
                      caBundle                 1 CA                                 ok
pods.v4only.io        failurePolicy            Ignore                               ok
                      timeoutSeconds           3 s                                  ok
                      sideEffects              None                                 ok
                      admissionReviewVersions  v1                                   ok
                      rules                    pods CREATE                          ok
                      reinvocationPolicy       IfNeeded                             ok
                      namespaceSelector        excludes kube-system, v4only-system  ok
                      caBundle                 1 CA                                 ok

CERTIFICATES (2)
ROLE     SOURCE                           SUBJECT       SHA-256           EXPIRES              SIGNED BY caBundle  RESULT
CA       caBundle                         CN=v4only CA  {done.short(ca)}  {ca_expires}  -                   ok
serving  Secret v4only-system/v4only-tls  CN=v4only     {done.short(crt)}  {crt_expires}   yes                 ok

MUTATING WEBHOOKS CALLED FOR A POD CREATE (2, in call order)
CONFIGURATION  WEBHOOK               TIMEOUT  REINVOCATION   WORST CASE
v4only         namespaces.v4only.io  3 s      IfNeeded (x2)  6 s
v4only         pods.v4only.io        3 s      IfNeeded (x2)  6 s
total: 6 s called once, 12 s worst case with reinvocation (limit 30 s, half the API server's 60 s request deadline): ok

no problems: the webhook cannot block pod creation, and its certificates chain and are current
"""
    assert capsys.readouterr().out == expected


def test_doctor_webhook_reads_only_what_it_declares(fake_kube: FakeKube, tmp_path: Path) -> None:
    install(fake_kube)
    fake_kube.clear_requests()
    assert doctor_webhook(fake_kube, tmp_path) == 0
    assert {_permission(r) for r in fake_kube.requests} == rbac_used.DOCTOR_WEBHOOK
    assert not rbac_used.DOCTOR_WEBHOOK & rbac_used.SERVE  # a person's permissions, not the webhook's


def test_json_output(fake_kube: FakeKube, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    done = install(fake_kube)
    assert doctor_webhook(fake_kube, tmp_path, "-o", "json") == 0
    doc = orjson.loads(capsys.readouterr().out)
    assert doc["problems"] == [] and doc["notes"] == [] and doc["found"] is True
    assert [c["fingerprint"] for c in doc["certificates"]] == [
        certs.fingerprint(done.ca.cert_pem),
        certs.fingerprint(done.serving.cert_pem),
    ]
    assert doc["timeouts"]["onceSeconds"] == 6 and doc["timeouts"]["worstCaseSeconds"] == 12
    assert {(c["webhook"], c["check"]) for c in doc["checks"] if c["status"] != "ok"} == set()


# ---- one case per problem -----------------------------------------------------------------------


def _fail(hook: dict[str, Any]) -> None:
    hook["failurePolicy"] = "Fail"


def _timeout_30(hook: dict[str, Any]) -> None:
    hook["timeoutSeconds"] = 30


def _own_namespace_not_excluded(hook: dict[str, Any]) -> None:
    for expression in hook["namespaceSelector"]["matchExpressions"]:
        if expression["key"] == "kubernetes.io/metadata.name":
            expression["values"] = ["kube-system"]


def _update_too(hook: dict[str, Any]) -> None:
    hook["rules"][0]["operations"] = ["CREATE", "UPDATE"]


def _no_side_effects(hook: dict[str, Any]) -> None:
    hook["sideEffects"] = "Some"


CASES = [
    (
        "fail-policy",
        _fail,
        "failurePolicy Fail: while the webhook is down or unreachable no matching pod can be created, including "
        "the pods that would bring it back; use Ignore",
    ),
    (
        "timeout-30",
        _timeout_30,
        "timeoutSeconds 30 s: above 5 s a slow webhook holds every matching pod creation that long and eats the "
        "request deadline shared with other webhooks; use 5 or less (v4only ships 3)",
    ),
    (
        "own-namespace",
        _own_namespace_not_excluded,
        "namespaceSelector does not exclude v4only-system: pods there are sent to v4only, and its own pods cannot "
        "wait on themselves; add the expression `kubernetes.io/metadata.name NotIn [kube-system, v4only-system]` "
        "(an opt-in label does not count: anyone who may label the namespace opts it in)",
    ),
    (
        "update",
        _update_too,
        "rules also match pods UPDATE: v4only mutates pods on CREATE only (mutating pods on UPDATE can break "
        "finalizer removal, gatekeeper#4121); use resources [pods], operations [CREATE]",
    ),
    (
        "side-effects",
        _no_side_effects,
        'sideEffects Some: dry-run pod requests (`kubectl apply --dry-run=server`, `kubectl diff`) fail with "does '
        'not support dry run"; use None',
    ),
]


@pytest.mark.parametrize(("name", "change", "problem"), CASES, ids=[c[0] for c in CASES])
def test_each_unsafe_webhook_setting_is_one_problem_per_webhook(
    name: str,
    change: Callable[[dict[str, Any]], None],
    problem: str,
    fake_kube: FakeKube,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    install(fake_kube, mutate=each_hook(change))
    assert doctor_webhook(fake_kube, tmp_path) == 1
    out = capsys.readouterr().out
    found = problems(out)
    if name == "timeout-30":  # 2 x 30 s, called twice each: the budget is blown as well
        assert found[-1].startswith("mutating webhooks called for a pod CREATE: worst case 120 s")
        found = found[:-1]
    assert found == [f"{hook}: {problem}" for hook in HOOKS]
    assert "PROBLEM\n" in out  # the table marks the row too


def test_reinvocation_never_is_a_note(fake_kube: FakeKube, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    install(fake_kube, mutate=each_hook(lambda hook: hook.update(reinvocationPolicy="Never")))
    assert doctor_webhook(fake_kube, tmp_path) == 0
    out = capsys.readouterr().out
    assert (
        "- pods.v4only.io: reinvocationPolicy Never: containers that a later webhook adds do not get v4only's env "
        "fallback; IfNeeded calls v4only again (its patch is idempotent)\n"
    ) in out
    assert "total: 6 s called once, 6 s worst case" in out


def test_ca_bundle_from_another_ca(fake_kube: FakeKube, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = certs.build_ca(common_name="someone else's CA", now=datetime.now(UTC))
    done = install(fake_kube, bundle_ca=other)
    assert doctor_webhook(fake_kube, tmp_path) == 1
    assert problems(capsys.readouterr().out) == [
        f"Secret v4only-system/v4only-tls: certificate {done.short(done.serving.cert_pem)} is not signed by a CA in "
        "the caBundle of namespaces.v4only.io, pods.v4only.io: the API server refuses the TLS handshake, so those "
        "calls fail (with failurePolicy Ignore pods are created without v4only)"
    ]


def test_certificate_expiring_in_3_days(fake_kube: FakeKube, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    done = install(fake_kube, serving_days=3)
    crt = done.serving.cert_pem
    assert doctor_webhook(fake_kube, tmp_path) == 1
    assert problems(capsys.readouterr().out) == [
        f"Secret v4only-system/v4only-tls: certificate {done.short(crt)} expires {certs.not_after(crt):%Y-%m-%d} "
        f"(in {done.days(crt)} days): renew it (`v4only certs`, or check the cert-manager Certificate) now"
    ]
    assert done.days(crt) == 2  # whole days left: a few seconds short of 3


def test_certificate_expiring_in_20_days_is_a_note(
    fake_kube: FakeKube, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    done = install(fake_kube, serving_days=20)
    assert doctor_webhook(fake_kube, tmp_path) == 0
    assert f"(in {done.days(done.serving.cert_pem)} days): renew it" in capsys.readouterr().out


def _other(name: str, timeout: int, *, resources: tuple[str, ...] = ("pods",)) -> dict[str, Any]:
    mwc = objects.mutating_webhook_configuration(name, webhook_name=f"{name}.example.com", failure_policy="Fail")
    mwc["webhooks"][0]["timeoutSeconds"] = timeout
    mwc["webhooks"][0]["rules"][0]["resources"] = list(resources)
    return mwc


def test_other_webhooks_summing_past_30_s(
    fake_kube: FakeKube, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    install(fake_kube)
    fake_kube.put_object(_other("istio-sidecar-injector", 10))
    fake_kube.put_object(_other("kyverno", 10, resources=("*",)))
    fake_kube.put_object(_other("deployments-only", 30, resources=("deployments",)))  # never called for pods
    assert doctor_webhook(fake_kube, tmp_path) == 1
    out = capsys.readouterr().out
    assert problems(out) == [
        "mutating webhooks called for a pod CREATE: worst case 32 s with reinvocation (4 webhooks, 26 s called "
        "once each), above 30 s, half the API server's 60 s request deadline: pod creation can time out even with "
        "failurePolicy Ignore (kubernetes#128162); lower timeoutSeconds of istio-sidecar-injector/"
        "istio-sidecar-injector.example.com (10 s), kyverno/kyverno.example.com (10 s), "
        "v4only/namespaces.v4only.io (3 s)"
    ]
    assert "total: 26 s called once, 32 s worst case with reinvocation" in out
    assert "deployments-only" not in out


def test_a_budget_above_15_s_is_a_note(fake_kube: FakeKube, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    install(fake_kube)
    fake_kube.put_object(_other("linkerd-proxy-injector", 10))
    assert doctor_webhook(fake_kube, tmp_path) == 0
    assert "- mutating webhooks called for a pod CREATE: worst case 22 s with reinvocation" in capsys.readouterr().out


def test_missing_webhook_configuration(fake_kube: FakeKube, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    install(fake_kube)
    fake_kube.delete_object("MutatingWebhookConfiguration", "v4only")
    assert doctor_webhook(fake_kube, tmp_path) == 1
    out = capsys.readouterr().out
    assert problems(out) == [
        "MutatingWebhookConfiguration v4only not found: v4only's webhook is not installed (`kubectl apply -k "
        "manifests/`), or it has another name (--webhook-configuration)"
    ]
    assert out.startswith("webhook configuration v4only: not found; v4only namespace: v4only-system\n")


def test_an_unreadable_secret_is_a_note_and_the_rest_is_checked(
    fake_kube: FakeKube, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    install(fake_kube, mutate=each_hook(_fail))
    fake_kube.forbid("get", r"/secrets/")
    assert doctor_webhook(fake_kube, tmp_path) == 1
    out = capsys.readouterr().out
    assert (
        "- Secret v4only-system/v4only-tls not readable (403 Forbidden): the serving certificate was not checked; "
        "grant `get` on secrets in v4only-system, or pass --served-by HOST:PORT (`kubectl port-forward -n "
        "v4only-system svc/v4only 8443:443`)\n"
    ) in out
    assert problems(out)[0].startswith("namespaces.v4only.io: failurePolicy Fail")


def test_a_missing_secret_is_a_problem(fake_kube: FakeKube, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    install(fake_kube)
    fake_kube.delete_object("Secret", "v4only-tls", NS)
    assert doctor_webhook(fake_kube, tmp_path) == 1
    assert problems(capsys.readouterr().out) == [
        "Secret v4only-system/v4only-tls not found: the webhook has no certificate to serve (`v4only certs --secret "
        "v4only-tls`, or check the cert-manager Certificate), or pass --secret"
    ]


# ---- --served-by: a real TLS server on 127.0.0.1 ------------------------------------------------


def test_served_by_a_server_with_a_certificate_from_another_ca(
    fake_kube: FakeKube, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    install(fake_kube)
    tls_dir = tmp_path / "tls"
    tls_dir.mkdir()
    tls = make_tls(tls_dir, ca_name="another CA")
    with ServerThread(tls, state=ClusterState(max_age_seconds=30.0)) as server:
        assert doctor_webhook(fake_kube, tmp_path, "--served-by", f"127.0.0.1:{server.port}") == 1
    served = tls.cert_file.read_bytes()
    found = problems(capsys.readouterr().out)
    short = certs.fingerprint(served)[:16]
    assert found == [
        f"served by 127.0.0.1:{server.port}: certificate {short} is not signed by a CA in the caBundle of "
        "namespaces.v4only.io, pods.v4only.io: the API server refuses the TLS handshake, so those calls fail "
        "(with failurePolicy Ignore pods are created without v4only)",
        f"served by 127.0.0.1:{server.port}: certificate {short} does not name v4only.v4only-system.svc, the host "
        "the API server dials: it refuses the certificate",
        # make_tls issues a 1-day certificate
        f"served by 127.0.0.1:{server.port}: certificate {short} expires {certs.not_after(served):%Y-%m-%d} (in 0 "
        "days): renew it (`v4only certs`, or check the cert-manager Certificate) now",
    ]


def test_served_by_nothing_listening(fake_kube: FakeKube, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    install(fake_kube)
    server = ServerThread(make_tls(tmp_path), state=ClusterState(max_age_seconds=30.0))
    with server:
        port = server.port
    assert doctor_webhook(fake_kube, tmp_path, "--served-by", f"127.0.0.1:{port}") == 1
    assert problems(capsys.readouterr().out) == [
        f"served by 127.0.0.1:{port}: no TLS certificate (unreachable or not TLS); is `kubectl port-forward` running?"
    ]


# ---- usage and unreadable clusters --------------------------------------------------------------


def test_a_bad_served_by_is_a_usage_error(fake_kube: FakeKube, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="expected HOST:PORT"):
        doctor_webhook(fake_kube, tmp_path, "--served-by", "localhost")


def test_an_unreachable_cluster_is_a_usage_error(fake_kube: FakeKube, tmp_path: Path) -> None:
    kubeconfig = fake_kube.kubeconfig_path(tmp_path)
    fake_kube.stop()
    parser = argparse.ArgumentParser(prog="v4only")
    doctor.register(parser.add_subparsers())
    args = parser.parse_args(["doctor", "--webhook", "--kubeconfig", str(kubeconfig)])
    with pytest.raises(UsageError, match=r"cannot read the cluster: .*cannot reach the API server"):
        args.func(args)


def test_webhook_configurations_that_cannot_be_listed_are_a_usage_error(fake_kube: FakeKube, tmp_path: Path) -> None:
    install(fake_kube)
    fake_kube.forbid("list", r"mutatingwebhookconfigurations$")
    with pytest.raises(UsageError, match=r"cannot read the cluster: .*403"):
        doctor_webhook(fake_kube, tmp_path)


# ---- namespace exclusion, exactly what is accepted ----------------------------------------------


@pytest.mark.parametrize(
    ("selector", "excluded"),
    [
        ({}, False),
        ({"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["v4only-system"]}]},
         True),
        ({"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a"]}]}, True),
        ({"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["v4only-system"]}]},
         False),
        ({"matchLabels": {"kubernetes.io/metadata.name": "team-a"}}, True),
        # An opt-in on any other label does not exclude: whoever labels v4only-system opts it in.
        ({"matchExpressions": [{"key": "v4only.io/inject", "operator": "In", "values": ["enabled"]}]}, False),
        ({"matchLabels": {"v4only.io/inject": "enabled"}}, False),
        ({"matchExpressions": [{"key": "v4only.io/inject", "operator": "NotIn", "values": ["enabled"]}]}, False),
    ],
)
def test_what_counts_as_excluding_a_namespace(selector: dict[str, Any], excluded: bool) -> None:
    assert excludes(selector, "v4only-system") is excluded


# ---- the webhook's ServiceAccount and nodes/proxy


def _notes(out: str) -> list[str]:
    lines = out.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("NOTES (")), None)
    if start is None:
        return []
    return [line[2:] for line in itertools.takewhile(lambda line: line.startswith("- "), lines[start + 1 :])]


def test_a_service_account_with_nodes_proxy_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with running() as kube:
        install(kube, node_proxy=True)
        assert doctor_webhook(kube, tmp_path) == 0  # a warning, not a problem: the component may be a choice
        notes = _notes(capsys.readouterr().out)
        reviews = [r for r in kube.requests if r.path.endswith("/subjectaccessreviews")]
    assert any(n.startswith(f"WARNING: ServiceAccount {NS}/v4only can `get nodes/proxy` (SubjectAccessReview)")
               for n in notes), notes
    assert reviews[0].body["spec"]["user"] == WEBHOOK_SA
    assert reviews[0].body["spec"]["resourceAttributes"] == {
        "verb": "get", "group": "", "resource": "nodes", "subresource": "proxy"
    }


def test_the_default_install_gets_no_warning(fake_kube: FakeKube, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    install(fake_kube)
    assert doctor_webhook(fake_kube, tmp_path) == 0
    assert not [n for n in _notes(capsys.readouterr().out) if "nodes/proxy" in n]


def test_without_subjectaccessreviews_a_person_is_told_it_was_not_checked(
    fake_kube: FakeKube, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    install(fake_kube)
    fake_kube.forbid("POST", r"/subjectaccessreviews$")
    assert doctor_webhook(fake_kube, tmp_path) == 0
    notes = _notes(capsys.readouterr().out)
    assert any("could not check whether ServiceAccount" in n and "does not run as" in n for n in notes), notes


def test_run_as_the_service_account_it_asks_with_a_selfsubjectaccessreview(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with running(user=WEBHOOK_SA) as kube:
        install(kube, node_proxy=True)
        kube.forbid("POST", r"/subjectaccessreviews$")  # a ServiceAccount cannot create SubjectAccessReviews
        assert doctor_webhook(kube, tmp_path) == 0
        notes = _notes(capsys.readouterr().out)
        kinds = [r.body.get("kind") for r in kube.requests if r.method == "POST"]
    assert any("can `get nodes/proxy` (SelfSubjectAccessReview)" in n for n in notes), notes
    assert kinds == ["SubjectAccessReview", "SelfSubjectReview", "SelfSubjectAccessReview"]
