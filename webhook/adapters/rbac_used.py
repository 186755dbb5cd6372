"""The Kubernetes API permissions the capability code uses, as (apiGroup, resource, verb) triples.

Kept next to the code that makes the calls (`webhook/adapters/kube.py`, used by the tracker, the Lease
lock and `doctor`), so a test can hold the ClusterRole in manifests/ to exactly this and the tests
against the fake API server can check that no other call is made. Subresources are written as RBAC
does: `nodes/proxy` (GET /api/v1/nodes/NAME/proxy/configz is the verb `get` on it).
"""

from __future__ import annotations

Permission = tuple[str, str, str]

# `v4only serve` without --publish-node-labels: list+watch only, plus each kubelet's /configz.
TRACKER: frozenset[Permission] = frozenset(
    {
        ("", "nodes", "list"),
        ("", "nodes", "watch"),
        ("", "nodes/proxy", "get"),
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

# `v4only doctor`, run by a person: one read of everything, no watches, no writes.
DOCTOR: frozenset[Permission] = frozenset(
    {
        # The DNS probe's finding (ConfigMap v4only-dns in v4only's namespace), read by doctor, live review and
        # patch; without it (403) the finding is unknown, as before the first probe.
        ("", "configmaps", "get"),
        ("", "nodes", "list"),
        ("", "nodes/proxy", "get"),
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
    }
)

SERVE: frozenset[Permission] = TRACKER | LABEL_PUBLISHER | DNS_PUBLISHER
