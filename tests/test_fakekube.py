"""The fake API server, exercised only through the real `kubernetes` client over real HTTP.

Every request carries a timeout and every watch a timeoutSeconds, so nothing here can hang.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes import client, config, watch

from tests.fakekube import FakeKube, objects
from tests.fakekube.server import ALT_USER, DEFAULT_USER

pytest_plugins = ["tests.fakekube.fixtures"]

T = 5  # seconds: request timeout for every call
MERGE = "application/merge-patch+json"


@pytest.fixture
def core(kube_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(kube_client)


@pytest.fixture
def apps(kube_client: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(kube_client)


def status_of(error: client.ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(error.body)
    return body


def api_error(call: Callable[[], Any]) -> client.ApiException:
    with pytest.raises(client.ApiException) as info:
        call()
    return info.value


def take(events: Iterator[dict[str, Any]], count: int) -> list[tuple[str, str]]:
    """The first `count` events as (type, name); the stream's own timeout bounds the wait."""
    seen = []
    for event in events:
        seen.append((event["type"], event["raw_object"]["metadata"].get("name", "")))
        if len(seen) == count:
            break
    return seen


# ------------------------------------------------------------------------------------------------ basics


def test_kubeconfig_bearer_token_and_second_context(fake_kube: FakeKube, tmp_path: Path) -> None:
    path = fake_kube.kubeconfig_path(tmp_path, second_context="other")
    for context, user in (("fakekube", DEFAULT_USER), ("other", ALT_USER)):
        with config.new_client_from_config(config_file=str(path), context=context) as api:
            client.CoreV1Api(api).list_namespace(_request_timeout=T)
        assert fake_kube.requests[-1].user == user
    anonymous = client.Configuration(host=fake_kube.url, api_key={"authorization": "Bearer wrong"})
    with client.ApiClient(anonymous) as api:
        error = api_error(lambda: client.CoreV1Api(api).list_namespace(_request_timeout=T))
    assert error.status == 401
    assert status_of(error) == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                "message": "Unauthorized", "reason": "Unauthorized", "code": 401}


def test_version_and_system_namespaces(kube_client: client.ApiClient, core: client.CoreV1Api) -> None:
    assert client.VersionApi(kube_client).get_code(_request_timeout=T).git_version == "v1.33.1"
    names = {ns.metadata.name for ns in core.list_namespace(_request_timeout=T).items}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names
    ns = core.read_namespace("default", _request_timeout=T)
    assert ns.metadata.labels == {"kubernetes.io/metadata.name": "default"}
    assert ns.status.phase == "Active"


def test_builders_deserialise_through_the_v37_client(fake_kube: FakeKube, kube_client: client.ApiClient) -> None:
    core, apps = client.CoreV1Api(kube_client), client.AppsV1Api(kube_client)
    batch, coord = client.BatchV1Api(kube_client), client.CoordinationV1Api(kube_client)
    rs = objects.replicaset_for("web")
    built = [
        (objects.node("n1"), lambda: core.read_node("n1", _request_timeout=T)),
        (objects.node("n2", ready=None), lambda: core.read_node("n2", _request_timeout=T)),
        (objects.namespace("team", labels={"v4only.io/inject": "enabled"}),
         lambda: core.read_namespace("team", _request_timeout=T)),
        (objects.pod("p", node_name="n1"), lambda: core.read_namespaced_pod("p", "default", _request_timeout=T)),
        (objects.sysctl_forbidden_pod("n1", replicaset=rs, name="web-x"),
         lambda: core.read_namespaced_pod("web-x", "default", _request_timeout=T)),
        (objects.configmap("cm", data={"a": "b"}),
         lambda: core.read_namespaced_config_map("cm", "default", _request_timeout=T)),
        (objects.secret("s", data={"k": b"v"}), lambda: core.read_namespaced_secret("s", "default", _request_timeout=T)),
        (objects.service("svc"), lambda: core.read_namespaced_service("svc", "default", _request_timeout=T)),
        (objects.deployment("web"), lambda: apps.read_namespaced_deployment("web", "default", _request_timeout=T)),
        (rs, lambda: apps.read_namespaced_replica_set(rs["metadata"]["name"], "default", _request_timeout=T)),
        (objects.statefulset("db"), lambda: apps.read_namespaced_stateful_set("db", "default", _request_timeout=T)),
        (objects.daemonset("agent"), lambda: apps.read_namespaced_daemon_set("agent", "default", _request_timeout=T)),
        (objects.job("once"), lambda: batch.read_namespaced_job("once", "default", _request_timeout=T)),
        (objects.cronjob("tick"), lambda: batch.read_namespaced_cron_job("tick", "default", _request_timeout=T)),
        (objects.lease("lock", holder="me"), lambda: coord.read_namespaced_lease("lock", "default", _request_timeout=T)),
        (objects.mutating_webhook_configuration("v4only"),
         lambda: client.AdmissionregistrationV1Api(kube_client).read_mutating_webhook_configuration(
             "v4only", _request_timeout=T)),
    ]
    for obj, read in built:
        fake_kube.put_object(obj)
        assert read().metadata.name == obj["metadata"]["name"]


