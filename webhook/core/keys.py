"""Label and annotation keys of the product contract (shared/product.md, "Names")."""

PREFIX = "v4only.io/"

INJECT = PREFIX + "inject"  # Namespace or Pod label: enabled | disabled
REMEDY = PREFIX + "remedy"  # Pod annotation: auto | sysctl | env | none
DNS = PREFIX + "dns"  # Pod annotation: auto | cluster-search | ndots | off
UV_OFFLINE = PREFIX + "uv-offline"  # Pod annotation or Namespace label: "true" adds UV_NO_SYNC/UV_PYTHON_DOWNLOADS
APPLIED = PREFIX + "applied"  # written on every managed Pod
REASON = PREFIX + "reason"  # written on every managed Pod
NODE_CAPABILITY = PREFIX + "ipv6-sysctl"  # published by the capability tracker
NODE_OVERRIDE = PREFIX + "ipv6-sysctl-override"  # set by an admin; always wins
# Offline review: a Node's kubelet allowlist as a comma list (`v4only review --nodes`).
NODE_KUBELET_ALLOWLIST = PREFIX + "kubelet-allowed-unsafe-sysctls"

ENABLED = "enabled"
DISABLED = "disabled"
ALLOWED = "allowed"
FORBIDDEN = "forbidden"

# Pod Security Admission namespace label (pod-security-admission api/constants.go).
PSA_ENFORCE = "pod-security.kubernetes.io/enforce"
PSA_ENFORCE_VERSION = "pod-security.kubernetes.io/enforce-version"

HOSTNAME_LABEL = "kubernetes.io/hostname"
