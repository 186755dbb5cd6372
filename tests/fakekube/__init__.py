"""A faithful-enough fake Kubernetes API server for tests; the real `kubernetes` client talks to it over HTTP.

    from tests.fakekube import FakeKube, objects

See server.FakeKube for the API, fixtures.py for the pytest fixtures, objects.py for object builders.
"""

from . import objects
from .controllers import RolloutSimulator
from .server import FakeKube, RecordedRequest

__all__ = ["FakeKube", "RecordedRequest", "RolloutSimulator", "objects"]
