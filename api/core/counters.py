"""Cumulative counters (parts, energy) turned into increments; a decrease is a reset, never a negative count.

A rise larger than the machine could physically make since the counter's previous reading is a counter anomaly
(DESIGN.md): kept and reported, never counted. Which steps are wraps, resets or anomalies is shopfloor.counters'
counter_step, the function the agent unwraps with. After an anomaly the counter is compared with both its last
plausible reading and the anomalous one: a spike (a glitch, a forged reading) is dropped and counting goes on from
before it; a counter that really moved (a preset, a replaced PLC) goes on from its new level.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from shopfloor.counters import counter_step

# Signal -> Counts field. Counters are cumulative on the machine and may reset (power cycle, shift reset).
COUNTERS = {"good_count": "good", "reject_count": "reject", "energy_kwh": "kwh"}
_NOTHING = (0, 0, 0.0)  # step_raw's answer for a sample without counters


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


# The most a counter may rise per hour when the machine's profile declares no max_rate_per_h: beyond any machine of
# a sharing facility (100 parts a second; a 10 MW meter), so that only giant jumps are anomalies. A profile declaring
# the machine's real limit catches smaller ones.
DEFAULT_MAX_RATE_PER_H: Mapping[str, float] = {
    "good_count": 360_000.0,
    "reject_count": 360_000.0,
    "energy_kwh": 10_000.0,
}
# A reading may be one unit past the rate: a part completing just after the previous reading.
SLACK: Mapping[str, float] = {"good_count": 1.0, "reject_count": 1.0, "energy_kwh": 0.01}
MS_PER_HOUR = 3_600_000


@dataclass(frozen=True, slots=True)
class CounterLimits:
    """The most each counter of one machine can rise per hour: its physical limit."""

    per_h: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MAX_RATE_PER_H))

    def allowance(self, signal: str) -> tuple[float, float]:
        """(rate per hour, slack) of signal: what max_increase is made of."""
        return self.per_h.get(signal, DEFAULT_MAX_RATE_PER_H.get(signal, 0.0)), SLACK.get(signal, 0.0)

    def max_increase(self, signal: str, elapsed_ms: int) -> float:
        """The most signal can rise in elapsed_ms."""
        rate, slack = self.allowance(signal)
        return rate * max(0, elapsed_ms) / MS_PER_HOUR + slack


@dataclass(frozen=True, slots=True)
class Anomaly:
    """A counter reading the machine could not have reached: kept and reported, never counted."""

    ts_ms: int
    signal: str
    previous: float  # the last plausible reading
    value: float
    elapsed_ms: int  # since that reading
    badge: int | None = None  # logged in just before the reading (0: nobody; None: UNKNOWN time, nobody can say)

    @property
    def rise(self) -> float:
        """How far the reading is from the last plausible one (negative: below it, after a reset)."""
        return self.value - self.previous


def counter_delta(previous: float, current: float) -> float:
    """Return the increment between two readings of a cumulative counter; a decrease is a reset to zero."""
    # After a reset the counter restarted from 0, so everything it shows now is new.
    return current - previous if current >= previous else current


def _number(value: object) -> float | None:
    """A counter reading as a number: non-negative and finite (inf minus inf would count NaN parts), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if 0 <= value < math.inf else None


class CounterTracker:
    """Remember the last plausible reading of each counter and turn the next reading into Counts."""

    def __init__(self, limits: CounterLimits | None = None) -> None:
        self.limits = limits or CounterLimits()
        self._last: dict[str, tuple[int, float]] = {}  # signal -> (ts, value) of the last plausible reading
        self._suspect: dict[str, tuple[int, float]] = {}  # signal -> the anomalous reading after it
        self.anomalies: list[Anomaly] = []
        # The figures of limits.max_increase per counter, for step_raw's inline check of a plain rise (the same
        # expression, so the same float); a negative rate (no such machine) always takes the general path.
        self._rates = {s: allowance for s in COUNTERS if (allowance := self.limits.allowance(s))[0] >= 0}

    def step(self, values: Mapping[str, object], ts_ms: int = 0) -> Counts:
        """Return the increments since the previous reading of each counter present in values."""
        good, reject, kwh = self.step_raw(values, ts_ms)
        return Counts(good, reject, kwh)

    def step_raw(self, values: Mapping[str, object], ts_ms: int = 0) -> tuple[int, int, float]:
        """Return step's increments as (good, reject, kwh) without building Counts (it runs once per sample)."""
        get = values.get
        good, reject, kwh = get("good_count"), get("reject_count"), get("energy_kwh")
        if good is None and reject is None and kwh is None:
            return _NOTHING
        return (
            0 if good is None else int(self._rise("good_count", good, ts_ms)),
            0 if reject is None else int(self._rise("reject_count", reject, ts_ms)),
            0.0 if kwh is None else float(self._rise("energy_kwh", kwh, ts_ms)),
        )

    def _rise(self, signal: str, value: object, ts: int) -> float:
        """The increment of one reading of signal at ts.

        A plain rise within the limit (the common reading) is worked out here; anything else (the first reading, a
        fall, a rise past the limit, a suspect pending, a value that is not a plain finite non-negative number) goes
        through _advance, whose rules these are.
        """
        kind = type(value)
        last = self._last.get(signal)
        if (kind is int or kind is float) and last is not None and signal not in self._suspect:
            rates = self._rates.get(signal)
            increment = value - last[1]  # type: ignore[operator]
            if rates is not None and 0 <= increment < math.inf:  # value is finite and not below the last reading
                elapsed = ts - last[0]
                # CounterLimits.max_increase's expression, term for term.
                if not increment > rates[0] * (elapsed if elapsed > 0 else 0) / MS_PER_HOUR + rates[1]:
                    self._last[signal] = (ts, value)  # type: ignore[assignment]
                    return increment
        return self._advance(signal, value, ts)

    def _advance(self, signal: str, value: object, ts: int) -> float:
        # Plain ints take the fast path; anything else goes through _number, whose rules these are.
        number = value if type(value) is int and value >= 0 else _number(value)
        if number is None:
            return 0
        last = self._last.get(signal)
        if last is None:
            self._last[signal] = (ts, number)
            return 0
        limits = self.limits
        step = counter_step(last[1], number, max_increase=limits.max_increase(signal, ts - last[0]))
        if not step.anomaly:
            self._last[signal] = (ts, number)
            self._suspect.pop(signal, None)
            return step.increment
        suspect = self._suspect.get(signal)
        if suspect is not None:
            moved = counter_step(suspect[1], number, max_increase=limits.max_increase(signal, ts - suspect[0]))
            if not moved.anomaly:  # the counter really is at the new level: count on from there
                self._last[signal] = (ts, number)
                del self._suspect[signal]
                return moved.increment
        self._suspect[signal] = (ts, number)
        self.anomalies.append(Anomaly(ts, signal, last[1], number, ts - last[0]))
        return 0