def test_sysctl_forbidden_pod_is_shaped_like_the_kubelets_rejection(fake_kube: FakeKube,
                                                                     core: client.CoreV1Api) -> None:
    rs = objects.replicaset_for("chronicle")
    fake_kube.put_object(objects.sysctl_forbidden_pod("node-a", replicaset=rs))
    fake_kube.put_object(objects.pod("healthy", node_name="node-a"))
    failed = core.list_namespaced_pod("default", field_selector="status.phase=Failed", _request_timeout=T).items
    assert len(failed) == 1
    pod = failed[0]
    assert (pod.status.phase, pod.status.reason) == ("Failed", "SysctlForbidden")
    assert pod.status.message == 'Pod was rejected: forbidden sysctl: "net.ipv6.conf.all.disable_ipv6" not allowlisted'
    assert pod.spec.node_name == "node-a"
    owner = pod.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller) == ("ReplicaSet", rs["metadata"]["name"], True)
    event = fake_kube.put_object(objects.sysctl_forbidden_event(fake_kube.get_object("Pod", pod.metadata.name)))
    assert event["message"] == 'forbidden sysctl: "net.ipv6.conf.all.disable_ipv6" not allowlisted'


# ---------------------------------------------------------------------------------------- list and get


def test_label_selector_operators(fake_kube: FakeKube, core: client.CoreV1Api) -> None:
    for name, labels in (("a", {"app": "web", "tier": "1"}), ("b", {"app": "db", "tier": "2"}), ("c", {"app": "web"})):
        fake_kube.put_object(objects.pod(name, labels=labels))

    def names(selector: str) -> list[str]:
        pods = core.list_namespaced_pod("default", label_selector=selector, _request_timeout=T).items
        return [p.metadata.name for p in pods]

    assert names("app=web") == names("app==web") == ["a", "c"]
    assert names("app!=web") == ["b"]
    assert names("tier!=1") == ["b", "c"]  # != also selects pods without the key
    assert names("app in (db, web),tier") == ["a", "b"]
    assert names("tier notin (1)") == ["b", "c"]
    assert names("!tier") == ["c"]
    assert names("tier>1") == ["b"]
    assert api_error(lambda: names("app in (web")).status == 400


def test_field_selectors_and_all_namespaces(fake_kube: FakeKube, core: client.CoreV1Api,
                                            apps: client.AppsV1Api) -> None:
    fake_kube.put_object(objects.namespace("team"))
    fake_kube.put_object(objects.pod("p1", node_name="n1"))
    fake_kube.put_object(objects.pod("p2", "team", node_name="n2"))
    fake_kube.put_object(objects.deployment("web", "team"))
    everywhere = core.list_pod_for_all_namespaces(field_selector="spec.nodeName=n2", _request_timeout=T)
    assert [(p.metadata.namespace, p.metadata.name) for p in everywhere.items] == [("team", "p2")]
    assert len(core.list_pod_for_all_namespaces(field_selector="metadata.namespace!=team", _request_timeout=T).items) == 1
    assert [d.metadata.name for d in apps.list_deployment_for_all_namespaces(_request_timeout=T).items] == ["web"]
    error = api_error(lambda: core.list_namespaced_pod("default", field_selector="spec.foo=x", _request_timeout=T))
    assert (error.status, status_of(error)["message"]) == (400, "field label not supported: spec.foo")


