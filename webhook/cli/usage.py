"""Exit statuses, the usage error every command shares, and the inputs every command loads the same way.

(Kept apart from main.py to avoid import cycles.)
"""

from __future__ import annotations

import argparse

from webhook.adapters import files
from webhook.adapters.kube import KubeApi, KubeError
from webhook.core.settings import Settings

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2
# The order the client loads in (adapters/kube.load_api_client); every command says the same.
KUBECONFIG_HELP = "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, else in-cluster)"


class UsageError(Exception):
    """Bad usage or bad input: reported as one line on stderr, exit status 2."""


def load_settings(path: str | None) -> Settings:
    """The settings file (`--config`), or the defaults; a bad file is a UsageError naming it."""
    try:
        return files.load_settings(path)
    except files.InputError as error:
        raise UsageError(str(error)) from None


def connect(args: argparse.Namespace, *, hint: str = "") -> KubeApi:
    """The cluster of `--kubeconfig` / `--context` (else $KUBECONFIG, ~/.kube/config, in-cluster)."""
    try:
        return KubeApi.connect(kubeconfig=args.kubeconfig, context=args.context)
    except KubeError as error:
        raise UsageError(f"{error}{hint}") from None


def parse_labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--namespace-labels: {item!r} is not key=value")
        labels[key] = value
    return labels
