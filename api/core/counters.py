"""Cumulative counters (parts, energy) turned into increments; a decrease is a reset, never a negative count."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# Signal -> Counts field. Counters are cumulative on the machine and may reset (power cycle, shift reset).
COUNTERS = {"good_count": "good", "reject_count": "reject", "energy_kwh": "kwh"}


@dataclass(frozen=True, slots=True)
class Counts:
    """Parts and energy produced over some stretch of time."""

    good: int = 0
    reject: int = 0
    kwh: float = 0.0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.good + other.good, self.reject + other.reject, self.kwh + other.kwh)

    @property
    def produced(self) -> int:
        """Good plus reject parts."""
        return self.good + self.reject

    @property
    def is_zero(self) -> bool:
        """Whether nothing was produced and no energy used."""
        return self.good == 0 and self.reject == 0 and self.kwh == 0


def counter_delta(previous: float, current: float) -> float:
    """Return the increment between two readings of a cumulative counter; a decrease is a reset to zero."""
    # After a reset the counter restarted from 0, so everything it shows now is new.
    return current - previous if current >= previous else current


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if value >= 0 else None


class CounterTracker:
    """Remember the last reading of each counter and turn the next reading into Counts."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def step(self, values: Mapping[str, object]) -> Counts:
        """Return the increments since the previous reading of each counter present in values."""
        delta: dict[str, float] = {}
        for signal, name in COUNTERS.items():
            value = _number(values.get(signal))
            if value is None:
                continue
            previous = self._last.get(signal)
            self._last[signal] = value
            if previous is not None:
                delta[name] = counter_delta(previous, value)
        return Counts(
            good=int(delta.get("good", 0)),
            reject=int(delta.get("reject", 0)),
            kwh=float(delta.get("kwh", 0.0)),
        )
