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
        good, reject, kwh = self.step_raw(values)
        return Counts(good, reject, kwh)

    def step_raw(self, values: Mapping[str, object]) -> tuple[int, int, float]:
        """Return step's increments as (good, reject, kwh) without building Counts (it runs once per sample)."""
        return (
            int(self._advance("good_count", values)),
            int(self._advance("reject_count", values)),
            float(self._advance("energy_kwh", values)),
        )

    def _advance(self, signal: str, values: Mapping[str, object]) -> float:
        value = values.get(signal)
        if value is None:
            return 0
        # Plain ints and floats take the fast path; anything else goes through _number, whose rules these are.
        number = value if (type(value) is int or type(value) is float) and value >= 0 else _number(value)
        if number is None:
            return 0
        previous = self._last.get(signal)
        self._last[signal] = number
        return 0 if previous is None else counter_delta(previous, number)
