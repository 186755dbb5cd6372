"""The Kubernetes API permissions the capability code uses, as (apiGroup, resource, verb) triples.

Kept next to the code that makes the calls (`webhook/adapters/kube.py`, used by the tracker, the Lease
lock and `doctor`), so a test can hold the ClusterRole in manifests/ to exactly this and the tests
against the fake API server can check that no other call is made. Subresources are written as RBAC
does: `nodes/configz` is what a kubelet checks for a direct GET /configz (KEP-2862); `nodes/proxy` is
GET /api/v1/nodes/NAME/proxy/configz through the API server (webhook/adapters/kubelet.py).
"""

from __future__ import annotations

Permission = tuple[str, str, str]

# Checked by each kubelet (a SubjectAccessReview it sends), never by the API server for our own requests.
KUBELET: frozenset[Permission] = frozenset({("", "nodes/configz", "get")})

# Only with the opt-in manifests/configz-via-proxy component (V4ONLY_CONFIGZ_VIA_PROXY), and for `doctor`
# when the direct read is refused. On the kubelet it also authorizes exec/run: never in the base install.
PROXY_FALLBACK: frozenset[Permission] = frozenset({("", "nodes/proxy", "get")})

# `v4only serve` without --publish-node-labels: list+watch only (a name-selected list finds a node's kubelet
# address), plus each kubelet's /configz.
TRACKER: frozenset[Permission] = KUBELET | frozenset(
    {
        ("", "nodes", "list"),
        ("", "nodes", "watch"),
        ("", "namespaces", "list"),
        ("", "namespaces", "watch"),
        ("", "pods", "list"),  # fieldSelector status.phase=Failed: SysctlForbidden evidence
        ("", "pods", "watch"),
    }
)

# Added by --publish-node-labels: the Lease lock, and a merge patch of one label on nodes.
LABEL_PUBLISHER: frozenset[Permission] = frozenset(
    {
        ("coordination.k8s.io", "leases", "get"),
        ("coordination.k8s.io", "leases", "create"),
        ("coordination.k8s.io", "leases", "update"),
        ("", "nodes", "patch"),
    }
)

# Added by --publish-node-labels too: the elected replica writes the DNS probe's finding (ConfigMap v4only-dns,
# adapters/kube_dns.py) in v4only's own namespace: a PUT, and a POST the first time; a GET first, so each
# domain's `since` goes on from the finding already there.
DNS_PUBLISHER: frozenset[Permission] = frozenset(
    {
        ("", "configmaps", "get"),
        ("", "configmaps", "update"),
        ("", "configmaps", "create"),
    }
)

# Granted by the namespaced Role (v4only's own namespace), not the ClusterRole.
NAMESPACED: frozenset[Permission] = LABEL_PUBLISHER - {("", "nodes", "patch")} | DNS_PUBLISHER

# `v4only doctor`, run by a person: one read of everything, no watches, no writes; each kubelet directly,
# then through the API server's node proxy where the direct read was refused.
DOCTOR: frozenset[Permission] = KUBELET | PROXY_FALLBACK | frozenset(
    {
        # The DNS probe's finding (ConfigMap v4only-dns in v4only's namespace), read by doctor, live review and
        # patch; without it (403) the finding is unknown, as before the first probe.
        ("", "configmaps", "get"),
        ("", "nodes", "list"),
        ("", "namespaces", "list"),
        ("", "pods", "list"),
    }
)

# `v4only doctor --webhook`, also run by a person (never the webhook's ServiceAccount, so not in SERVE): every
# MutatingWebhookConfiguration (its own and the others, for the timeout budget) and the serving Secret in
# v4only's namespace (a 403 there only costs the certificate check).
DOCTOR_WEBHOOK: frozenset[Permission] = frozenset(
    {
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations", "list"),
        ("", "secrets", "get"),
        # Can the webhook's ServiceAccount get nodes/proxy? Without this, a SelfSubjectReview and a
        # SelfSubjectAccessReview (no permission needed) answer when doctor runs as that ServiceAccount.
        ("authorization.k8s.io", "subjectaccessreviews", "create"),
    }
)

SERVE: frozenset[Permission] = TRACKER | LABEL_PUBLISHER | DNS_PUBLISHER
