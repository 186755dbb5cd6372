"""metav1.Status bodies, built exactly as the API server builds them.

Shapes and messages come from k8s.io/apimachinery:
- pkg/apis/meta/v1/types.go `Status`/`StatusDetails` (field order and omitempty below follow the Go struct);
- pkg/api/errors/errors.go `NewNotFound`, `NewAlreadyExists`, `NewConflict`, `NewForbidden`,
  `NewResourceExpired`, `NewBadRequest`, `NewServiceUnavailable`, `NewMethodNotSupported`;
- k8s.io/apiserver pkg/endpoints/handlers/responsewriters/errors.go `forbiddenMessage`.
"""

from __future__ import annotations

from typing import Any

# k8s.io/apiserver/pkg/registry/generic/registry: storage.OptimisticLockErrorMsg
OPTIMISTIC_LOCK = "the object has been modified; please apply your changes to the latest version and try again"
# k8s.io/apiserver/pkg/storage/etcd3/store.go, list with resourceVersionMatch=Exact below the compaction
LIST_TOO_OLD = "The resourceVersion for the provided list is too old."
CONTINUE_TOO_OLD = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new "
    "list without the continue parameter, or use the continue token in this response to retrieve the "
    "remainder of the results. Continuing with the provided token results in an inconsistent list - "
    "objects that were created, modified, or deleted between the time the first chunk was returned and "
    "now may show up in the list."
)


class ApiError(Exception):
    """Raised inside the fake; the handler turns it into the HTTP response."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body.get("message", ""))
        self.body = body
        self.code = int(body.get("code", 500))


def status(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None, *, success: bool = False
) -> dict[str, Any]:
    """A metav1.Status in Go field order; empty fields are omitted as Go's omitempty does."""
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}}
    body["status"] = "Success" if success else "Failure"
    if message:
        body["message"] = message
    if reason:
        body["reason"] = reason
    if details is not None:
        body["details"] = {k: v for k, v in details.items() if v not in ("", None)}
    if code:
        body["code"] = code
    return body


def _details(group: str, plural: str, name: str) -> dict[str, Any]:
    # StatusDetails.Kind carries the *resource* (plural), not the Kind: errors.go says so.
    return {"name": name, "group": group, "kind": plural}


def qualified(group: str, plural: str) -> str:
    """schema.GroupResource.String(): "pods", "deployments.apps"."""
    return f"{plural}.{group}" if group else plural


def not_found(group: str, plural: str, name: str) -> ApiError:
    msg = f'{qualified(group, plural)} "{name}" not found'
    return ApiError(status(404, "NotFound", msg, _details(group, plural, name)))


def already_exists(group: str, plural: str, name: str) -> ApiError:
    msg = f'{qualified(group, plural)} "{name}" already exists'
    return ApiError(status(409, "AlreadyExists", msg, _details(group, plural, name)))


def conflict(group: str, plural: str, name: str, why: str = OPTIMISTIC_LOCK) -> ApiError:
    msg = f'Operation cannot be fulfilled on {qualified(group, plural)} "{name}": {why}'
    return ApiError(status(409, "Conflict", msg, _details(group, plural, name)))


def forbidden(
    user: str, verb: str, group: str, plural: str, subresource: str, namespace: str, name: str
) -> ApiError:
    """What RBAC denial looks like: responsewriters.Forbidden -> NewForbidden(gr, name, forbiddenMessage)."""
    resource = f"{plural}/{subresource}" if subresource else plural
    if namespace:
        why = (
            f'User "{user}" cannot {verb} resource "{resource}" in API group "{group}" '
            f'in the namespace "{namespace}"'
        )
    else:
        why = f'User "{user}" cannot {verb} resource "{resource}" in API group "{group}" at the cluster scope'
    prefix = f'{qualified(group, plural)} "{name}"' if name else qualified(group, plural)
    return ApiError(status(403, "Forbidden", f"{prefix} is forbidden: {why}", _details(group, plural, name)))


def forbidden_path(user: str, verb: str, path: str) -> ApiError:
    """Non-resource URL (e.g. /version): NewForbidden with an empty GroupResource."""
    why = f'User "{user}" cannot {verb} path "{path}"'
    return ApiError(status(403, "Forbidden", f"forbidden: {why}", {}))


def expired(message: str) -> ApiError:
    return ApiError(status(410, "Expired", message))


def bad_request(message: str) -> ApiError:
    return ApiError(status(400, "BadRequest", message))


def unauthorized() -> ApiError:
    # authentication filter: responsewriters.UnauthorizedNegotiated
    return ApiError(status(401, "Unauthorized", "Unauthorized"))


def service_unavailable(message: str) -> ApiError:
    return ApiError(status(503, "ServiceUnavailable", message))


def route_not_found() -> ApiError:
    # what the apiserver's NotFound handler answers for an unknown resource path
    return ApiError(status(404, "NotFound", "the server could not find the requested resource", {}))


def method_not_allowed() -> ApiError:
    msg = "the server does not allow this method on the requested resource"
    return ApiError(status(405, "MethodNotAllowed", msg, {}))


def unsupported_media_type(accepted: list[str]) -> ApiError:
    """negotiation.NewUnsupportedMediaTypeError, used by handlers/patch.go for an unknown patch type."""
    msg = f"the body of the request was in an unknown format - accepted media types include: {', '.join(accepted)}"
    return ApiError(status(415, "UnsupportedMediaType", msg))


def invalid_patch() -> ApiError:
    """A JSON patch that fails to apply: handlers/patch.go uses NewGenericServerResponse(422, ...), whose
    message is fixed (the jsonpatch error text is dropped) and whose details are empty."""
    return ApiError(status(422, "Invalid", "the server rejected our request due to an error in our request", {}))


def delete_success(group: str, plural: str, name: str, uid: str) -> dict[str, Any]:
    """registry.Store.finalizeDelete for resources without ReturnDeletedObject."""
    return status(0, "", "", {"name": name, "group": group, "kind": plural, "uid": uid}, success=True)


def invalid(group: str, kind: str, name: str, field: str, reason: str, detail: str) -> ApiError:
    """errors.NewInvalid for a single field error (details.kind is the Kind here, not the resource)."""
    qualified_kind = f"{kind}.{group}" if group else kind
    cause_message = f"{reason}: {detail}" if detail else reason
    body = status(
        422,
        "Invalid",
        f'{qualified_kind} "{name}" is invalid: {field}: {cause_message}',
        {"name": name, "group": group, "kind": kind},
    )
    causes_reason = {"Required value": "FieldValueRequired", "Invalid value": "FieldValueInvalid"}
    body["details"]["causes"] = [{"reason": causes_reason.get(reason, "FieldValueInvalid"),
                                  "message": cause_message, "field": field}]
    return ApiError(body)
