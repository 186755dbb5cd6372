"""What the admission path reads: the latest capability snapshot and namespace labels.

Writers (the capability tracker, or a static set-up for `--dev` and tests) replace whole immutable
snapshots; the admission path only reads two references and a timestamp, so it never waits on I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace

from webhook.core.capability import Capability

NamespaceLabels = Mapping[str, Mapping[str, str]]


class UniformNamespaces(Mapping[str, Mapping[str, str]]):
    """Every namespace has the same labels: for `serve --dev`, which has no cluster to ask."""

    def __init__(self, labels: Mapping[str, str]) -> None:
        self._labels = dict(labels)

    def __getitem__(self, name: str) -> Mapping[str, str]:
        return self._labels

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


@dataclass(frozen=True, slots=True)
class View:
    capability: Capability
    namespaces: NamespaceLabels
    # None: static (no cluster), never stale. Otherwise the monotonic time the data was last confirmed.
    confirmed_at: float | None


class ClusterState:
    """A holder swapped atomically by one writer and read by many readers."""

    def __init__(
        self,
        *,
        max_age_seconds: float,
        initial: View | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_age = max_age_seconds
        self._clock = clock
        self._view = initial or View(Capability.unknown("the node list has not been read yet"), {}, 0.0)
        self._ready = initial is not None

    @classmethod
    def static(cls, capability: Capability, namespaces: NamespaceLabels | None = None) -> ClusterState:
        # `is None`, not `or`: UniformNamespaces has no names to list, so it is empty (falsy) and yet answers for all.
        labels = {} if namespaces is None else namespaces
        return cls(max_age_seconds=float("inf"), initial=View(capability, labels, None))

    @property
    def ready(self) -> bool:
        """True once the first full list has been read (or for a static set-up)."""
        return self._ready

    def publish(self, capability: Capability, namespaces: NamespaceLabels) -> None:
        self._view = View(capability, namespaces, self._clock())
        self._ready = True

    def confirm(self) -> None:
        """The watches are alive and nothing changed: the current view is still fresh."""
        view = self._view
        self._view = View(view.capability, view.namespaces, self._clock())

    def view(self) -> View:
        """The view to decide with; capability older than the limit is replaced by `unknown`."""
        view = self._view
        if view.confirmed_at is None or view.capability.state != "known":
            return view
        age = self._clock() - view.confirmed_at
        if age <= self._max_age:
            return view
        stale = Capability.unknown(f"capability is {age:.0f}s old, over the {self._max_age:.0f}s limit")
        # Rule 7's DNS facts stay: they are not node capability, and the DNS probe runs on its own.
        return View(replace(stale, dns=view.capability.dns), view.namespaces, view.confirmed_at)

    def age_seconds(self) -> float | None:
        confirmed = self._view.confirmed_at
        return None if confirmed is None else self._clock() - confirmed
