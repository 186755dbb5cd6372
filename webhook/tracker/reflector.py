"""One reflector per watched resource: list, then watch from the list's resourceVersion, forever.

`410 Gone` relists at once; any other error reconnects after an exponential, capped, jittered backoff. Each
watch asks the server to end it after `timeoutSeconds` and reads with a client-side timeout a little longer
than that: a connection that hangs without events or closing is dropped and rewatched (the watchdog).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from webhook.adapters.kube import KubeApi, KubeError, Resource
from webhook.loops.backoff import Backoff
from webhook.loops.stats import Stats
from webhook.tracker.config import TrackerConfig
from webhook.tracker.inventory import trim

log = logging.getLogger("webhook.tracker")

MIN_WATCH_SECONDS = 1.0  # a watch that ends sooner (without an error) is retried after a backoff


@dataclass(frozen=True, slots=True)
class Listed:
    resource: Resource
    items: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Event:
    resource: Resource
    kind: str
    obj: dict[str, Any]


class Reflector(threading.Thread):
    """List, then watch from the list's resourceVersion, forever; events go to `sink`."""

    def __init__(
        self,
        resource: Resource,
        *,
        api: KubeApi,
        config: TrackerConfig,
        sink: Callable[[Listed | Event], None],
        stopping: threading.Event,
        stats: Stats,
        field_selector: str | None = None,
    ) -> None:
        super().__init__(name=f"v4only-watch-{resource}", daemon=True)
        self.resource, self._api, self._config, self._sink = resource, api, config, sink
        self._stopping, self._stats, self._selector = stopping, stats, field_selector
        self._stream: Any = None
        self.synced = False  # listed at least once
        self.failed = False  # failed at least once (a missing permission must not block readiness)
        self.healthy = False  # the last list or watch request succeeded and nothing failed since

    def run(self) -> None:
        backoff = Backoff(self._config.backoff_initial_seconds, self._config.backoff_max_seconds)
        version, expired = "", 0
        while not self._stopping.is_set():
            try:
                if not version:
                    version = self._list()
                started = time.monotonic()
                version = self._watch(version)
                if time.monotonic() - started >= MIN_WATCH_SECONDS:
                    backoff.reset()
                    expired = 0
                else:  # a server that ends every watch at once must not make this spin
                    self._stopping.wait(backoff.next())
            except KubeError as error:
                if self._stopping.is_set():
                    break
                if error.status == 410:
                    log.info("%s: resourceVersion %s expired (410 Gone); listing again", self.resource, version)
                    self._stats.count(f"relist_{self.resource}")
                    version, expired = "", expired + 1
                    if expired > 1:  # expired again right after a relist: back off like any error
                        self._stopping.wait(backoff.next())
                    continue
                self.healthy, self.failed = False, True
                self._stats.count(f"error_{self.resource}")
                delay = backoff.next()
                log.warning("%s: %s; retrying in %.1fs", self.resource, error, delay)
                self._stopping.wait(delay)

    def interrupt(self) -> None:
        stream = self._stream
        if stream is not None:
            stream.close()

    def _list(self) -> str:
        listing = self._api.list(self.resource, field_selector=self._selector, keep=partial(trim, self.resource))
        self._sink(Listed(self.resource, listing.items))
        self._stats.count(f"list_{self.resource}")
        self.synced = self.healthy = True
        return listing.resource_version

    def _watch(self, version: str) -> str:
        timeout = self._config.watch_timeout_seconds
        grace = self._config.watch_grace_seconds
        stream = self._api.watch(
            self.resource,
            resource_version=version,
            timeout_seconds=timeout,
            read_timeout=timeout + grace,
            field_selector=self._selector,
        )
        self._stream, self.healthy = stream, True
        self._stats.count(f"watch_{self.resource}")
        deadline = time.monotonic() + timeout + grace
        try:
            for kind, obj in stream:
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if kind != "BOOKMARK":
                    self._sink(Event(self.resource, kind, trim(self.resource, obj)))
                if self._stopping.is_set() or time.monotonic() > deadline:
                    break
        finally:
            self._stream = None
            stream.close()
        return version