def test_list_wire_shape_and_paging(fake_kube: FakeKube, core: client.CoreV1Api) -> None:
    for i in range(5):
        fake_kube.put_object(objects.configmap(f"cm{i}"))
    raw = core.list_namespaced_config_map("default", limit=2, _preload_content=False, _request_timeout=T)
    page = json.loads(raw.data)
    assert (page["kind"], page["apiVersion"]) == ("ConfigMapList", "v1")
    assert page["metadata"]["resourceVersion"] == fake_kube.resource_version
    assert page["metadata"]["remainingItemCount"] == 3
    assert "kind" not in page["items"][0]  # items of a typed list carry no kind/apiVersion
    names, token = [i["metadata"]["name"] for i in page["items"]], page["metadata"]["continue"]
    for _ in range(5):
        chunk = core.list_namespaced_config_map("default", limit=2, _continue=token, _request_timeout=T)
        names += [c.metadata.name for c in chunk.items]
        token = chunk.metadata._continue
        if not token:
            break
    assert names == [f"cm{i}" for i in range(5)]


def test_get_missing_is_a_not_found_status(core: client.CoreV1Api, apps: client.AppsV1Api) -> None:
    error = api_error(lambda: apps.read_namespaced_deployment("nope", "default", _request_timeout=T))
    assert status_of(error) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'deployments.apps "nope" not found', "reason": "NotFound",
        "details": {"name": "nope", "group": "apps", "kind": "deployments"}, "code": 404}


# ----------------------------------------------------------------------------------------------- writes


def test_create_sets_system_fields_generate_name_and_conflicts(fake_kube: FakeKube, core: client.CoreV1Api,
                                                               apps: client.AppsV1Api) -> None:
    before = int(fake_kube.resource_version)
    created = apps.create_namespaced_deployment("default", objects.deployment("web"), _request_timeout=T)
    assert int(created.metadata.resource_version) == before + 1
    assert created.metadata.generation == 1
    assert created.status.replicas is None  # the apiserver resets status on create
    error = api_error(lambda: apps.create_namespaced_deployment("default", objects.deployment("web"),
                                                                _request_timeout=T))
    assert (error.status, status_of(error)["reason"]) == (409, "AlreadyExists")
    assert status_of(error)["message"] == 'deployments.apps "web" already exists'

    body = objects.pod("ignored")
    body["metadata"] = {"generateName": "web-"}
    pod = core.create_namespaced_pod("default", body, _request_timeout=T)
    assert pod.metadata.name.startswith("web-") and len(pod.metadata.name) == len("web-") + 5
    assert (pod.status.phase, pod.status.qos_class) == ("Pending", "BestEffort")

    error = api_error(lambda: core.create_namespaced_pod("ghost", objects.pod("p", "ghost"), _request_timeout=T))
    assert (error.status, status_of(error)["message"]) == (404, 'namespaces "ghost" not found')
    error = api_error(lambda: core.create_namespaced_pod("kube-system", objects.pod("p"), _request_timeout=T))
    assert status_of(error)["message"] == (
        "the namespace of the provided object does not match the namespace sent on the request")


