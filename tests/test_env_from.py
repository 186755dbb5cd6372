"""The env fallback never silently overrides what a container's `envFrom` supplies (issue 11, product.md).

Kubernetes lets an `env` entry win over the same name from `envFrom` (core/v1 Container.envFrom), and
a `$(NAME)` reference is left as literal text when the ConfigMap lacks the key (kubelet
makeEnvironmentVariables): so where envFrom may define a fallback name, v4only leaves it alone and
says so.
"""

from __future__ import annotations

from typing import Any

from tests.helpers import apply_ops, validate
from webhook.core.decision import Decision
from webhook.core.patch import plan_patch
from webhook.core.settings import Settings

ENV = Decision("env", "env: test")
CHRONICLE_ENV_FROM = [{"configMapRef": {"name": "chronicle-env"}}, {"secretRef": {"name": "chronicle-secrets"}}]


def _pod(*containers: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "team"},
            "spec": {"containers": [{"image": "busybox", **c} for c in containers]}}


def _env(pod: dict[str, Any], index: int) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][index].get("env", [])}


def test_a_container_fed_by_env_from_keeps_its_values_and_a_warning_says_so() -> None:
    given = _pod({"name": "api", "envFrom": CHRONICLE_ENV_FROM}, {"name": "plain"})
    plan = plan_patch(given, ENV, Settings())
    admitted = apply_ops(given, list(plan.ops))
    validate(admitted)
    fallback = {v.name for v in Settings().fallback_env}
    assert not fallback & set(_env(admitted, 0))  # nothing that could replace a ConfigMap's NODE_OPTIONS
    assert fallback <= set(_env(admitted, 1))  # the container without envFrom gets the fallback
    [warning] = plan.warnings
    assert "envFrom in api" in warning and len(warning) < 120
    assert plan_patch(admitted, ENV, Settings()).warnings == plan.warnings  # said again, never changed


def test_a_prefix_that_cannot_make_the_name_is_no_obstacle() -> None:
    given = _pod({"name": "api", "envFrom": [{"prefix": "CFG_", "configMapRef": {"name": "x"}}]})
    plan = plan_patch(given, ENV, Settings())
    assert {v.name for v in Settings().fallback_env} <= set(_env(apply_ops(given, list(plan.ops)), 0))
    assert plan.warnings == ()


def test_the_containers_own_entry_already_wins_so_it_is_appended_to() -> None:
    given = _pod({"name": "api", "envFrom": CHRONICLE_ENV_FROM,
                  "env": [{"name": "NODE_OPTIONS", "value": "--max-old-space-size=4096"}]})
    plan = plan_patch(given, ENV, Settings())
    admitted = apply_ops(given, list(plan.ops))
    assert _env(admitted, 0)["NODE_OPTIONS"] == "--max-old-space-size=4096 --dns-result-order=ipv4first"
    assert "NODE_OPTIONS" not in " ".join(plan.warnings)
