"""The patch builder: parents created, lists appended to and never replaced, keys escaped, idempotent."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import apply_ops, pod, validate
from webhook.core.decision import Decision
from webhook.core.errors import UnhandledObject
from webhook.core.patch import apply_patch, escape, plan_patch
from webhook.core.settings import Settings, parse_settings

SETTINGS = Settings()
SYSCTL = {"name": "net.ipv6.conf.all.disable_ipv6", "value": "1"}
ENV = Decision("env", "env: test")
UV_OFFLINE = Decision("env", "env: test", uv_offline=True)  # UV_NO_SYNC too (asked, or uv known to fail)
SYSCTL_DECISION = Decision("sysctl", "sysctl: test")
PINNED = Decision("sysctl+affinity", "sysctl+affinity: test")


@pytest.mark.parametrize(("key", "escaped"), [
    ("v4only.io/applied", "v4only.io~1applied"),
    ("a~b", "a~0b"),
    ("~1/", "~01~1"),
    ("plain", "plain"),
])
def test_json_pointer_escaping(key: str, escaped: str) -> None:
    assert escape(key) == escaped


def patched(p: dict[str, Any], decision: Decision, settings: Settings = SETTINGS) -> dict[str, Any]:
    plan = plan_patch(p, decision, settings)
    result = apply_ops(p, list(plan.ops))
    assert apply_patch(p, plan.ops) == result  # v4only's own applier agrees with jsonpatch
    validate(result)
    assert plan_patch(result, decision, settings).ops == ()  # idempotent
    return result


def test_sysctl_creates_every_missing_parent() -> None:
    result = patched(pod(), SYSCTL_DECISION)
    assert result["spec"]["securityContext"] == {"sysctls": [SYSCTL]}
    assert result["metadata"]["annotations"] == {"v4only.io/applied": "sysctl", "v4only.io/reason": "sysctl: test"}


def test_sysctl_is_appended_next_to_other_entries_and_never_duplicated() -> None:
    own = [{"name": "net.ipv4.tcp_keepalive_time", "value": "600"}]
    result = patched(pod(securityContext={"runAsUser": 1000, "sysctls": own}), SYSCTL_DECISION)
    assert result["spec"]["securityContext"] == {"runAsUser": 1000, "sysctls": [*own, SYSCTL]}
    slash = pod(securityContext={"sysctls": [{"name": "net/ipv6/conf/all/disable_ipv6", "value": "1"}]})
    assert not [op for op in plan_patch(slash, SYSCTL_DECISION, SETTINGS).ops if "sysctls" in op["path"]]


def test_null_parents_are_treated_as_missing() -> None:
    result = patched(pod(securityContext=None), SYSCTL_DECISION)
    assert result["spec"]["securityContext"] == {"sysctls": [SYSCTL]}


def test_env_reaches_containers_and_init_containers_but_not_ephemeral_ones() -> None:
    p = pod(initContainers=[{"name": "init", "image": "i"}],
            ephemeralContainers=[{"name": "debug", "image": "busybox"}])
    result = patched(p, UV_OFFLINE)
    names = ["NODE_OPTIONS", "JAVA_TOOL_OPTIONS", "UV_NO_SYNC", "UV_PYTHON_DOWNLOADS"]
    assert [e["name"] for e in result["spec"]["containers"][0]["env"]] == names
    assert [e["name"] for e in result["spec"]["initContainers"][0]["env"]] == names
    assert "env" not in result["spec"]["ephemeralContainers"][0]


def test_env_respects_what_the_container_already_sets() -> None:
    env = [
        {"name": "UV_NO_SYNC", "value": "0"},
        {"name": "NODE_OPTIONS", "value": "--max-old-space-size=512 --dns-result-order=ipv4first"},
        {"name": "JAVA_TOOL_OPTIONS", "value": "-Xmx1g"},
        {"name": "UV_PYTHON_DOWNLOADS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    result = patched(pod(containers=[{"name": "app", "image": "a", "env": env}]), UV_OFFLINE)
    assert result["spec"]["containers"][0]["env"] == [
        {"name": "UV_NO_SYNC", "value": "0"},
        {"name": "NODE_OPTIONS", "value": "--max-old-space-size=512 --dns-result-order=ipv4first"},
        {"name": "JAVA_TOOL_OPTIONS", "value": "-Xmx1g -Djava.net.preferIPv4Stack=true"},
        {"name": "UV_PYTHON_DOWNLOADS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]


def test_append_leaves_value_from_alone() -> None:
    env = [{"name": "NODE_OPTIONS", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}]
    result = patched(pod(containers=[{"name": "app", "image": "a", "env": env}]), ENV)
    assert result["spec"]["containers"][0]["env"][0] == env[0]


def test_env_removes_the_managed_sysctl_and_says_so() -> None:
    own = [{"name": "net.ipv4.tcp_keepalive_time", "value": "600"}, SYSCTL, {"name": "kernel.shm_rmid_forced", "value": "1"}]
    plan = plan_patch(pod(securityContext={"sysctls": own}), ENV, SETTINGS)
    assert plan.warnings == ("v4only removed net.ipv6.conf.all.disable_ipv6 from the pod: it could not run here",)
    result = patched(pod(securityContext={"sysctls": own}), ENV)
    assert result["spec"]["securityContext"]["sysctls"] == [own[0], own[2]]


def test_several_managed_sysctls_are_removed_highest_index_first() -> None:
    two = parse_settings({"sysctls": [{"name": "net.ipv6.conf.all.disable_ipv6", "value": "1"},
                                      {"name": "net.ipv6.conf.default.disable_ipv6", "value": "1"}]})
    own = [{"name": "net.ipv6.conf.default.disable_ipv6", "value": "1"}, {"name": "a.b", "value": "1"}, SYSCTL]
    ops = plan_patch(pod(securityContext={"sysctls": own}), ENV, two).ops
    assert [op["path"] for op in ops[:2]] == ["/spec/securityContext/sysctls/2", "/spec/securityContext/sysctls/0"]


AFFINITY_CASES = [
    ("no affinity", {}, [[{"key": "v4only.io/ipv6-sysctl", "operator": "In", "values": ["allowed"]}]]),
    ("pod affinity only", {"affinity": {"podAntiAffinity": {}}},
     [[{"key": "v4only.io/ipv6-sysctl", "operator": "In", "values": ["allowed"]}]]),
    ("two terms", {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]},
        ]}}}},
     [[{"key": "zone", "operator": "In", "values": ["a"]},
       {"key": "v4only.io/ipv6-sysctl", "operator": "In", "values": ["allowed"]}],
      [{"key": "v4only.io/ipv6-sysctl", "operator": "In", "values": ["allowed"]}]]),
    ("preferred only", {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 1, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}}]}}},
     [[{"key": "v4only.io/ipv6-sysctl", "operator": "In", "values": ["allowed"]}]]),
]


@pytest.mark.parametrize(("case", "spec", "expected"), AFFINITY_CASES, ids=[c[0] for c in AFFINITY_CASES])
def test_pin_is_added_to_every_required_term(case: str, spec: dict[str, Any], expected: list[Any]) -> None:
    result = patched(pod(**spec), PINNED)
    terms = result["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"]
    assert [t.get("matchExpressions") for t in terms] == expected
    assert result["spec"]["securityContext"]["sysctls"] == [SYSCTL]


def test_workload_templates_are_patched_under_their_pointer() -> None:
    template = pod()
    ops = plan_patch(template, SYSCTL_DECISION, SETTINGS, base="/spec/template").ops
    assert {op["path"] for op in ops} == {"/spec/template/spec/securityContext", "/spec/template/metadata/annotations"}


def test_unmanaged_gets_nothing() -> None:
    assert plan_patch(pod(), Decision(None, "not managed"), SETTINGS).ops == ()


@pytest.mark.parametrize("spec", [
    {"containers": "app"},
    {"containers": [{"name": "a", "image": "a", "env": {"A": "1"}}]},
    {"containers": [{"name": "a", "image": "a"}], "securityContext": {"sysctls": "x"}},
    {"containers": ["a"]},
])
def test_unreadable_specs_raise_a_clear_error(spec: dict[str, Any]) -> None:
    with pytest.raises(UnhandledObject):
        plan_patch({"metadata": {}, "spec": spec}, ENV, SETTINGS)


def test_uv_offline_variables_only_when_the_decision_says_so() -> None:
    """remedy-lab.md: UV_NO_SYNC breaks an image that relies on `uv run` to install at start."""
    plain = patched(pod(), ENV)["spec"]["containers"][0]["env"]
    assert [e["name"] for e in plain] == ["NODE_OPTIONS", "JAVA_TOOL_OPTIONS"]
    asked = patched(pod(), Decision("sysctl", "sysctl: test", uv_offline=True))["spec"]["containers"][0]["env"]
    assert asked == [{"name": "UV_NO_SYNC", "value": "1"}, {"name": "UV_PYTHON_DOWNLOADS", "value": "never"}]


# ---- issue 10 items 1 and 3: the pin goes when the remedy changes; empty terms stay empty

PIN = {"key": "v4only.io/ipv6-sysctl", "operator": "In", "values": ["allowed"]}
ZONE_A = {"key": "zone", "operator": "In", "values": ["a"]}
ON_N1 = {"key": "metadata.name", "operator": "In", "values": ["n1"]}


def _terms(*terms: dict[str, Any]) -> dict[str, Any]:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}}


def test_an_empty_term_stays_empty_when_the_others_are_pinned() -> None:
    # nodeaffinity.go isEmptyNodeSelectorTerm: an empty term selects no node; pinned, it would select some.
    for empty in ({}, {"matchExpressions": []}, {"matchExpressions": [], "matchFields": []}):
        result = patched(pod(affinity=_terms({"matchExpressions": [ZONE_A]}, empty)), PINNED)
        assert result["spec"]["affinity"] == _terms({"matchExpressions": [ZONE_A, PIN]}, empty)


UNPIN_CASES = [
    ("v4only made the whole affinity", {"nodeAffinity": _terms({"matchExpressions": [PIN]})["nodeAffinity"]}, None),
    ("pod anti-affinity stays", {"podAntiAffinity": {}, **_terms({"matchExpressions": [PIN]})},
     {"podAntiAffinity": {}}),
    ("preferred terms stay", {"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": {"matchExpressions": [ZONE_A]}}],
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [PIN]}]}}},
     {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
         {"weight": 1, "preference": {"matchExpressions": [ZONE_A]}}]}}),
    ("the user's terms stay, without the pin",
     _terms({"matchExpressions": [ZONE_A, PIN]}, {"matchExpressions": [PIN], "matchFields": [ON_N1]},
            {"matchExpressions": [PIN]}, {}),
     _terms({"matchExpressions": [ZONE_A]}, {"matchFields": [ON_N1]}, {})),
    ("an affinity without the pin is left alone", _terms({"matchExpressions": [ZONE_A]}),
     _terms({"matchExpressions": [ZONE_A]})),
]


@pytest.mark.parametrize("decision", [ENV, SYSCTL_DECISION, Decision("none", "none: test")],
                         ids=lambda d: d.remedy)
@pytest.mark.parametrize(("case", "affinity", "expected"), UNPIN_CASES, ids=[c[0] for c in UNPIN_CASES])
def test_the_pin_goes_when_the_remedy_is_not_sysctl_affinity(
    case: str, affinity: dict[str, Any], expected: dict[str, Any] | None, decision: Decision
) -> None:
    result = patched(pod(affinity=affinity), decision)
    assert result["spec"].get("affinity") == expected
