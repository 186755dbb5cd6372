"""Shared fixtures: the fake Kubernetes API server (tests/fakekube) for every test that needs a cluster."""

pytest_plugins = ["tests.fakekube.fixtures"]
