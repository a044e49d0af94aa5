"""Drift-free poll schedule: ticks at start + k * interval, overruns skip ticks instead of bursting."""

from __future__ import annotations

import pytest

from edge_agent.schedule import Schedule


@pytest.mark.parametrize(
    ("calls", "expected"),
    [
        # On time: each poll finishes before the next tick.
        ([100.0, 100.3, 101.2, 102.05], [(100.0, 0, 0), (101.0, 1, 0), (102.0, 2, 0), (103.0, 3, 0)]),
        # Poll 0 overran to 102.5: ticks 1 and 2 are skipped, the next poll is at tick 3, not at once.
        ([100.0, 102.5, 103.1], [(100.0, 0, 0), (103.0, 3, 2), (104.0, 4, 0)]),
        # Exactly on a tick: that tick is still due (no float noise skip).
        ([100.0, 101.0], [(100.0, 0, 0), (101.0, 1, 0)]),
        # Clock earlier than the next tick (woke early): wait for the tick, do not reuse an old one.
        ([100.0, 100.0, 100.0], [(100.0, 0, 0), (101.0, 1, 0), (102.0, 2, 0)]),
        # Huge overrun: one poll, many skipped ticks, no burst.
        ([100.0, 200.4], [(100.0, 0, 0), (201.0, 101, 100)]),
    ],
)
def test_advance(calls: list[float], expected: list[tuple[float, int, int]]) -> None:
    schedule = Schedule(start=100.0, interval=1.0)
    got = [schedule.advance(now) for now in calls]
    assert [(round(t.due, 9), t.index, t.skipped) for t in got] == expected


def test_no_drift_over_many_ticks() -> None:
    # A 0.1 s interval summed 10 000 times drifts in floating point; multiplying does not.
    schedule = Schedule(start=0.0, interval=0.1)
    tick = None
    for k in range(10_000):
        tick = schedule.advance(k * 0.1 + 0.01)
    assert tick is not None
    assert tick.index == 10_000
    assert tick.due == pytest.approx(1000.0, abs=1e-9)


@pytest.mark.parametrize("interval", [0.0, -1.0, float("nan")])
def test_rejects_bad_interval(interval: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        Schedule(0.0, interval)
