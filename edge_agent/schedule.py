"""Drift-free poll schedule: ticks at start + k * interval, skipping ticks missed by an overrun."""

from __future__ import annotations

import math
from dataclasses import dataclass

# Float noise must not turn "exactly on tick k" into "late for tick k".
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class Tick:
    """The next poll: when it is due, its index, and how many ticks were skipped to get there."""

    due: float
    index: int
    skipped: int


class Schedule:
    """Ticks at start + k * interval (monotonic seconds); never bursts to catch up."""

    def __init__(self, start: float, interval: float) -> None:
        if not interval > 0:
            raise ValueError(f"poll interval must be positive, got {interval!r}")
        self.start = start
        self.interval = interval
        self._next = 0

    def tick_time(self, index: int) -> float:
        """Time of tick index."""
        return self.start + index * self.interval

    def advance(self, now: float) -> Tick:
        """Return the first unconsumed tick not earlier than now and consume it."""
        elapsed = (now - self.start) / self.interval
        index = max(self._next, math.ceil(elapsed - _EPSILON))
        skipped = index - self._next
        self._next = index + 1
        return Tick(self.tick_time(index), index, skipped)