def test_update_conflict_generation_and_status_subresource(apps: client.AppsV1Api) -> None:
    created = apps.create_namespaced_deployment("default", objects.deployment("web"), _request_timeout=T)
    created.spec.replicas = 3
    updated = apps.replace_namespaced_deployment("web", "default", created, _request_timeout=T)
    assert updated.metadata.generation == 2
    stale = created  # still carries the first resourceVersion
    stale.spec.replicas = 5
    error = api_error(lambda: apps.replace_namespaced_deployment("web", "default", stale, _request_timeout=T))
    assert status_of(error) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'Operation cannot be fulfilled on deployments.apps "web": the object has been modified; '
                   "please apply your changes to the latest version and try again",
        "reason": "Conflict", "details": {"name": "web", "group": "apps", "kind": "deployments"}, "code": 409}

    # metadata-only change: no generation bump; an identical write is a no-op that keeps the resourceVersion
    labelled = apps.patch_namespaced_deployment("web", "default", {"metadata": {"labels": {"x": "y"}}},
                                                _request_timeout=T)
    assert labelled.metadata.generation == 2
    again = apps.patch_namespaced_deployment("web", "default", {"metadata": {"labels": {"x": "y"}}},
                                             _request_timeout=T)
    assert again.metadata.resource_version == labelled.metadata.resource_version

    # status is only writable through /status, and writing it does not bump generation
    ignored = apps.patch_namespaced_deployment("web", "default", {"status": {"replicas": 9}}, _request_timeout=T)
    assert ignored.status.replicas is None
    status = apps.patch_namespaced_deployment_status("web", "default", {"status": {"replicas": 3}},
                                                     _request_timeout=T)
    assert (status.status.replicas, status.metadata.generation) == (3, 2)


def test_patch_types(fake_kube: FakeKube, apps: client.AppsV1Api) -> None:
    containers = [objects.container("app", env={"A": "1"}), objects.container("sidecar", "registry.example/side:1")]
    apps.create_namespaced_deployment("default", objects.deployment("web", containers=containers,
                                                                    sysctls={"kernel.shm_rmid_forced": "1"}),
                                      _request_timeout=T)
    # strategic merge (the client's default for a dict body): containers and env merge by name,
    # sysctls (listType=atomic) are replaced
    strategic = {"spec": {"template": {"spec": {
        "containers": [{"name": "app", "env": [{"name": "B", "value": "2"}]}, {"name": "sidecar", "$patch": "delete"}],
        "securityContext": {"sysctls": [{"name": "net.ipv6.conf.all.disable_ipv6", "value": "1"}]}}}}}
    spec = apps.patch_namespaced_deployment("web", "default", strategic, _request_timeout=T).spec.template.spec
    assert [c.name for c in spec.containers] == ["app"]
    assert [(e.name, e.value) for e in spec.containers[0].env] == [("A", "1"), ("B", "2")]
    assert spec.containers[0].image == "registry.example/app:1.0"
    assert [s.name for s in spec.security_context.sysctls] == ["net.ipv6.conf.all.disable_ipv6"]
    recorded = fake_kube.requests[-1]
    assert (recorded.method, recorded.path, recorded.content_type, recorded.body) == (
        "PATCH", "/apis/apps/v1/namespaces/default/deployments/web",
        "application/strategic-merge-patch+json", strategic)

    # JSON merge patch replaces lists wholesale
    merge = {"spec": {"template": {"spec": {"containers": [{"name": "only", "image": "x:1"}]}}}}
    spec = apps.patch_namespaced_deployment("web", "default", merge, _content_type=MERGE,
                                            _request_timeout=T).spec.template.spec
    assert [(c.name, c.env) for c in spec.containers] == [("only", None)]

    # JSON patch (a list body), and a failing test op is 422 Invalid
    ops = [{"op": "add", "path": "/metadata/annotations/v4only.io~1applied", "value": "sysctl"}]
    patched = apps.patch_namespaced_deployment("web", "default", ops, _request_timeout=T)
    assert patched.metadata.annotations["v4only.io/applied"] == "sysctl"
    failing = [{"op": "test", "path": "/spec/replicas", "value": 7}]
    error = api_error(lambda: apps.patch_namespaced_deployment("web", "default", failing, _request_timeout=T))
    assert (error.status, status_of(error)["reason"]) == (422, "Invalid")


