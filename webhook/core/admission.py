"""AdmissionReview v1: reading a request, deciding, and building the response.

Contract (kubernetes/api admission/v1 types.go; apiserver admissionreview.go `VerifyAdmissionResponse`):
the response echoes `uid`, carries `patch` (base64 RFC 6902) and `patchType: JSONPatch` only together
and only when there are operations, and `warnings` for the user. A `dryRun` request gets exactly the
same answer: v4only has no side effects (`sideEffects: None`).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from webhook.core.capability import Capability
from webhook.core.decision import Decision, decide
from webhook.core.errors import InvalidReview, UnhandledObject
from webhook.core.patch import Op, Plan, plan_patch
from webhook.core.settings import Settings

API_VERSION = "admission.k8s.io/v1"
Outcome = Literal["mutated", "unchanged", "unmanaged", "skipped", "unhandled"]


@dataclass(frozen=True, slots=True)
class Review:
    """The answer to one AdmissionReview, with what the callers need to log and count."""

    response: dict[str, Any]
    outcome: Outcome
    decision: Decision | None = None
    plan: Plan = field(default_factory=lambda: Plan(()))

    @property
    def applied(self) -> str | None:
        """The remedy as `v4only.io/applied` names it (`+dns` when rule 7 adds the DNS remedy)."""
        return self.decision.applied if self.decision is not None else None


def parse_review(body: Any) -> Mapping[str, Any]:
    """The `request` of an AdmissionReview v1, or InvalidReview saying what is wrong."""
    if not isinstance(body, dict):
        raise InvalidReview("the body is not a JSON object")
    if body.get("kind") != "AdmissionReview":
        raise InvalidReview(f"kind is {body.get('kind')!r}, expected 'AdmissionReview'")
    if body.get("apiVersion") != API_VERSION:
        raise InvalidReview(f"apiVersion is {body.get('apiVersion')!r}, expected {API_VERSION!r}")
    request = body.get("request")
    if not isinstance(request, dict):
        raise InvalidReview("request is missing or not an object")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise InvalidReview("request.uid is missing or not a non-empty string")
    return request


def is_pod_create(request: Mapping[str, Any]) -> bool:
    kind = request.get("kind")
    return (
        request.get("operation") == "CREATE"
        and isinstance(kind, dict)
        and kind.get("group", "") == ""
        and kind.get("kind") == "Pod"
        and not request.get("subResource")
    )


def review_request(
    request: Mapping[str, Any],
    *,
    namespaces: Mapping[str, Mapping[str, str]],
    capability: Capability,
    settings: Settings,
) -> Review:
    """Decide for one admission request. Only Pod CREATE is ever changed."""
    uid = str(request["uid"])
    if not is_pod_create(request):
        return Review(build_response(uid), "skipped")
    pod = request.get("object")
    try:
        if not isinstance(pod, dict):
            raise UnhandledObject("request.object is not a Pod object")
        namespace = str(request.get("namespace") or _pod_namespace(pod))
        decision = decide(
            pod,
            namespace=namespace,
            namespace_labels=namespaces.get(namespace),
            capability=capability,
            settings=settings,
        )
        plan = plan_patch(pod, decision, settings)
    except UnhandledObject as error:
        return Review(build_response(uid, warnings=[f"v4only: pod admitted unchanged: {error}"]), "unhandled")
    if not decision.managed:
        return Review(build_response(uid), "unmanaged", decision, plan)
    warnings = [*decision.warnings, *plan.warnings]
    outcome: Outcome = "mutated" if plan.ops else "unchanged"
    return Review(build_response(uid, ops=plan.ops, warnings=warnings), outcome, decision, plan)


def build_response(uid: str, *, ops: tuple[Op, ...] = (), warnings: list[str] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    if ops:
        response["patchType"] = "JSONPatch"
        response["patch"] = encode_patch(ops)
    if warnings:
        response["warnings"] = warnings
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}


def encode_patch(ops: tuple[Op, ...]) -> str:
    return base64.b64encode(orjson.dumps(list(ops))).decode("ascii")


def _pod_namespace(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata")
    namespace = meta.get("namespace") if isinstance(meta, dict) else None
    return namespace if isinstance(namespace, str) else ""
