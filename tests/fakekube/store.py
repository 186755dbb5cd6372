"""Thread-safe object storage with etcd-like resourceVersions and a bounded watch history.

One global, monotonically increasing revision is shared by every type, as etcd's is. Every write gets
the next revision as metadata.resourceVersion and is appended to a bounded event history; watches
started from a resourceVersion replay that history, as the apiserver's watch cache does
(k8s.io/apiserver/pkg/storage/cacher/watch_cache.go). Events that fall off the history, or are dropped
by compact(), make older resourceVersions "too old" (410 Expired).
"""

from __future__ import annotations

import contextlib
import copy
import queue
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .status import expired

Key = tuple[str, str, str, str]  # (group, plural, namespace, name) of the *storage* type
StoreKey = tuple[str, str]  # (group, plural)
Obj = dict[str, Any]

FIRST_RESOURCE_VERSION = 1000  # arbitrary, like a fresh etcd that already holds a few writes


@dataclass
class Event:
    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    key: Key
    obj: Obj
    prev: Obj | None  # the object before this write (cacher's PrevObject), for selector transitions


@dataclass(eq=False)
class Watcher:
    """One open watch stream: its queue of live events, and the socket to cut when told to break."""

    store_key: StoreKey
    start_rv: int  # the revision when the watch was registered: every later event is in `events`
    events: queue.Queue[Event] = field(default_factory=queue.Queue)
    broken: threading.Event = field(default_factory=threading.Event)
    sock: socket.socket | None = None

    def break_stream(self) -> None:
        """Close the TCP stream abruptly: no terminating chunk, like a dying apiserver or a cut link."""
        self.broken.set()
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)


def meta(obj: Obj) -> dict[str, Any]:
    result: dict[str, Any] = obj.setdefault("metadata", {})
    return result


class Store:
    def __init__(self, history_size: int = 1000) -> None:
        self.lock = threading.RLock()
        self._objects: dict[Key, Obj] = {}
        self._rv = FIRST_RESOURCE_VERSION
        self._history: deque[Event] = deque()
        self._history_size = history_size
        self._floor = self._rv  # a watch may start at any resourceVersion >= floor
        self._watchers: set[Watcher] = set()

    @property
    def resource_version(self) -> int:
        with self.lock:
            return self._rv

    @property
    def floor(self) -> int:
        with self.lock:
            return self._floor

    def get(self, key: Key) -> Obj | None:
        with self.lock:
            obj = self._objects.get(key)
            return copy.deepcopy(obj) if obj is not None else None

    def items(self, store_key: StoreKey, namespace: str = "") -> list[Obj]:
        """Objects of one type in etcd key order (namespace, then name); "" means all namespaces."""
        with self.lock:
            keys = sorted(k for k in self._objects if k[:2] == store_key and (not namespace or k[2] == namespace))
            return [copy.deepcopy(self._objects[k]) for k in keys]

    def scan(self, store_key: StoreKey, namespace: str = "") -> list[Obj]:
        """What `items` returns, without the copies: call it holding `lock`, and only read the objects
        (a paginated list copies just the page it sends)."""
        keys = sorted(k for k in self._objects if k[:2] == store_key and (not namespace or k[2] == namespace))
        return [self._objects[k] for k in keys]

    def keys_in_namespace(self, namespace: str) -> list[Key]:
        with self.lock:
            return [k for k in self._objects if k[2] == namespace]

    def commit(self, key: Key, obj: Obj | None) -> Event | None:
        """Store `obj` (None deletes) under the next revision and fan the event out to watchers."""
        with self.lock:
            prev = self._objects.get(key)
            if obj is None and prev is None:
                return None
            self._rv += 1
            if obj is None:
                assert prev is not None
                del self._objects[key]
                # the DELETED event carries the deletion's revision (cacher updateResourceVersion)
                event_obj, kind = copy.deepcopy(prev), "DELETED"
            else:
                event_obj, kind = copy.deepcopy(obj), "ADDED" if prev is None else "MODIFIED"
                self._objects[key] = copy.deepcopy(event_obj)
                meta(self._objects[key])["resourceVersion"] = str(self._rv)
            meta(event_obj)["resourceVersion"] = str(self._rv)
            event = Event(self._rv, kind, key, event_obj, copy.deepcopy(prev))
            self._remember(event)
            for watcher in self._watchers:
                if watcher.store_key == key[:2]:
                    watcher.events.put(event)
            return event

    def _remember(self, event: Event) -> None:
        self._history.append(event)
        while len(self._history) > self._history_size:
            self._floor = self._history.popleft().rv

    def compact(self) -> None:
        """Forget all history: only watches from the current resourceVersion (or none) still work."""
        with self.lock:
            self._history.clear()
            self._floor = self._rv

    def check_not_expired(self, rv: int, message: str) -> None:
        with self.lock:
            if rv < self._floor:
                raise expired(message.format(rv=rv, floor=self._floor))

    def watch(self, store_key: StoreKey, since: int | None) -> tuple[Watcher, list[Event]]:
        """Register a watcher and return it with the events to replay first, atomically.

        since=None: synthetic ADDED for every current object ("Get State and Start at Most Recent" and
        resourceVersion=0); otherwise the history after `since`, or 410 if it no longer reaches back.
        """
        with self.lock:
            if since is None:
                replay = [Event(int(meta(o)["resourceVersion"]), "ADDED", self._key_of(store_key, o), o, None)
                          for o in self.items(store_key)]
            else:
                # watch_cache.go getAllEventsSinceLocked: "too old resource version: %d (%d)"
                self.check_not_expired(since, "too old resource version: {rv} ({floor})")
                replay = [copy.deepcopy(e) for e in self._history if e.rv > since and e.key[:2] == store_key]
            watcher = Watcher(store_key, self._rv)
            self._watchers.add(watcher)
            return watcher, replay

    @staticmethod
    def _key_of(store_key: StoreKey, obj: Obj) -> Key:
        md = meta(obj)
        return (*store_key, md.get("namespace", ""), md["name"])

    def unwatch(self, watcher: Watcher) -> None:
        with self.lock:
            self._watchers.discard(watcher)

    def watchers(self) -> list[Watcher]:
        with self.lock:
            return list(self._watchers)