def test_patch_resource_version_precondition_and_injected_conflicts(fake_kube: FakeKube,
                                                                    apps: client.AppsV1Api) -> None:
    rv = apps.create_namespaced_deployment("default", objects.deployment("web"),
                                           _request_timeout=T).metadata.resource_version
    apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 2}}, _request_timeout=T)
    stale = {"metadata": {"resourceVersion": rv}, "spec": {"replicas": 3}}
    for content_type in (MERGE, "application/strategic-merge-patch+json"):
        error = api_error(lambda ct=content_type: apps.patch_namespaced_deployment(
            "web", "default", stale, _content_type=ct, _request_timeout=T))
        assert (error.status, status_of(error)["reason"]) == (409, "Conflict")

    fake_kube.conflict_next("Deployment", "web", times=2)
    for _ in range(2):
        error = api_error(lambda: apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 4}},
                                                                   _request_timeout=T))
        assert error.status == 409
    assert apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 4}},
                                            _request_timeout=T).spec.replicas == 4


def test_delete_answers_and_preconditions(fake_kube: FakeKube, core: client.CoreV1Api) -> None:
    fake_kube.put_object(objects.configmap("cm"))
    fake_kube.put_object(objects.pod("p"))
    stale = client.V1DeleteOptions(preconditions=client.V1Preconditions(resource_version="1"))
    error = api_error(lambda: core.delete_namespaced_config_map("cm", "default", body=stale, _request_timeout=T))
    assert status_of(error)["message"].startswith(
        'Operation cannot be fulfilled on configmaps "cm": Precondition failed: ResourceVersion in precondition: 1,')
    gone = core.delete_namespaced_config_map("cm", "default", propagation_policy="Background", _request_timeout=T)
    assert gone == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                    "details": {"name": "cm", "kind": "configmaps", "uid": gone["details"]["uid"]}}
    deleted_pod = core.delete_namespaced_pod("p", "default", _request_timeout=T)  # pods return the object
    assert deleted_pod.metadata.name == "p"
    assert fake_kube.list_objects("Pod", "default") == []


def test_dry_run_changes_nothing_and_is_recorded(fake_kube: FakeKube, core: client.CoreV1Api,
                                                 apps: client.AppsV1Api) -> None:
    dry = apps.create_namespaced_deployment("default", objects.deployment("web"), dry_run="All", _request_timeout=T)
    assert dry.metadata.uid and not dry.metadata.resource_version
    assert fake_kube.get_object("Deployment", "web") is None

    real = fake_kube.put_object(objects.deployment("web"))
    rv = fake_kube.resource_version
    patched = apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 5}}, dry_run="All",
                                               _request_timeout=T)
    assert patched.spec.replicas == 5 and patched.metadata.generation == 2
    replaced = apps.replace_namespaced_deployment("web", "default", {**real, "spec": {**real["spec"], "replicas": 7}},
                                                  dry_run="All", _request_timeout=T)
    assert replaced.spec.replicas == 7
    apps.delete_namespaced_deployment("web", "default", dry_run="All", _request_timeout=T)
    assert fake_kube.get_object("Deployment", "web")["spec"]["replicas"] == 1
    assert fake_kube.resource_version == rv
    assert [r.method for r in fake_kube.requests if r.dry_run] == ["POST", "PATCH", "PUT", "DELETE"]


def test_leases_and_webhook_configurations(fake_kube: FakeKube, kube_client: client.ApiClient) -> None:
    coord = client.CoordinationV1Api(kube_client)
    lease = coord.create_namespaced_lease("kube-system", objects.lease("v4only-leader", "kube-system", holder="a"),
                                          _request_timeout=T)
    lease.spec.holder_identity = "b"
    coord.replace_namespaced_lease("v4only-leader", "kube-system", lease, _request_timeout=T)
    lease.spec.holder_identity = "c"  # stale resourceVersion: the lost leader election race
    assert api_error(lambda: coord.replace_namespaced_lease("v4only-leader", "kube-system", lease,
                                                            _request_timeout=T)).status == 409
    admission = client.AdmissionregistrationV1Api(kube_client)
    admission.create_mutating_webhook_configuration(objects.mutating_webhook_configuration("v4only"),
                                                    _request_timeout=T)
    hooks = admission.list_mutating_webhook_configuration(_request_timeout=T).items
    assert [h.webhooks[0].name for h in hooks] == ["inject.v4only.io"]
    assert fake_kube.requests[-1].path == "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"


