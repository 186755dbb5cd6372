"""The replica cache (webhook/server/replay.py): a replayed answer is exactly the answer a fresh endpoint gives.

The oracle throughout is a second AdmissionEndpoint that has never seen the body (so it cannot replay):
whatever the cache does, the bytes it returns must mean the same as that endpoint's answer.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import FIXTURES, admission_review, pod
from tests.test_properties import CAPABILITIES, pods
from webhook.core.capability import Capability, NodeFacts
from webhook.core.settings import Settings
from webhook.loops.state import ClusterState
from webhook.server.app import AdmissionEndpoint
from webhook.server.metrics import Metrics
from webhook.server.replay import REPLAY_BODY_LIMIT, ReplayCache, split_uid

OPTED_IN = {"team": {"v4only.io/inject": "enabled"}}
CHRONICLE = orjson.loads((FIXTURES / "admission" / "chronicle-allowed.request.json").read_bytes())


def capability(*allowlist: str) -> Capability:
    nodes = [NodeFacts(name=f"n{i}", labels={}, allowlist=allowlist) for i in range(2)]
    return Capability.build(nodes, sysctl_names=Settings().sysctl_names, labels_published=True)


def endpoint(state: ClusterState) -> AdmissionEndpoint:
    return AdmissionEndpoint(state=state, settings=Settings(), metrics=Metrics())


def body_for(obj: dict[str, Any], uid: str, namespace: str = "team") -> bytes:
    return orjson.dumps(admission_review(obj, uid=uid, namespace=namespace))


def fresh_answer(state: ClusterState, body: bytes) -> Any:
    return orjson.loads(endpoint(state).answer(body)[1])


def replayed(e: AdmissionEndpoint) -> float:
    return e.metrics.replayed._value.get()


def requests(e: AdmissionEndpoint, outcome: str) -> float:
    return e.metrics.outcomes[outcome]._value.get()


# ---- split_uid


def test_split_uid_cuts_out_the_request_uid_only() -> None:
    body = orjson.dumps(CHRONICLE)
    uid = CHRONICLE["request"]["uid"].encode()
    key, found = split_uid(body) or (b"", b"")
    assert found == uid
    assert len(key) == len(body) - len(uid) and uid not in key
    other = copy.deepcopy(CHRONICLE)
    other["request"]["uid"] = "another-uid-of-a-different-length"
    assert split_uid(orjson.dumps(other)) == (key, b"another-uid-of-a-different-length")


@pytest.mark.parametrize(
    "body",
    [
        b'{"request":{"uid":"with\\"quote"}}',  # an escape: not in the API server's form
        b'{"request":{"uid":"sp ace"}}',
        b'{"request":{"uid":"\xc3\xa9"}}',  # non-ASCII
        b'{"request":{"uid":""}}',
        b'{"request":{"uid":"' + b"a" * 129 + b'"}}',
        b'{"request":{"uid":"unterminated',
        b'{"request": {"uid": "spaced"}}',  # not Go's compact encoding: no anchor
        b'{"request":{"kind":{},"uid":"later"}}',  # uid not first: no anchor
        b"[]",
    ],
)
def test_split_uid_refuses_bodies_not_in_the_api_servers_form(body: bytes) -> None:
    assert split_uid(body) is None


def test_split_uid_refuses_a_body_over_the_limit() -> None:
    review = admission_review(pod(), uid="u")
    review["request"]["object"]["metadata"]["annotations"] = {"big": "x" * REPLAY_BODY_LIMIT}
    assert split_uid(orjson.dumps(review)) is None


# ---- the endpoint


def test_a_replica_is_answered_from_the_cache_with_its_own_uid() -> None:
    state = ClusterState.static(capability("net.ipv6.*"), {"chronicle": {"v4only.io/inject": "enabled"}})
    e = endpoint(state)
    first = copy.deepcopy(CHRONICLE)
    second = copy.deepcopy(CHRONICLE)
    second["request"]["uid"] = "0f6f3c1e-2b7a-4d7e-8c51-1a2b3c4d5e6f"
    status1, answer1 = e.answer(orjson.dumps(first))
    status2, answer2 = e.answer(orjson.dumps(second))
    assert (status1, status2) == (200, 200)
    assert replayed(e) == 1
    assert requests(e, "mutated") == 2  # a replayed answer is counted like any other
    payload = orjson.loads(answer2)
    assert payload["response"]["uid"] == "0f6f3c1e-2b7a-4d7e-8c51-1a2b3c4d5e6f"
    assert "patch" in payload["response"]
    assert payload == fresh_answer(state, orjson.dumps(second))
    assert orjson.loads(answer1)["response"]["uid"] == first["request"]["uid"]


def test_a_different_pod_is_not_replayed() -> None:
    state = ClusterState.static(capability("net.ipv6.*"), OPTED_IN)
    e = endpoint(state)
    e.answer(body_for(pod(), "u1"))
    changed = pod()
    changed["metadata"]["labels"]["v4only.io/remedy"] = "env"
    _, answer = e.answer(body_for(changed, "u2"))
    assert replayed(e) == 0
    assert orjson.loads(answer) == fresh_answer(state, body_for(changed, "u2"))


def test_new_capability_or_namespace_labels_are_never_answered_from_the_cache() -> None:
    state = ClusterState(max_age_seconds=60, clock=lambda: 0.0)
    state.publish(capability("net.ipv6.*"), OPTED_IN)
    e = endpoint(state)
    before = orjson.loads(e.answer(body_for(pod(), "u1"))[1])
    state.publish(capability(), OPTED_IN)  # the nodes stopped allowing the sysctl
    after = orjson.loads(e.answer(body_for(pod(), "u2"))[1])
    assert replayed(e) == 0
    assert after == fresh_answer(state, body_for(pod(), "u2"))
    assert after["response"]["patch"] != before["response"]["patch"]
    state.publish(capability(), {"team": {"v4only.io/inject": "disabled"}})  # the namespace opted out
    out = orjson.loads(e.answer(body_for(pod(labels={}), "u3"))[1])
    assert replayed(e) == 0 and "patch" not in out["response"]


def test_a_confirmed_snapshot_keeps_its_answers() -> None:
    state = ClusterState(max_age_seconds=60, clock=lambda: 0.0)
    state.publish(capability("net.ipv6.*"), OPTED_IN)
    e = endpoint(state)
    e.answer(body_for(pod(), "u1"))
    state.confirm()  # the watches are alive, nothing changed
    e.answer(body_for(pod(), "u2"))
    assert replayed(e) == 1


def test_nothing_is_replayed_while_capability_is_stale() -> None:
    now = [0.0]
    state = ClusterState(max_age_seconds=60, clock=lambda: now[0])
    state.publish(capability("net.ipv6.*"), OPTED_IN)
    e = endpoint(state)
    now[0] = 61.0
    answers = [orjson.loads(e.answer(body_for(pod(), f"u{i}"))[1]) for i in range(3)]
    now[0] = 80.0  # the stale reason names the age, so a replay would be visibly wrong
    late = orjson.loads(e.answer(body_for(pod(), "u9"))[1])
    assert replayed(e) == 0
    assert all("61s old" in " ".join(a["response"]["warnings"]) for a in answers)
    assert "80s old" in " ".join(late["response"]["warnings"])


def test_a_crafted_first_anchor_that_is_not_the_request_uid_is_never_stored() -> None:
    # Two `request` keys: orjson keeps the last, so the first anchor's uid is not the request uid.
    state = ClusterState.static(capability("net.ipv6.*"), OPTED_IN)
    e = endpoint(state)
    real = body_for(pod(), "real-uid")
    decoy = b'{"request":{"uid":"decoy-1"},' + real[1:]
    assert orjson.loads(e.answer(decoy)[1])["response"]["uid"] == "real-uid"
    again = b'{"request":{"uid":"decoy-2"},' + real[1:]
    assert orjson.loads(e.answer(again)[1])["response"]["uid"] == "real-uid"
    assert replayed(e) == 0


def test_malformed_and_erroring_requests_are_not_stored() -> None:
    state = ClusterState.static(capability("net.ipv6.*"), OPTED_IN)
    e = endpoint(state)
    bad = b'{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u1","object":[}}'
    for uid in (b"u1", b"u2"):
        status, answer = e.answer(bad.replace(b"u1", uid))
        assert status == 400 and b"not valid JSON" in answer
    assert len(e.replays) == 0


def test_the_cache_is_bounded_in_entries_and_bytes() -> None:
    state = ClusterState.static(capability("net.ipv6.*"), OPTED_IN)
    e = endpoint(state)
    e.replays = ReplayCache(max_entries=3, max_bytes=10_000)
    bodies = [body_for(pod(labels={"v4only.io/inject": "enabled", "i": str(i)}), f"u{i}") for i in range(5)]
    for body in bodies:
        e.answer(body)
    assert len(e.replays) == 3
    e.answer(bodies[0].replace(b'"u0"', b'"v0"'))  # the oldest was dropped
    assert replayed(e) == 0
    e.answer(bodies[4].replace(b'"u4"', b'"v4"'))
    assert replayed(e) == 1
    big = ReplayCache(max_entries=100, max_bytes=3 * len(bodies[0]))
    e.replays = big
    for body in bodies:
        e.answer(body)
    assert 0 < len(big) < 3 and big.size <= 3 * len(bodies[0])


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    obj=pods(),
    namespace=st.sampled_from(["team", "off"]),
    which=st.integers(0, len(CAPABILITIES) - 1),
    uid=st.from_regex(r"[0-9a-f-]{1,40}", fullmatch=True),
)
def test_replayed_answers_equal_fresh_answers(obj: Any, namespace: str, which: int, uid: str) -> None:
    namespaces = {"team": {"v4only.io/inject": "enabled"}, "off": {"v4only.io/inject": "disabled"}}
    state = ClusterState.static(CAPABILITIES[which], namespaces)
    e = endpoint(state)
    e.answer(body_for(obj, "first-uid", namespace))
    body = body_for(obj, uid, namespace)
    _, answer = e.answer(body)
    assert replayed(e) == 1
    assert orjson.loads(answer) == fresh_answer(state, body)
