"""pytest fixtures: a started FakeKube per test, and a real kubernetes ApiClient pointed at it.

Enable with `pytest_plugins = ["tests.fakekube.fixtures"]` in the top-level conftest.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from .server import FakeKube


@pytest.fixture
def fake_kube() -> Iterator[FakeKube]:
    kube = FakeKube().start()
    try:
        yield kube
    finally:
        kube.stop()


@pytest.fixture
def kube_client(fake_kube: FakeKube, tmp_path: Path) -> Iterator[client.ApiClient]:
    """An ApiClient built the production way: from a kubeconfig file (context "fakekube")."""
    kubeconfig = fake_kube.kubeconfig_path(tmp_path)
    api_client: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig)
    )
    try:
        yield api_client
    finally:
        api_client.close()  # type: ignore[no-untyped-call]