def test_core_and_events_k8s_io_events_share_storage(fake_kube: FakeKube, kube_client: client.ApiClient) -> None:
    pod = fake_kube.put_object(objects.pod("p", node_name="n1"))
    event = objects.event(pod, "Scheduled", "Successfully assigned default/p to n1")
    event["eventTime"] = objects.micro_timestamp()  # the events.k8s.io model requires eventTime
    client.CoreV1Api(kube_client).create_namespaced_event("default", event, _request_timeout=T)
    (seen,) = client.EventsV1Api(kube_client).list_namespaced_event("default", _request_timeout=T).items
    assert (seen.note, seen.regarding.name, seen.reporting_controller) == (event["message"], "p", "kubelet")


# ------------------------------------------------------------------------------------------------ watch


def test_watch_streams_live_events(fake_kube: FakeKube, core: client.CoreV1Api) -> None:
    fake_kube.put_object(objects.pod("existing"))
    seen: list[tuple[str, str]] = []

    def consume() -> None:
        stream = watch.Watch().stream(core.list_namespaced_pod, "default", label_selector="app=web",
                                      timeout_seconds=5, _request_timeout=T)
        seen.extend(take(stream, 4))

    consumer = threading.Thread(target=consume)
    consumer.start()
    assert fake_kube.wait_for_watches(1)
    fake_kube.put_object(objects.pod("p", labels={"app": "web"}))
    fake_kube.put_object(objects.pod("p", labels={"app": "web", "v": "2"}))
    fake_kube.put_object(objects.pod("p", labels={"app": "other"}))  # leaves the selector: DELETED
    fake_kube.put_object(objects.pod("q", labels={"app": "web"}))
    consumer.join(timeout=10)
    assert not consumer.is_alive()
    assert seen == [("ADDED", "p"), ("MODIFIED", "p"), ("DELETED", "p"), ("ADDED", "q")]


def test_watch_from_resource_version_replays_history_on_the_wire(fake_kube: FakeKube,
                                                                 core: client.CoreV1Api) -> None:
    rv = core.list_namespaced_pod("default", _request_timeout=T).metadata.resource_version
    fake_kube.put_object(objects.pod("p"))
    fake_kube.put_object(objects.pod("p", labels={"x": "1"}))
    fake_kube.delete_object("Pod", "p")
    raw = core.list_namespaced_pod("default", watch=True, resource_version=rv, timeout_seconds=1,
                                   _preload_content=False, _request_timeout=T)
    try:
        assert raw.status == 200 and raw.headers["Transfer-Encoding"] == "chunked"
        lines = [json.loads(line) for line in raw.data.decode().splitlines()]
    finally:
        raw.release_conn()
    assert [e["type"] for e in lines] == ["ADDED", "MODIFIED", "DELETED"]
    assert [e["object"]["kind"] for e in lines] == ["Pod"] * 3
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in lines]
    assert rvs == sorted(rvs) and rvs[-1] == int(fake_kube.resource_version)


def test_watch_bookmarks(fake_kube: FakeKube, core: client.CoreV1Api) -> None:
    fake_kube.bookmark_interval = 0.2
    fake_kube.put_object(objects.pod("p"))
    stream = watch.Watch().stream(core.list_namespaced_pod, "default", allow_watch_bookmarks=True,
                                  timeout_seconds=3, _request_timeout=T)
    first, bookmark = next(stream), next(stream)
    assert first["type"] == "ADDED"
    # the client leaves BOOKMARK objects undeserialised: kind, apiVersion and resourceVersion only
    assert bookmark["type"] == "BOOKMARK"
    assert bookmark["object"] == {"kind": "Pod", "apiVersion": "v1",
                                  "metadata": {"resourceVersion": fake_kube.resource_version}}


