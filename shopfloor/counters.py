"""A cumulative counter's semantics, in one place: width, wrap, reset and anomaly.

The edge agent unwraps wraps with it, the replay runs the agent's code, and the analytics classify increments
with the same function, so the three cannot disagree about what a reading means.

- An increase is an increment.
- A decrease that the counter's width explains (65535 -> 3 on a 16-bit counter is +4) is a wrap, if the unwrapped
  increment is plausible: at most ``max_increase`` when the machine's physical limit is known, else at most half
  the counter's range.
- Any other decrease is a reset (PLC restart, shift reset): the counter restarted from 0, so its new value is new.
- An increment above ``max_increase`` is an anomaly: kept and flagged, never counted as production.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class StepKind(StrEnum):
    """What happened between two readings of a counter."""

    INCREASE = "increase"  # includes "unchanged"
    WRAP = "wrap"
    RESET = "reset"


@dataclass(frozen=True, slots=True)
class CounterStep:
    """The increment between two readings, how it came about, and whether it is physically plausible."""

    kind: StepKind
    increment: float
    anomaly: bool = False


def counter_step(
    previous: float, current: float, *, modulus: float | None = None, max_increase: float | None = None
) -> CounterStep:
    """Classify the step from previous to current of a counter that wraps at modulus (None: never wraps)."""
    if current >= previous:
        increment = current - previous
        return CounterStep(StepKind.INCREASE, increment, max_increase is not None and increment > max_increase)
    if modulus is not None:
        wrapped = current + modulus - previous
        limit = max_increase if max_increase is not None else modulus / 2
        if 0 <= wrapped <= limit:
            return CounterStep(StepKind.WRAP, wrapped)
    return CounterStep(StepKind.RESET, current, max_increase is not None and current > max_increase)


@dataclass(frozen=True, slots=True)
class CounterSpec:
    """How one counter signal behaves: its wrap in engineering units and its physical limit per hour."""

    signal: str
    modulus: float | None
    max_rate_per_h: float | None = None

    def max_increase(self, elapsed_ms: int) -> float | None:
        """The most the counter can rise in elapsed_ms, or None if unknown."""
        if self.max_rate_per_h is None:
            return None
        return self.max_rate_per_h * max(0, elapsed_ms) / 3_600_000


class CounterUnwrapper:
    """Turns raw readings of a machine's counters into values that keep rising across wraps.

    ``offsets`` (signal -> wraps so far, in engineering units) survive restarts: the caller persists what
    ``apply`` reports as changed. A reset is passed on as a reset: the offset goes back to 0, so the value drops.
    """

    def __init__(self, specs: list[CounterSpec], offsets: dict[str, float] | None = None) -> None:
        self.specs = [s for s in specs if s.modulus is not None]
        self.offsets: dict[str, float] = {s.signal: float((offsets or {}).get(s.signal, 0.0)) for s in self.specs}
        self._last: dict[str, tuple[int, float]] = {}  # signal -> (ts, raw value) of the previous reading

    def apply(self, ts: int, values: dict[str, object]) -> dict[str, float]:
        """Unwrap the counters in values in place; return the offsets that changed (to persist)."""
        changed: dict[str, float] = {}
        for spec in self.specs:
            signal = spec.signal
            raw = values.get(signal)
            if type(raw) is not int and type(raw) is not float:
                continue
            offset = self.offsets[signal]
            last = self._last.get(signal)
            self._last[signal] = (ts, raw)
            if last is not None and raw < last[1]:
                assert spec.modulus is not None
                step = counter_step(last[1], raw, modulus=spec.modulus, max_increase=spec.max_increase(ts - last[0]))
                new_offset = offset + spec.modulus if step.kind is StepKind.WRAP else 0.0
                if new_offset != offset:
                    self.offsets[signal] = offset = new_offset
                    changed[signal] = new_offset
            if offset:
                total = raw + offset
                values[signal] = round(total, 6) if type(raw) is float else int(total)
        return changed
