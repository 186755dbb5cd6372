"""manifests/: every document validates against the Kubernetes 1.33 schema (strict), the webhook's safety
settings and the RBAC rules are exactly what was decided, and the kustomizations render to what we expect.

Kustomize rendering: the kustomizations use only `resources`, `components` and `patches` (a strategic-merge
map patch and `$patch: delete`), which `render` below reproduces; it refuses anything else. When `kubectl`
is installed, its own `kubectl kustomize` output is compared with ours as well.

cert-manager's Issuer and Certificate are CRDs, absent from the Kubernetes schema: they are checked by shape
only (known fields, required fields, value formats), not against cert-manager's OpenAPI schema.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from webhook import __version__
from webhook.adapters.files import load_settings
from webhook.cli import certs as certs_cmd
from webhook.core.certs import service_dns_names

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "manifests"
BASE = MANIFESTS / "base"
CERT_MANAGER = MANIFESTS / "overlays" / "cert-manager"
PATCHER = MANIFESTS / "patcher"
CONFIGZ_VIA_PROXY = MANIFESTS / "configz-via-proxy"
K8S_VERSION = "1.33.0"
NAMESPACE = "v4only-system"
KUSTOMIZE_KINDS = {"Kustomization", "Component"}
CRD_GROUPS = ("cert-manager.io/",)


# ----------------------------------------------------------------------------------------------- loading


def yaml_files() -> list[Path]:
    files = sorted(p for p in MANIFESTS.rglob("*") if p.suffix in {".yaml", ".yml"})
    assert files, "no manifests found"
    return files


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def object_documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in yaml_files():
        for index, doc in enumerate(documents(path)):
            if doc.get("kind") not in KUSTOMIZE_KINDS:
                found.append((f"{path.relative_to(MANIFESTS)}#{index}", doc))
    return found


def ident(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    meta = obj.get("metadata") or {}
    return (obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])


# --------------------------------------------------------------------------------------------- rendering


# Lists that strategic merge patch merges by `name` (their patchMergeKey in the Kubernetes OpenAPI, x-kubernetes-
# patch-merge-key on PodSpec.containers and Container.env); every other list is replaced, which we refuse.
_MERGED_BY_NAME = {"containers", "env"}


def _merge(target: dict[str, Any], patch: dict[str, Any], where: str) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value, f"{where}.{key}")
        elif key in _MERGED_BY_NAME and isinstance(value, list) and isinstance(target.get(key), list):
            added = []
            for item in value:
                same = [t for t in target[key] if t.get("name") == item.get("name")]
                if same:
                    _merge(same[0], item, f"{where}.{key}[{item.get('name')}]")
                else:
                    added.append(copy.deepcopy(item))
            target[key][:0] = added  # new entries come first, as `kubectl kustomize` (kyaml's merge) puts them
        elif isinstance(value, list | dict) and key in target:
            raise AssertionError(f"{where}.{key}: list/shape merge is beyond this test renderer")
        else:
            target[key] = copy.deepcopy(value)


def render(directory: Path, parent: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The objects a kustomization renders to. A component adds to (and patches) its parent's objects."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - {"apiVersion", "kind", "resources", "components", "patches"}
    assert not unknown, f"{directory}: kustomization fields the test renderer does not implement: {unknown}"
    objects: list[dict[str, Any]] = [] if parent is None else parent
    for entry in kustomization.get("resources", []):
        path = directory / entry
        objects += render(path) if path.is_dir() else documents(path)
    for entry in kustomization.get("components", []):
        render(directory / entry, objects)
    for patch in kustomization.get("patches", []):
        assert set(patch) <= {"path", "patch"}, f"{directory}: patch targets/options are not implemented: {patch}"
        docs = documents(directory / patch["path"]) if "path" in patch else list(yaml.safe_load_all(patch["patch"]))
        for doc in docs:
            doc = copy.deepcopy(doc)
            delete = doc.pop("$patch", None) == "delete"
            matches = [
                o for o in objects if (o["kind"], o["metadata"]["name"]) == (doc["kind"], doc["metadata"]["name"])
            ]
            matches = [o for o in matches if o["metadata"].get("namespace") == doc["metadata"].get("namespace")]
            assert len(matches) == 1, f"{directory}: patch {ident(doc)} matches {len(matches)} objects"
            if delete:
                objects.remove(matches[0])
            else:
                _merge(matches[0], doc, ident(doc)[1])
    ids = [ident(o) for o in objects]
    assert len(ids) == len(set(ids)), f"{directory}: duplicate objects"
    return objects


@pytest.fixture(scope="module")
def base() -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in render(MANIFESTS)}


@pytest.fixture(scope="module")
def cert_manager() -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in render(CERT_MANAGER)}


# ------------------------------------------------------------------------------------ schema validation


@pytest.mark.parametrize(("where", "obj"), object_documents(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_document_validates(where: str, obj: dict[str, Any]) -> None:
    if obj["apiVersion"].startswith(CRD_GROUPS):
        check_cert_manager_shape(obj)
        return
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_validation_is_really_strict() -> None:
    deployment = copy.deepcopy(documents(BASE / "deployment.yaml")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_overlay_patches_are_valid_fragments(base: dict[tuple[str, str], dict[str, Any]]) -> None:
    kustomization = yaml.safe_load((CERT_MANAGER / "kustomization.yaml").read_text())
    for patch in kustomization["patches"]:
        for doc in documents(CERT_MANAGER / patch["path"]) if "path" in patch else yaml.safe_load_all(patch["patch"]):
            doc = dict(doc)
            delete = doc.pop("$patch", None) == "delete"
            assert (doc["kind"], doc["metadata"]["name"]) in base, f"patch of an object the base lacks: {doc}"
            if delete:
                # Names an object, nothing more (its required fields are irrelevant to a deletion).
                assert set(doc) == {"apiVersion", "kind", "metadata"} and set(doc["metadata"]) <= {"name", "namespace"}
                assert base[(doc["kind"], doc["metadata"]["name"])]["apiVersion"] == doc["apiVersion"]
            else:
                # A merge patch is a valid (partial) object of its kind.
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kustomization_lists_every_file() -> None:
    for directory in (BASE, CERT_MANAGER, PATCHER, CONFIGZ_VIA_PROXY):
        kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
        listed = {entry for entry in kustomization.get("resources", []) if not entry.startswith("..")}
        listed |= {p["path"] for p in kustomization.get("patches", []) if "path" in p}
        present = {p.name for p in directory.glob("*.yaml")} - {"kustomization.yaml"}
        assert listed == present, f"{directory}: listed {sorted(listed)}, present {sorted(present)}"


def test_one_resource_per_base_file() -> None:
    for path in BASE.glob("*.yaml"):
        assert len(documents(path)) == 1, path.name


def test_namespaced_objects_live_in_v4only_system(base: dict[tuple[str, str], dict[str, Any]]) -> None:
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration"}
    for (kind, name), obj in base.items():
        assert obj["metadata"].get("namespace") == (None if kind in cluster_scoped else NAMESPACE), (kind, name)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed: our renderer is used alone")
@pytest.mark.parametrize("directory", [MANIFESTS, CERT_MANAGER], ids=["base", "cert-manager"])
def test_kubectl_kustomize_agrees(directory: Path) -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    theirs = {ident(o): o for o in yaml.safe_load_all(result.stdout) if o}
    ours = {ident(o): o for o in render(directory)}
    assert theirs == ours


# ------------------------------------------------------------------------------- the webhook configuration


def webhooks(base: dict[tuple[str, str], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {w["name"]: w for w in base[("MutatingWebhookConfiguration", "v4only")]["webhooks"]}


ALWAYS_EXCLUDED = {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", NAMESPACE]}


def test_two_webhooks(base: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert list(webhooks(base)) == ["namespaces.v4only.io", "pods.v4only.io"]


@pytest.mark.parametrize("name", ["namespaces.v4only.io", "pods.v4only.io"])
def test_safety_settings(base: dict[tuple[str, str], dict[str, Any]], name: str) -> None:
    hook = webhooks(base)[name]
    assert hook["failurePolicy"] == "Ignore"
    assert hook["timeoutSeconds"] == 3
    assert hook["sideEffects"] == "None"
    assert hook["reinvocationPolicy"] == "IfNeeded"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["matchPolicy"] == "Equivalent"
    assert hook["rules"] == [
        {
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods"],
            "operations": ["CREATE"],
            "scope": "Namespaced",
        }
    ]
    assert ALWAYS_EXCLUDED in hook["namespaceSelector"]["matchExpressions"]
    assert hook["clientConfig"] == {
        "service": {"name": "v4only", "namespace": NAMESPACE, "path": "/mutate", "port": 443}
    }
    assert "caBundle" not in hook["clientConfig"]  # written by `v4only certs` / cainjector, kept by apply
    assert "matchConditions" not in hook


def test_namespace_webhook_selectors(base: dict[tuple[str, str], dict[str, Any]]) -> None:
    hook = webhooks(base)["namespaces.v4only.io"]
    assert hook["namespaceSelector"] == {
        "matchExpressions": [{"key": "v4only.io/inject", "operator": "In", "values": ["enabled"]}, ALWAYS_EXCLUDED]
    }
    assert hook["objectSelector"] == {
        "matchExpressions": [{"key": "v4only.io/inject", "operator": "NotIn", "values": ["disabled"]}]
    }


def test_pod_webhook_selectors(base: dict[tuple[str, str], dict[str, Any]]) -> None:
    hook = webhooks(base)["pods.v4only.io"]
    assert hook["namespaceSelector"] == {
        "matchExpressions": [
            {"key": "v4only.io/inject", "operator": "NotIn", "values": ["enabled", "disabled"]},
            ALWAYS_EXCLUDED,
        ]
    }
    assert hook["objectSelector"] == {
        "matchExpressions": [{"key": "v4only.io/inject", "operator": "In", "values": ["enabled"]}]
    }


def _selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """metav1.LabelSelector semantics (NotIn also matches a missing key)."""
    for expr in selector.get("matchExpressions", []):
        value = labels.get(expr["key"])
        if expr["operator"] == "In" and value not in expr["values"]:
            return False
        if expr["operator"] == "NotIn" and value in expr["values"]:
            return False
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


@pytest.mark.parametrize("namespace_label", [None, "enabled", "disabled", "other"])
@pytest.mark.parametrize("pod_label", [None, "enabled", "disabled", "other"])
@pytest.mark.parametrize("namespace", ["apps", "kube-system", NAMESPACE])
def test_selectors_implement_the_opt_in_table(
    base: dict[tuple[str, str], dict[str, Any]], namespace: str, namespace_label: str | None, pod_label: str | None
) -> None:
    """product.md "Opt-in": at most one webhook is called, exactly when the pod is managed."""
    ns_labels = {"kubernetes.io/metadata.name": namespace}
    if namespace_label:
        ns_labels["v4only.io/inject"] = namespace_label
    pod_labels = {"v4only.io/inject": pod_label} if pod_label else {}
    called = [
        name
        for name, hook in webhooks(base).items()
        if _selector_matches(hook["namespaceSelector"], ns_labels)
        and _selector_matches(hook["objectSelector"], pod_labels)
    ]
    excluded = namespace in {"kube-system", NAMESPACE}
    managed = not excluded and (
        (namespace_label == "enabled" and pod_label != "disabled")
        or (namespace_label not in {"enabled", "disabled"} and pod_label == "enabled")
    )
    assert len(called) == (1 if managed else 0), called


# --------------------------------------------------------------------------------------------------- RBAC


def rules(obj: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = obj["rules"]
    return found


def test_capability_tracker_cluster_role(base: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert rules(base[("ClusterRole", "v4only")]) == [
        {"apiGroups": [""], "resources": ["nodes", "namespaces"], "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["nodes/configz"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["patch"]},
    ]


def test_roles_grant_exactly_the_calls_the_code_makes(base: dict[tuple[str, str], dict[str, Any]]) -> None:
    """webhook/adapters/rbac_used.py lists what `serve` calls; the webhook's roles grant that and nothing more."""
    from webhook.adapters import rbac_used

    granted = {
        (group, resource, verb)
        for key in (("ClusterRole", "v4only"), ("Role", "v4only"))
        for rule in rules(base[key])
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted == rbac_used.SERVE, (sorted(rbac_used.SERVE - granted), sorted(granted - rbac_used.SERVE))


def test_leader_election_role(base: dict[tuple[str, str], dict[str, Any]]) -> None:
    role = base[("Role", "v4only")]
    assert role["metadata"]["namespace"] == NAMESPACE
    assert rules(role) == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "update"]},
    ]


