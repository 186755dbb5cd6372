"""Counters shared by a loop's threads (for logs and tests)."""

from __future__ import annotations

import threading
from collections import Counter


class Stats:
    """Counters shared by the tracker's threads (for logs and tests)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def snapshot(self) -> Counter[str]:
        """A copy; a key never counted reads 0."""
        with self._lock:
            return Counter(self._counts)
