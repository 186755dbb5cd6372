"""Exponential, capped, jittered back-off: how every watch and retry loop of v4only waits after an error."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Exponential backoff, capped, with jitter (each delay is 50-100 % of the nominal one)."""

    def __init__(self, initial: float, maximum: float, rng: Callable[[], float] = random.random) -> None:
        self._initial, self._maximum, self._rng, self._attempt = initial, maximum, rng, 0

    def next(self) -> float:
        nominal = min(self._maximum, self._initial * 2.0 ** min(self._attempt, 30))
        self._attempt += 1
        return nominal * (0.5 + self._rng() / 2)

    def reset(self) -> None:
        self._attempt = 0
