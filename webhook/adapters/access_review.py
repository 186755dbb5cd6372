"""Can a user `get nodes/proxy`? Asked of the API server (authorization.k8s.io/v1), for `doctor --webhook`.

A SubjectAccessReview answers for any user but needs `create subjectaccessreviews` (cluster admins have it);
a SelfSubjectAccessReview needs nothing but answers only for the caller, so it is used when the caller is
the ServiceAccount in question (found with a SelfSubjectReview, authentication.k8s.io/v1, GA in 1.28).
Shapes: Kubernetes API reference, SubjectAccessReview / SelfSubjectAccessReview / SelfSubjectReview v1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from webhook.adapters.kube import KubeApi, KubeError

SAR = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
SSAR = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
SSR = "/apis/authentication.k8s.io/v1/selfsubjectreviews"


@dataclass(frozen=True, slots=True)
class AccessAnswer:
    allowed: bool | None  # None: could not be asked
    how: str  # "SubjectAccessReview", "SelfSubjectAccessReview", or why neither could be used


def service_account_user(namespace: str, name: str) -> tuple[str, list[str]]:
    """The user name and groups the API server gives a ServiceAccount's tokens."""
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"]
    return f"system:serviceaccount:{namespace}:{name}", groups


def can_get_node_subresource(api: KubeApi, subresource: str, *, namespace: str, name: str) -> AccessAnswer:
    user, groups = service_account_user(namespace, name)
    attributes = {"verb": "get", "group": "", "resource": "nodes", "subresource": subresource}
    body: dict[str, Any] = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {"user": user, "groups": groups, "resourceAttributes": attributes},
    }
    try:
        return AccessAnswer(_allowed(api.request("POST", SAR, body=body)), "SubjectAccessReview")
    except KubeError as error:
        if error.status != 403:
            return AccessAnswer(None, f"SubjectAccessReview failed: {error}")
    try:
        me = api.request("POST", SSR, body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    except KubeError as error:
        return AccessAnswer(None, f"no create on subjectaccessreviews, and SelfSubjectReview failed: {error}")
    if ((me.get("status") or {}).get("userInfo") or {}).get("username") != user:
        return AccessAnswer(None, f"no create on subjectaccessreviews, and doctor does not run as {user}")
    self_body = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attributes},
    }
    try:
        return AccessAnswer(_allowed(api.request("POST", SSAR, body=self_body)), "SelfSubjectAccessReview")
    except KubeError as error:
        return AccessAnswer(None, f"SelfSubjectAccessReview failed: {error}")


def _allowed(review: dict[str, Any]) -> bool:
    return bool((review.get("status") or {}).get("allowed"))