def test_certs_roles(base: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert rules(base[("Role", "v4only-certs")]) == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["v4only-tls", "v4only-ca"],
            "verbs": ["get", "update"],
        },
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list"]},
    ]
    assert rules(base[("ClusterRole", "v4only-certs")]) == [
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["mutatingwebhookconfigurations"],
            "resourceNames": ["v4only"],
            "verbs": ["get", "patch"],
        }
    ]


def _granted(objects: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for obj in objects
        if obj["kind"] in {"Role", "ClusterRole"}
        for rule in rules(obj)
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def _with_component(tmp_path: Path, component: Path) -> Path:
    """A user's kustomization: the default install plus one opt-in component (paths relative, as kustomize wants)."""
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(MANIFESTS, tmp_path)],
        "components": [os.path.relpath(component, tmp_path)],
    }))
    return tmp_path


def test_the_default_install_grants_no_nodes_proxy() -> None:
    for directory in (MANIFESTS, CERT_MANAGER):
        granted = _granted(render(directory))
        assert not {p for p in granted if p[1] in {"nodes/proxy", "nodes/*", "*"}}, directory
        assert ("", "nodes/configz", "get") in granted


def test_configz_via_proxy_is_an_opt_in_component_that_grants_nodes_proxy_and_says_so(tmp_path: Path) -> None:
    from webhook.adapters import rbac_used

    assert yaml.safe_load((CONFIGZ_VIA_PROXY / "kustomization.yaml").read_text())["kind"] == "Component"
    assert "exec" in (CONFIGZ_VIA_PROXY / "kustomization.yaml").read_text()  # the risk, written next to it
    rendered = render(_with_component(tmp_path, CONFIGZ_VIA_PROXY))
    by_id = {(o["kind"], o["metadata"]["name"]): o for o in rendered}
    role = by_id[("ClusterRole", "v4only-configz-via-proxy")]
    assert _granted([role]) == rbac_used.PROXY_FALLBACK
    binding = by_id[("ClusterRoleBinding", "v4only-configz-via-proxy")]
    assert binding["roleRef"]["name"] == "v4only-configz-via-proxy"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "v4only", "namespace": NAMESPACE}]
    container = by_id[("Deployment", "v4only")]["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "V4ONLY_CONFIGZ_VIA_PROXY", "value": "true"} in container["env"]
    assert {e["name"] for e in container["env"]} >= {"POD_NAMESPACE"}  # merged into, not replacing, the env
    for obj in rendered:
        if not obj["apiVersion"].startswith(CRD_GROUPS):
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    if shutil.which("kubectl"):
        result = subprocess.run(["kubectl", "kustomize", str(tmp_path)], capture_output=True, text=True,
                                check=False, timeout=60)
        assert result.returncode == 0, result.stderr
        assert {ident(o): o for o in yaml.safe_load_all(result.stdout) if o} == {ident(o): o for o in rendered}


def test_patcher_role_is_optional_and_exact(base: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert ("ClusterRole", "v4only-patcher") not in base
    component = {(o["kind"], o["metadata"]["name"]): o for o in render(PATCHER)}
    assert yaml.safe_load((PATCHER / "kustomization.yaml").read_text())["kind"] == "Component"
    from webhook.adapters import rbac_patcher

    role = component[("ClusterRole", "v4only-patcher")]
    assert all(set(rule) == {"apiGroups", "resources", "verbs"} for rule in rules(role))
    granted = {
        (group, resource, verb)
        for rule in rules(role)
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    # Exactly what the patcher's code calls beyond the webhook's own roles (webhook/adapters/rbac_patcher.py).
    assert granted == rbac_patcher.PATCHER, (sorted(granted - rbac_patcher.PATCHER),
                                             sorted(rbac_patcher.PATCHER - granted))
    binding = component[("ClusterRoleBinding", "v4only-patcher")]
    assert binding["roleRef"]["name"] == "v4only-patcher"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "v4only", "namespace": NAMESPACE}]


def test_no_wildcards_and_no_secret_reads_outside_certs(base: dict[tuple[str, str], dict[str, Any]]) -> None:
    for (kind, name), obj in base.items():
        if kind not in {"Role", "ClusterRole"}:
            continue
        for rule in rules(obj):
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], (name, rule)
            if "secrets" in rule["resources"]:
                assert name == "v4only-certs" and kind == "Role", (kind, name)


