"""Start the tracker's threads; the handle that reports on them and stops them."""

from __future__ import annotations

import time
from collections.abc import Mapping

from webhook.adapters.kube import KubeApi
from webhook.core.settings import Settings
from webhook.loops.state import ClusterState
from webhook.tracker.config import TrackerConfig
from webhook.tracker.coordinator import Coordinator
from webhook.tracker.publisher import LabelPublisher


class TrackerHandle:
    """A running tracker: `stop()` ends every thread (and gives the Lease up if this replica held it)."""

    def __init__(self, coordinator: Coordinator, publisher: LabelPublisher | None) -> None:
        self._coordinator, self._publisher = coordinator, publisher

    @property
    def leading(self) -> bool:
        """This replica currently publishes node labels."""
        return self._publisher is not None and self._publisher.elector.leading

    @property
    def stats(self) -> Mapping[str, int]:
        """Counters: lists, watches, relists and errors per resource, configz reads, publishes, label patches."""
        return self._coordinator.stats.snapshot()

    def stop(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        self._coordinator.stop(timeout)
        if self._publisher is not None:
            self._publisher.join(max(0.0, deadline - time.monotonic()))


def start_tracker(
    state: ClusterState,
    settings: Settings,
    api: KubeApi,
    *,
    publish_labels: bool,
    config: TrackerConfig | None = None,
) -> TrackerHandle:
    """Start the tracker's threads; `state` turns ready at the first publish."""
    config = config or TrackerConfig()
    coordinator = Coordinator(state, settings, api, publish_labels=publish_labels, config=config)
    coordinator.start()
    publisher = LabelPublisher(coordinator, api, config) if publish_labels else None
    if publisher is not None:
        publisher.start()
    return TrackerHandle(coordinator, publisher)
