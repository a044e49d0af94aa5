"""Counter anomalies in the analytics: a rise the machine could not have made is reported and never counted.

Limits here: 3,600 parts an hour (one a second) plus one part of slack; 10 kWh an hour (10 kW) plus 0.01 kWh.
So in t ms a counter may rise by t/1000 + 1 parts, or t/360000 + 0.01 kWh.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.core import Anomaly, CounterLimits, build_timeline, machine_totals
from api.core.counters import CounterTracker

LIMITS = CounterLimits({"good_count": 3600.0, "reject_count": 3600.0, "energy_kwh": 10.0})


def run(readings: list[tuple[int, float]], signal: str = "good_count") -> tuple[list[float], list[Anomaly]]:
    tracker = CounterTracker(LIMITS)
    index = {"good_count": 0, "reject_count": 1, "energy_kwh": 2}[signal]
    steps = [tracker.step_raw({signal: value}, ts)[index] for ts, value in readings]
    return steps, tracker.anomalies


@pytest.mark.parametrize(
    ("readings", "steps", "anomalies"),
    [
        # One part a second: every step plausible (1 <= 1 s * 1/s + 1).
        ([(0, 10), (1000, 11), (2000, 12)], [0, 1, 1], []),
        # Two parts in one second: 2 <= 1 + 1, the slack (a part finishing just after the reading).
        ([(0, 10), (1000, 12)], [0, 2], []),
        # Three in one second: 3 > 2, an anomaly; the next reading, 13 at 2 s, is +3 in 2 s from 10 (<= 3): counted.
        ([(0, 10), (1000, 13), (2000, 13)], [0, 0, 3], [Anomaly(1000, "good_count", 10, 13, 1000)]),
        # The forged trillion 1 ms after a real reading, then the real counter again: a spike, dropped; counting goes
        # on from 101 (102 at 1.5 s: +1 in 0.5 s <= 1.5).
        (
            [(0, 100), (1000, 101), (1001, 10**12), (1500, 102)],
            [0, 1, 0, 1],
            [Anomaly(1001, "good_count", 101, 10**12, 1)],
        ),
        # A preset to 50,000: an anomaly; then 50,001 a second later is implausible from 100 (+49,901 in 2 s) but
        # plausible from 50,000 (+1 in 1 s): the counter really moved, counting goes on from there.
        (
            [(0, 100), (1000, 50_000), (2000, 50_001), (3000, 50_002)],
            [0, 0, 1, 1],
            [Anomaly(1000, "good_count", 100, 50_000, 1000)],
        ),
        # A PLC restart: the counter starts again from 0; 0 and then 1 are new (a reset, plausible).
        ([(0, 500), (1000, 0), (2000, 1)], [0, 0, 1], []),
        # A restart that shows 3 parts after 1 s is a reset of 3 > 2: an anomaly; +1 from there is counted.
        ([(0, 500), (1000, 3), (2000, 4)], [0, 0, 1], [Anomaly(1000, "good_count", 500, 3, 1000)]),
        # Quiet for an hour (report by exception: no reading), then +3,000: within 3,600 + 1.
        ([(0, 0), (3_600_000, 3000)], [0, 3000], []),
        # A non-finite reading is no reading (inf - inf would be NaN parts): 11 at 3 s is +1 from 10.
        ([(0, 10), (1000, float("inf")), (2000, float("inf")), (3000, 11)], [0, 0, 0, 1], []),
        ([(0, float("inf")), (1000, float("nan")), (2000, 10), (3000, 11)], [0, 0, 0, 1], []),
    ],
)
def test_parts(readings: list[tuple[int, float]], steps: list[float], anomalies: list[Anomaly]) -> None:
    assert run(readings) == (steps, anomalies)


def test_energy_rises_at_most_at_the_meters_maximum_power() -> None:
    # 9 kWh in an hour (9 kW) is plausible; 1e6 kWh 1 ms later is not; 14.001 at 1 h + 1 s: +0.001 in 1 s from 14.0.
    steps, anomalies = run([(0, 5.0), (3_600_000, 14.0), (3_600_001, 1e6), (3_601_000, 14.001)], "energy_kwh")
    assert steps == [0, 9.0, 0, pytest.approx(0.001)]
    assert anomalies == [Anomaly(3_600_001, "energy_kwh", 14.0, 1e6, 1)]


def test_anomalies_are_reported_with_the_window_and_never_counted() -> None:
    # acme (badge 1001) runs 0..10 s making a part a second; a forged 10**12 at 4.5 s. max_gap 5 s.
    samples = [(0, {"state": "RUNNING", "badge": 1001, "good_count": 0})]
    samples += [(t * 1000, {"good_count": t}) for t in range(1, 11)]
    samples.append((4500, {"good_count": 10**12}))
    samples.sort(key=lambda s: s[0])
    timeline = build_timeline(samples, [], 0, 10_000, 5000, LIMITS)
    totals = machine_totals("cnc-01", timeline, 0, 10_000)
    assert totals.total.good == 10  # the ten real parts; 4 -> 10**12 -> 5 is a spike
    assert [a.ts_ms for a in totals.anomalies] == [4500]
    # Window independence: a window that ends before the spike neither shows nor counts it.
    early = machine_totals("cnc-01", build_timeline(samples, [], 0, 4000, 5000, LIMITS), 0, 4000)
    assert (early.total.good, early.anomalies) == (4, ())
    later = machine_totals("cnc-01", build_timeline(samples, [], 4000, 10_000, 5000, LIMITS), 4000, 10_000)
    assert (later.total.good, [a.ts_ms for a in later.anomalies]) == (6, [4500])


def test_default_limits_only_stop_giant_jumps() -> None:
    tracker = CounterTracker()  # 100 parts a second + 1
    assert [tracker.step_raw({"good_count": v}, ts)[0] for ts, v in [(0, 0), (1000, 101), (2000, 302)]] == [0, 101, 0]
    assert [a.value for a in tracker.anomalies] == [302]


# ---- step_raw's inline rise check is _advance's rule ------------------------------------------------------------

_COUNTER_SIGNALS = ("good_count", "reject_count", "energy_kwh")


def _general_path(limits: CounterLimits, readings: list[tuple[int, dict[str, object]]]) -> tuple[list, list]:
    """Each present counter through _advance alone (the rules step_raw's inline check must agree with)."""
    tracker = CounterTracker(limits)
    steps = []
    for ts, values in readings:
        row = [0 if values.get(s) is None else tracker._advance(s, values[s], ts) for s in _COUNTER_SIGNALS]
        steps.append((int(row[0]), int(row[1]), float(row[2])))
    return steps, tracker.anomalies


_values = st.one_of(
    st.none(),
    st.integers(min_value=-5, max_value=60),
    st.floats(min_value=-1.0, max_value=60.0),
    st.sampled_from([0.01, 0.02, 1.01, 2.0, 2.01]),
    st.sampled_from([True, False, "7", 10**12, float("inf"), float("nan")]),
)


@settings(max_examples=400, deadline=None)
@given(
    rates=st.tuples(*[st.sampled_from([0.0, 1.0, 3600.0, 36_000.0, -1.0]) for _ in _COUNTER_SIGNALS]),
    readings=st.lists(
        st.tuples(
            st.integers(min_value=-2000, max_value=4000),
            st.fixed_dictionaries({}, optional={s: _values for s in _COUNTER_SIGNALS}),
        ),
        max_size=30,
    ),
)
def test_the_inline_rise_check_counts_and_flags_as_the_general_path(
    rates: tuple[float, float, float], readings: list[tuple[int, dict[str, object]]]
) -> None:
    # Times may repeat or go back, so zero and negative elapsed times come up; rises land on the limit exactly
    # (1 part in 0 ms with 1 part of slack) as well as either side of it.
    limits = CounterLimits(dict(zip(_COUNTER_SIGNALS, rates, strict=True)))
    readings = [(sum(dt for dt, _ in readings[: i + 1]), values) for i, (_, values) in enumerate(readings)]
    tracker = CounterTracker(limits)
    steps = [tracker.step_raw(values, ts) for ts, values in readings]
    expected_steps, expected_anomalies = _general_path(limits, readings)
    assert steps == expected_steps
    assert tracker.anomalies == expected_anomalies