@pytest.mark.parametrize(
    ("binding", "role", "account"),
    [
        (("ClusterRoleBinding", "v4only"), ("ClusterRole", "v4only"), "v4only"),
        (("RoleBinding", "v4only"), ("Role", "v4only"), "v4only"),
        (("RoleBinding", "v4only-certs"), ("Role", "v4only-certs"), "v4only-certs"),
        (("ClusterRoleBinding", "v4only-certs"), ("ClusterRole", "v4only-certs"), "v4only-certs"),
    ],
)
def test_bindings(base: dict[tuple[str, str], dict[str, Any]], binding: Any, role: Any, account: str) -> None:
    obj = base[binding]
    assert (obj["roleRef"]["kind"], obj["roleRef"]["name"]) == role and role in base
    assert obj["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}]
    assert ("ServiceAccount", account) in base


# ------------------------------------------------------------------------------------- workloads, config


def pod_spec(base: dict[tuple[str, str], dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    obj = base[(kind, name)]
    template = obj["spec"]["jobTemplate"]["spec"]["template"] if kind == "CronJob" else obj["spec"]["template"]
    spec: dict[str, Any] = template["spec"]
    return spec


def test_deployment(base: dict[tuple[str, str], dict[str, Any]]) -> None:
    deployment = base[("Deployment", "v4only")]
    assert deployment["spec"]["replicas"] == 2
    spec = pod_spec(base, "Deployment", "v4only")
    assert spec["serviceAccountName"] == "v4only"
    assert spec["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    anti = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    (container,) = spec["containers"]
    assert container["args"] == [
        "serve", "--cert-file", "/tls/tls.crt", "--key-file", "/tls/tls.key", "--config", "/config/config.yaml",
        "--publish-node-labels",
    ]  # fmt: skip
    assert container["ports"] == [{"name": "https", "containerPort": 8443, "protocol": "TCP"}]
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        assert container[probe]["httpGet"] == {"path": path, "port": "https", "scheme": "HTTPS"}
    assert container["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    assert spec["terminationGracePeriodSeconds"] > int(container["lifecycle"]["preStop"]["exec"]["command"][1]) + 10
    assert container["resources"]["requests"] == {"cpu": "50m", "memory": "64Mi"}
    assert container["resources"]["limits"] == {"memory": "256Mi"}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts == {"/tls": "tls", "/config": "config", "/tmp": "tmp"}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "v4only-tls"
    assert volumes["config"]["configMap"]["name"] == "v4only-config"
    assert "emptyDir" in volumes["tmp"]
    assert deployment["spec"]["template"]["metadata"]["labels"]["v4only.io/inject"] == "disabled"


@pytest.mark.parametrize(
    ("kind", "name"), [("Deployment", "v4only"), ("CronJob", "v4only-certs"), ("Job", "v4only-certs-init")]
)
def test_pods_are_locked_down(base: dict[tuple[str, str], dict[str, Any]], kind: str, name: str) -> None:
    """Pod Security "restricted", plus a read-only root and a numeric non-root user (the image's 65532)."""
    spec = pod_spec(base, kind, name)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 65532
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in spec["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert "memory" in container["resources"]["limits"]
    assert not spec.get("hostNetwork") and not spec.get("hostPID")


def images_in(node: Any) -> list[str]:
    """Every `image:` value in a document, inline kustomize patches included."""
    if isinstance(node, list):
        return [image for item in node for image in images_in(item)]
    if not isinstance(node, dict):
        return []
    found = [node["image"]] if isinstance(node.get("image"), str) else []
    for key, value in node.items():
        if key == "patch" and isinstance(value, str):
            found += images_in([doc for doc in yaml.safe_load_all(value) if doc])
        else:
            found += images_in(value)
    return found


def make_image_commands() -> str:
    """The commands `make image` would run (make -n prints them without running anything)."""
    assert shutil.which("make"), "make is needed (.ci/run installs it)"
    run = subprocess.run(["make", "-n", "--no-print-directory", "image", "ENGINE=buildah"], cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=30)
    return run.stdout


def test_one_image_everywhere_and_it_is_what_make_image_tags(
    base: dict[tuple[str, str], dict[str, Any]], cert_manager: dict[tuple[str, str], dict[str, Any]]
) -> None:
    """The Deployment, the certs Job and CronJob, the overlays and `make image` name one image: v4only:VERSION,
    VERSION being the package's. A local import of the archive then satisfies every pod (IfNotPresent)."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert version == __version__, "pyproject.toml and webhook/__init__.py disagree on the version"
    expected = f"v4only:{version}"
    everywhere = {image for path in yaml_files() for doc in documents(path) for image in images_in(doc)}
    assert everywhere == {expected}
    for path in yaml_files():
        if path.name == "kustomization.yaml":
            assert "images" not in documents(path)[0], f"{path}: an images: override would bypass the one image"
    for rendered in (base, cert_manager):
        pods = [o for o in rendered.values() if o["kind"] in {"Deployment", "Job", "CronJob"}]
        assert pods
        for obj in pods:
            spec = pod_spec(rendered, obj["kind"], obj["metadata"]["name"])
            for container in spec["containers"] + spec.get("initContainers", []):
                assert (container["image"], container["imagePullPolicy"]) == (expected, "IfNotPresent")
    commands = make_image_commands()
    assert re.findall(r"\$engine build -t (\S+) ", commands) == [expected]
    assert re.findall(r"docker save -o \S+ (\S+);", commands) == [expected]
    # podman/buildah: the archive's one tag, pushed from the name containerd will give it.
    assert re.findall(r"push (\S+) docker-archive:\S+?:(\S+);", commands) == [(f"docker.io/library/{expected}", expected)]


def test_pdb_and_service(base: dict[tuple[str, str], dict[str, Any]]) -> None:
    labels = base[("Deployment", "v4only")]["spec"]["template"]["metadata"]["labels"]
    pdb = base[("PodDisruptionBudget", "v4only")]
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = base[("Service", "v4only")]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"] == [{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}]


def test_configmap_is_valid_settings(base: dict[tuple[str, str], dict[str, Any]], tmp_path: Path) -> None:
    text = base[("ConfigMap", "v4only-config")]["data"]["config.yaml"]
    assert yaml.safe_load(text) == {
        "sysctls": [{"name": "net.ipv6.conf.all.disable_ipv6", "value": "1"}],
        "fallbackEnv": [
            {"name": "NODE_OPTIONS", "value": "--dns-result-order=ipv4first", "mode": "append"},
            {"name": "JAVA_TOOL_OPTIONS", "value": "-Djava.net.preferIPv4Stack=true", "mode": "append"},
        ],
        "uvOfflineEnv": [
            {"name": "UV_NO_SYNC", "value": "1", "mode": "set"},
            {"name": "UV_PYTHON_DOWNLOADS", "value": "never", "mode": "set"},
        ],
        "excludedNamespaces": ["kube-system", NAMESPACE],
        "mixedClusters": "affinity",
        "dns": {"mode": "auto", "probeNames": ["pypi.org"], "probeIntervalSeconds": 300},
    }
    (tmp_path / "config.yaml").write_text(text)
    load_settings(str(tmp_path / "config.yaml"))  # what `serve --config` will do with it


def test_certs_jobs_match_the_command(base: dict[tuple[str, str], dict[str, Any]]) -> None:
    """The CronJob/Job arguments parse, and name the Secrets, Service and MWC the manifests define."""
    parser = argparse.ArgumentParser(prog="v4only")
    certs_cmd.register(parser.add_subparsers(dest="command", required=True))
    cron = base[("CronJob", "v4only-certs")]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert re.fullmatch(r"\d+ \d+ \* \* \*", cron["spec"]["schedule"]), "daily"
    for kind, name in (("CronJob", "v4only-certs"), ("Job", "v4only-certs-init")):
        spec = pod_spec(base, kind, name)
        assert spec["serviceAccountName"] == "v4only-certs"
        args = parser.parse_args(spec["containers"][0]["args"])
        assert args.secret == "v4only-tls" and args.ca_secret == "v4only-ca"
        assert (args.service, args.namespace) == ("v4only", NAMESPACE)
        assert args.webhook_configuration == "v4only"
        assert ("Service", args.service) in base
        assert ("MutatingWebhookConfiguration", args.webhook_configuration) in base
        role = base[("Role", "v4only-certs")]["rules"][0]
        assert {args.secret, args.ca_secret} == set(role["resourceNames"])


# -------------------------------------------------------------------------------------- cert-manager overlay

_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
_CERTIFICATE_SPEC = {
    "secretName", "commonName", "dnsNames", "ipAddresses", "uris", "emailAddresses", "duration", "renewBefore",
    "usages", "privateKey", "issuerRef", "isCA", "subject", "secretTemplate", "revisionHistoryLimit",
    "encodeUsagesInRequest", "keystores", "literalSubject", "nameConstraints", "otherNames",
    "renewBeforePercentage", "additionalOutputFormats", "signatureAlgorithm",
}  # fmt: skip
_USAGES = {
    "signing", "digital signature", "content commitment", "key encipherment", "key agreement", "data encipherment",
    "cert sign", "crl sign", "encipher only", "decipher only", "any", "server auth", "client auth", "code signing",
    "email protection", "s/mime", "ipsec end system", "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing",
    "microsoft sgc", "netscape sgc",
}  # fmt: skip
_ISSUER_TYPES = {"selfSigned", "ca", "acme", "vault", "venafi"}


def check_cert_manager_shape(obj: dict[str, Any]) -> None:
    """cert-manager.io/v1 Issuer and Certificate, by shape (the fields of cert-manager's v1 API types)."""
    assert obj["apiVersion"] == "cert-manager.io/v1"
    assert set(obj) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(obj["metadata"]) <= {"name", "namespace", "labels", "annotations"}
    assert obj["metadata"]["namespace"] == NAMESPACE
    spec = obj["spec"]
    if obj["kind"] == "Issuer":
        (issuer_type,) = spec  # exactly one issuer type
        assert issuer_type in _ISSUER_TYPES
        if issuer_type == "ca":
            assert set(spec["ca"]) <= {"secretName", "crlDistributionPoints", "ocspServers", "issuingCertificateURLs"}
            assert isinstance(spec["ca"]["secretName"], str)
        if issuer_type == "selfSigned":
            assert set(spec["selfSigned"]) <= {"crlDistributionPoints"}
        return
    assert obj["kind"] == "Certificate", obj["kind"]
    assert set(spec) <= _CERTIFICATE_SPEC, set(spec) - _CERTIFICATE_SPEC
    assert isinstance(spec["secretName"], str)
    assert set(spec["issuerRef"]) <= {"name", "kind", "group"}
    assert spec["issuerRef"]["kind"] in {"Issuer", "ClusterIssuer"}
    assert spec.get("commonName") or spec.get("dnsNames")
    for field in ("duration", "renewBefore"):
        if field in spec:
            assert _DURATION.match(spec[field]), spec[field]
    assert set(spec.get("usages", [])) <= _USAGES
    key = spec.get("privateKey", {})
    assert set(key) <= {"algorithm", "size", "encoding", "rotationPolicy"}
    assert key.get("algorithm", "RSA") in {"RSA", "ECDSA", "Ed25519"}
    assert key.get("rotationPolicy", "Always") in {"Always", "Never"}
    assert key.get("algorithm") != "ECDSA" or key.get("size", 256) in {256, 384, 521}


def _hours(duration: str) -> float:
    return sum(
        float(n) * {"h": 1, "m": 1 / 60, "s": 1 / 3600}[u] for n, _, u in re.findall(r"(\d+(\.\d+)?)([hms])", duration)
    )


def test_cert_manager_overlay(cert_manager: dict[tuple[str, str], dict[str, Any]]) -> None:
    # `v4only certs` is gone, with all its permissions: two writers of one Secret would fight.
    for kind in ("CronJob", "Job", "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"):
        assert not any(k == kind and n.startswith("v4only-certs") for k, n in cert_manager), kind
    mwc = cert_manager[("MutatingWebhookConfiguration", "v4only")]
    source = mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
    namespace, name = source.split("/")
    serving = cert_manager[("Certificate", name)]
    assert namespace == serving["metadata"]["namespace"] == NAMESPACE
    # The Secret the Deployment mounts is the one cert-manager writes, naming what the API server dials.
    assert serving["spec"]["secretName"] == "v4only-tls"
    assert serving["spec"]["dnsNames"] == service_dns_names("v4only", NAMESPACE)
    assert set(serving["spec"]["usages"]) == {"digital signature", "server auth"}
    assert _hours(serving["spec"]["renewBefore"]) == 30 * 24
    # Serving certificates come from a CA Issuer, whose CA outlives them: renewals never change the caBundle.
    ca_issuer = cert_manager[("Issuer", serving["spec"]["issuerRef"]["name"])]
    ca_cert = next(o for (k, _), o in cert_manager.items() if k == "Certificate" and o["spec"].get("isCA"))
    assert ca_issuer["spec"]["ca"]["secretName"] == ca_cert["spec"]["secretName"]
    assert _hours(ca_cert["spec"]["duration"]) - _hours(ca_cert["spec"]["renewBefore"]) > _hours(
        serving["spec"]["duration"]
    )
    assert "selfSigned" in cert_manager[("Issuer", ca_cert["spec"]["issuerRef"]["name"])]["spec"]
    # Everything else is the base, unchanged: the same webhooks and safety settings.
    assert mwc["webhooks"] == render_base_webhooks()


def render_base_webhooks() -> list[dict[str, Any]]:
    mwc = next(o for o in render(MANIFESTS) if o["kind"] == "MutatingWebhookConfiguration")
    return list(mwc["webhooks"])