def test_watch_too_old_resource_version_is_an_error_event(fake_kube: FakeKube, core: client.CoreV1Api) -> None:
    old = fake_kube.resource_version
    fake_kube.put_object(objects.pod("p"))
    fake_kube.compact()
    raw = core.list_namespaced_pod("default", watch=True, resource_version=old, _preload_content=False,
                                   _request_timeout=T)
    try:
        assert raw.status == 200  # the error travels inside the stream, as from the watch cache
        (line,) = raw.data.decode().splitlines()
    finally:
        raw.release_conn()
    assert json.loads(line) == {"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": f"too old resource version: {old} ({fake_kube.resource_version})", "reason": "Expired",
        "code": 410}}
    # the client's Watch retries a 410 once, then raises
    stream = watch.Watch().stream(core.list_namespaced_pod, "default", resource_version=old, _request_timeout=T)
    assert api_error(lambda: next(stream)).status == 410
    # a list at that resourceVersion is served from current state unless it asks for an Exact match
    assert core.list_namespaced_pod("default", resource_version=old, _request_timeout=T).items
    error = api_error(lambda: core.list_namespaced_pod("default", resource_version=old,
                                                       resource_version_match="Exact", _request_timeout=T))
    assert (error.status, status_of(error)["message"]) == (410, "The resourceVersion for the provided list is too old.")


def test_bounded_history_expires_old_resource_versions(tmp_path: Path) -> None:
    with FakeKube(history_size=2) as kube, config.new_client_from_config(
            config_file=str(kube.kubeconfig_path(tmp_path))) as api:
        core = client.CoreV1Api(api)
        start = int(kube.resource_version)
        for i in range(3):
            kube.put_object(objects.configmap(f"cm{i}"))

        def first_event(since: int) -> dict[str, Any]:
            raw = core.list_namespaced_config_map("default", watch=True, resource_version=str(since),
                                                  timeout_seconds=1, _preload_content=False, _request_timeout=T)
            try:
                event: dict[str, Any] = json.loads(raw.data.decode().splitlines()[0])
                return event
            finally:
                raw.release_conn()

        replayed = first_event(start + 1)  # cm0 fell off; everything after start+1 is still there
        assert (replayed["type"], replayed["object"]["metadata"]["name"]) == ("ADDED", "cm1")
        assert first_event(start)["object"]["reason"] == "Expired"


def test_broken_watch_and_forbidden_watch(fake_kube: FakeKube, core: client.CoreV1Api) -> None:
    fake_kube.put_object(objects.pod("p"))
    stream = watch.Watch().stream(core.list_namespaced_pod, "default", timeout_seconds=10, _request_timeout=T)
    assert next(stream)["type"] == "ADDED"
    assert fake_kube.break_watches() == 1
    with pytest.raises(urllib3.exceptions.ProtocolError):  # the chunked stream ends mid-way
        next(stream)

    fake_kube.forbid("watch", r"/pods$")
    error = api_error(lambda: next(watch.Watch().stream(core.list_namespaced_pod, "default", timeout_seconds=1,
                                                        _request_timeout=T)))
    assert error.status == 403
    assert core.list_namespaced_pod("default", _request_timeout=T).items  # list is still allowed


def test_hung_watch_sends_nothing_until_released(fake_kube: FakeKube, core: client.CoreV1Api) -> None:
    fake_kube.put_object(objects.pod("p"))
    fake_kube.hang_watches(True)
    hung = watch.Watch().stream(core.list_namespaced_pod, "default", timeout_seconds=1, _request_timeout=(T, 0.5))
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):  # only the client's read timeout ends it
        next(hung)

    seen: list[tuple[str, str]] = []
    consumer = threading.Thread(target=lambda: seen.extend(take(watch.Watch().stream(
        core.list_namespaced_pod, "default", timeout_seconds=5, _request_timeout=T), 2)))
    consumer.start()
    assert fake_kube.wait_for_watches(2)  # the timed-out stream above is still open (and hung) server-side
    fake_kube.put_object(objects.pod("q"))
    consumer.join(timeout=0.5)
    assert seen == []  # held back, not lost
    fake_kube.hang_watches(False)
    consumer.join(timeout=T)
    assert not consumer.is_alive()
    assert seen == [("ADDED", "p"), ("ADDED", "q")]


