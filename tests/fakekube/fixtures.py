"""pytest fixtures: a started FakeKube per test, and a real kubernetes ApiClient pointed at it.

Enable with `pytest_plugins = ["tests.fakekube.fixtures"]` in the top-level conftest.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from .server import FakeKube


@contextmanager
def running(**options: Any) -> Iterator[FakeKube]:
    """A FakeKube started with `options`, stopped on the way out."""
    kube = FakeKube(**options).start()
    try:
        yield kube
    finally:
        kube.stop()


@pytest.fixture
def fake_kube() -> Iterator[FakeKube]:
    with running() as kube:
        yield kube


@pytest.fixture
def quick_kube() -> Iterator[FakeKube]:
    """Short watches, frequent bookmarks and a long event history: for loops that must react within a test."""
    with running(default_watch_timeout=5.0, bookmark_interval=1.0, history_size=5000) as kube:
        yield kube


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