# ---------------------------------------------------------------------------------------- RBAC, configz


def test_forbid_answers_like_rbac(fake_kube: FakeKube, core: client.CoreV1Api) -> None:
    fake_kube.forbid("GET", r"^/api/v1/pods$")
    error = api_error(lambda: core.list_pod_for_all_namespaces(_request_timeout=T))
    assert status_of(error) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": f'pods is forbidden: User "{DEFAULT_USER}" cannot list resource "pods" in API group "" '
                   "at the cluster scope",
        "reason": "Forbidden", "details": {"kind": "pods"}, "code": 403}
    fake_kube.forbid("patch", r"/deployments/")
    error = api_error(lambda: client.AppsV1Api(core.api_client).patch_namespaced_deployment(
        "web", "team", {}, _request_timeout=T))
    assert status_of(error)["message"] == (
        f'deployments.apps "web" is forbidden: User "{DEFAULT_USER}" cannot patch resource "deployments" '
        'in API group "apps" in the namespace "team"')


def test_configz_through_the_node_proxy(fake_kube: FakeKube, core: client.CoreV1Api) -> None:
    for name in ("n1", "n2", "n3", "n4"):
        fake_kube.put_object(objects.node(name))

    def configz(node: str, timeout: Any = T) -> Any:
        raw = core.connect_get_node_proxy_with_path(node, "configz", _preload_content=False, _request_timeout=timeout)
        try:
            return raw.status, raw.headers["Content-Type"], json.loads(raw.data)
        finally:
            raw.release_conn()

    fake_kube.set_configz("n2", objects.kubelet_config(["net.ipv6.*", "kernel.msg*"]))
    code, content_type, body = configz("n1")
    assert (code, content_type) == (200, "application/json")
    assert "allowedUnsafeSysctls" not in body["kubeletconfig"]  # omitempty
    assert configz("n2")[2]["kubeletconfig"]["allowedUnsafeSysctls"] == ["net.ipv6.*", "kernel.msg*"]

    fake_kube.set_configz("n3", status=403)
    error = api_error(lambda: configz("n3"))
    assert status_of(error)["message"] == (
        f'nodes "n3" is forbidden: User "{DEFAULT_USER}" cannot get resource "nodes/proxy" in API group "" '
        "at the cluster scope")
    fake_kube.set_configz("n4", status=503)
    error = api_error(lambda: configz("n4"))
    assert status_of(error) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": f"error trying to reach service: dial tcp {objects.node_ip('n4')}:10250: connect: connection refused",
        "reason": "ServiceUnavailable", "code": 503}
    assert api_error(lambda: configz("ghost")).status == 404

    fake_kube.set_configz("n1", delay=2.0)
    with pytest.raises(urllib3.exceptions.MaxRetryError):
        configz("n1", timeout=0.2)
    # urllib3's default Retry(total=3) re-sends an idempotent GET after a read timeout
    assert fake_kube.configz_calls == {"n1": 5, "n2": 1, "n3": 1, "n4": 1, "ghost": 1}


def test_stop_and_restart_on_the_same_port(fake_kube: FakeKube, core: client.CoreV1Api) -> None:
    fake_kube.put_object(objects.node("n1"))
    port = fake_kube.port
    fake_kube.stop()
    with pytest.raises(urllib3.exceptions.MaxRetryError):
        core.list_node(_request_timeout=1)
    fake_kube.restart()
    assert fake_kube.port == port
    assert [n.metadata.name for n in core.list_node(_request_timeout=T).items] == ["n1"]
